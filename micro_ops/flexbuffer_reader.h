/* Copyright 2025 The tflm-patch Authors. All Rights Reserved.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
==============================================================================*/

// A small, bounds-checked FlexBuffer reader: the subset PATCH_STAGE options
// need (a root map, int and uint scalars, typed / fixed typed / untyped
// vectors, maps nested in vectors).
//
// Every read is checked against the buffer size, so malformed, truncated or
// random input yields an error status, never an out-of-bounds read. Values
// are read byte by byte (little endian), so the buffer needs no alignment;
// FlexInPlace lets a caller read a whole vector where it is stored when its
// width and alignment allow. No allocation, no exceptions, no dependency
// besides <cstddef>/<cstdint>/<type_traits>.

#ifndef TFLM_PATCH_MICRO_OPS_FLEXBUFFER_READER_H_
#define TFLM_PATCH_MICRO_OPS_FLEXBUFFER_READER_H_

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace tflm_patch {

// FlexBuffer value types (the upper 6 bits of a packed type byte).
enum FlexType : uint8_t {
  kFlexNull = 0,
  kFlexInt = 1,
  kFlexUInt = 2,
  kFlexFloat = 3,
  kFlexKey = 4,
  kFlexString = 5,
  kFlexIndirectInt = 6,
  kFlexIndirectUInt = 7,
  kFlexIndirectFloat = 8,
  kFlexMap = 9,
  kFlexVector = 10,
  kFlexVectorInt = 11,
  kFlexVectorUInt = 12,
  kFlexVectorFloat = 13,
  kFlexVectorKey = 14,
  kFlexVectorStringDeprecated = 15,
  kFlexVectorInt2 = 16,
  kFlexVectorUInt2 = 17,
  kFlexVectorFloat2 = 18,
  kFlexVectorInt3 = 19,
  kFlexVectorUInt3 = 20,
  kFlexVectorFloat3 = 21,
  kFlexVectorInt4 = 22,
  kFlexVectorUInt4 = 23,
  kFlexVectorFloat4 = 24,
  kFlexBlob = 25,
  kFlexBool = 26,
  kFlexVectorBool = 36,
};

enum class FlexStatus {
  kOk = 0,
  kMalformed,   // the bytes do not form a valid FlexBuffer here
  kWrongType,   // valid, but not the requested kind of value
  kNotFound,    // map lookup: no such key
  kOutOfRange,  // an integer that does not fit int64_t, or a bad index
};

// One value inside a FlexBuffer: where it is stored and how to read it.
struct FlexRef {
  const uint8_t* buffer = nullptr;
  size_t buffer_size = 0;
  size_t offset = 0;         // where the value (inline) or its offset is stored
  uint8_t parent_width = 0;  // bytes used to store it at `offset`
  uint8_t byte_width = 0;    // offset types: element width of the target
  uint8_t type = kFlexNull;  // a FlexType
};

// A vector (untyped, typed or fixed typed) or the values of a map.
struct FlexVector {
  const uint8_t* buffer = nullptr;
  size_t buffer_size = 0;
  size_t data_offset = 0;            // offset of element 0
  size_t length = 0;                 // number of elements
  uint8_t byte_width = 0;            // bytes per element
  uint8_t element_type = kFlexNull;  // typed vectors: the elements' FlexType
  bool has_type_table = false;       // untyped: packed types follow the data
};

// A map: sorted keys and the values in the same order.
struct FlexMap {
  FlexVector keys;    // elements are offsets to NUL-terminated strings
  FlexVector values;  // an untyped vector
};

// The root value of a FlexBuffer of `size` bytes.
FlexStatus FlexGetRoot(const uint8_t* buffer, size_t size, FlexRef* root);

// An INT, UINT, INDIRECT_INT or INDIRECT_UINT value.
FlexStatus FlexReadInt64(const FlexRef& ref, int64_t* value);

// A VECTOR, MAP (its values), typed vector or fixed typed vector.
FlexStatus FlexReadVector(const FlexRef& ref, FlexVector* vector);

// Element `index` of a vector.
FlexStatus FlexVectorElement(const FlexVector& vector, size_t index,
                             FlexRef* element);

// A MAP value.
FlexStatus FlexReadMap(const FlexRef& ref, FlexMap* map);

// The value stored under `key` (a NUL-terminated string) in a map.
FlexStatus FlexMapLookup(const FlexMap& map, const char* key, FlexRef* value);

// The data of a typed integer vector, where it is stored, if its elements
// can be read there as `width`-byte integers (signed: INT, else UINT) on
// this host: exactly that width, data aligned to `alignment` in memory, and a
// little-endian host (the FlexBuffer byte order). nullptr otherwise: the
// caller then copies the elements (FlexVectorElement + FlexReadInt64).
const void* FlexInPlaceData(const FlexVector& vector, bool is_signed,
                            uint8_t width, size_t alignment);

// The elements of `vector` as a T array, read in place; nullptr when they
// cannot be (see FlexInPlaceData). FlexReadVector checked the bounds.
template <typename T>
const T* FlexInPlace(const FlexVector& vector) {
  static_assert(std::is_integral<T>::value, "integer vectors only");
  return static_cast<const T*>(FlexInPlaceData(
      vector, std::is_signed<T>::value, sizeof(T), alignof(T)));
}

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_FLEXBUFFER_READER_H_

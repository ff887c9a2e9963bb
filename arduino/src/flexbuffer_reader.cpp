// Generated from micro_ops/flexbuffer_reader.cc by tools/sync_arduino.py: edit micro_ops/, not this file.
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

#include "flexbuffer_reader.h"

namespace tflm_patch {
namespace {

// FlexBuffer layout reminders (see flatbuffers' flexbuffers.h):
// * the buffer ends with the root value, its packed type byte and the root
//   value's byte width;
// * a packed type is (type << 2) | log2(byte width of the pointed-to data);
// * offset types store an unsigned offset that points backwards:
//   target = where_the_offset_is_stored - offset;
// * a (typed) vector stores its length in the `byte_width` bytes before its
//   first element; an untyped vector is followed by one packed type byte per
//   element; a map is an untyped vector of values preceded by
//   [keys offset, keys byte width, length].

bool IsValidWidth(uint64_t width) {
  return width == 1 || width == 2 || width == 4 || width == 8;
}

// True if [offset, offset + bytes) lies inside a buffer of `size` bytes.
bool InBounds(size_t size, size_t offset, uint64_t bytes) {
  return offset <= size && bytes <= size - offset;
}

bool ReadUnsigned(const uint8_t* buffer, size_t size, size_t offset,
                  uint8_t width, uint64_t* value) {
  if (!IsValidWidth(width) || !InBounds(size, offset, width)) return false;
  uint64_t result = 0;
  for (int i = width - 1; i >= 0; --i) {
    result = (result << 8) | buffer[offset + i];
  }
  *value = result;
  return true;
}

bool ReadSigned(const uint8_t* buffer, size_t size, size_t offset,
                uint8_t width, int64_t* value) {
  uint64_t raw = 0;
  if (!ReadUnsigned(buffer, size, offset, width, &raw)) return false;
  if (width < 8) {
    const uint64_t sign_bit = uint64_t{1} << (width * 8 - 1);
    if (raw & sign_bit) raw |= ~((sign_bit << 1) - 1);  // sign-extend
  }
  *value = static_cast<int64_t>(raw);
  return true;
}

// Follows the offset stored at `ref.offset` to the data it points to.
bool Indirect(const FlexRef& ref, size_t* target) {
  uint64_t distance = 0;
  if (!ReadUnsigned(ref.buffer, ref.buffer_size, ref.offset, ref.parent_width,
                    &distance)) {
    return false;
  }
  if (distance > ref.offset) return false;
  *target = ref.offset - static_cast<size_t>(distance);
  return true;
}

// Reads the length prefix of a vector whose data starts at `data_offset` and
// checks that `length` elements (plus the type table, if any) fit.
bool ReadSizedVector(const FlexRef& ref, size_t data_offset,
                     bool has_type_table, FlexVector* vector) {
  const uint8_t width = ref.byte_width;
  if (!IsValidWidth(width) || data_offset < width) return false;
  uint64_t length = 0;
  if (!ReadUnsigned(ref.buffer, ref.buffer_size, data_offset - width, width,
                    &length)) {
    return false;
  }
  const uint64_t per_element = width + (has_type_table ? 1u : 0u);
  if (data_offset > ref.buffer_size ||
      length > (ref.buffer_size - data_offset) / per_element) {
    return false;
  }
  vector->length = static_cast<size_t>(length);
  return true;
}

bool IsTypedVectorType(uint8_t type) {
  return (type >= kFlexVectorInt && type <= kFlexVectorStringDeprecated) ||
         type == kFlexVectorBool;
}

bool IsFixedTypedVectorType(uint8_t type) {
  return type >= kFlexVectorInt2 && type <= kFlexVectorFloat4;
}

uint8_t TypedVectorElementType(uint8_t type) {
  if (type == kFlexVectorBool) return kFlexBool;
  return static_cast<uint8_t>(type - kFlexVectorInt + kFlexInt);
}

// Compares the NUL-terminated key stored at `offset` with `key`; false if the
// stored key runs past the end of the buffer.
bool KeyEquals(const uint8_t* buffer, size_t size, size_t offset,
               const char* key, bool* equal) {
  for (size_t i = 0;; ++i) {
    if (offset >= size || i >= size - offset) return false;
    const uint8_t stored = buffer[offset + i];
    const uint8_t wanted = static_cast<uint8_t>(key[i]);
    if (stored != wanted) {
      *equal = false;
      return true;
    }
    if (stored == 0) {
      *equal = true;
      return true;
    }
  }
}

}  // namespace

FlexStatus FlexGetRoot(const uint8_t* buffer, size_t size, FlexRef* root) {
  if (buffer == nullptr || size < 3) return FlexStatus::kMalformed;
  const uint8_t root_width = buffer[size - 1];
  const uint8_t packed_type = buffer[size - 2];
  if (!IsValidWidth(root_width) || size < 2u + root_width) {
    return FlexStatus::kMalformed;
  }
  root->buffer = buffer;
  root->buffer_size = size;
  root->offset = size - 2 - root_width;
  root->parent_width = root_width;
  root->byte_width = static_cast<uint8_t>(1u << (packed_type & 3u));
  root->type = static_cast<uint8_t>(packed_type >> 2);
  return FlexStatus::kOk;
}

FlexStatus FlexReadInt64(const FlexRef& ref, int64_t* value) {
  size_t offset = ref.offset;
  uint8_t width = ref.parent_width;
  const bool is_indirect =
      ref.type == kFlexIndirectInt || ref.type == kFlexIndirectUInt;
  if (is_indirect) {
    if (!Indirect(ref, &offset)) return FlexStatus::kMalformed;
    width = ref.byte_width;
  }
  if (ref.type == kFlexInt || ref.type == kFlexIndirectInt) {
    return ReadSigned(ref.buffer, ref.buffer_size, offset, width, value)
               ? FlexStatus::kOk
               : FlexStatus::kMalformed;
  }
  if (ref.type == kFlexUInt || ref.type == kFlexIndirectUInt) {
    uint64_t raw = 0;
    if (!ReadUnsigned(ref.buffer, ref.buffer_size, offset, width, &raw)) {
      return FlexStatus::kMalformed;
    }
    if (raw > static_cast<uint64_t>(INT64_MAX)) return FlexStatus::kOutOfRange;
    *value = static_cast<int64_t>(raw);
    return FlexStatus::kOk;
  }
  return FlexStatus::kWrongType;
}

FlexStatus FlexReadVector(const FlexRef& ref, FlexVector* vector) {
  const bool is_untyped = ref.type == kFlexVector || ref.type == kFlexMap;
  const bool is_typed = IsTypedVectorType(ref.type);
  const bool is_fixed = IsFixedTypedVectorType(ref.type);
  if (!is_untyped && !is_typed && !is_fixed) return FlexStatus::kWrongType;

  size_t data_offset = 0;
  if (!Indirect(ref, &data_offset) || !IsValidWidth(ref.byte_width)) {
    return FlexStatus::kMalformed;
  }
  FlexVector result;
  result.buffer = ref.buffer;
  result.buffer_size = ref.buffer_size;
  result.data_offset = data_offset;
  result.byte_width = ref.byte_width;
  result.has_type_table = is_untyped;
  if (is_fixed) {
    const int fixed_index = ref.type - kFlexVectorInt2;
    result.length = static_cast<size_t>(fixed_index / 3 + 2);
    result.element_type = static_cast<uint8_t>(kFlexInt + fixed_index % 3);
    if (!InBounds(ref.buffer_size, data_offset,
                  static_cast<uint64_t>(result.length) * ref.byte_width)) {
      return FlexStatus::kMalformed;
    }
  } else {
    result.element_type =
        is_typed ? TypedVectorElementType(ref.type) : uint8_t{kFlexNull};
    if (!ReadSizedVector(ref, data_offset, is_untyped, &result)) {
      return FlexStatus::kMalformed;
    }
  }
  *vector = result;
  return FlexStatus::kOk;
}

FlexStatus FlexVectorElement(const FlexVector& vector, size_t index,
                             FlexRef* element) {
  if (index >= vector.length) return FlexStatus::kOutOfRange;
  // FlexReadVector checked that all elements (and the type table) fit.
  FlexRef result;
  result.buffer = vector.buffer;
  result.buffer_size = vector.buffer_size;
  result.offset = vector.data_offset + index * vector.byte_width;
  result.parent_width = vector.byte_width;
  if (vector.has_type_table) {
    const size_t type_offset =
        vector.data_offset + vector.length * vector.byte_width + index;
    if (type_offset >= vector.buffer_size) return FlexStatus::kMalformed;
    const uint8_t packed_type = vector.buffer[type_offset];
    result.byte_width = static_cast<uint8_t>(1u << (packed_type & 3u));
    result.type = static_cast<uint8_t>(packed_type >> 2);
  } else {
    result.byte_width = 1;
    result.type = vector.element_type;
  }
  *element = result;
  return FlexStatus::kOk;
}

const void* FlexInPlaceData(const FlexVector& vector, bool is_signed,
                            uint8_t width, size_t alignment) {
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  const uint8_t wanted = is_signed ? kFlexInt : kFlexUInt;
  if (vector.buffer == nullptr || vector.has_type_table ||
      vector.element_type != wanted || vector.byte_width != width ||
      alignment == 0) {
    return nullptr;
  }
  const uint8_t* data = vector.buffer + vector.data_offset;
  if (reinterpret_cast<uintptr_t>(data) % alignment != 0) return nullptr;
  return data;
#else
  (void)vector;
  (void)is_signed;
  (void)width;
  (void)alignment;
  return nullptr;  // not known to be little endian: callers copy
#endif
}

FlexStatus FlexReadMap(const FlexRef& ref, FlexMap* map) {
  if (ref.type != kFlexMap) return FlexStatus::kWrongType;
  FlexVector values;
  const FlexStatus status = FlexReadVector(ref, &values);
  if (status != FlexStatus::kOk) return status;

  // [keys offset][keys byte width][length] precede the values.
  const uint8_t width = values.byte_width;
  if (values.data_offset < 3u * width) return FlexStatus::kMalformed;
  FlexRef keys_ref;
  keys_ref.buffer = ref.buffer;
  keys_ref.buffer_size = ref.buffer_size;
  keys_ref.offset = values.data_offset - 3u * width;
  keys_ref.parent_width = width;
  keys_ref.type = kFlexVectorKey;
  uint64_t keys_width = 0;
  if (!ReadUnsigned(ref.buffer, ref.buffer_size,
                    values.data_offset - 2u * width, width, &keys_width) ||
      !IsValidWidth(keys_width)) {
    return FlexStatus::kMalformed;
  }
  keys_ref.byte_width = static_cast<uint8_t>(keys_width);
  FlexVector keys;
  if (FlexReadVector(keys_ref, &keys) != FlexStatus::kOk ||
      keys.length != values.length) {
    return FlexStatus::kMalformed;
  }
  map->keys = keys;
  map->values = values;
  return FlexStatus::kOk;
}

FlexStatus FlexMapLookup(const FlexMap& map, const char* key, FlexRef* value) {
  // Linear search: option maps are small, and it tolerates unsorted keys.
  for (size_t i = 0; i < map.keys.length; ++i) {
    FlexRef key_ref;
    if (FlexVectorElement(map.keys, i, &key_ref) != FlexStatus::kOk) {
      return FlexStatus::kMalformed;
    }
    key_ref.parent_width = map.keys.byte_width;
    size_t key_offset = 0;
    if (!Indirect(key_ref, &key_offset)) return FlexStatus::kMalformed;
    bool equal = false;
    if (!KeyEquals(map.keys.buffer, map.keys.buffer_size, key_offset, key,
                   &equal)) {
      return FlexStatus::kMalformed;
    }
    if (equal) return FlexVectorElement(map.values, i, value);
  }
  return FlexStatus::kNotFound;
}

}  // namespace tflm_patch

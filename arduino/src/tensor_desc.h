// Generated from micro_ops/tensor_desc.h by tools/sync_arduino.py: edit micro_ops/, not this file.
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

// What the validation knows of the op's tensors: a TensorDesc per tensor and
// the InputTensors interface that describes the op's inputs (plan_validation.h,
// arith_validation.h).

#ifndef TFLM_PATCH_MICRO_OPS_TENSOR_DESC_H_
#define TFLM_PATCH_MICRO_OPS_TENSOR_DESC_H_

#include <cstdint>

namespace tflm_patch {

// Tensor element types the validation distinguishes (values as TfLiteType).
enum class ElementType : int32_t {
  kOther = 0,
  kFloat32 = 1,
  kInt32 = 2,
  kUInt8 = 3,
  kInt8 = 9,
};

constexpr int kMaxTensorDims = 6;

// What the validation needs to know about one tensor of the op.
struct TensorDesc {
  ElementType type;
  int32_t num_dims;  // > kMaxTensorDims: rejected wherever a shape is checked
  int32_t dims[kMaxTensorDims];
  bool is_constant;
  bool has_zero_point;  // per-tensor zero point known (checked if true)
  int32_t zero_point;
  int32_t num_scales;  // quantization scale count, -1 if unknown
};

// The op's inputs for ValidatePlan: index 0 is the stage input, 1.. are the
// constants. An interface rather than an array so that a kernel can describe
// tensors one at a time without a large temporary array.
class InputTensors {
 public:
  virtual int32_t count() const = 0;
  // Fills `desc` for input `index` (0 <= index < count()); false on failure.
  virtual bool Describe(int32_t index, TensorDesc* desc) const = 0;

 protected:
  ~InputTensors() = default;
};

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_TENSOR_DESC_H_

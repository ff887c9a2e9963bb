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

// Host-only: InputTensors over a plain array of TensorDesc (the host C API
// and the options fuzzer describe the op's tensors this way; the TFLM op
// describes them one at a time from TfLiteTensors instead).

#ifndef TFLM_PATCH_MICRO_OPS_HOST_TENSOR_DESC_ARRAY_H_
#define TFLM_PATCH_MICRO_OPS_HOST_TENSOR_DESC_ARRAY_H_

#include <cstdint>

#include "../plan_validation.h"

namespace tflm_patch {

class TensorDescArray final : public InputTensors {
 public:
  TensorDescArray(const TensorDesc* descs, int32_t count)
      : descs_(descs), count_(count) {}
  int32_t count() const override { return count_; }
  bool Describe(int32_t index, TensorDesc* desc) const override {
    if (index < 0 || index >= count_) return false;
    *desc = descs_[index];
    return true;
  }

 private:
  const TensorDesc* descs_;
  int32_t count_;
};

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_HOST_TENSOR_DESC_ARRAY_H_

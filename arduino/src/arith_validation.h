// Generated from micro_ops/arith_validation.h by tools/sync_arduino.py: edit micro_ops/, not this file.
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

// Prepare's checks of the arithmetic layers (arith_layers.h): ADD_CONST,
// SUB_CONST, MUL_CONST and MUL, and the ADD parameter ranges they share with
// ADD. Called by ValidatePlan (plan_validation.h) for those ops.

#ifndef TFLM_PATCH_MICRO_OPS_ARITH_VALIDATION_H_
#define TFLM_PATCH_MICRO_OPS_ARITH_VALIDATION_H_

#include <cstdint>

#include "plan.h"
#include "status.h"
#include "tensor_desc.h"

namespace tflm_patch {

// add_params: left_shift in [0, 22], multipliers >= 0, shifts in [-31, 0].
Status ValidateAddParamRanges(const AddParams& params, int32_t index);

// One arithmetic layer: shapes, quantization parameters and its constant.
Status ValidateArithLayer(const StagePlan& plan, int32_t index,
                          const InputTensors& inputs);

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_ARITH_VALIDATION_H_

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

// The arithmetic layers with TFLM's reference arithmetic, each over one
// output region: ADD / SUB / MUL of an image and a broadcast int8 constant
// (reference_integer_ops::BroadcastAdd4DSlow, reference_ops::
// BroadcastQuantSubSlow, reference_integer_ops::BroadcastMul4DSlow: the
// same-shape arithmetic per element, which is what TFLM runs in reference and
// CMSIS-NN builds for broadcasts), and MUL of two same-shape images
// (reference_integer_ops::Mul). The constant holds one value, or one per
// channel. Arith ops validate in arith_validation.h.

#ifndef TFLM_PATCH_MICRO_OPS_ARITH_LAYERS_H_
#define TFLM_PATCH_MICRO_OPS_ARITH_LAYERS_H_

#include <cstdint>

#include "geometry.h"
#include "image_view.h"
#include "plan.h"

namespace tflm_patch {

// ADD_CONST, SUB_CONST or MUL_CONST over `region`: `constant` holds
// layer.num_channel_params values (1, or the channel count).
void ConstArithRegion(const LayerPlan& layer, const InputView& input,
                      const int8_t* constant, const Region& region,
                      const OutputView& output);

// MUL of two same-shape images over `region`.
void MulRegion(const LayerPlan& layer, const InputView& input1,
               const InputView& input2, const Region& region,
               const OutputView& output);

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_ARITH_LAYERS_H_

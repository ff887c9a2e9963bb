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

// Prepare-time checks of the pointwise layers (pointwise_layers.h): their
// act_params in the ranges TFLM's Prepare produces, and a QUANTIZE only as
// layer 0, the one layer reading a float32 / uint8 stage input.

#ifndef TFLM_PATCH_MICRO_OPS_POINTWISE_VALIDATION_H_
#define TFLM_PATCH_MICRO_OPS_POINTWISE_VALIDATION_H_

#include "plan.h"
#include "status.h"

namespace tflm_patch {

// Layer `index` (a pointwise op) reading an image of shape `in`.
Status ValidatePointwiseLayer(const StagePlan& plan, int32_t index,
                              const ImageShape& in);

// Only layer 0 (its QUANTIZE) may read a float32 / uint8 stage input.
Status ValidateStageInputReaders(const StagePlan& plan);

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_POINTWISE_VALIDATION_H_

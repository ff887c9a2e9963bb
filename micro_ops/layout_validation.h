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

// Prepare's checks of the layout layers (op codes 30-39, layout_layers.h),
// called by ValidatePlan after the checks every layer gets (sources,
// out_shape, zero points in int8).

#ifndef TFLM_PATCH_MICRO_OPS_LAYOUT_VALIDATION_H_
#define TFLM_PATCH_MICRO_OPS_LAYOUT_VALIDATION_H_

#include <cstdint>

#include "plan.h"
#include "status.h"

namespace tflm_patch {

// CONCATENATION: every source has the output's height and width, their
// channels add up to the output's, and every in_zp equals out_zp (TFLM's
// int8 kernel requires equal quantization: it never requantizes).
// RESIZE_NEAREST_NEIGHBOR: channels kept, align_corners and
// half_pixel_centers are 0 or 1.
Status ValidateLayoutLayer(const StagePlan& plan, int32_t index);

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_LAYOUT_VALIDATION_H_

// Generated from micro_ops/layout_layers.h by tools/sync_arduino.py: edit micro_ops/, not this file.
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

// The layout layers (op codes 30-39): they move bytes and compute nothing,
// bit-exact with TFLM's reference kernels (reference/concatenation.h,
// reference/resize_nearest_neighbor.h). RESIZE_NEAREST_NEIGHBOR's index map,
// which is also its region rule, is geometry.h's NearestSourceIndex.

#ifndef TFLM_PATCH_MICRO_OPS_LAYOUT_LAYERS_H_
#define TFLM_PATCH_MICRO_OPS_LAYOUT_LAYERS_H_

#include <cstdint>

#include "geometry.h"
#include "image_view.h"
#include "plan.h"

namespace tflm_patch {

// reference_ops::Concatenation along channels over `region`: source s fills
// channels [sum of the channels of sources < s, + its own) (a view's
// channels are its image's).
void ConcatenationRegion(const LayerPlan& layer, const InputView* inputs,
                         const Region& region, const OutputView& output);

// reference_ops::ResizeNearestNeighbor over `region`.
void ResizeNearestRegion(const LayerPlan& layer, const ImageShape& in_shape,
                         const InputView& input, const Region& region,
                         const OutputView& output);

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_LAYOUT_LAYERS_H_

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
// reference/resize_nearest_neighbor.h). Their region rules live here too,
// since the index map of RESIZE_NEAREST_NEIGHBOR is both.

#ifndef TFLM_PATCH_MICRO_OPS_LAYOUT_LAYERS_H_
#define TFLM_PATCH_MICRO_OPS_LAYOUT_LAYERS_H_

#include <cstdint>

#include "geometry.h"
#include "image_view.h"
#include "plan.h"

namespace tflm_patch {

// reference_ops::GetNearestNeighbor: the input row (column) that output row
// (column) `out_index` copies. Non-decreasing in `out_index`.
int32_t NearestSourceIndex(int32_t out_index, int32_t in_size,
                           int32_t out_size, bool align_corners,
                           bool half_pixel_centers);

// The input region RESIZE_NEAREST_NEIGHBOR reads for a non-empty `out`:
// [src(y0), src(y1 - 1) + 1) x [src(x0), src(x1 - 1) + 1).
Region ResizeNearestInputRegion(const LayerPlan& layer, const Region& out,
                                const ImageShape& in_shape);

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

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

// Regions of the stage's images (docs "Coordinates and regions"): what a
// layer reads of its source to compute an output region, the region every
// layer computes for one tile of the stage output, and memory alignment.

#ifndef TFLM_PATCH_MICRO_OPS_GEOMETRY_H_
#define TFLM_PATCH_MICRO_OPS_GEOMETRY_H_

#include <cstddef>
#include <cstdint>

#include "plan.h"

namespace tflm_patch {

// A half-open box [y0, y1) x [x0, x1) in an image's own coordinates.
// Empty when y0 >= y1 or x0 >= x1.
struct Region {
  int32_t y0;
  int32_t y1;
  int32_t x0;
  int32_t x1;
};

constexpr Region kEmptyRegion = {0, 0, 0, 0};

inline bool IsEmpty(const Region& r) { return r.y0 >= r.y1 || r.x0 >= r.x1; }
inline int32_t Height(const Region& r) { return r.y1 - r.y0; }
inline int32_t Width(const Region& r) { return r.x1 - r.x0; }

// Pixels in the region (0 when empty).
inline int64_t Area(const Region& r) {
  return IsEmpty(r) ? 0 : static_cast<int64_t>(Height(r)) * Width(r);
}

// The smallest region holding both.
Region Union(const Region& a, const Region& b);

inline size_t AlignUp(size_t value, size_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

// What `layer` reads of its source image (shape `in_shape`) to compute its
// output region `out`, clipped to the image.
// reference_ops::GetNearestNeighbor (RESIZE_NEAREST_NEIGHBOR): the input
// row (column) that output row (column) `out_index` copies, in TFLM's float32
// arithmetic. Non-decreasing in `out_index`.
int32_t NearestSourceIndex(int32_t out_index, int32_t in_size,
                           int32_t out_size, bool align_corners,
                           bool half_pixel_centers);

Region LayerInputRegion(const LayerPlan& layer, const Region& out,
                        const ImageShape& in_shape);

// Tile (row, col) of the plan's grid, in stage output coordinates.
Region TileRegion(const StagePlan& plan, int32_t row, int32_t col);

// The output region of every layer for one tile of the stage output: the
// last layer's is the tile, every other layer's the union of what its
// readers need of it. `regions` holds plan.num_layers entries.
void ComputePatchRegions(const StagePlan& plan, const Region& tile,
                         Region* regions);

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_GEOMETRY_H_

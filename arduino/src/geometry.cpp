// Generated from micro_ops/geometry.cc by tools/sync_arduino.py: edit micro_ops/, not this file.
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

#include "geometry.h"

#include <cmath>

namespace tflm_patch {
namespace {

inline int64_t Max64(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t Min64(int64_t a, int64_t b) { return a < b ? a : b; }

// The input rows [*begin, *end) a window op reads for output rows
// [out_begin, out_end), clipped to the input image [0, in_size).
void WindowInputSpan(int32_t out_begin, int32_t out_end, int32_t stride,
                     int32_t pad, int32_t kernel, int32_t dilation,
                     int32_t in_size, int32_t* begin, int32_t* end) {
  const int64_t first = static_cast<int64_t>(out_begin) * stride - pad;
  const int64_t last = static_cast<int64_t>(out_end - 1) * stride - pad +
                       static_cast<int64_t>(kernel - 1) * dilation + 1;
  *begin = static_cast<int32_t>(Max64(0, Min64(first, in_size)));
  *end = static_cast<int32_t>(Max64(0, Min64(last, in_size)));
}

// RESIZE_NEAREST_NEIGHBOR reads, for a non-empty `out`,
// [src(y0), src(y1 - 1) + 1) x [src(x0), src(x1 - 1) + 1).
Region ResizeNearestInputRegion(const LayerPlan& layer, const Region& out,
                                const ImageShape& in_shape) {
  const bool align = layer.align_corners != 0;
  const bool half = layer.half_pixel_centers != 0;
  const ImageShape& out_shape = layer.output_shape;
  Region in;
  in.y0 = NearestSourceIndex(out.y0, in_shape.height, out_shape.height, align,
                             half);
  in.y1 = NearestSourceIndex(out.y1 - 1, in_shape.height, out_shape.height,
                             align, half) +
          1;
  in.x0 =
      NearestSourceIndex(out.x0, in_shape.width, out_shape.width, align, half);
  in.x1 = NearestSourceIndex(out.x1 - 1, in_shape.width, out_shape.width,
                             align, half) +
          1;
  return in;
}

}  // namespace

int32_t NearestSourceIndex(int32_t out_index, int32_t in_size,
                           int32_t out_size, bool align_corners,
                           bool half_pixel_centers) {
  // Term for term TFLM's float arithmetic, so that the rounding is the same.
  const float scale = (align_corners && out_size > 1)
                          ? (in_size - 1) / static_cast<float>(out_size - 1)
                          : in_size / static_cast<float>(out_size);
  const float offset = half_pixel_centers ? 0.5f : 0.0f;
  const float value = (out_index + offset) * scale;
  int32_t index = align_corners ? static_cast<int32_t>(std::round(value))
                                : static_cast<int32_t>(std::floor(value));
  if (index > in_size - 1) index = in_size - 1;
  if (half_pixel_centers && index < 0) index = 0;
  return index;
}

Region Union(const Region& a, const Region& b) {
  if (IsEmpty(a)) return b;
  if (IsEmpty(b)) return a;
  return Region{a.y0 < b.y0 ? a.y0 : b.y0, a.y1 > b.y1 ? a.y1 : b.y1,
                a.x0 < b.x0 ? a.x0 : b.x0, a.x1 > b.x1 ? a.x1 : b.x1};
}

Region LayerInputRegion(const LayerPlan& layer, const Region& out,
                        const ImageShape& in_shape) {
  if (IsEmpty(out)) return kEmptyRegion;
  Region in = kEmptyRegion;
  if (IsPointwiseOp(layer.op)) return out;
  switch (layer.op) {
    case LayerOp::kConcatenation:
      return out;
    case LayerOp::kResizeNearestNeighbor:
      in = ResizeNearestInputRegion(layer, out, in_shape);
      break;
    case LayerOp::kPad:
      in.y0 = static_cast<int32_t>(Max64(0, int64_t{out.y0} - layer.pad_top));
      in.y1 = static_cast<int32_t>(
          Min64(in_shape.height, int64_t{out.y1} - layer.pad_top));
      in.x0 = static_cast<int32_t>(Max64(0, int64_t{out.x0} - layer.pad_left));
      in.x1 = static_cast<int32_t>(
          Min64(in_shape.width, int64_t{out.x1} - layer.pad_left));
      break;
    default:
      WindowInputSpan(out.y0, out.y1, layer.stride_height, layer.pad_top,
                      layer.kernel_height, layer.dilation_height,
                      in_shape.height, &in.y0, &in.y1);
      WindowInputSpan(out.x0, out.x1, layer.stride_width, layer.pad_left,
                      layer.kernel_width, layer.dilation_width, in_shape.width,
                      &in.x0, &in.x1);
      break;
  }
  return IsEmpty(in) ? kEmptyRegion : in;
}

Region TileRegion(const StagePlan& plan, int32_t row, int32_t col) {
  return Region{plan.grid_rows[row], plan.grid_rows[row + 1],
                plan.grid_cols[col], plan.grid_cols[col + 1]};
}

void ComputePatchRegions(const StagePlan& plan, const Region& tile,
                         Region* regions) {
  const int32_t last = plan.num_layers - 1;
  for (int32_t i = 0; i < last; ++i) regions[i] = kEmptyRegion;
  regions[last] = tile;
  for (int32_t i = last; i >= 0; --i) {
    const LayerPlan& layer = plan.layers[i];
    for (int32_t s = 0; s < layer.num_sources; ++s) {
      const int32_t source = layer.sources[s];
      if (source == kStageInputSource) continue;
      const Region needed =
          LayerInputRegion(layer, regions[i], SourceShape(plan, source));
      regions[source] = Union(regions[source], needed);
    }
  }
}

}  // namespace tflm_patch

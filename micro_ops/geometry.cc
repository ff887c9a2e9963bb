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

}  // namespace

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

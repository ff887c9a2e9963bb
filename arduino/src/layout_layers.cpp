// Generated from micro_ops/layout_layers.cc by tools/sync_arduino.py: edit micro_ops/, not this file.
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

#include "layout_layers.h"

#include <cstring>

namespace tflm_patch {

void ConcatenationRegion(const LayerPlan& layer, const InputView* inputs,
                         const Region& region, const OutputView& output) {
  for (int32_t y = region.y0; y < region.y1; ++y) {
    for (int32_t x = region.x0; x < region.x1; ++x) {
      int8_t* out = output.Pixel(y, x);
      for (int32_t s = 0; s < layer.num_sources; ++s) {
        const int32_t channels = inputs[s].channels;
        std::memcpy(out, inputs[s].Pixel(y, x), static_cast<size_t>(channels));
        out += channels;
      }
    }
  }
}

void ResizeNearestRegion(const LayerPlan& layer, const ImageShape& in_shape,
                         const InputView& input, const Region& region,
                         const OutputView& output) {
  const bool align = layer.align_corners != 0;
  const bool half = layer.half_pixel_centers != 0;
  const ImageShape& out_shape = layer.output_shape;
  const size_t channels = static_cast<size_t>(out_shape.channels);
  for (int32_t y = region.y0; y < region.y1; ++y) {
    const int32_t in_y = NearestSourceIndex(y, in_shape.height,
                                            out_shape.height, align, half);
    for (int32_t x = region.x0; x < region.x1; ++x) {
      const int32_t in_x = NearestSourceIndex(x, in_shape.width,
                                              out_shape.width, align, half);
      std::memcpy(output.Pixel(y, x), input.Pixel(in_y, in_x), channels);
    }
  }
}

}  // namespace tflm_patch

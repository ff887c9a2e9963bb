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

// Views of an NHWC int8 image region held in memory with a row stride: the
// stage input and output (whole images) and the per-patch layer buffers
// (one region each, dense). Internal to the engine.

#ifndef TFLM_PATCH_MICRO_OPS_IMAGE_VIEW_H_
#define TFLM_PATCH_MICRO_OPS_IMAGE_VIEW_H_

#include <cstddef>
#include <cstdint>

namespace tflm_patch {

// Pixel (y, x), in image coordinates, starts at
// data + (y - origin_y) * row_stride + (x - origin_x) * channels.
template <typename Element>
struct ImageView {
  Element* data;
  int32_t origin_y;
  int32_t origin_x;
  int32_t row_stride;  // bytes from one row to the next
  int32_t channels;

  Element* Pixel(int32_t y, int32_t x) const {
    return data + static_cast<ptrdiff_t>(y - origin_y) * row_stride +
           static_cast<ptrdiff_t>(x - origin_x) * channels;
  }
  // Pixels per row: rows of `width` pixels from origin_x lie back to back.
  int32_t width() const { return channels > 0 ? row_stride / channels : 0; }
};

using InputView = ImageView<const int8_t>;
using OutputView = ImageView<int8_t>;

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_IMAGE_VIEW_H_

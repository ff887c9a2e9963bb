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

#include "arith_layers.h"

#include "integer_math.h"

namespace tflm_patch {
namespace {

inline int8_t Finish(int32_t raw, const LayerPlan& layer) {
  return static_cast<int8_t>(
      Clamp(WrappingAdd(raw, layer.output_zero_point), layer.activation_min,
            layer.activation_max));
}

// AddFunc / SubElementwise for one element: operand 1 is the image.
inline int8_t AddOrSubElement(int8_t image, int8_t constant, bool subtract,
                              const LayerPlan& layer) {
  const AddParams& p = layer.add;
  const int32_t shifted_a =
      (image - layer.input_zero_point[0]) * (1 << p.left_shift);
  const int32_t shifted_b =
      (constant - layer.const_zero_point) * (1 << p.left_shift);
  const int32_t scaled_a = MultiplyByQuantizedMultiplierSmallerThanOneExp(
      shifted_a, p.input1_multiplier, p.input1_shift);
  const int32_t scaled_b = MultiplyByQuantizedMultiplierSmallerThanOneExp(
      shifted_b, p.input2_multiplier, p.input2_shift);
  const int32_t raw = subtract ? scaled_a - scaled_b : scaled_a + scaled_b;
  return Finish(MultiplyByQuantizedMultiplierSmallerThanOneExp(
                    raw, p.output_multiplier, p.output_shift),
                layer);
}

// MulElementwise for one element (|a|, |b| <= 255: the product fits).
inline int8_t MulElement(int32_t a, int32_t b, const LayerPlan& layer) {
  return Finish(MultiplyByQuantizedMultiplier(a * b, layer.add.output_multiplier,
                                              layer.add.output_shift),
                layer);
}

}  // namespace

void ConstArithRegion(const LayerPlan& layer, const InputView& input,
                      const int8_t* constant, const Region& region,
                      const OutputView& output) {
  const int32_t channels = layer.output_shape.channels;
  const int32_t step = layer.num_channel_params == 1 ? 0 : 1;
  for (int32_t y = region.y0; y < region.y1; ++y) {
    for (int32_t x = region.x0; x < region.x1; ++x) {
      const int8_t* in = input.Pixel(y, x);
      int8_t* out = output.Pixel(y, x);
      for (int32_t c = 0; c < channels; ++c) {
        const int8_t k = constant[c * step];
        if (layer.op == LayerOp::kMulConst) {
          out[c] = MulElement(in[c] - layer.input_zero_point[0],
                              k - layer.const_zero_point, layer);
        } else {
          out[c] = AddOrSubElement(in[c], k, layer.op == LayerOp::kSubConst,
                                   layer);
        }
      }
    }
  }
}

void MulRegion(const LayerPlan& layer, const InputView& input1,
               const InputView& input2, const Region& region,
               const OutputView& output) {
  const int32_t channels = layer.output_shape.channels;
  for (int32_t y = region.y0; y < region.y1; ++y) {
    for (int32_t x = region.x0; x < region.x1; ++x) {
      const int8_t* a = input1.Pixel(y, x);
      const int8_t* b = input2.Pixel(y, x);
      int8_t* out = output.Pixel(y, x);
      for (int32_t c = 0; c < channels; ++c) {
        out[c] = MulElement(a[c] - layer.input_zero_point[0],
                            b[c] - layer.input_zero_point[1], layer);
      }
    }
  }
}

}  // namespace tflm_patch

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

#include "reference_layers.h"

#include <cstddef>

#include "arith_layers.h"
#include "integer_math.h"
#include "layout_layers.h"
#include "pointwise_layers.h"

namespace tflm_patch {
namespace {

inline bool Inside(int32_t value, int32_t size) {
  return value >= 0 && value < size;
}

inline int8_t Requantize(int32_t acc, int32_t multiplier, int32_t shift,
                         const LayerPlan& layer) {
  int32_t value = MultiplyByQuantizedMultiplier(acc, multiplier, shift);
  value = WrappingAdd(value, layer.output_zero_point);
  return static_cast<int8_t>(
      Clamp(value, layer.activation_min, layer.activation_max));
}

// The window taps of output pixel (out_y, out_x) that lie inside the input.
struct WindowTaps {
  int32_t in_y_origin;
  int32_t in_x_origin;
  int32_t y_begin;
  int32_t y_end;
  int32_t x_begin;
  int32_t x_end;
};

WindowTaps PoolWindow(const LayerPlan& layer, const ImageShape& in_shape,
                      int32_t out_y, int32_t out_x) {
  WindowTaps taps;
  taps.in_y_origin = out_y * layer.stride_height - layer.pad_top;
  taps.in_x_origin = out_x * layer.stride_width - layer.pad_left;
  taps.y_begin = taps.in_y_origin < 0 ? -taps.in_y_origin : 0;
  taps.x_begin = taps.in_x_origin < 0 ? -taps.in_x_origin : 0;
  const int32_t y_limit = in_shape.height - taps.in_y_origin;
  const int32_t x_limit = in_shape.width - taps.in_x_origin;
  taps.y_end = layer.kernel_height < y_limit ? layer.kernel_height : y_limit;
  taps.x_end = layer.kernel_width < x_limit ? layer.kernel_width : x_limit;
  return taps;
}

// reference_integer_ops::AddFunc for one element.
inline int8_t AddElement(int8_t a, int8_t b, const LayerPlan& layer) {
  const AddParams& p = layer.add;
  const int32_t shifted_a =
      (a - layer.input_zero_point[0]) * (1 << p.left_shift);
  const int32_t shifted_b =
      (b - layer.input_zero_point[1]) * (1 << p.left_shift);
  const int32_t scaled_a = MultiplyByQuantizedMultiplierSmallerThanOneExp(
      shifted_a, p.input1_multiplier, p.input1_shift);
  const int32_t scaled_b = MultiplyByQuantizedMultiplierSmallerThanOneExp(
      shifted_b, p.input2_multiplier, p.input2_shift);
  const int32_t raw_output = MultiplyByQuantizedMultiplierSmallerThanOneExp(
      scaled_a + scaled_b, p.output_multiplier, p.output_shift);
  return static_cast<int8_t>(
      Clamp(WrappingAdd(raw_output, layer.output_zero_point),
            layer.activation_min, layer.activation_max));
}

Status RunReferenceBackend(const LayerCall& call, uint8_t* /*workspace*/) {
  RunReferenceLayer(call);
  return OkStatus();
}

}  // namespace

// reference_integer_ops::ConvPerChannel over `region`.
void ConvRegion(const LayerPlan& layer, const ImageShape& in_shape,
                const InputView& input, const int8_t* filter,
                const int32_t* bias, const Region& region,
                const OutputView& output) {
  const int32_t input_offset = -layer.input_zero_point[0];
  const int32_t in_channels = in_shape.channels;
  const int32_t out_channels = layer.output_shape.channels;
  const int32_t filter_height = layer.kernel_height;
  const int32_t filter_width = layer.kernel_width;
  for (int32_t out_y = region.y0; out_y < region.y1; ++out_y) {
    const int32_t in_y_origin = out_y * layer.stride_height - layer.pad_top;
    for (int32_t out_x = region.x0; out_x < region.x1; ++out_x) {
      const int32_t in_x_origin = out_x * layer.stride_width - layer.pad_left;
      int8_t* out_pixel = output.Pixel(out_y, out_x);
      for (int32_t out_c = 0; out_c < out_channels; ++out_c) {
        int32_t acc = 0;
        for (int32_t ky = 0; ky < filter_height; ++ky) {
          const int32_t in_y = in_y_origin + ky * layer.dilation_height;
          if (!Inside(in_y, in_shape.height)) continue;
          for (int32_t kx = 0; kx < filter_width; ++kx) {
            const int32_t in_x = in_x_origin + kx * layer.dilation_width;
            if (!Inside(in_x, in_shape.width)) continue;
            const int8_t* in_pixel = input.Pixel(in_y, in_x);
            const int8_t* taps =
                filter + ((static_cast<ptrdiff_t>(out_c) * filter_height + ky) *
                              filter_width +
                          kx) *
                             in_channels;
            for (int32_t in_c = 0; in_c < in_channels; ++in_c) {
              acc = WrappingAdd(acc,
                                taps[in_c] * (in_pixel[in_c] + input_offset));
            }
          }
        }
        if (bias != nullptr) acc = WrappingAdd(acc, bias[out_c]);
        out_pixel[out_c] = Requantize(acc, layer.output_multiplier[out_c],
                                      layer.output_shift[out_c], layer);
      }
    }
  }
}

// reference_integer_ops::DepthwiseConvPerChannel over `region`.
void DepthwiseConvRegion(const LayerPlan& layer, const ImageShape& in_shape,
                         const InputView& input, const int8_t* filter,
                         const int32_t* bias, const Region& region,
                         const OutputView& output) {
  const int32_t input_offset = -layer.input_zero_point[0];
  const int32_t in_channels = in_shape.channels;
  const int32_t out_channels = layer.output_shape.channels;
  const int32_t depth_multiplier = layer.depth_multiplier;
  for (int32_t out_y = region.y0; out_y < region.y1; ++out_y) {
    const int32_t in_y_origin = out_y * layer.stride_height - layer.pad_top;
    for (int32_t out_x = region.x0; out_x < region.x1; ++out_x) {
      const int32_t in_x_origin = out_x * layer.stride_width - layer.pad_left;
      int8_t* out_pixel = output.Pixel(out_y, out_x);
      for (int32_t in_c = 0; in_c < in_channels; ++in_c) {
        for (int32_t m = 0; m < depth_multiplier; ++m) {
          const int32_t out_c = in_c * depth_multiplier + m;
          int32_t acc = 0;
          for (int32_t ky = 0; ky < layer.kernel_height; ++ky) {
            const int32_t in_y = in_y_origin + ky * layer.dilation_height;
            if (!Inside(in_y, in_shape.height)) continue;
            for (int32_t kx = 0; kx < layer.kernel_width; ++kx) {
              const int32_t in_x = in_x_origin + kx * layer.dilation_width;
              if (!Inside(in_x, in_shape.width)) continue;
              const int32_t input_value = input.Pixel(in_y, in_x)[in_c];
              const int32_t filter_value =
                  filter[(static_cast<ptrdiff_t>(ky) * layer.kernel_width +
                          kx) *
                             out_channels +
                         out_c];
              acc =
                  WrappingAdd(acc, filter_value * (input_value + input_offset));
            }
          }
          if (bias != nullptr) acc = WrappingAdd(acc, bias[out_c]);
          out_pixel[out_c] = Requantize(acc, layer.output_multiplier[out_c],
                                        layer.output_shift[out_c], layer);
        }
      }
    }
  }
}

// reference_integer_ops::MaxPool over `region`.
void MaxPoolRegion(const LayerPlan& layer, const ImageShape& in_shape,
                   const InputView& input, const Region& region,
                   const OutputView& output) {
  const int32_t channels = layer.output_shape.channels;
  for (int32_t out_y = region.y0; out_y < region.y1; ++out_y) {
    for (int32_t out_x = region.x0; out_x < region.x1; ++out_x) {
      const WindowTaps taps = PoolWindow(layer, in_shape, out_y, out_x);
      int8_t* out_pixel = output.Pixel(out_y, out_x);
      for (int32_t c = 0; c < channels; ++c) {
        int32_t max = kInt8Min;
        for (int32_t ky = taps.y_begin; ky < taps.y_end; ++ky) {
          for (int32_t kx = taps.x_begin; kx < taps.x_end; ++kx) {
            const int32_t value =
                input.Pixel(taps.in_y_origin + ky, taps.in_x_origin + kx)[c];
            if (value > max) max = value;
          }
        }
        out_pixel[c] = static_cast<int8_t>(
            Clamp(max, layer.activation_min, layer.activation_max));
      }
    }
  }
}

// reference_integer_ops::AveragePool over `region`. ValidatePlan guarantees
// every window has at least one tap inside the input.
void AveragePoolRegion(const LayerPlan& layer, const ImageShape& in_shape,
                       const InputView& input, const Region& region,
                       const OutputView& output) {
  const int32_t channels = layer.output_shape.channels;
  for (int32_t out_y = region.y0; out_y < region.y1; ++out_y) {
    for (int32_t out_x = region.x0; out_x < region.x1; ++out_x) {
      const WindowTaps taps = PoolWindow(layer, in_shape, out_y, out_x);
      const int32_t count =
          (taps.y_end - taps.y_begin) * (taps.x_end - taps.x_begin);
      int8_t* out_pixel = output.Pixel(out_y, out_x);
      for (int32_t c = 0; c < channels; ++c) {
        int32_t acc = 0;
        for (int32_t ky = taps.y_begin; ky < taps.y_end; ++ky) {
          for (int32_t kx = taps.x_begin; kx < taps.x_end; ++kx) {
            acc = WrappingAdd(acc, input.Pixel(taps.in_y_origin + ky,
                                               taps.in_x_origin + kx)[c]);
          }
        }
        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
        out_pixel[c] = static_cast<int8_t>(
            Clamp(acc, layer.activation_min, layer.activation_max));
      }
    }
  }
}

void AddRegion(const LayerPlan& layer, const InputView& input1,
               const InputView& input2, const Region& region,
               const OutputView& output) {
  const int32_t channels = layer.output_shape.channels;
  for (int32_t y = region.y0; y < region.y1; ++y) {
    for (int32_t x = region.x0; x < region.x1; ++x) {
      const int8_t* a = input1.Pixel(y, x);
      const int8_t* b = input2.Pixel(y, x);
      int8_t* out = output.Pixel(y, x);
      for (int32_t c = 0; c < channels; ++c) {
        out[c] = AddElement(a[c], b[c], layer);
      }
    }
  }
}

void PadRegion(const LayerPlan& layer, const ImageShape& in_shape,
               const InputView& input, const Region& region,
               const OutputView& output) {
  const int32_t channels = layer.output_shape.channels;
  const int8_t pad_value = static_cast<int8_t>(layer.pad_value);
  for (int32_t y = region.y0; y < region.y1; ++y) {
    const int32_t in_y = y - layer.pad_top;
    for (int32_t x = region.x0; x < region.x1; ++x) {
      const int32_t in_x = x - layer.pad_left;
      int8_t* out = output.Pixel(y, x);
      const bool inside =
          Inside(in_y, in_shape.height) && Inside(in_x, in_shape.width);
      const int8_t* in = inside ? input.Pixel(in_y, in_x) : nullptr;
      for (int32_t c = 0; c < channels; ++c) {
        out[c] = inside ? in[c] : pad_value;
      }
    }
  }
}
void RunReferenceLayer(const LayerCall& call) {
  const LayerPlan& layer = *call.layer;
  switch (layer.op) {
    case LayerOp::kConv2D:
      ConvRegion(layer, call.input_shape, call.sources[0], call.filter,
                 call.bias, call.region, call.output);
      break;
    case LayerOp::kDepthwiseConv2D:
      DepthwiseConvRegion(layer, call.input_shape, call.sources[0], call.filter,
                          call.bias, call.region, call.output);
      break;
    case LayerOp::kAdd:
      AddRegion(layer, call.sources[0], call.sources[1], call.region,
                call.output);
      break;
    case LayerOp::kPad:
      PadRegion(layer, call.input_shape, call.sources[0], call.region,
                call.output);
      break;
    case LayerOp::kMaxPool2D:
      MaxPoolRegion(layer, call.input_shape, call.sources[0], call.region,
                    call.output);
      break;
    case LayerOp::kAveragePool2D:
      AveragePoolRegion(layer, call.input_shape, call.sources[0], call.region,
                        call.output);
      break;
    case LayerOp::kConcatenation:
      ConcatenationRegion(layer, call.sources, call.region, call.output);
      break;
    case LayerOp::kResizeNearestNeighbor:
      ResizeNearestRegion(layer, call.input_shape, call.sources[0],
                          call.region, call.output);
      break;
    case LayerOp::kRelu:
    case LayerOp::kRelu6:
    case LayerOp::kLeakyRelu:
    case LayerOp::kHardSwish:
    case LayerOp::kLogistic:
    case LayerOp::kQuantize:
      PointwiseRegion(layer, call.sources[0], call.region, call.output);
      break;
    case LayerOp::kAddConst:
    case LayerOp::kMulConst:
    case LayerOp::kSubConst:
      ConstArithRegion(layer, call.sources[0], call.filter, call.region,
                       call.output);
      break;
    case LayerOp::kMul:
      MulRegion(layer, call.sources[0], call.sources[1], call.region,
                call.output);
      break;
  }
}

const LayerBackend kReferenceLayerBackend = {nullptr, RunReferenceBackend};

}  // namespace tflm_patch

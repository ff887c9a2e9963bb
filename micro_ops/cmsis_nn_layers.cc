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

#if defined(CMSIS_NN)

#include "cmsis_nn_layers.h"

#include <cstring>

#if defined(TFLM_PATCH_CMSIS_NN_HEADER)
#include TFLM_PATCH_CMSIS_NN_HEADER  // a build that names the header itself
#elif __has_include("Include/arm_nnfunctions.h")
#include "Include/arm_nnfunctions.h"  // TFLM's Makefile and CMake builds
#else
#include "third_party/cmsis_nn/Include/arm_nnfunctions.h"  // Arduino layout
#endif

#include "geometry.h"
#include "reference_layers.h"

namespace tflm_patch {
namespace {

// The view's pixels in `r` lie back to back in memory (row after row).
template <typename Element>
bool IsDense(const ImageView<Element>& view, const Region& r) {
  return Height(r) == 1 || (view.origin_x == r.x0 && view.width() == Width(r));
}

// One CMSIS-NN call of a window layer: output rows `out` (all the region's
// columns) computed from input region `in` (clipped to the image).
struct Band {
  Region out;
  Region in;
  bool staged;  // `in` is not dense in its source: copied to the workspace
};

Region RowOf(const Region& region, int32_t y) {
  return Region{y, y + 1, region.x0, region.x1};
}

// The bands of `region`, one call of fn(band) each, while fn returns true.
// Returns false, before any call, when a band would read nothing inside the
// image (window spans wholly in the padding, which TFLite's SAME and VALID
// never produce): the layer then stays with the reference arithmetic. Rows
// whose span misses the image can only be the first or the last ones, so
// checking those two covers every row.
template <typename Fn>
bool ForEachWindowBand(const LayerPlan& layer, const ImageShape& in_shape,
                       const InputView& input, const Region& region,
                       const OutputView& output, Fn&& fn) {
  const Region whole = LayerInputRegion(layer, region, in_shape);
  if (IsEmpty(whole)) return false;
  if (IsDense(input, whole) && IsDense(output, region)) {
    return fn(Band{region, whole, false});
  }
  if (IsEmpty(LayerInputRegion(layer, RowOf(region, region.y0), in_shape)) ||
      IsEmpty(
          LayerInputRegion(layer, RowOf(region, region.y1 - 1), in_shape))) {
    return false;
  }
  for (int32_t y = region.y0; y < region.y1; ++y) {
    const Region in = LayerInputRegion(layer, RowOf(region, y), in_shape);
    if (!fn(Band{RowOf(region, y), in, !IsDense(input, in)})) return false;
  }
  return true;
}

// The part of the layer's padding in front of the band's input: where its
// first window starts, relative to its input region (>= 0, <= the padding).
int32_t LeadingPad(int32_t out_begin, int32_t stride, int32_t pad,
                   int32_t in_begin) {
  return in_begin - (out_begin * stride - pad);
}

// A band as CMSIS-NN sees it.
struct WindowCall {
  cmsis_nn_dims input;
  cmsis_nn_dims filter;
  cmsis_nn_dims bias;
  cmsis_nn_dims output;
  cmsis_nn_tile stride;
  cmsis_nn_tile padding;
  cmsis_nn_tile dilation;
  cmsis_nn_activation activation;
};

WindowCall DescribeCall(const LayerPlan& layer, const ImageShape& in_shape,
                        const Band& band) {
  const int32_t in_channels = in_shape.channels;
  const int32_t out_channels = layer.output_shape.channels;
  WindowCall call;
  call.input = {1, Height(band.in), Width(band.in), in_channels};
  call.output = {1, Height(band.out), Width(band.out), out_channels};
  switch (layer.op) {
    case LayerOp::kConv2D:  // as TFLM's cmsis_nn conv.cc
      call.filter = {out_channels, layer.kernel_height, layer.kernel_width,
                     in_channels};
      break;
    case LayerOp::kDepthwiseConv2D:  // as depthwise_conv.cc
      call.filter = {1, layer.kernel_height, layer.kernel_width, out_channels};
      break;
    default:  // as pooling.cc
      call.filter = {1, layer.kernel_height, layer.kernel_width, 1};
      break;
  }
  call.bias = {1, 1, 1, out_channels};
  call.stride.h = layer.stride_height;
  call.stride.w = layer.stride_width;
  call.padding.h =
      LeadingPad(band.out.y0, layer.stride_height, layer.pad_top, band.in.y0);
  call.padding.w =
      LeadingPad(band.out.x0, layer.stride_width, layer.pad_left, band.in.x0);
  call.dilation.h = layer.dilation_height;
  call.dilation.w = layer.dilation_width;
  call.activation.min = layer.activation_min;
  call.activation.max = layer.activation_max;
  return call;
}

cmsis_nn_conv_params ConvParams(const LayerPlan& layer,
                                const WindowCall& call) {
  cmsis_nn_conv_params params;
  params.input_offset = -layer.input_zero_point[0];
  params.output_offset = layer.output_zero_point;
  params.stride = call.stride;
  params.padding = call.padding;
  params.dilation = call.dilation;
  params.activation = call.activation;
  return params;
}

cmsis_nn_dw_conv_params DepthwiseParams(const LayerPlan& layer,
                                        const WindowCall& call) {
  cmsis_nn_dw_conv_params params;
  params.input_offset = -layer.input_zero_point[0];
  params.output_offset = layer.output_zero_point;
  params.ch_mult = layer.depth_multiplier;
  params.stride = call.stride;
  params.padding = call.padding;
  params.dilation = call.dilation;
  params.activation = call.activation;
  return params;
}

cmsis_nn_pool_params PoolParams(const WindowCall& call) {
  cmsis_nn_pool_params params;
  params.stride = call.stride;
  params.padding = call.padding;
  params.activation = call.activation;
  return params;
}

// 1x1 convolutions without padding go through arm_convolve_wrapper_s8 (its
// 1x1 kernels); the others to arm_convolve_s8, the wrapper's general case,
// directly: the wrapper's 1xN kernel requires a whole-image SAME geometry,
// which a band is not. All CMSIS-NN convolutions compute the same bytes.
bool IsPointwise(const WindowCall& call) {
  return call.filter.h == 1 && call.filter.w == 1 && call.dilation.h == 1 &&
         call.dilation.w == 1 && call.padding.h == 0 && call.padding.w == 0;
}

int32_t ContextBytes(const LayerPlan& layer, const WindowCall& call) {
  switch (layer.op) {
    case LayerOp::kConv2D: {
      if (!IsPointwise(call)) {
        return arm_convolve_s8_get_buffer_size(&call.input, &call.filter);
      }
      const cmsis_nn_conv_params params = ConvParams(layer, call);
      return arm_convolve_wrapper_s8_get_buffer_size(
          &params, &call.input, &call.filter, &call.output);
    }
    case LayerOp::kDepthwiseConv2D: {
      const cmsis_nn_dw_conv_params params = DepthwiseParams(layer, call);
      return arm_depthwise_conv_wrapper_s8_get_buffer_size(
          &params, &call.input, &call.filter, &call.output);
    }
    case LayerOp::kAveragePool2D:
      return arm_avgpool_s8_get_buffer_size(call.output.w, call.output.c);
    default:
      return 0;
  }
}

size_t StagingBytes(const ImageShape& in_shape, const Band& band) {
  if (!band.staged) return 0;
  return AlignUp(static_cast<size_t>(Height(band.in)) *
                     static_cast<size_t>(Width(band.in)) *
                     static_cast<size_t>(in_shape.channels),
                 kWorkspaceAlignment);
}

size_t BandWorkspaceBytes(const LayerPlan& layer, const ImageShape& in_shape,
                          const Band& band) {
  const int32_t context =
      ContextBytes(layer, DescribeCall(layer, in_shape, band));
  return StagingBytes(in_shape, band) +
         (context > 0 ? static_cast<size_t>(context) : 0);
}

// Copies the band's input region, row by row, to `staging` (dense).
void StageInput(const InputView& input, const Region& in, int32_t channels,
                int8_t* staging) {
  const size_t row_bytes = static_cast<size_t>(Width(in)) * channels;
  for (int32_t y = in.y0; y < in.y1; ++y) {
    std::memcpy(staging + static_cast<size_t>(y - in.y0) * row_bytes,
                input.Pixel(y, in.x0), row_bytes);
  }
}

arm_cmsis_nn_status RunWindowBand(const LayerPlan& layer,
                                  const ImageShape& in_shape,
                                  const InputView& input, const int8_t* filter,
                                  const int32_t* bias, const Band& band,
                                  const OutputView& output,
                                  uint8_t* workspace) {
  const WindowCall call = DescribeCall(layer, in_shape, band);
  const int8_t* in = input.Pixel(band.in.y0, band.in.x0);
  const size_t staging_bytes = StagingBytes(in_shape, band);
  if (band.staged) {
    int8_t* staging = reinterpret_cast<int8_t*>(workspace);
    StageInput(input, band.in, in_shape.channels, staging);
    in = staging;
  }
  const int32_t context_bytes = ContextBytes(layer, call);
  cmsis_nn_context context;
  context.buf = context_bytes > 0 ? workspace + staging_bytes : nullptr;
  context.size = context_bytes > 0 ? context_bytes : 0;
  int8_t* out = output.Pixel(band.out.y0, band.out.x0);
  cmsis_nn_per_channel_quant_params quant;
  quant.multiplier = const_cast<int32_t*>(layer.output_multiplier);
  quant.shift = const_cast<int32_t*>(layer.output_shift);
  switch (layer.op) {
    case LayerOp::kConv2D: {
      const cmsis_nn_conv_params params = ConvParams(layer, call);
      if (IsPointwise(call)) {
        return arm_convolve_wrapper_s8(&context, &params, &quant, &call.input,
                                       in, &call.filter, filter, &call.bias,
                                       bias, &call.output, out);
      }
      return arm_convolve_s8(&context, &params, &quant, &call.input, in,
                             &call.filter, filter, &call.bias, bias,
                             /*upscale_dims=*/nullptr, &call.output, out);
    }
    case LayerOp::kDepthwiseConv2D: {
      const cmsis_nn_dw_conv_params params = DepthwiseParams(layer, call);
      return arm_depthwise_conv_wrapper_s8(
          &context, &params, &quant, &call.input, in, &call.filter, filter,
          &call.bias, bias, &call.output, out);
    }
    case LayerOp::kMaxPool2D: {
      const cmsis_nn_pool_params params = PoolParams(call);
      return arm_max_pool_s8(&context, &params, &call.input, in, &call.filter,
                             &call.output, out);
    }
    case LayerOp::kAveragePool2D: {
      const cmsis_nn_pool_params params = PoolParams(call);
      return arm_avgpool_s8(&context, &params, &call.input, in, &call.filter,
                            &call.output, out);
    }
    default:
      return ARM_CMSIS_NN_ARG_ERROR;
  }
}

// ADD, as TFLM's cmsis_nn add.cc without broadcast: one call over the
// region when both inputs and the output are dense there, else per row.
arm_cmsis_nn_status RunAdd(const LayerPlan& layer, const InputView& input1,
                           const InputView& input2, const Region& region,
                           const OutputView& output) {
  const bool dense = IsDense(input1, region) && IsDense(input2, region) &&
                     IsDense(output, region);
  const int32_t rows = dense ? Height(region) : 1;
  const AddParams& p = layer.add;
  for (int32_t y = region.y0; y < region.y1; y += rows) {
    const arm_cmsis_nn_status status = arm_elementwise_add_s8(
        input1.Pixel(y, region.x0), input2.Pixel(y, region.x0),
        -layer.input_zero_point[0], p.input1_multiplier, p.input1_shift,
        -layer.input_zero_point[1], p.input2_multiplier, p.input2_shift,
        p.left_shift, output.Pixel(y, region.x0), layer.output_zero_point,
        p.output_multiplier, p.output_shift, layer.activation_min,
        layer.activation_max, rows * Width(region) * output.channels);
    if (status != ARM_CMSIS_NN_SUCCESS) return status;
  }
  return ARM_CMSIS_NN_SUCCESS;
}

// MUL of two images, as TFLM's cmsis_nn mul.cc without broadcast:
// arm_elementwise_mul_s8, one call over the region when both inputs and the
// output are dense there, else per row.
arm_cmsis_nn_status RunMul(const LayerPlan& layer, const InputView& input1,
                           const InputView& input2, const Region& region,
                           const OutputView& output) {
  const bool dense = IsDense(input1, region) && IsDense(input2, region) &&
                     IsDense(output, region);
  const int32_t rows = dense ? Height(region) : 1;
  for (int32_t y = region.y0; y < region.y1; y += rows) {
    const arm_cmsis_nn_status status = arm_elementwise_mul_s8(
        input1.Pixel(y, region.x0), input2.Pixel(y, region.x0),
        -layer.input_zero_point[0], -layer.input_zero_point[1],
        output.Pixel(y, region.x0), layer.output_zero_point,
        layer.add.output_multiplier, layer.add.output_shift,
        layer.activation_min, layer.activation_max,
        rows * Width(region) * output.channels);
    if (status != ARM_CMSIS_NN_SUCCESS) return status;
  }
  return ARM_CMSIS_NN_SUCCESS;
}

size_t CmsisNnWorkspaceBytes(const LayerCall& call) {
  const LayerPlan& layer = *call.layer;
  if (!IsWindowOp(layer.op) || IsEmpty(call.region)) return 0;
  size_t most = 0;
  const bool taken = ForEachWindowBand(
      layer, call.input_shape, call.sources[0], call.region, call.output,
      [&](const Band& band) {
        const size_t bytes = BandWorkspaceBytes(layer, call.input_shape, band);
        if (bytes > most) most = bytes;
        return true;
      });
  return taken ? most : 0;
}

enum class CmsisNnResult { kNotTaken, kDone, kFailed };

// Computes the call's region with CMSIS-NN. kNotTaken (nothing written)
// when the layer does not go to CMSIS-NN; kFailed when CMSIS-NN rejected a
// call.
CmsisNnResult RunLayerWithCmsisNn(const LayerCall& call, uint8_t* workspace) {
  const LayerPlan& layer = *call.layer;
  if (layer.op == LayerOp::kAdd) {
    return RunAdd(layer, call.sources[0], call.sources[1], call.region,
                  call.output) == ARM_CMSIS_NN_SUCCESS
               ? CmsisNnResult::kDone
               : CmsisNnResult::kFailed;
  }
  if (layer.op == LayerOp::kMul) {
    return RunMul(layer, call.sources[0], call.sources[1], call.region,
                  call.output) == ARM_CMSIS_NN_SUCCESS
               ? CmsisNnResult::kDone
               : CmsisNnResult::kFailed;
  }
  if (!IsWindowOp(layer.op)) return CmsisNnResult::kNotTaken;
  bool ok = true;
  const bool taken = ForEachWindowBand(
      layer, call.input_shape, call.sources[0], call.region, call.output,
      [&](const Band& band) {
        ok = RunWindowBand(layer, call.input_shape, call.sources[0],
                           call.filter, call.bias, band, call.output,
                           workspace) == ARM_CMSIS_NN_SUCCESS;
        return ok;
      });
  if (!ok) return CmsisNnResult::kFailed;
  return taken ? CmsisNnResult::kDone : CmsisNnResult::kNotTaken;
}

Status RunCmsisNnLayer(const LayerCall& call, uint8_t* workspace) {
  switch (RunLayerWithCmsisNn(call, workspace)) {
    case CmsisNnResult::kDone:
      return OkStatus();
    case CmsisNnResult::kFailed:
      return ErrorStatus("CMSIS-NN rejected a layer call", nullptr, call.index);
    case CmsisNnResult::kNotTaken:
      break;
  }
  RunReferenceLayer(call);
  return OkStatus();
}

}  // namespace

const LayerBackend kCmsisNnLayerBackend = {CmsisNnWorkspaceBytes,
                                           RunCmsisNnLayer};

}  // namespace tflm_patch

#endif  // defined(CMSIS_NN)

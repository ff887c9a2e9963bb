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

#include "plan_validation.h"

#include "arith_validation.h"
#include "halo_cache.h"
#include "layout_validation.h"
#include "pointwise_validation.h"

namespace tflm_patch {
namespace {

// Kernel sizes, strides, dilations and paddings above this are rejected; it
// keeps every region computation far from overflow.
constexpr int32_t kMaxWindowParam = 1 << 16;
// Image heights and widths above this are rejected, so that every coordinate
// computation (padded sizes, dilated taps) stays far from int32 overflow.
constexpr int32_t kMaxImageSide = 1 << 20;

bool IsInt8(int32_t value) { return value >= kInt8Min && value <= kInt8Max; }

Status ValidateImageShape(const ImageShape& shape, const char* key,
                          int32_t layer) {
  if (shape.height <= 0 || shape.width <= 0 || shape.channels <= 0) {
    return ErrorStatus("image dimensions must be positive", key, layer);
  }
  if (shape.height > kMaxImageSide || shape.width > kMaxImageSide) {
    return ErrorStatus("image too large", key, layer);
  }
  const int64_t elements =
      static_cast<int64_t>(shape.height) * shape.width * shape.channels;
  if (elements > INT32_MAX) return ErrorStatus("image too large", key, layer);
  return OkStatus();
}

bool SameShape(const ImageShape& a, const ImageShape& b) {
  return a.height == b.height && a.width == b.width && a.channels == b.channels;
}

// A [1, H, W, C] tensor of `type` (int8 unless said).
bool IsImageTensor(const TensorDesc& tensor, const ImageShape& shape,
                   ElementType type = ElementType::kInt8) {
  return tensor.type == type && tensor.num_dims == 4 &&
         tensor.dims[0] == 1 && tensor.dims[1] == shape.height &&
         tensor.dims[2] == shape.width && tensor.dims[3] == shape.channels;
}

// Input 0 against input_shape (before the layers, whose shapes derive from it).
Status ValidateStageInput(const StagePlan& plan, const InputTensors& inputs) {
  TFLM_PATCH_RETURN_IF_ERROR(
      ValidateImageShape(plan.input_shape, "input_shape", -1));
  TensorDesc input = {};
  if (inputs.count() < 1 || !inputs.Describe(0, &input)) {
    return ErrorStatus("the op has no stage input");
  }
  const int32_t input_type = StageInputType(plan);
  if (input_type != kInputInt8) {
    if (!IsImageTensor(input, plan.input_shape,
                       static_cast<ElementType>(input_type))) {
      return ErrorStatus(
          "stage input is not the [1, H, W, C] tensor of input_shape and "
          "input_type that layer 0 (QUANTIZE) reads",
          "input_type", 0);
    }
    if (input_type == kInputUInt8 && input.has_zero_point &&
        input.zero_point != plan.layers[0].input_zero_point[0]) {
      return ErrorStatus("stage input zero point differs from in_zp", "in_zp",
                         0);
    }
    return OkStatus();
  }
  if (!IsImageTensor(input, plan.input_shape)) {
    return ErrorStatus(
        "stage input is not an int8 [1, H, W, C] tensor of "
        "input_shape",
        "input_shape");
  }
  if (!input.has_zero_point) return OkStatus();
  for (int32_t i = 0; i < plan.num_layers; ++i) {
    const LayerPlan& layer = plan.layers[i];
    for (int32_t s = 0; s < layer.num_sources; ++s) {
      if (layer.sources[s] == kStageInputSource &&
          layer.input_zero_point[s] != input.zero_point) {
        return ErrorStatus("stage input zero point differs from in_zp", "in_zp",
                           i);
      }
    }
  }
  return OkStatus();
}

Status ValidateStageOutput(const StagePlan& plan, const TensorDesc& output) {
  const LayerPlan& last = plan.layers[plan.num_layers - 1];
  if (!IsImageTensor(output, last.output_shape)) {
    return ErrorStatus(
        "stage output is not an int8 [1, H, W, C] tensor of the last "
        "layer's out_shape",
        "out_shape", plan.num_layers - 1);
  }
  if (output.has_zero_point && output.zero_point != last.output_zero_point) {
    return ErrorStatus(
        "stage output zero point differs from the last layer's "
        "out_zp",
        "out_zp", plan.num_layers - 1);
  }
  return OkStatus();
}

Status ValidateSources(const LayerPlan& layer, int32_t index) {
  for (int32_t s = 0; s < layer.num_sources; ++s) {
    if (layer.sources[s] < kStageInputSource || layer.sources[s] >= index) {
      return ErrorStatus("a layer source must be -1 or an earlier layer",
                         "inputs", index);
    }
  }
  return OkStatus();
}

Status ValidateQuantization(const LayerPlan& layer, int32_t index) {
  if (layer.op == LayerOp::kQuantize) {
    // The zero point of the float32 (unused, 0) or uint8 input.
    const int32_t zp = layer.input_zero_point[0];
    const bool is_float = layer.pointwise.input_type == kInputFloat32;
    if (is_float ? zp != 0 : (zp < 0 || zp > 255)) {
      return ErrorStatus("zero point outside the input type", "in_zp", index);
    }
  }
  for (int32_t s = 0; s < layer.num_sources; ++s) {
    if (layer.op == LayerOp::kQuantize) break;
    if (!IsInt8(layer.input_zero_point[s])) {
      return ErrorStatus("zero point outside int8", "in_zp", index);
    }
  }
  if (!IsInt8(layer.output_zero_point)) {
    return ErrorStatus("zero point outside int8", "out_zp", index);
  }
  if (layer.op == LayerOp::kPad) {
    return IsInt8(layer.pad_value)
               ? OkStatus()
               : ErrorStatus("pad value outside int8", "pad_value", index);
  }
  if (!IsInt8(layer.activation_min) || !IsInt8(layer.activation_max) ||
      layer.activation_min > layer.activation_max) {
    return ErrorStatus("activation range is not an int8 range", "act", index);
  }
  return OkStatus();
}

bool InRange(int32_t value, int32_t low, int32_t high) {
  return value >= low && value <= high;
}

// The output size of a window op along one axis, or -1 if the window
// parameters are invalid. Every window must touch the image (padding smaller
// than the dilated kernel), as TFLite's SAME/VALID paddings always do.
int64_t WindowOutputSize(int32_t in_size, int32_t kernel, int32_t stride,
                         int32_t dilation, int32_t pad_before,
                         int32_t pad_after) {
  if (!InRange(kernel, 1, kMaxWindowParam) ||
      !InRange(stride, 1, kMaxWindowParam) ||
      !InRange(dilation, 1, kMaxWindowParam)) {
    return -1;
  }
  const int64_t effective = static_cast<int64_t>(kernel - 1) * dilation + 1;
  if (pad_before < 0 || pad_after < 0 || pad_before >= effective ||
      pad_after >= effective) {
    return -1;
  }
  const int64_t padded = int64_t{in_size} + pad_before + pad_after;
  if (padded < effective) return -1;
  return (padded - effective) / stride + 1;
}

Status ValidateWindowGeometry(const LayerPlan& layer, int32_t index,
                              const ImageShape& in) {
  const int64_t out_height =
      WindowOutputSize(in.height, layer.kernel_height, layer.stride_height,
                       layer.dilation_height, layer.pad_top, layer.pad_bottom);
  const int64_t out_width =
      WindowOutputSize(in.width, layer.kernel_width, layer.stride_width,
                       layer.dilation_width, layer.pad_left, layer.pad_right);
  if (out_height < 0 || out_width < 0) {
    return ErrorStatus("invalid kernel, stride, dilation or padding", "padding",
                       index);
  }
  if (out_height != layer.output_shape.height ||
      out_width != layer.output_shape.width) {
    return ErrorStatus("out_shape is not what the window geometry gives",
                       "out_shape", index);
  }
  return OkStatus();
}

Status ValidatePadGeometry(const LayerPlan& layer, int32_t index,
                           const ImageShape& in) {
  const int32_t pads[4] = {layer.pad_top, layer.pad_left, layer.pad_bottom,
                           layer.pad_right};
  for (int32_t pad : pads) {
    if (!InRange(pad, 0, kMaxWindowParam)) {
      return ErrorStatus("invalid padding", "padding", index);
    }
  }
  const ImageShape expected = {in.height + layer.pad_top + layer.pad_bottom,
                               in.width + layer.pad_left + layer.pad_right,
                               in.channels};
  if (!SameShape(expected, layer.output_shape)) {
    return ErrorStatus("out_shape is not the padded input shape", "out_shape",
                       index);
  }
  return OkStatus();
}

Status ValidateChannels(const LayerPlan& layer, int32_t index,
                        const ImageShape& in) {
  const int32_t out_channels = layer.output_shape.channels;
  if (layer.op == LayerOp::kDepthwiseConv2D) {
    if (layer.depth_multiplier < 1 ||
        static_cast<int64_t>(in.channels) * layer.depth_multiplier !=
            out_channels) {
      return ErrorStatus(
          "output channels are not input channels times "
          "depth_multiplier",
          "depth_multiplier", index);
    }
  } else if (layer.op != LayerOp::kConv2D && in.channels != out_channels) {
    return ErrorStatus("output channels differ from input channels",
                       "out_shape", index);
  }
  return OkStatus();
}

Status ValidateChannelParams(const LayerPlan& layer, int32_t index) {
  if (layer.num_channel_params != layer.output_shape.channels) {
    return ErrorStatus("need one multiplier and shift per output channel",
                       "multiplier", index);
  }
  for (int32_t c = 0; c < layer.num_channel_params; ++c) {
    if (layer.output_multiplier[c] < 0) {
      return ErrorStatus("negative multiplier", "multiplier", index);
    }
    if (!InRange(layer.output_shift[c], -31, 30)) {
      return ErrorStatus("shift outside [-31, 30]", "shift", index);
    }
  }
  return OkStatus();
}

bool TensorHasDims(const TensorDesc& tensor, int32_t num_dims,
                   const int32_t* dims) {
  if (tensor.num_dims != num_dims) return false;
  for (int32_t i = 0; i < num_dims; ++i) {
    if (tensor.dims[i] != dims[i]) return false;
  }
  return true;
}

// Constant input `tensor_index` of type `type` and shape `dims`.
Status ValidateConstant(const InputTensors& inputs, int32_t tensor_index,
                        ElementType type, int32_t num_dims, const int32_t* dims,
                        const char* key, int32_t layer, TensorDesc* tensor) {
  if (tensor_index < 1 || tensor_index >= inputs.count()) {
    return ErrorStatus("index is not a constant input of the op", key, layer);
  }
  if (!inputs.Describe(tensor_index, tensor)) {
    return ErrorStatus("cannot read the input tensor", key, layer);
  }
  if (tensor->type != type) return ErrorStatus("wrong tensor type", key, layer);
  if (!tensor->is_constant)
    return ErrorStatus("tensor is not constant", key, layer);
  if (!TensorHasDims(*tensor, num_dims, dims)) {
    return ErrorStatus("wrong tensor shape", key, layer);
  }
  return OkStatus();
}

Status ValidateFilterAndBias(const LayerPlan& layer, int32_t index,
                             const ImageShape& in, const InputTensors& inputs) {
  const int32_t out_channels = layer.output_shape.channels;
  int32_t filter_dims[4] = {out_channels, layer.kernel_height,
                            layer.kernel_width, in.channels};
  int32_t quantized_dim = 0;
  if (layer.op == LayerOp::kDepthwiseConv2D) {
    filter_dims[0] = 1;
    filter_dims[3] = out_channels;
    quantized_dim = 3;
  }
  TensorDesc filter = {};
  TFLM_PATCH_RETURN_IF_ERROR(
      ValidateConstant(inputs, layer.filter_input, ElementType::kInt8, 4,
                       filter_dims, "filter", index, &filter));
  if (filter.num_scales != -1 && filter.num_scales != 1 &&
      filter.num_scales != filter_dims[quantized_dim]) {
    return ErrorStatus("filter scale count is neither 1 nor the channel count",
                       "filter", index);
  }
  if (layer.bias_input == -1) return OkStatus();
  TensorDesc bias = {};
  return ValidateConstant(inputs, layer.bias_input, ElementType::kInt32, 1,
                          &out_channels, "bias", index, &bias);
}

Status ValidateAddParams(const LayerPlan& layer, int32_t index,
                         const StagePlan& plan) {
  for (int32_t s = 0; s < 2; ++s) {
    if (!SameShape(SourceShape(plan, layer.sources[s]), layer.output_shape)) {
      return ErrorStatus("ADD inputs and output differ in shape", "out_shape",
                         index);
    }
  }
  return ValidateAddParamRanges(layer.add, index);
}

Status ValidateLayer(const StagePlan& plan, int32_t index,
                     const InputTensors& inputs) {
  const LayerPlan& layer = plan.layers[index];
  TFLM_PATCH_RETURN_IF_ERROR(ValidateSources(layer, index));
  TFLM_PATCH_RETURN_IF_ERROR(
      ValidateImageShape(layer.output_shape, "out_shape", index));
  TFLM_PATCH_RETURN_IF_ERROR(ValidateQuantization(layer, index));
  const ImageShape in = SourceShape(plan, layer.sources[0]);
  switch (layer.op) {
    case LayerOp::kAdd:
      return ValidateAddParams(layer, index, plan);
    case LayerOp::kConcatenation:
    case LayerOp::kResizeNearestNeighbor:
      return ValidateLayoutLayer(plan, index);
    case LayerOp::kPad:
      return ValidatePadGeometry(layer, index, in);
    case LayerOp::kMaxPool2D:
    case LayerOp::kAveragePool2D:
      TFLM_PATCH_RETURN_IF_ERROR(ValidateWindowGeometry(layer, index, in));
      return ValidateChannels(layer, index, in);
    case LayerOp::kConv2D:
    case LayerOp::kDepthwiseConv2D:
      TFLM_PATCH_RETURN_IF_ERROR(ValidateWindowGeometry(layer, index, in));
      TFLM_PATCH_RETURN_IF_ERROR(ValidateChannels(layer, index, in));
      TFLM_PATCH_RETURN_IF_ERROR(ValidateChannelParams(layer, index));
      return ValidateFilterAndBias(layer, index, in, inputs);
    case LayerOp::kRelu:
    case LayerOp::kRelu6:
    case LayerOp::kLeakyRelu:
    case LayerOp::kHardSwish:
    case LayerOp::kLogistic:
    case LayerOp::kQuantize:
      return ValidatePointwiseLayer(plan, index, in);
    case LayerOp::kAddConst:
    case LayerOp::kMulConst:
    case LayerOp::kMul:
    case LayerOp::kSubConst:
      return ValidateArithLayer(plan, index, inputs);
  }
  return ErrorStatus("unknown layer op", "op", index);
}

Status ValidateGrid(const int32_t* bounds, int32_t count, int32_t size,
                    const char* key) {
  if (count < 2 || bounds[0] != 0 || bounds[count - 1] != size) {
    return ErrorStatus("grid must run from 0 to the output size", key);
  }
  for (int32_t i = 1; i < count; ++i) {
    if (bounds[i] <= bounds[i - 1]) {
      return ErrorStatus("grid boundaries must strictly increase", key);
    }
  }
  return OkStatus();
}

// The last layer that reads layer `index`'s output (itself if none).
int32_t LastUse(const StagePlan& plan, int32_t index) {
  int32_t last = index;
  for (int32_t j = index + 1; j < plan.num_layers; ++j) {
    const LayerPlan& reader = plan.layers[j];
    for (int32_t s = 0; s < reader.num_sources; ++s) {
      if (reader.sources[s] == index) last = j;
    }
  }
  return last;
}

bool BuffersOverlap(const LayerPlan& a, const LayerPlan& b) {
  if (a.buffer_bytes == 0 || b.buffer_bytes == 0) return false;
  const int64_t a_end = int64_t{a.buffer_offset} + a.buffer_bytes;
  const int64_t b_end = int64_t{b.buffer_offset} + b.buffer_bytes;
  return a.buffer_offset < b_end && b.buffer_offset < a_end;
}

// Buffers of every layer but the last: inside the scratch area, and not
// overlapping a buffer that is still live when they are written.
Status ValidateBuffers(const StagePlan& plan) {
  if (plan.scratch_bytes < 0)
    return ErrorStatus("negative size", "scratch_bytes");
  if (plan.workspace_bytes < 0 || plan.workspace_bytes > plan.scratch_bytes ||
      (plan.workspace_bytes > 0 &&
       (plan.scratch_bytes - plan.workspace_bytes) %
               static_cast<int32_t>(kWorkspaceAlignment) !=
           0)) {
    return ErrorStatus("workspace must be an aligned tail of scratch_bytes",
                       "workspace_bytes");
  }
  const int32_t buffers_end = plan.scratch_bytes - plan.workspace_bytes;
  const int32_t num_buffers = plan.num_layers - 1;
  for (int32_t i = 0; i < num_buffers; ++i) {
    const LayerPlan& layer = plan.layers[i];
    if (layer.buffer_offset < 0 || layer.buffer_bytes < 0 ||
        int64_t{layer.buffer_offset} + layer.buffer_bytes > buffers_end) {
      return ErrorStatus("layer buffer lies outside scratch_bytes",
                         "buffer_offset", i);
    }
  }
  for (int32_t live = 0; live < num_buffers; ++live) {
    const int32_t last_use = LastUse(plan, live);
    for (int32_t writer = live + 1; writer <= last_use && writer < num_buffers;
         ++writer) {
      if (BuffersOverlap(plan.layers[live], plan.layers[writer])) {
        return ErrorStatus("layer buffer overlaps a buffer that is still live",
                           "buffer_offset", writer);
      }
    }
  }
  return OkStatus();
}

// Every patch's regions fit their layer buffers.
Status ValidatePatchRegions(const StagePlan& plan, Region* regions) {
  for (int32_t row = 0; row + 1 < plan.num_grid_rows; ++row) {
    for (int32_t col = 0; col + 1 < plan.num_grid_cols; ++col) {
      ComputePatchRegions(plan, TileRegion(plan, row, col), regions);
      for (int32_t i = 0; i + 1 < plan.num_layers; ++i) {
        const LayerPlan& layer = plan.layers[i];
        if (Area(regions[i]) * layer.output_shape.channels >
            layer.buffer_bytes) {
          return ErrorStatus("a patch region does not fit the layer buffer",
                             "buffer_bytes", i);
        }
      }
    }
  }
  return OkStatus();
}

}  // namespace

Status ValidatePlan(const StagePlan& plan, const InputTensors& inputs,
                    const TensorDesc& output, Region* regions,
                    int32_t num_regions) {
  if (plan.num_layers < 1 || plan.layers == nullptr) {
    return ErrorStatus("no layers", "layers");
  }
  if (regions == nullptr || num_regions < plan.num_layers) {
    return ErrorStatus("region workspace too small");
  }
  TFLM_PATCH_RETURN_IF_ERROR(ValidateStageInput(plan, inputs));
  TFLM_PATCH_RETURN_IF_ERROR(ValidateStageInputReaders(plan));
  for (int32_t i = 0; i < plan.num_layers; ++i) {
    TFLM_PATCH_RETURN_IF_ERROR(ValidateLayer(plan, i, inputs));
  }
  TFLM_PATCH_RETURN_IF_ERROR(ValidateStageOutput(plan, output));
  const ImageShape& out_shape = plan.layers[plan.num_layers - 1].output_shape;
  TFLM_PATCH_RETURN_IF_ERROR(ValidateGrid(plan.grid_rows, plan.num_grid_rows,
                                          out_shape.height, "grid_rows"));
  TFLM_PATCH_RETURN_IF_ERROR(ValidateGrid(plan.grid_cols, plan.num_grid_cols,
                                          out_shape.width, "grid_cols"));
  TFLM_PATCH_RETURN_IF_ERROR(ValidateBuffers(plan));
  TFLM_PATCH_RETURN_IF_ERROR(ValidateHaloCache(plan, regions));
  return ValidatePatchRegions(plan, regions);
}

}  // namespace tflm_patch

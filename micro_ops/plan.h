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

// A stage plan: what the PATCH_STAGE options describe
// (docs/patch_stage_format.md), as plan_parser.h produces it. Plain types,
// read by the validation, the schedule and the layer kernels.

#ifndef TFLM_PATCH_MICRO_OPS_PLAN_H_
#define TFLM_PATCH_MICRO_OPS_PLAN_H_

#include <cstddef>
#include <cstdint>

namespace tflm_patch {

// The newest options format the engine reads; it reads version 1 too.
constexpr int32_t kPatchStageFormatVersion = 2;
constexpr int32_t kStageInputSource = -1;  // a layer source: the stage input
// CONCATENATION takes 2 to 10 (TFLM's concatenation.cc kMaxInputNum), ADD
// and MUL two, the others one. A layer's sources are read in place
// (ReadArray).
constexpr int kMaxLayerSources = 10;
constexpr int kAddParamCount = 7;
constexpr int kMaxActParams = 4;  // act_params of a pointwise op
// Stage input element types (values as TfLiteType): int8, or the float32 /
// uint8 model input that a first-layer QUANTIZE reads.
constexpr int32_t kInputFloat32 = 1;
constexpr int32_t kInputUInt8 = 3;
constexpr int32_t kInputInt8 = 9;
constexpr int32_t kInt8Min = -128;
constexpr int32_t kInt8Max = 127;
// The alignment of the layer-kernel workspace in the scratch area (the
// CMSIS-NN context buffers hold int16/int32): a plan's workspace_bytes is a
// tail of scratch_bytes starting at a multiple of it.
constexpr size_t kWorkspaceAlignment = 16;

enum class LayerOp : int32_t {
  kConv2D = 0,
  kDepthwiseConv2D = 1,
  kAdd = 2,
  kPad = 3,
  kMaxPool2D = 4,
  kAveragePool2D = 5,
  // Pointwise ops (pointwise_layers.h): one element in, one out, no halo.
  kRelu = 10,
  kRelu6 = 11,
  kLeakyRelu = 12,
  kHardSwish = 13,
  kLogistic = 14,
  kQuantize = 15,  // float32 / uint8 stage input -> int8; layer 0 only
  // Arithmetic (arith_layers.h): ADD / MUL / SUB with a broadcast int8
  // constant (scalar or per channel), and MUL of two same-shape images.
  kAddConst = 20,
  kMulConst = 21,
  kMul = 22,
  kSubConst = 23,
  // Layout ops (30-39): they move bytes, no arithmetic
  // (layout_layers.h).
  kConcatenation = 30,
  kResizeNearestNeighbor = 31,
};

// An H x W x C image (batch 1).
struct ImageShape {
  int32_t height;
  int32_t width;
  int32_t channels;
};

// ADD's quantization, in the `add_params` order of the options (ADD,
// ADD_CONST, SUB_CONST). MUL and MUL_CONST keep their `mul_params` in
// output_multiplier / output_shift (the others unused).
struct AddParams {
  int32_t left_shift;
  int32_t input1_multiplier;
  int32_t input1_shift;
  int32_t input2_multiplier;
  int32_t input2_shift;
  int32_t output_multiplier;
  int32_t output_shift;
};

// A pointwise op's parameters: TFLM's Prepare-time values in the
// `act_params` order of docs/patch_stage_format.md, and what a QUANTIZE
// reads (kInputFloat32 / kInputUInt8; kInputInt8 for the others).
struct PointwiseParams {
  int32_t input_type;
  int32_t num_params;
  int32_t params[kMaxActParams];
};

// One layer of the stage, as the options describe it. Fields an op does not
// use keep neutral values (stride/dilation/kernel 1, padding 0, index -1).
struct LayerPlan {
  LayerOp op;
  int32_t num_sources;
  // num_sources entries each, read in place from the options (or copied
  // into plan memory) like the other int32 vectors.
  const int32_t* sources;  // kStageInputSource or an earlier layer
  ImageShape output_shape;
  int32_t buffer_offset;  // in the scratch area; unused by the last layer
  int32_t buffer_bytes;
  // Op input index of the int8 filter (conv, dw) or of the int8 constant
  // operand (ADD_CONST, MUL_CONST, SUB_CONST: options key `constant`), -1 if
  // none.
  int32_t filter_input;
  int32_t bias_input;    // op input index of the int32 bias, -1 if none
  int32_t kernel_height;
  int32_t kernel_width;
  int32_t stride_height;
  int32_t stride_width;
  int32_t dilation_height;
  int32_t dilation_width;
  int32_t pad_top;
  int32_t pad_left;
  int32_t pad_bottom;
  int32_t pad_right;
  int32_t depth_multiplier;
  // One per source, read in place like `sources`. ADD_CONST, MUL_CONST,
  // SUB_CONST keep the constant's zero point in const_zero_point.
  const int32_t* input_zero_point;
  int32_t output_zero_point;
  int32_t activation_min;
  int32_t activation_max;
  // Entries of the two arrays below; ADD_CONST, MUL_CONST, SUB_CONST: the
  // constant's value count (`const_count`: 1, or one per channel).
  int32_t num_channel_params;
  const int32_t* output_multiplier;  // per output channel (conv, dw)
  const int32_t* output_shift;       // per output channel, positive = left
  union {
    AddParams add;              // kAdd and the arithmetic ops (IsArithOp)
    PointwiseParams pointwise;  // IsActivationOp
  };
  union {
    int32_t pad_value;         // kPad
    int32_t const_zero_point;  // HasConstantOperand: the constant's zp
  };
  int32_t align_corners;       // RESIZE_NEAREST_NEIGHBOR, 0 or 1
  int32_t half_pixel_centers;  // RESIZE_NEAREST_NEIGHBOR, 0 or 1
  // Version 2, all but the last layer, read when the plan's flag is on.
  int32_t row_cache_offset;  // the layer's row cache in the scratch area
  int32_t row_cache_bytes;
  int32_t col_cache_offset;  // its column cache
  int32_t col_cache_bytes;
};

struct HaloCache;  // halo_cache.h

// The parsed options, in the caller's plan memory, except the arrays
// (grid_rows, grid_cols, sources, input_zero_point, output_multiplier,
// output_shift) that the options
// store as aligned int32: those point into the options buffer (in TFLM the
// model flatbuffer, in flash), which must outlive the plan.
struct StagePlan {
  int32_t num_layers;
  const LayerPlan* layers;
  int32_t num_grid_rows;  // row boundaries: num_grid_rows - 1 tile rows
  const int32_t* grid_rows;
  int32_t num_grid_cols;
  const int32_t* grid_cols;
  ImageShape input_shape;
  int32_t scratch_bytes;
  // The tail of scratch_bytes reserved for the layer-kernel (CMSIS-NN)
  // workspace (optional key, 0 if absent); layer buffers lie before it.
  int32_t workspace_bytes;
  // Version 2 (0 in version 1): keep halo rows / columns in caches.
  int32_t cache_rows;
  int32_t cache_cols;
  // The cache geometry (in plan memory), nullptr when both flags are 0;
  // ValidatePlan fills it.
  HaloCache* halo;
};

// Ops that slide a window over their input (kernel, stride, padding).
inline bool IsWindowOp(LayerOp op) {
  return op == LayerOp::kConv2D || op == LayerOp::kDepthwiseConv2D ||
         op == LayerOp::kMaxPool2D || op == LayerOp::kAveragePool2D;
}

// Ops with an int8 filter and an int32 bias among the op's inputs.
inline bool HasFilter(LayerOp op) {
  return op == LayerOp::kConv2D || op == LayerOp::kDepthwiseConv2D;
}

// The op codes the parser accepts: 0-5, 10-15, 20-23, 30-31.
inline bool IsKnownOp(int32_t op) {
  return (op >= static_cast<int32_t>(LayerOp::kConv2D) &&
          op <= static_cast<int32_t>(LayerOp::kAveragePool2D)) ||
         (op >= static_cast<int32_t>(LayerOp::kRelu) &&
          op <= static_cast<int32_t>(LayerOp::kQuantize)) ||
         (op >= static_cast<int32_t>(LayerOp::kAddConst) &&
          op <= static_cast<int32_t>(LayerOp::kSubConst)) ||
         op == static_cast<int32_t>(LayerOp::kConcatenation) ||
         op == static_cast<int32_t>(LayerOp::kResizeNearestNeighbor);
}

// The activations and QUANTIZE of pointwise_layers.h: one element in, one out.
inline bool IsActivationOp(LayerOp op) {
  return op >= LayerOp::kRelu && op <= LayerOp::kQuantize;
}

// The number of act_params an op carries (-1: not a pointwise op).
inline int32_t ActParamCount(LayerOp op, int32_t input_type) {
  switch (op) {
    case LayerOp::kRelu:
      return 2;
    case LayerOp::kRelu6:
      return 0;
    case LayerOp::kLeakyRelu:
    case LayerOp::kHardSwish:
      return 4;
    case LayerOp::kLogistic:
      return 3;
    case LayerOp::kQuantize:
      return input_type == kInputFloat32 ? 1 : 2;
    default:
      return -1;
  }
}

// The stage input's element type: what layer 0 reads if it is a QUANTIZE.
inline int32_t StageInputType(const StagePlan& plan) {
  return plan.num_layers > 0 && plan.layers[0].op == LayerOp::kQuantize
             ? plan.layers[0].pointwise.input_type
             : kInputInt8;
}

// Arithmetic with an int8 constant operand among the op's inputs.
inline bool HasConstantOperand(LayerOp op) {
  return op == LayerOp::kAddConst || op == LayerOp::kMulConst ||
         op == LayerOp::kSubConst;
}

// The arithmetic ops of arith_layers.h.
inline bool IsArithOp(LayerOp op) {
  return HasConstantOperand(op) || op == LayerOp::kMul;
}

// Ops whose output pixel reads only the same pixel of its sources (no halo).
inline bool IsPointwiseOp(LayerOp op) {
  return op == LayerOp::kAdd || IsArithOp(op) || IsActivationOp(op);
}

// Ops with two image sources.
inline bool HasTwoSources(LayerOp op) {
  return op == LayerOp::kAdd || op == LayerOp::kMul;
}

// The image a layer source names: the stage input or an earlier layer's.
inline ImageShape SourceShape(const StagePlan& plan, int32_t source) {
  return source == kStageInputSource ? plan.input_shape
                                     : plan.layers[source].output_shape;
}

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_PLAN_H_

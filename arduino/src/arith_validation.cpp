// Generated from micro_ops/arith_validation.cc by tools/sync_arduino.py: edit micro_ops/, not this file.
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

#include "arith_validation.h"

namespace tflm_patch {
namespace {

constexpr int32_t kMaxAddLeftShift = 22;  // (255 << 22) * 2 still fits int32

bool InRange(int32_t value, int32_t low, int32_t high) {
  return value >= low && value <= high;
}

bool SameShape(const ImageShape& a, const ImageShape& b) {
  return a.height == b.height && a.width == b.width && a.channels == b.channels;
}

// The int8 constant: a constant input of the op with const_count values (1
// or one per channel) in at most 4 dimensions, all but the last 1, and the
// zero point const_zp.
Status ValidateConstantOperand(const LayerPlan& layer, int32_t index,
                               const InputTensors& inputs) {
  const int32_t channels = layer.output_shape.channels;
  const int32_t count = layer.num_channel_params;
  if (count != 1 && count != channels) {
    return ErrorStatus("const_count is neither 1 nor the channel count",
                       "const_count", index);
  }
  if (!InRange(layer.const_zero_point, kInt8Min, kInt8Max)) {
    return ErrorStatus("zero point outside int8", "const_zp", index);
  }
  if (layer.filter_input < 1 || layer.filter_input >= inputs.count()) {
    return ErrorStatus("index is not a constant input of the op", "constant",
                       index);
  }
  TensorDesc tensor = {};
  if (!inputs.Describe(layer.filter_input, &tensor)) {
    return ErrorStatus("cannot read the input tensor", "constant", index);
  }
  if (tensor.type != ElementType::kInt8) {
    return ErrorStatus("wrong tensor type", "constant", index);
  }
  if (!tensor.is_constant) {
    return ErrorStatus("tensor is not constant", "constant", index);
  }
  int64_t elements = 1;
  bool leading_ones = tensor.num_dims >= 0 && tensor.num_dims <= 4;
  for (int32_t d = 0; leading_ones && d < tensor.num_dims; ++d) {
    elements *= tensor.dims[d];
    if (d + 1 < tensor.num_dims && tensor.dims[d] != 1) leading_ones = false;
  }
  if (!leading_ones || elements != count) {
    return ErrorStatus("constant is not a scalar or [C] of const_count values",
                       "constant", index);
  }
  if (tensor.has_zero_point && tensor.zero_point != layer.const_zero_point) {
    return ErrorStatus("constant zero point differs from const_zp", "const_zp",
                       index);
  }
  return OkStatus();
}

Status ValidateMulParams(const LayerPlan& layer, int32_t index) {
  if (layer.add.output_multiplier < 0 ||
      !InRange(layer.add.output_shift, -31, 30)) {
    return ErrorStatus("multiplier negative or shift outside [-31, 30]",
                       "mul_params", index);
  }
  return OkStatus();
}

}  // namespace

Status ValidateAddParamRanges(const AddParams& p, int32_t index) {
  if (!InRange(p.left_shift, 0, kMaxAddLeftShift)) {
    return ErrorStatus("left_shift outside [0, 22]", "add_params", index);
  }
  const int32_t multipliers[3] = {p.input1_multiplier, p.input2_multiplier,
                                  p.output_multiplier};
  const int32_t shifts[3] = {p.input1_shift, p.input2_shift, p.output_shift};
  for (int i = 0; i < 3; ++i) {
    if (multipliers[i] < 0 || !InRange(shifts[i], -31, 0)) {
      return ErrorStatus("multiplier negative or shift outside [-31, 0]",
                         "add_params", index);
    }
  }
  return OkStatus();
}

Status ValidateArithLayer(const StagePlan& plan, int32_t index,
                          const InputTensors& inputs) {
  const LayerPlan& layer = plan.layers[index];
  for (int32_t s = 0; s < layer.num_sources; ++s) {
    if (!SameShape(SourceShape(plan, layer.sources[s]), layer.output_shape)) {
      return ErrorStatus("arithmetic inputs and output differ in shape",
                         "out_shape", index);
    }
  }
  if (layer.op == LayerOp::kMul || layer.op == LayerOp::kMulConst) {
    TFLM_PATCH_RETURN_IF_ERROR(ValidateMulParams(layer, index));
  } else {
    TFLM_PATCH_RETURN_IF_ERROR(ValidateAddParamRanges(layer.add, index));
  }
  if (!HasConstantOperand(layer.op)) return OkStatus();
  return ValidateConstantOperand(layer, index, inputs);
}

}  // namespace tflm_patch

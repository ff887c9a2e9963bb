// Generated from micro_ops/pointwise_validation.cc by tools/sync_arduino.py: edit micro_ops/, not this file.
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

#include "pointwise_validation.h"

#include <cstdint>
#include <cstring>

namespace tflm_patch {
namespace {

bool InRange(int32_t value, int32_t low, int32_t high) {
  return value >= low && value <= high;
}

bool SameShape(const ImageShape& a, const ImageShape& b) {
  return a.height == b.height && a.width == b.width && a.channels == b.channels;
}

Status CheckShift(int32_t shift, int32_t low, int32_t high, int32_t index) {
  return InRange(shift, low, high)
             ? OkStatus()
             : ErrorStatus("act_params shift out of range", "act_params",
                           index);
}

// The act_params of a pointwise op, in the ranges TFLM's Prepare produces
// and its Eval arithmetic needs (docs/patch_stage_format.md).
Status ValidateActParams(const LayerPlan& layer, int32_t index) {
  const int32_t* p = layer.pointwise.params;
  switch (layer.op) {
    case LayerOp::kRelu:
      if (p[0] < 0) break;
      return CheckShift(p[1], -31, 30, index);
    case LayerOp::kLeakyRelu:  // identity, then alpha (may be negative)
      if (p[0] < 0 || p[2] == INT32_MIN) break;
      TFLM_PATCH_RETURN_IF_ERROR(CheckShift(p[1], -31, 30, index));
      return CheckShift(p[3], -31, 30, index);
    case LayerOp::kHardSwish:  // int16 multipliers, exponents
      if (p[0] < 0 || p[0] > INT16_MAX || p[2] < 0 || p[2] > INT16_MAX) break;
      TFLM_PATCH_RETURN_IF_ERROR(CheckShift(p[1], -15, 0, index));
      return CheckShift(p[3], -15, 15, index);
    case LayerOp::kLogistic:  // multiplier, left shift, input radius
      if (p[0] < 0 || p[2] < 0) break;
      return CheckShift(p[1], 0, 30, index);
    case LayerOp::kQuantize:
      if (layer.pointwise.input_type == kInputFloat32) {
        float scale = 0.0f;
        static_assert(sizeof(scale) == sizeof(p[0]), "float is 32-bit");
        std::memcpy(&scale, &p[0], sizeof(scale));
        if (!(scale > 0.0f) || scale > 3.4e38f) break;  // also rejects NaN
        return OkStatus();
      }
      if (p[0] < 0) break;
      return CheckShift(p[1], -31, 30, index);
    default:
      return OkStatus();
  }
  return ErrorStatus("act_params value out of range", "act_params", index);
}

}  // namespace

// A pointwise layer: same shape as its source; a QUANTIZE only as layer 0,
// the one layer reading a float32 / uint8 stage input.
Status ValidatePointwiseLayer(const StagePlan& plan, int32_t index,
                              const ImageShape& in) {
  const LayerPlan& layer = plan.layers[index];
  if (!SameShape(in, layer.output_shape)) {
    return ErrorStatus("out_shape differs from the input shape", "out_shape",
                       index);
  }
  if (layer.op == LayerOp::kQuantize &&
      (index != 0 || layer.sources[0] != kStageInputSource)) {
    return ErrorStatus("QUANTIZE must be layer 0, reading the stage input",
                       "op", index);
  }
  return ValidateActParams(layer, index);
}

Status ValidateStageInputReaders(const StagePlan& plan) {
  if (StageInputType(plan) == kInputInt8) return OkStatus();
  for (int32_t i = 1; i < plan.num_layers; ++i) {
    const LayerPlan& layer = plan.layers[i];
    for (int32_t s = 0; s < layer.num_sources; ++s) {
      if (layer.sources[s] == kStageInputSource) {
        return ErrorStatus("only the QUANTIZE may read a non-int8 stage input",
                           "inputs", i);
      }
    }
  }
  return OkStatus();
}

}  // namespace tflm_patch

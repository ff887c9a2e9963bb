// Generated from micro_ops/layout_validation.cc by tools/sync_arduino.py: edit micro_ops/, not this file.
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

#include "layout_validation.h"

namespace tflm_patch {
namespace {

Status ValidateConcatenation(const StagePlan& plan, int32_t index) {
  const LayerPlan& layer = plan.layers[index];
  int64_t channels = 0;
  for (int32_t s = 0; s < layer.num_sources; ++s) {
    const ImageShape in = SourceShape(plan, layer.sources[s]);
    if (in.height != layer.output_shape.height ||
        in.width != layer.output_shape.width) {
      return ErrorStatus("CONCATENATION inputs and output differ in size",
                         "out_shape", index);
    }
    if (layer.input_zero_point[s] != layer.output_zero_point) {
      return ErrorStatus("CONCATENATION in_zp differs from out_zp", "in_zp",
                         index);
    }
    channels += in.channels;
  }
  if (channels != layer.output_shape.channels) {
    return ErrorStatus(
        "CONCATENATION output channels are not the sum of its inputs'",
        "out_shape", index);
  }
  return OkStatus();
}

Status ValidateResizeNearest(const StagePlan& plan, int32_t index) {
  const LayerPlan& layer = plan.layers[index];
  const ImageShape in = SourceShape(plan, layer.sources[0]);
  if (in.channels != layer.output_shape.channels) {
    return ErrorStatus("output channels differ from input channels",
                       "out_shape", index);
  }
  if (layer.align_corners != 0 && layer.align_corners != 1) {
    return ErrorStatus("not 0 or 1", "align_corners", index);
  }
  if (layer.half_pixel_centers != 0 && layer.half_pixel_centers != 1) {
    return ErrorStatus("not 0 or 1", "half_pixel_centers", index);
  }
  return OkStatus();
}

}  // namespace

Status ValidateLayoutLayer(const StagePlan& plan, int32_t index) {
  if (plan.layers[index].op == LayerOp::kConcatenation) {
    return ValidateConcatenation(plan, index);
  }
  return ValidateResizeNearest(plan, index);
}

}  // namespace tflm_patch

// Generated from micro_ops/layer_backend.h by tools/sync_arduino.py: edit micro_ops/, not this file.
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

// What the schedule hands the layer kernels: one layer's computation over
// one output region (a LayerCall), and the kernels of one backend (a
// LayerBackend): the reference kernels (reference_layers.h) or CMSIS-NN
// (cmsis_nn_layers.h). The TFLM op picks the backend at build time, as TFLM
// picks its kernels (patch_stage.cc, patch_stage_cmsis_nn.cc).

#ifndef TFLM_PATCH_MICRO_OPS_LAYER_BACKEND_H_
#define TFLM_PATCH_MICRO_OPS_LAYER_BACKEND_H_

#include <cstddef>
#include <cstdint>

#include "geometry.h"
#include "image_view.h"
#include "plan.h"
#include "status.h"

namespace tflm_patch {

// Layer `index` computes `region` of its output image from its sources,
// read through `sources` (any region of an image, with a row stride), into
// `output`. With geometry only (workspace sizing), the views' data, `filter`
// and `bias` are null.
struct LayerCall {
  const LayerPlan* layer;
  int32_t index;
  ImageShape input_shape;  // the image of sources[0]
  InputView sources[kMaxLayerSources];
  const int8_t* filter;  // int8 filter, nullptr if the op has none
  const int32_t* bias;   // int32 bias, nullptr if none
  Region region;         // the output region to compute
  OutputView output;
};

struct LayerBackend {
  // Bytes of workspace `run` needs for `call` (only its geometry is read),
  // nullptr when the backend needs none.
  size_t (*workspace_bytes)(const LayerCall& call);
  // Computes call.region. `workspace` holds workspace_bytes(call) bytes,
  // kWorkspaceAlignment-aligned (nullptr when the backend needs none).
  Status (*run)(const LayerCall& call, uint8_t* workspace);
};

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_LAYER_BACKEND_H_

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

// The schedule: runs a validated stage patch by patch. For every tile of the
// stage output, each layer computes its region of the patch (geometry.h)
// into its buffer in the scratch area (the last layer into the stage
// output), with the layer kernels of a backend (layer_backend.h).
//
//   ComputeScratchBytes(plan, backend, regions, n, &scratch_bytes);  // Prepare
//   RunStage(plan, backend, input_data, n_inputs, output, scratch,
//            scratch_bytes, regions, n);                             // Eval
//
// Both trust a plan that ValidatePlan accepted for tensors of the same
// shapes; RunStage performs only cheap pointer and size checks itself and
// allocates nothing.

#ifndef TFLM_PATCH_MICRO_OPS_SCHEDULE_H_
#define TFLM_PATCH_MICRO_OPS_SCHEDULE_H_

#include <cstddef>
#include <cstdint>

#include "geometry.h"
#include "layer_backend.h"
#include "plan.h"
#include "status.h"

namespace tflm_patch {

// The scratch size RunStage needs with `backend`: the plan's scratch_bytes,
// or, when the backend's workspace for some layer call exceeds the plan's
// reserved workspace_bytes, the plan's scratch with that workspace appended
// (kWorkspaceAlignment-aligned). `regions` is working memory of at least
// plan.num_layers entries.
Status ComputeScratchBytes(const StagePlan& plan, const LayerBackend& backend,
                           Region* regions, int32_t num_regions,
                           size_t* scratch_bytes);

// Runs the stage. `input_data[i]` is op input i (0: the stage input, int8
// NHWC; then the constants); `output` is the int8 stage output, which may
// overlap the stage input if it starts at least `min_output_lead` bytes
// before it (ComputeMinOutputLead; stage_overlap.h). `scratch` holds exactly
// ComputeScratchBytes's `scratch_bytes` for the same backend, which also
// tells where the workspace is; `regions` is working memory of at least
// plan.num_layers entries.
Status RunStage(const StagePlan& plan, const LayerBackend& backend,
                const void* const* input_data, int32_t num_inputs,
                int8_t* output, int64_t min_output_lead, uint8_t* scratch,
                size_t scratch_bytes, Region* regions, int32_t num_regions);

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_SCHEDULE_H_

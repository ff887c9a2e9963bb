// Generated from micro_ops/plan_validation.h by tools/sync_arduino.py: edit micro_ops/, not this file.
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

// Checks a parsed plan against the op's tensors (docs "What the kernel
// validates"), once, in Prepare: after ValidatePlan accepted a plan, the
// schedule and the layer kernels trust it for tensors of the same shapes.

#ifndef TFLM_PATCH_MICRO_OPS_PLAN_VALIDATION_H_
#define TFLM_PATCH_MICRO_OPS_PLAN_VALIDATION_H_

#include <cstdint>

#include "geometry.h"
#include "plan.h"
#include "status.h"
#include "tensor_desc.h"

namespace tflm_patch {

// Checks the plan against the op's tensors: tensor types, shapes and zero
// points; every layer's geometry, parameters and constants; the grid; the
// buffers (inside the scratch area, no overlap with a live buffer, large
// enough for every patch's region). `regions` is working memory of at least
// plan.num_layers entries.
Status ValidatePlan(const StagePlan& plan, const InputTensors& inputs,
                    const TensorDesc& output, Region* regions,
                    int32_t num_regions);

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_PLAN_VALIDATION_H_

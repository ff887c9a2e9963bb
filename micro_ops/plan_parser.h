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

// Parses the PATCH_STAGE custom options (a FlexBuffer map,
// docs/patch_stage_format.md) into a StagePlan in caller-provided memory:
//
//   ComputePlanMemoryBytes(options, size, &plan_bytes);
//   ParsePlan(options, size, memory, plan_bytes, &plan);
//
// Checks the format only (keys, types, vector lengths, int32 ranges,
// version); the semantic checks are ValidatePlan's (plan_validation.h).

#ifndef TFLM_PATCH_MICRO_OPS_PLAN_PARSER_H_
#define TFLM_PATCH_MICRO_OPS_PLAN_PARSER_H_

#include <cstddef>
#include <cstdint>

#include "plan.h"
#include "status.h"

namespace tflm_patch {

constexpr size_t kPlanMemoryAlignment = 8;  // ParsePlan's memory alignment

// Bytes of plan memory ParsePlan needs for these options.
Status ComputePlanMemoryBytes(const uint8_t* options, size_t options_bytes,
                              size_t* plan_memory_bytes);

// Parses the options into `plan_memory` (kPlanMemoryAlignment-aligned, at
// least ComputePlanMemoryBytes bytes). `*plan` points into plan_memory.
Status ParsePlan(const uint8_t* options, size_t options_bytes,
                 void* plan_memory, size_t plan_memory_bytes,
                 const StagePlan** plan);

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_PLAN_PARSER_H_

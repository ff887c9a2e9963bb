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

// Where the stage output may lie over the stage input (docs
// "Output over the input"). The schedule reads the input and writes the
// output patch by patch in row-major tile order, so an input byte is dead
// once the last patch reading it has run. One number per plan says where
// the output may start: at least `lead` bytes before the input, when the two
// overlap. Prepare computes it (TFLM places tensors after Prepare); RunStage
// checks the real addresses against it before running any patch.

#ifndef TFLM_PATCH_MICRO_OPS_STAGE_OVERLAP_H_
#define TFLM_PATCH_MICRO_OPS_STAGE_OVERLAP_H_

#include <cstddef>
#include <cstdint>

#include "geometry.h"
#include "plan.h"
#include "status.h"

namespace tflm_patch {

// No patch reads the stage input: any overlap is safe.
constexpr int64_t kNoOutputLeadLimit = INT64_MIN;

// The least number of bytes the output must start before the input when
// they overlap (negative: it may start after the input's first byte):
//   max over patches p of
//     write_end(p) - min over patches q >= p (row-major) of read_start(q)
// where write_end(p) is one past the last output byte patch p writes and
// read_start(q) the first input byte patch q reads (the corner of the union
// of what the layers reading the stage input need). `regions` holds
// plan.num_layers entries of working memory. The plan must be validated.
Status ComputeMinOutputLead(const StagePlan& plan, Region* regions,
                            int32_t num_regions, int64_t* lead);

// Bytes of the stage input and output tensors.
size_t StageInputBytes(const StagePlan& plan);
size_t StageOutputBytes(const StagePlan& plan);

// Whether an output at `output` may overlap an input at `input`: they do
// not overlap, or the output starts at least `min_lead` bytes before it.
bool OutputPlacementAllowed(const StagePlan& plan, const void* input,
                            const void* output, int64_t min_lead);

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_STAGE_OVERLAP_H_

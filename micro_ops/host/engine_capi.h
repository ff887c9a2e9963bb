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

// Host-only C API of the PATCH_STAGE engine (see engine_capi.cc).

#ifndef TFLM_PATCH_MICRO_OPS_HOST_ENGINE_CAPI_H_
#define TFLM_PATCH_MICRO_OPS_HOST_ENGINE_CAPI_H_

#include <stddef.h>
#include <stdint.h>

#define TFLM_PATCH_OK 0
#define TFLM_PATCH_REJECTED 1      /* the engine refused; see `error` */
#define TFLM_PATCH_BAD_ARGUMENTS 2 /* the caller passed nonsense */

#ifdef __cplusplus
extern "C" {
#endif

/* Parses `options`, validates them against the tensors, sizes the scratch
 * area and runs the stage.
 *   input_data[i]: op input i (0: the int8 stage input, then the constants);
 *   input_types[i]: 9 = int8, 2 = int32 (TfLiteType codes), other = unknown;
 *   input_ndims[i]: rank of input i; input_dims: all inputs' dims,
 * concatenated; output: int8 buffer holding the product of output_dims
 * elements, separate from the input or laid over it (stage_overlap.h). Returns TFLM_PATCH_OK, or another code with a message in `error`.
 */
int tflm_patch_run_stage(const uint8_t* options, size_t options_bytes,
                         int32_t num_inputs, const void* const* input_data,
                         const int32_t* input_types, const int32_t* input_ndims,
                         const int32_t* input_dims, int8_t* output,
                         int32_t output_ndims, const int32_t* output_dims,
                         char* error, size_t error_bytes);

/* The scratch size (ComputeScratchBytes's) of the last successful
 * tflm_patch_run_stage in this process: what the TFLM op would request. */
size_t tflm_patch_last_scratch_bytes(void);

/* The plan memory (ComputePlanMemoryBytes) of the last options parsed by
 * tflm_patch_run_stage in this process: what the TFLM op allocates in Init. */
size_t tflm_patch_last_plan_memory_bytes(void);

/* The output lead (ComputeMinOutputLead) of the last plan validated by
 * tflm_patch_run_stage: the output may overlap the input (input_data[0])
 * when it starts at least that many bytes before it (INT64_MIN: anywhere). */
int64_t tflm_patch_last_min_output_lead(void);

/* 1 if the engine was built with TFLITE_SINGLE_ROUNDING, else 0. */
int tflm_patch_single_rounding(void);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif /* TFLM_PATCH_MICRO_OPS_HOST_ENGINE_CAPI_H_ */

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

// Host-only C API over the engine, for tests and `tflm-patch verify
// --engine cpp` (loaded from Python with ctypes). Unlike the engine, this shim
// may allocate (std::vector): it plays the role of TFLM's arena.

#include "engine_capi.h"

#include <cstdio>
#include <cstring>
#include <vector>

#include "../cmsis_nn_layers.h"
#include "../integer_math.h"
#include "../plan_parser.h"
#include "../plan_validation.h"
#include "../reference_layers.h"
#include "../schedule.h"
#include "../stage_overlap.h"
#include "tensor_desc_array.h"

namespace {

using tflm_patch::ElementType;
using tflm_patch::InputTensors;
using tflm_patch::LayerBackend;
using tflm_patch::Region;
using tflm_patch::StagePlan;
using tflm_patch::Status;
using tflm_patch::TensorDesc;

// The layer kernels of this build, picked like the TFLM op picks them
// (patch_stage_cmsis_nn.cc with CMSIS_NN, else patch_stage.cc).
#if defined(CMSIS_NN)
const LayerBackend& kBackend = tflm_patch::kCmsisNnLayerBackend;
#else
const LayerBackend& kBackend = tflm_patch::kReferenceLayerBackend;
#endif

using tflm_patch::TensorDescArray;

// The host refuses scratch areas larger than this (a corrupt scratch_bytes
// must not make the test process allocate gigabytes).
constexpr size_t kMaxHostScratchBytes = size_t{256} << 20;
// Filled into scratch and output before running, so that reading a byte the
// engine never wrote shows up as a wrong result.
constexpr uint8_t kFillPattern = 0xA5;

void WriteError(char* error, size_t error_bytes, const char* text) {
  if (error == nullptr || error_bytes == 0) return;
  std::snprintf(error, error_bytes, "%s", text);
}

int Reject(const Status& status, char* error, size_t error_bytes) {
  char text[256];
  int used = 0;
  if (status.layer >= 0) {
    used = std::snprintf(text, sizeof(text),
                         "layer %d: ", static_cast<int>(status.layer));
  }
  std::snprintf(text + used, sizeof(text) - used, "%s%s%s%s", status.message,
                status.key != nullptr ? " ('" : "",
                status.key != nullptr ? status.key : "",
                status.key != nullptr ? "')" : "");
  WriteError(error, error_bytes, text);
  return TFLM_PATCH_REJECTED;
}

ElementType ToElementType(int32_t code) {
  switch (code) {
    case static_cast<int32_t>(ElementType::kInt8):
      return ElementType::kInt8;
    case static_cast<int32_t>(ElementType::kInt32):
      return ElementType::kInt32;
    case static_cast<int32_t>(ElementType::kFloat32):
      return ElementType::kFloat32;
    case static_cast<int32_t>(ElementType::kUInt8):
      return ElementType::kUInt8;
    default:
      return ElementType::kOther;
  }
}

TensorDesc MakeDesc(int32_t type, int32_t num_dims, const int32_t* dims,
                    bool is_constant) {
  TensorDesc desc = {};
  desc.type = ToElementType(type);
  desc.num_dims = num_dims;
  for (int32_t i = 0; i < num_dims && i < tflm_patch::kMaxTensorDims; ++i) {
    desc.dims[i] = dims[i];
  }
  desc.is_constant = is_constant;
  desc.has_zero_point = false;  // the host API carries no quantization
  desc.num_scales = -1;
  return desc;
}

size_t ElementCount(int32_t num_dims, const int32_t* dims) {
  size_t count = 1;
  for (int32_t i = 0; i < num_dims; ++i) count *= static_cast<size_t>(dims[i]);
  return count;
}

// Host instrumentation only (the engine itself has no mutable state).
size_t g_last_scratch_bytes = 0;
size_t g_last_plan_memory_bytes = 0;
int64_t g_last_min_output_lead = 0;

}  // namespace

extern "C" {

int tflm_patch_run_stage(const uint8_t* options, size_t options_bytes,
                         int32_t num_inputs, const void* const* input_data,
                         const int32_t* input_types, const int32_t* input_ndims,
                         const int32_t* input_dims, int8_t* output,
                         int32_t output_ndims, const int32_t* output_dims,
                         char* error, size_t error_bytes) {
  WriteError(error, error_bytes, "");
  if (num_inputs < 1 || input_data == nullptr || input_types == nullptr ||
      input_ndims == nullptr || input_dims == nullptr || output == nullptr ||
      output_ndims < 0 || output_dims == nullptr) {
    WriteError(error, error_bytes, "host API: bad arguments");
    return TFLM_PATCH_BAD_ARGUMENTS;
  }

  size_t plan_bytes = 0;
  Status status =
      tflm_patch::ComputePlanMemoryBytes(options, options_bytes, &plan_bytes);
  if (!status.ok()) return Reject(status, error, error_bytes);
  g_last_plan_memory_bytes = plan_bytes;
  std::vector<uint64_t> plan_memory(plan_bytes / sizeof(uint64_t) + 1);
  const StagePlan* plan = nullptr;
  status = tflm_patch::ParsePlan(options, options_bytes, plan_memory.data(),
                                 plan_memory.size() * sizeof(uint64_t), &plan);
  if (!status.ok()) return Reject(status, error, error_bytes);

  std::vector<TensorDesc> inputs(static_cast<size_t>(num_inputs));
  const int32_t* dims = input_dims;
  for (int32_t i = 0; i < num_inputs; ++i) {
    if (input_ndims[i] < 0) {
      WriteError(error, error_bytes, "host API: negative rank");
      return TFLM_PATCH_BAD_ARGUMENTS;
    }
    inputs[i] = MakeDesc(input_types[i], input_ndims[i], dims,
                         /*is_constant=*/i > 0);
    dims += input_ndims[i];
  }
  const TensorDesc output_desc =
      MakeDesc(static_cast<int32_t>(ElementType::kInt8), output_ndims,
               output_dims, /*is_constant=*/false);

  std::vector<Region> regions(static_cast<size_t>(plan->num_layers));
  size_t scratch_bytes = 0;
  status = tflm_patch::ValidatePlan(
      *plan, TensorDescArray(inputs.data(), num_inputs), output_desc,
      regions.data(), plan->num_layers);
  if (!status.ok()) return Reject(status, error, error_bytes);
  status = tflm_patch::ComputeScratchBytes(*plan, kBackend, regions.data(),
                                           plan->num_layers, &scratch_bytes);
  if (!status.ok()) return Reject(status, error, error_bytes);
  if (scratch_bytes > kMaxHostScratchBytes) {
    WriteError(error, error_bytes, "host API: scratch_bytes too large");
    return TFLM_PATCH_REJECTED;
  }

  int64_t min_output_lead = 0;
  status = tflm_patch::ComputeMinOutputLead(*plan, regions.data(),
                                            plan->num_layers, &min_output_lead);
  if (!status.ok()) return Reject(status, error, error_bytes);
  g_last_min_output_lead = min_output_lead;

  std::vector<uint8_t> scratch(scratch_bytes, kFillPattern);
  // An output laid over the input (an offline plan's fused layout) keeps the
  // input's bytes; a separate one starts as noise.
  const size_t output_bytes = ElementCount(output_ndims, output_dims);
  const uint8_t* in = static_cast<const uint8_t*>(input_data[0]);
  const uint8_t* out = reinterpret_cast<const uint8_t*>(output);
  if (out + output_bytes <= in || in + tflm_patch::StageInputBytes(*plan) <= out) {
    std::memset(output, kFillPattern, output_bytes);
  }
  status = tflm_patch::RunStage(*plan, kBackend, input_data, num_inputs, output,
                                min_output_lead, scratch.data(), scratch.size(),
                                regions.data(), plan->num_layers);
  if (!status.ok()) return Reject(status, error, error_bytes);
  g_last_scratch_bytes = scratch_bytes;
  return TFLM_PATCH_OK;
}

size_t tflm_patch_last_scratch_bytes(void) { return g_last_scratch_bytes; }

size_t tflm_patch_last_plan_memory_bytes(void) {
  return g_last_plan_memory_bytes;
}

int64_t tflm_patch_last_min_output_lead(void) {
  return g_last_min_output_lead;
}

int tflm_patch_single_rounding(void) {
  return tflm_patch::kUsesSingleRounding ? 1 : 0;
}

}  // extern "C"

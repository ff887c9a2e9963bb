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

// libFuzzer target over PATCH_STAGE's options: the FlexBuffer reader, the
// plan parser, plan validation and, on small validated plans, RunStage.
// Only the kernel's public API is used (plan_parser.h, plan_validation.h,
// schedule.h with the reference layers).
//
// Input: one selector byte, then the FlexBuffer options. The selector picks
// whether the tensors handed to ValidatePlan are the ones the plan asks for
// (0) or one of them is perturbed (a dimension, the type, constness), so
// that validation is fuzzed against wrong tensors too. Every buffer is
// allocated at its exact size, so ASan sees any access past it.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "plan.h"
#include "plan_parser.h"
#include "plan_validation.h"
#include "reference_layers.h"
#include "schedule.h"
#include "stage_overlap.h"
#include "status.h"
#include "host/tensor_desc_array.h"

namespace {

using tflm_patch::ElementType;
using tflm_patch::ImageShape;
using tflm_patch::LayerOp;
using tflm_patch::LayerPlan;
using tflm_patch::Region;
using tflm_patch::StagePlan;
using tflm_patch::TensorDesc;

using tflm_patch::TensorDescArray;

constexpr size_t kMaxPlanMemory = size_t{1} << 20;
constexpr size_t kMaxScratch = size_t{4} << 20;
constexpr int64_t kMaxElements = int64_t{1} << 16;   // per tensor we allocate
constexpr int64_t kMaxWork = int64_t{1} << 21;       // MAC-ish budget for RunStage
constexpr int kMaxInputs = 64;

TensorDesc Desc(ElementType type, int32_t n, const int32_t* dims,
                bool constant) {
  TensorDesc d = {};
  d.type = type;
  d.num_dims = n;
  for (int32_t i = 0; i < n && i < tflm_patch::kMaxTensorDims; ++i) {
    d.dims[i] = dims[i];
  }
  d.is_constant = constant;
  d.has_zero_point = false;
  d.num_scales = -1;
  return d;
}

int64_t Elements(const TensorDesc& d) {
  int64_t n = 1;
  for (int32_t i = 0; i < d.num_dims && i < tflm_patch::kMaxTensorDims; ++i) {
    if (d.dims[i] < 0) return -1;
    n *= d.dims[i];
    if (n > kMaxElements) return -1;
  }
  return n;
}

size_t ElementBytes(ElementType t) { return t == ElementType::kInt32 ? 4 : 1; }

// Channels of a layer source, or -1.
int32_t SourceChannels(const StagePlan& plan, int32_t source) {
  if (source == tflm_patch::kStageInputSource) return plan.input_shape.channels;
  if (source < 0 || source >= plan.num_layers) return -1;
  return plan.layers[source].output_shape.channels;
}

void Fill(uint8_t* p, size_t n, uint32_t seed) {
  uint32_t x = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    p[i] = static_cast<uint8_t>(x >> 24);
  }
}

void Exercise(const StagePlan& plan, uint8_t selector) {
  if (plan.num_layers <= 0) return;
  // The tensors the plan asks for: input 0 the stage input, then filters and
  // biases at the op input indices the layers name.
  TensorDesc descs[kMaxInputs];
  bool known[kMaxInputs] = {};
  int32_t count = 1;
  const int32_t in_dims[4] = {1, plan.input_shape.height,
                              plan.input_shape.width, plan.input_shape.channels};
  descs[0] = Desc(ElementType::kInt8, 4, in_dims, false);
  known[0] = true;
  double work = 0;  // a MAC-ish estimate, in double: unvalidated shapes can overflow any integer
  for (int32_t i = 0; i < plan.num_layers; ++i) {
    const LayerPlan& l = plan.layers[i];
    const int32_t out_c = l.output_shape.channels;
    const int32_t in_c = l.num_sources > 0 ? SourceChannels(plan, l.sources[0]) : -1;
    work += double{1.0} * l.output_shape.height * l.output_shape.width *
            (out_c > 0 ? out_c : 1) * (l.kernel_height > 0 ? l.kernel_height : 1) *
            (l.kernel_width > 0 ? l.kernel_width : 1) *
            (l.op == LayerOp::kConv2D && in_c > 0 ? in_c : 1);
    if (l.filter_input > 0 && l.filter_input < kMaxInputs && !known[l.filter_input]) {
      int32_t fd[4] = {out_c, l.kernel_height, l.kernel_width, in_c};
      if (l.op == LayerOp::kDepthwiseConv2D) {
        fd[0] = 1;
        fd[3] = out_c;
      }
      descs[l.filter_input] = Desc(ElementType::kInt8, 4, fd, true);
      known[l.filter_input] = true;
      if (l.filter_input + 1 > count) count = l.filter_input + 1;
    }
    if (l.bias_input > 0 && l.bias_input < kMaxInputs && !known[l.bias_input]) {
      const int32_t bd[1] = {out_c};
      descs[l.bias_input] = Desc(ElementType::kInt32, 1, bd, true);
      known[l.bias_input] = true;
      if (l.bias_input + 1 > count) count = l.bias_input + 1;
    }
  }
  for (int32_t i = 0; i < count; ++i) {
    if (!known[i]) {
      const int32_t d[1] = {1};
      descs[i] = Desc(ElementType::kInt8, 1, d, true);
    }
  }
  const LayerPlan& last = plan.layers[plan.num_layers - 1];
  const int32_t out_dims[4] = {1, last.output_shape.height, last.output_shape.width,
                               last.output_shape.channels};
  TensorDesc output = Desc(ElementType::kInt8, 4, out_dims, false);

  // Perturb one tensor (selector != 0): validation must catch the mismatch.
  if (selector != 0) {
    const int32_t which = (selector >> 4) % (count + 1);
    TensorDesc& d = which == count ? output : descs[which];
    switch (selector & 7) {
      case 1: if (d.num_dims > 0) d.dims[(selector >> 3) % d.num_dims] += 1; break;
      case 2: if (d.num_dims > 0) d.dims[(selector >> 3) % d.num_dims] -= 1; break;
      case 3: d.type = d.type == ElementType::kInt8 ? ElementType::kInt32 : ElementType::kInt8; break;
      case 4: d.is_constant = !d.is_constant; break;
      case 5: d.num_dims = (d.num_dims + 1) % (tflm_patch::kMaxTensorDims + 2); break;
      case 6: d.has_zero_point = true; d.zero_point = 200; break;
      default: d.num_scales = 3; break;
    }
  }

  std::vector<Region> regions(static_cast<size_t>(plan.num_layers));
  size_t scratch_bytes = 0;
  tflm_patch::Status status = tflm_patch::ValidatePlan(
      plan, TensorDescArray(descs, count), output, regions.data(),
      plan.num_layers);
  if (status.ok()) {
    status = tflm_patch::ComputeScratchBytes(
        plan, tflm_patch::kReferenceLayerBackend, regions.data(),
        plan.num_layers, &scratch_bytes);
  }
  int64_t lead = 0;
  if (status.ok()) {
    status = tflm_patch::ComputeMinOutputLead(plan, regions.data(),
                                              plan.num_layers, &lead);
  }
#ifdef OPTIONS_FUZZ_REPORT
  std::fprintf(stderr, "validate: %s%s%s, work %.0f\n", status.ok() ? "ok" : status.message,
               status.key ? " " : "", status.key ? status.key : "", work);
#endif
  if (!status.ok()) return;
  if (scratch_bytes > kMaxScratch || work > kMaxWork) return;

  // Run it, on exact-size buffers.
  void* data[kMaxInputs] = {};
  bool sizes_ok = true;
  for (int32_t i = 0; i < count; ++i) {
    const int64_t n = Elements(descs[i]);
    if (n < 0) { sizes_ok = false; break; }
    const size_t bytes = static_cast<size_t>(n) * ElementBytes(descs[i].type);
    data[i] = std::malloc(bytes > 0 ? bytes : 1);
    Fill(static_cast<uint8_t*>(data[i]), bytes, static_cast<uint32_t>(i));
  }
  const int64_t out_n = Elements(output);
  if (sizes_ok && out_n >= 0) {
    int8_t* out = static_cast<int8_t*>(std::malloc(out_n > 0 ? out_n : 1));
    uint8_t* scratch = static_cast<uint8_t*>(std::malloc(scratch_bytes > 0 ? scratch_bytes : 1));
    std::memset(scratch, 0xA5, scratch_bytes);
    tflm_patch::RunStage(plan, tflm_patch::kReferenceLayerBackend, data, count,
                         out, lead, scratch, scratch_bytes, regions.data(),
                         plan.num_layers);
    // Again with the output over the input, `lead` bytes before it (the
    // fused layout of an offline plan), in one exact-size allocation.
    const size_t in_bytes = tflm_patch::StageInputBytes(plan);
    if ((selector & 8) != 0 && count > 0 && lead >= 0 && lead < (1 << 20) &&
        descs[0].num_dims == 4 && Elements(descs[0]) >= 0 &&
        static_cast<size_t>(Elements(descs[0])) *
                ElementBytes(descs[0].type) == in_bytes) {
      const size_t shift = static_cast<size_t>(lead);
      const size_t span = std::max(static_cast<size_t>(out_n), shift + in_bytes);
      uint8_t* fused = static_cast<uint8_t*>(std::malloc(span > 0 ? span : 1));
      std::memcpy(fused + shift, data[0], in_bytes);
      void* fused_data[kMaxInputs] = {};
      for (int32_t i = 0; i < count; ++i) fused_data[i] = data[i];
      fused_data[0] = fused + shift;
      tflm_patch::RunStage(plan, tflm_patch::kReferenceLayerBackend,
                           fused_data, count, reinterpret_cast<int8_t*>(fused),
                           lead, scratch, scratch_bytes, regions.data(),
                           plan.num_layers);
      std::free(fused);
    }
    std::free(scratch);
    std::free(out);
  }
  for (int32_t i = 0; i < count; ++i) std::free(data[i]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t selector = data[0];
  // The options at their exact size, in their own allocation.
  const size_t n = size - 1;
  uint8_t* options = static_cast<uint8_t*>(std::malloc(n > 0 ? n : 1));
  if (n > 0) std::memcpy(options, data + 1, n);
  size_t plan_bytes = 0;
  tflm_patch::Status status =
      tflm_patch::ComputePlanMemoryBytes(options, n, &plan_bytes);
  if (status.ok() && plan_bytes <= kMaxPlanMemory) {
    const size_t a = tflm_patch::kPlanMemoryAlignment;
    void* memory = std::aligned_alloc(a, plan_bytes > 0 ? (plan_bytes + a - 1) / a * a : a);
    const StagePlan* plan = nullptr;
    status = tflm_patch::ParsePlan(options, n, memory, plan_bytes, &plan);
    if (status.ok() && plan != nullptr) Exercise(*plan, selector);
    std::free(memory);
  }
  std::free(options);
  return 0;
}

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

#include "schedule.h"

#include "halo_cache.h"
#include "image_view.h"
#include "stage_overlap.h"

namespace tflm_patch {
namespace {

// The regions of one patch: what each layer's buffer holds (its dense
// layout in the scratch area) and what each layer computes into it. Here
// every layer recomputes all that its readers need, so the two are the
// same; a schedule that keeps rows or columns from the previous patch
// computes less than its buffer holds.
struct PatchRegions {
  const Region* held;
  const Region* computed;
};

// A layer's patch buffer in the scratch area, holding `region` densely.
// With no scratch, only the geometry (data is null).
InputView BufferInputView(const uint8_t* scratch, const LayerPlan& layer,
                          const Region& region) {
  const int32_t channels = layer.output_shape.channels;
  return InputView{scratch != nullptr ? reinterpret_cast<const int8_t*>(
                                            scratch + layer.buffer_offset)
                                      : nullptr,
                   region.y0, region.x0, Width(region) * channels, channels};
}

OutputView BufferOutputView(uint8_t* scratch, const LayerPlan& layer,
                            const Region& region) {
  const int32_t channels = layer.output_shape.channels;
  return OutputView{scratch != nullptr ? reinterpret_cast<int8_t*>(
                                             scratch + layer.buffer_offset)
                                       : nullptr,
                    region.y0, region.x0, Width(region) * channels, channels};
}

// The whole stage input and output (data null for geometry only).
InputView StageInputView(const StagePlan& plan, const void* data) {
  const ImageShape& in = plan.input_shape;
  return InputView{static_cast<const int8_t*>(data), 0, 0,
                   in.width * in.channels, in.channels};
}

OutputView StageOutputView(const StagePlan& plan, int8_t* data) {
  const ImageShape& out = plan.layers[plan.num_layers - 1].output_shape;
  return OutputView{data, 0, 0, out.width * out.channels, out.channels};
}

// Where the workspace starts when the plan's reserved tail is too small for
// the backend: right after the plan's scratch.
size_t AppendedWorkspaceOffset(const StagePlan& plan) {
  return AlignUp(static_cast<size_t>(plan.scratch_bytes), kWorkspaceAlignment);
}

// Where the workspace starts in a scratch area of `scratch_bytes` (what
// ComputeScratchBytes returned): the plan's reserved tail when it was large
// enough, else appended.
size_t WorkspaceOffset(const StagePlan& plan, size_t scratch_bytes) {
  return scratch_bytes > static_cast<size_t>(plan.scratch_bytes)
             ? AppendedWorkspaceOffset(plan)
             : static_cast<size_t>(plan.scratch_bytes - plan.workspace_bytes);
}

// Everything layer `index` needs for one patch: its sources' and its
// output's views (the buffers' layouts), its constants (null when
// `input_data` is: geometry only) and the region it computes.
LayerCall MakeLayerCall(const StagePlan& plan, int32_t index,
                        const PatchRegions& patch,
                        const void* const* input_data,
                        const InputView& stage_input,
                        const OutputView& stage_output, uint8_t* scratch) {
  const LayerPlan& layer = plan.layers[index];
  LayerCall call;
  call.layer = &layer;
  call.index = index;
  call.input_shape = SourceShape(plan, layer.sources[0]);
  for (int32_t s = 0; s < layer.num_sources; ++s) {
    const int32_t source = layer.sources[s];
    call.sources[s] =
        source == kStageInputSource
            ? stage_input
            : BufferInputView(scratch, plan.layers[source], patch.held[source]);
  }
  call.filter = input_data != nullptr && (HasFilter(layer.op) ||
                                          HasConstantOperand(layer.op))
                    ? static_cast<const int8_t*>(input_data[layer.filter_input])
                    : nullptr;
  call.bias = input_data != nullptr && layer.bias_input >= 0
                  ? static_cast<const int32_t*>(input_data[layer.bias_input])
                  : nullptr;
  call.region = patch.computed[index];
  call.output = index == plan.num_layers - 1
                    ? stage_output
                    : BufferOutputView(scratch, layer, patch.held[index]);
  return call;
}

// The largest workspace a layer call of patch (row, col) needs.
size_t PatchWorkspaceBytes(const StagePlan& plan, const LayerBackend& backend,
                           const PatchRegions& patch, int32_t row,
                           int32_t col) {
  const InputView stage_input = StageInputView(plan, nullptr);
  const OutputView stage_output = StageOutputView(plan, nullptr);
  size_t most = 0;
  for (int32_t i = 0; i < plan.num_layers; ++i) {
    if (IsEmpty(patch.computed[i])) continue;
    LayerCall call = MakeLayerCall(plan, i, patch, nullptr, stage_input,
                                   stage_output, nullptr);
    if (IsCachedLayer(plan, i)) call.region = CachedLayerBox(plan, i, row, col);
    if (IsEmpty(call.region)) continue;
    const size_t bytes = backend.workspace_bytes(call);
    if (bytes > most) most = bytes;
  }
  return most;
}

// Patch (row, col). A cached layer (docs "Cached halos") computes only its
// box of the region its buffer holds; the rest comes from the caches.
Status RunPatch(const StagePlan& plan, const LayerBackend& backend,
                const PatchRegions& patch, const void* const* input_data,
                const InputView& stage_input, const OutputView& stage_output,
                uint8_t* scratch, uint8_t* workspace, int32_t row,
                int32_t col) {
  for (int32_t i = 0; i < plan.num_layers; ++i) {
    if (IsEmpty(patch.computed[i])) continue;
    LayerCall call = MakeLayerCall(plan, i, patch, input_data, stage_input,
                                   stage_output, scratch);
    const bool cached = IsCachedLayer(plan, i);
    if (cached) {
      RestoreHalo(plan, i, row, col, scratch);
      call.region = CachedLayerBox(plan, i, row, col);
    }
    if (!IsEmpty(call.region)) {
      TFLM_PATCH_RETURN_IF_ERROR(backend.run(call, workspace));
    }
    if (cached) SaveHalo(plan, i, row, col, scratch);
  }
  return OkStatus();
}

Status CheckRunArguments(const StagePlan& plan, const void* const* input_data,
                         int32_t num_inputs, const int8_t* output,
                         int64_t min_output_lead, const uint8_t* scratch,
                         size_t scratch_bytes, const Region* regions,
                         int32_t num_regions) {
  if (plan.num_layers < 1 || regions == nullptr ||
      num_regions < plan.num_layers) {
    return ErrorStatus("region workspace too small");
  }
  if (plan.halo != nullptr && !plan.halo->validated) {
    return ErrorStatus("cached plan not validated", "cache_rows");
  }
  if (scratch_bytes < static_cast<size_t>(plan.scratch_bytes) ||
      (scratch == nullptr && plan.scratch_bytes > 0)) {
    return ErrorStatus("scratch buffer too small", "scratch_bytes");
  }
  if (input_data == nullptr || num_inputs < 1 || input_data[0] == nullptr ||
      output == nullptr) {
    return ErrorStatus("missing stage input or output data");
  }
  if (!OutputPlacementAllowed(plan, input_data[0], output, min_output_lead)) {
    return ErrorStatus("stage output overlaps input bytes still to be read",
                       "output");
  }
  for (int32_t i = 0; i < plan.num_layers; ++i) {
    const LayerPlan& layer = plan.layers[i];
    if (HasConstantOperand(layer.op) &&
        (layer.filter_input < 1 || layer.filter_input >= num_inputs ||
         input_data[layer.filter_input] == nullptr)) {
      return ErrorStatus("missing constant data", "constant", i);
    }
    if (!HasFilter(layer.op)) continue;
    if (layer.filter_input < 1 || layer.filter_input >= num_inputs ||
        input_data[layer.filter_input] == nullptr) {
      return ErrorStatus("missing filter data", "filter", i);
    }
    if (layer.bias_input != -1 &&
        (layer.bias_input < 1 || layer.bias_input >= num_inputs ||
         input_data[layer.bias_input] == nullptr)) {
      return ErrorStatus("missing bias data", "bias", i);
    }
  }
  return OkStatus();
}

}  // namespace

Status ComputeScratchBytes(const StagePlan& plan, const LayerBackend& backend,
                           Region* regions, int32_t num_regions,
                           size_t* scratch_bytes) {
  if (plan.num_layers < 1 || regions == nullptr ||
      num_regions < plan.num_layers) {
    return ErrorStatus("region workspace too small");
  }
  size_t workspace_bytes = 0;
  if (backend.workspace_bytes != nullptr) {
    for (int32_t row = 0; row + 1 < plan.num_grid_rows; ++row) {
      for (int32_t col = 0; col + 1 < plan.num_grid_cols; ++col) {
        ComputePatchRegions(plan, TileRegion(plan, row, col), regions);
        const size_t bytes = PatchWorkspaceBytes(
            plan, backend, PatchRegions{regions, regions}, row, col);
        if (bytes > workspace_bytes) workspace_bytes = bytes;
      }
    }
  }
  *scratch_bytes = workspace_bytes > static_cast<size_t>(plan.workspace_bytes)
                       ? AppendedWorkspaceOffset(plan) + workspace_bytes
                       : static_cast<size_t>(plan.scratch_bytes);
  return OkStatus();
}

Status RunStage(const StagePlan& plan, const LayerBackend& backend,
                const void* const* input_data, int32_t num_inputs,
                int8_t* output, int64_t min_output_lead, uint8_t* scratch,
                size_t scratch_bytes, Region* regions, int32_t num_regions) {
  TFLM_PATCH_RETURN_IF_ERROR(CheckRunArguments(
      plan, input_data, num_inputs, output, min_output_lead, scratch,
      scratch_bytes, regions, num_regions));
  const InputView stage_input = StageInputView(plan, input_data[0]);
  const OutputView stage_output = StageOutputView(plan, output);
  uint8_t* workspace = scratch != nullptr
                           ? scratch + WorkspaceOffset(plan, scratch_bytes)
                           : nullptr;
  for (int32_t row = 0; row + 1 < plan.num_grid_rows; ++row) {
    for (int32_t col = 0; col + 1 < plan.num_grid_cols; ++col) {
      ComputePatchRegions(plan, TileRegion(plan, row, col), regions);
      TFLM_PATCH_RETURN_IF_ERROR(
          RunPatch(plan, backend, PatchRegions{regions, regions}, input_data,
                   stage_input, stage_output, scratch, workspace, row, col));
    }
  }
  return OkStatus();
}

}  // namespace tflm_patch

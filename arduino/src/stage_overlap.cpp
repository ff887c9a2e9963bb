// Generated from micro_ops/stage_overlap.cc by tools/sync_arduino.py: edit micro_ops/, not this file.
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

#include "stage_overlap.h"

namespace tflm_patch {
namespace {

int64_t ElementBytes(const StagePlan& plan) {
  return StageInputType(plan) == kInputFloat32 ? 4 : 1;
}

// The first input byte patch `tile` reads; -1 if it reads none.
int64_t ReadStart(const StagePlan& plan, const Region& tile,
                  Region* regions) {
  ComputePatchRegions(plan, tile, regions);
  Region read = kEmptyRegion;
  for (int32_t i = 0; i < plan.num_layers; ++i) {
    const LayerPlan& layer = plan.layers[i];
    for (int32_t s = 0; s < layer.num_sources; ++s) {
      if (layer.sources[s] != kStageInputSource) continue;
      read = Union(read,
                   LayerInputRegion(layer, regions[i], plan.input_shape));
    }
  }
  if (IsEmpty(read)) return -1;
  const ImageShape& in = plan.input_shape;
  return (static_cast<int64_t>(read.y0) * in.width + read.x0) * in.channels *
         ElementBytes(plan);
}

// One past the last output byte patch `tile` writes; -1 if it writes none.
int64_t WriteEnd(const StagePlan& plan, const Region& tile) {
  if (IsEmpty(tile)) return -1;
  const ImageShape& out = plan.layers[plan.num_layers - 1].output_shape;
  return (static_cast<int64_t>(tile.y1 - 1) * out.width + tile.x1) *
         out.channels;
}

}  // namespace

Status ComputeMinOutputLead(const StagePlan& plan, Region* regions,
                            int32_t num_regions, int64_t* lead) {
  if (plan.num_layers < 1 || regions == nullptr ||
      num_regions < plan.num_layers) {
    return ErrorStatus("region workspace too small");
  }
  // Patches in reverse run order, keeping the least read start so far.
  int64_t most = kNoOutputLeadLimit;
  int64_t low = -1;
  for (int32_t row = plan.num_grid_rows - 2; row >= 0; --row) {
    for (int32_t col = plan.num_grid_cols - 2; col >= 0; --col) {
      const Region tile = TileRegion(plan, row, col);
      const int64_t read = ReadStart(plan, tile, regions);
      if (read >= 0 && (low < 0 || read < low)) low = read;
      const int64_t write = WriteEnd(plan, tile);
      if (write >= 0 && low >= 0 && write - low > most) most = write - low;
    }
  }
  *lead = most;
  return OkStatus();
}

size_t StageInputBytes(const StagePlan& plan) {
  const ImageShape& in = plan.input_shape;
  return static_cast<size_t>(in.height) * static_cast<size_t>(in.width) *
         static_cast<size_t>(in.channels) *
         static_cast<size_t>(ElementBytes(plan));
}

size_t StageOutputBytes(const StagePlan& plan) {
  const ImageShape& out = plan.layers[plan.num_layers - 1].output_shape;
  return static_cast<size_t>(out.height) * static_cast<size_t>(out.width) *
         static_cast<size_t>(out.channels);
}

bool OutputPlacementAllowed(const StagePlan& plan, const void* input,
                            const void* output, int64_t min_lead) {
  const uintptr_t in = reinterpret_cast<uintptr_t>(input);
  const uintptr_t out = reinterpret_cast<uintptr_t>(output);
  const bool overlap =
      in < out + StageOutputBytes(plan) && out < in + StageInputBytes(plan);
  if (!overlap || min_lead == kNoOutputLeadLimit) return true;
  // Both lie in one arena, so the distance fits in int64_t.
  const int64_t distance = in >= out ? static_cast<int64_t>(in - out)
                                     : -static_cast<int64_t>(out - in);
  return distance >= min_lead;
}

}  // namespace tflm_patch

// Generated from micro_ops/halo_cache.h by tools/sync_arduino.py: edit micro_ops/, not this file.
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

// Cached halos (options format version 2, docs/patch_stage_format.md): a
// stage keeps the rows (`cache_rows`) and/or columns (`cache_cols`) that a
// layer's patch region shares with the next patch below / to the right in
// caches inside its scratch area, so that each layer computes only the box
// N x M of its region that no earlier patch computed.
//
// A cached plan's regions are separable (rows depend on the tile row only,
// columns on the tile column only) and monotone. Prepare (ValidateHaloCache)
// checks this over every tile and records, in memory ParsePlan reserved, each
// cached layer's row interval per tile row and column interval per tile
// column; Eval then finds the box and the cache copies of a patch from those
// tables in constant time per layer.

#ifndef TFLM_PATCH_MICRO_OPS_HALO_CACHE_H_
#define TFLM_PATCH_MICRO_OPS_HALO_CACHE_H_

#include <cstddef>
#include <cstdint>

#include "patch_engine.h"

namespace tflm_patch {

// A half-open interval [begin, end) of rows or columns.
struct AxisSpan {
  int32_t begin;
  int32_t end;
};

// What Prepare derives for one cached layer (every layer but the last).
struct LayerHaloGeometry {
  int32_t rows;  // rows kept in each row-cache slot (rows_i)
  int32_t cols;  // columns kept in the column cache (cols_i)
};

// The cache geometry of a plan with cache_rows or cache_cols. Lives in plan
// memory (ParsePlan); the tables are filled by ValidateHaloCache.
struct HaloCache {
  int32_t num_layers;     // cached layers: the plan's layers but the last
  int32_t num_tile_rows;  // R
  int32_t num_tile_cols;  // C
  bool validated;         // the tables below hold this plan's geometry
  LayerHaloGeometry* layers;  // [layer]
  AxisSpan* row_spans;        // [layer * R + r]: Y_layer(r)
  AxisSpan* col_spans;        // [layer * C + c]: X_layer(c)
  int32_t* col_starts;        // [layer * C + c]: sum of |X_layer(c')|, c' < c
};

// Bytes of plan memory the HaloCache of `plan` takes (plan's layers and grid
// parsed); 0 when neither flag is set. Sets *too_large when it overflows.
size_t HaloCacheMemoryBytes(const StagePlan& plan, bool* too_large);

// Lays the HaloCache out in `memory` (kPlanMemoryAlignment-aligned,
// HaloCacheMemoryBytes long) for `plan`.
HaloCache* PlaceHaloCache(const StagePlan& plan, void* memory);

// Prepare-time checks of the version-2 keys (docs "Cached halos"): flags 0
// or 1; with a flag on, every layer but the last separable and monotone over
// all tiles with non-empty regions; caches at least the bytes needed, inside
// the scratch area before the CMSIS-NN workspace, overlapping neither another
// cache nor any layer's patch buffer. Fills plan.halo's tables. `regions` is
// working memory of plan.num_layers entries. A no-op for uncached plans.
// Call after the layers, the grid and the buffers are validated.
Status ValidateHaloCache(const StagePlan& plan, Region* regions);

// True when layer `index` of `plan` uses the caches.
inline bool IsCachedLayer(const StagePlan& plan, int32_t index) {
  return plan.halo != nullptr && index + 1 < plan.num_layers;
}

// The box N x M that cached layer `index` computes in patch (row, col).
Region CachedLayerBox(const StagePlan& plan, int32_t index, int32_t row,
                      int32_t col);

// Steps 1 and 2 of a patch: fills the layer's patch buffer (in `scratch`)
// with the rows and columns it shares with earlier patches, from the caches.
void RestoreHalo(const StagePlan& plan, int32_t index, int32_t row,
                 int32_t col, uint8_t* scratch);

// Steps 4 and 5: saves the columns and rows that later patches share from
// the layer's patch buffer into the caches.
void SaveHalo(const StagePlan& plan, int32_t index, int32_t row, int32_t col,
              uint8_t* scratch);

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_HALO_CACHE_H_

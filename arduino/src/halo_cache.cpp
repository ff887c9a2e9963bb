// Generated from micro_ops/halo_cache.cc by tools/sync_arduino.py: edit micro_ops/, not this file.
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

#include "halo_cache.h"

#include <cstring>

namespace tflm_patch {
namespace {

// Plan memory for the tables above this is refused (a corrupt grid must not
// make a host allocate gigabytes; no real plan comes close).
constexpr uint64_t kMaxHaloCacheMemoryBytes = uint64_t{1} << 28;

Status Error(const char* message, const char* key = nullptr,
             int32_t layer = -1) {
  return Status{message, key, layer};
}

uint64_t AlignUp(uint64_t value) {
  return (value + kPlanMemoryAlignment - 1) / kPlanMemoryAlignment *
         kPlanMemoryAlignment;
}

int32_t TileRows(const StagePlan& plan) {
  return plan.num_grid_rows > 1 ? plan.num_grid_rows - 1 : 0;
}

int32_t TileCols(const StagePlan& plan) {
  return plan.num_grid_cols > 1 ? plan.num_grid_cols - 1 : 0;
}

int32_t CachedLayers(const StagePlan& plan) {
  return plan.num_layers > 1 ? plan.num_layers - 1 : 0;
}

bool HasCacheFlag(const StagePlan& plan) {
  return plan.cache_rows != 0 || plan.cache_cols != 0;
}

// Byte offsets of the HaloCache's parts in its memory.
struct HaloLayout {
  uint64_t layers;
  uint64_t row_spans;
  uint64_t col_spans;
  uint64_t col_starts;
  uint64_t total;
};

HaloLayout LayoutOf(const StagePlan& plan) {
  // At most 1024 layers and 2^31 tiles per axis: no uint64 overflow.
  const uint64_t layers = static_cast<uint64_t>(CachedLayers(plan));
  const uint64_t rows = static_cast<uint64_t>(TileRows(plan));
  const uint64_t cols = static_cast<uint64_t>(TileCols(plan));
  HaloLayout layout;
  layout.layers = AlignUp(sizeof(HaloCache));
  layout.row_spans =
      AlignUp(layout.layers + layers * sizeof(LayerHaloGeometry));
  layout.col_spans =
      AlignUp(layout.row_spans + layers * rows * sizeof(AxisSpan));
  layout.col_starts =
      AlignUp(layout.col_spans + layers * cols * sizeof(AxisSpan));
  layout.total = AlignUp(layout.col_starts + layers * cols * sizeof(int32_t));
  return layout;
}

Region TileOf(const StagePlan& plan, int32_t row, int32_t col) {
  return Region{plan.grid_rows[row], plan.grid_rows[row + 1],
                plan.grid_cols[col], plan.grid_cols[col + 1]};
}

bool IsEmptyRegion(const Region& r) { return r.y0 >= r.y1 || r.x0 >= r.x1; }

const char* FlagKey(const StagePlan& plan) {
  return plan.cache_rows != 0 ? "cache_rows" : "cache_cols";
}

inline int32_t Max32(int32_t a, int32_t b) { return a > b ? a : b; }

// Y_i(r) for every r from tiles (r, 0), X_i(c) for every c from tiles (0, c).
void FillSpans(const StagePlan& plan, Region* regions, HaloCache* halo) {
  const int32_t rows = halo->num_tile_rows;
  const int32_t cols = halo->num_tile_cols;
  for (int32_t r = 0; r < rows; ++r) {
    ComputePatchRegions(plan, TileOf(plan, r, 0), regions);
    for (int32_t i = 0; i < halo->num_layers; ++i) {
      halo->row_spans[i * rows + r] = AxisSpan{regions[i].y0, regions[i].y1};
    }
  }
  for (int32_t c = 0; c < cols; ++c) {
    ComputePatchRegions(plan, TileOf(plan, 0, c), regions);
    for (int32_t i = 0; i < halo->num_layers; ++i) {
      halo->col_spans[i * cols + c] = AxisSpan{regions[i].x0, regions[i].x1};
    }
  }
}

// Every tile's regions are the products of the spans, and non-empty.
Status CheckSeparable(const StagePlan& plan, Region* regions,
                      const HaloCache& halo) {
  const int32_t rows = halo.num_tile_rows;
  const int32_t cols = halo.num_tile_cols;
  for (int32_t r = 0; r < rows; ++r) {
    for (int32_t c = 0; c < cols; ++c) {
      ComputePatchRegions(plan, TileOf(plan, r, c), regions);
      for (int32_t i = 0; i < halo.num_layers; ++i) {
        const Region& region = regions[i];
        if (IsEmptyRegion(region)) {
          return Error("cached plan: a layer's region is empty in a patch",
                       FlagKey(plan), i);
        }
        const AxisSpan& y = halo.row_spans[i * rows + r];
        const AxisSpan& x = halo.col_spans[i * cols + c];
        if (region.y0 != y.begin || region.y1 != y.end ||
            region.x0 != x.begin || region.x1 != x.end) {
          return Error(
              "cached plan: layer regions are not separable (rows vary "
              "with the tile column or columns with the tile row)",
              FlagKey(plan), i);
        }
      }
    }
  }
  return OkStatus();
}

bool IsMonotone(const AxisSpan* spans, int32_t count) {
  for (int32_t k = 1; k < count; ++k) {
    if (spans[k - 1].begin > spans[k].begin ||
        spans[k - 1].end > spans[k].end) {
      return false;
    }
  }
  return true;
}

// The most a span shares with the next one: max(0, end_k - begin_{k+1}).
int32_t MostShared(const AxisSpan* spans, int32_t count) {
  int32_t most = 0;
  for (int32_t k = 0; k + 1 < count; ++k) {
    most = Max32(most, spans[k].end - spans[k + 1].begin);
  }
  return most;
}

// The layer's largest |N_i(r)| (rows computed per patch).
int32_t MostNewRows(const StagePlan& plan, const AxisSpan* spans,
                    int32_t count) {
  int32_t most = 0;
  for (int32_t r = 0; r < count; ++r) {
    const int32_t begin = plan.cache_rows != 0 && r > 0
                              ? Max32(spans[r].begin, spans[r - 1].end)
                              : spans[r].begin;
    most = Max32(most, spans[r].end - begin);
  }
  return most;
}

// rows_i, cols_i, the row-cache slot starts, and the bytes each cache needs.
Status DeriveGeometry(const StagePlan& plan, HaloCache* halo) {
  const int32_t rows = halo->num_tile_rows;
  const int32_t cols = halo->num_tile_cols;
  for (int32_t i = 0; i < halo->num_layers; ++i) {
    const AxisSpan* y = &halo->row_spans[i * rows];
    const AxisSpan* x = &halo->col_spans[i * cols];
    if (!IsMonotone(y, rows) || !IsMonotone(x, cols)) {
      return Error("cached plan: layer regions do not move monotonically",
                   FlagKey(plan), i);
    }
    LayerHaloGeometry& geometry = halo->layers[i];
    geometry.rows = MostShared(y, rows);
    geometry.cols = MostShared(x, cols);
    const int64_t channels = plan.layers[i].output_shape.channels;
    int64_t width_sum = 0;
    for (int32_t c = 0; c < cols; ++c) {
      if (width_sum > INT32_MAX) {
        return Error("cached plan: cache geometry too large", FlagKey(plan),
                     i);
      }
      halo->col_starts[i * cols + c] = static_cast<int32_t>(width_sum);
      width_sum += x[c].end - x[c].begin;
    }
    const LayerPlan& layer = plan.layers[i];
    if (plan.cache_rows != 0 &&
        geometry.rows * width_sum * channels > layer.row_cache_bytes) {
      return Error("row cache smaller than needed", "row_cache_bytes", i);
    }
    if (plan.cache_cols != 0 &&
        int64_t{MostNewRows(plan, y, rows)} * geometry.cols * channels >
            layer.col_cache_bytes) {
      return Error("column cache smaller than needed", "col_cache_bytes", i);
    }
  }
  return OkStatus();
}

// A byte range of the scratch area.
struct Extent {
  int64_t begin;
  int64_t end;
  const char* key;
  int32_t layer;
};

bool Overlap(const Extent& a, const Extent& b) {
  return a.begin < a.end && b.begin < b.end && a.begin < b.end &&
         b.begin < a.end;
}

// Cache `k` of layer `i`: 0 the row cache, 1 the column cache (if enabled).
bool CacheExtent(const StagePlan& plan, int32_t i, int32_t k, Extent* out) {
  const LayerPlan& layer = plan.layers[i];
  if (k == 0 && plan.cache_rows != 0) {
    *out = Extent{layer.row_cache_offset,
                  int64_t{layer.row_cache_offset} + layer.row_cache_bytes,
                  "row_cache_offset", i};
    return true;
  }
  if (k == 1 && plan.cache_cols != 0) {
    *out = Extent{layer.col_cache_offset,
                  int64_t{layer.col_cache_offset} + layer.col_cache_bytes,
                  "col_cache_offset", i};
    return true;
  }
  return false;
}

// Caches inside the scratch area before the workspace; none overlapping
// any layer's patch buffer, nor another cache.
Status CheckPlacement(const StagePlan& plan) {
  const int32_t layers = CachedLayers(plan);
  const int64_t buffers_end =
      int64_t{plan.scratch_bytes} - plan.workspace_bytes;
  for (int32_t i = 0; i < layers; ++i) {
    for (int32_t k = 0; k < 2; ++k) {
      Extent cache;
      if (!CacheExtent(plan, i, k, &cache)) continue;
      if (cache.begin < 0 || cache.end < cache.begin ||
          cache.end > buffers_end) {
        return Error("cache lies outside scratch_bytes (before the workspace)",
                     cache.key, i);
      }
      for (int32_t j = 0; j < layers; ++j) {
        const LayerPlan& other = plan.layers[j];
        const int64_t begin = other.buffer_offset;
        const Extent buffer = {begin, begin + other.buffer_bytes, nullptr, j};
        if (Overlap(cache, buffer)) {
          return Error("cache overlaps a layer buffer", cache.key, i);
        }
      }
    }
  }
  // Every pair of caches once: (i, k) against the later (j, l).
  for (int32_t a = 0; a < 2 * layers; ++a) {
    Extent first;
    if (!CacheExtent(plan, a / 2, a % 2, &first)) continue;
    for (int32_t b = a + 1; b < 2 * layers; ++b) {
      Extent second;
      if (CacheExtent(plan, b / 2, b % 2, &second) && Overlap(first, second)) {
        return Error("caches overlap", second.key, second.layer);
      }
    }
  }
  return OkStatus();
}

// Copies `rows` rows of `row_bytes` bytes between two strided areas.
void CopyRows(uint8_t* to, size_t to_stride, const uint8_t* from,
              size_t from_stride, int32_t rows, size_t row_bytes) {
  for (int32_t y = 0; y < rows; ++y) {
    std::memcpy(to + static_cast<size_t>(y) * to_stride,
                from + static_cast<size_t>(y) * from_stride, row_bytes);
  }
}

// Where cached layer `index` keeps patch (row, col), and its new rows.
struct PatchGeometry {
  AxisSpan y;        // Y(r)
  AxisSpan x;        // X(c)
  AxisSpan new_rows;  // N(r)
  size_t channels;
  size_t row_stride;  // the patch buffer's: |X(c)| * channels
  uint8_t* buffer;
};

PatchGeometry GeometryOf(const StagePlan& plan, int32_t index, int32_t row,
                         int32_t col, uint8_t* scratch) {
  const HaloCache& halo = *plan.halo;
  const LayerPlan& layer = plan.layers[index];
  PatchGeometry g;
  g.y = halo.row_spans[index * halo.num_tile_rows + row];
  g.x = halo.col_spans[index * halo.num_tile_cols + col];
  g.new_rows = g.y;
  if (plan.cache_rows != 0 && row > 0) {
    g.new_rows.begin = Max32(
        g.y.begin, halo.row_spans[index * halo.num_tile_rows + row - 1].end);
  }
  g.channels = static_cast<size_t>(layer.output_shape.channels);
  g.row_stride = static_cast<size_t>(g.x.end - g.x.begin) * g.channels;
  g.buffer = scratch + layer.buffer_offset;
  return g;
}

// Row-cache slot `col` of cached layer `index`.
uint8_t* RowCacheSlot(const StagePlan& plan, int32_t index, int32_t col,
                      uint8_t* scratch) {
  const HaloCache& halo = *plan.halo;
  const size_t start =
      static_cast<size_t>(halo.layers[index].rows) *
      static_cast<size_t>(halo.col_starts[index * halo.num_tile_cols + col]) *
      static_cast<size_t>(plan.layers[index].output_shape.channels);
  return scratch + plan.layers[index].row_cache_offset + start;
}

}  // namespace

size_t HaloCacheMemoryBytes(const StagePlan& plan, bool* too_large) {
  *too_large = false;
  if (!HasCacheFlag(plan)) return 0;
  const uint64_t total = LayoutOf(plan).total;
  if (total > kMaxHaloCacheMemoryBytes) {
    *too_large = true;
    return 0;
  }
  return static_cast<size_t>(total);
}

HaloCache* PlaceHaloCache(const StagePlan& plan, void* memory) {
  uint8_t* base = static_cast<uint8_t*>(memory);
  const HaloLayout layout = LayoutOf(plan);
  HaloCache* halo = reinterpret_cast<HaloCache*>(base);
  halo->num_layers = CachedLayers(plan);
  halo->num_tile_rows = TileRows(plan);
  halo->num_tile_cols = TileCols(plan);
  halo->validated = false;
  halo->layers = reinterpret_cast<LayerHaloGeometry*>(base + layout.layers);
  halo->row_spans = reinterpret_cast<AxisSpan*>(base + layout.row_spans);
  halo->col_spans = reinterpret_cast<AxisSpan*>(base + layout.col_spans);
  halo->col_starts = reinterpret_cast<int32_t*>(base + layout.col_starts);
  return halo;
}

Status ValidateHaloCache(const StagePlan& plan, Region* regions) {
  if (!HasCacheFlag(plan)) return OkStatus();
  if (plan.cache_rows < 0 || plan.cache_rows > 1) {
    return Error("cache flag must be 0 or 1", "cache_rows");
  }
  if (plan.cache_cols < 0 || plan.cache_cols > 1) {
    return Error("cache flag must be 0 or 1", "cache_cols");
  }
  HaloCache* halo = plan.halo;
  if (halo == nullptr || halo->num_layers != CachedLayers(plan) ||
      halo->num_tile_rows != TileRows(plan) ||
      halo->num_tile_cols != TileCols(plan)) {
    return Error("cache tables missing", FlagKey(plan));
  }
  halo->validated = false;
  FillSpans(plan, regions, halo);
  Status status = CheckSeparable(plan, regions, *halo);
  if (!status.ok()) return status;
  status = DeriveGeometry(plan, halo);
  if (!status.ok()) return status;
  status = CheckPlacement(plan);
  if (!status.ok()) return status;
  halo->validated = true;
  return OkStatus();
}

Region CachedLayerBox(const StagePlan& plan, int32_t index, int32_t row,
                      int32_t col) {
  const HaloCache& halo = *plan.halo;
  const AxisSpan y = halo.row_spans[index * halo.num_tile_rows + row];
  const AxisSpan x = halo.col_spans[index * halo.num_tile_cols + col];
  Region box = {y.begin, y.end, x.begin, x.end};
  if (plan.cache_rows != 0 && row > 0) {
    box.y0 = Max32(y.begin,
                   halo.row_spans[index * halo.num_tile_rows + row - 1].end);
  }
  if (plan.cache_cols != 0 && col > 0) {
    box.x0 = Max32(x.begin,
                   halo.col_spans[index * halo.num_tile_cols + col - 1].end);
  }
  return box;
}

void RestoreHalo(const StagePlan& plan, int32_t index, int32_t row,
                 int32_t col, uint8_t* scratch) {
  const HaloCache& halo = *plan.halo;
  const PatchGeometry g = GeometryOf(plan, index, row, col, scratch);
  if (plan.cache_rows != 0 && row > 0) {
    // Rows [a_r, b_{r-1}) x X(c): the slot holds them densely, with the
    // buffer's own row stride.
    const int32_t shared = g.new_rows.begin - g.y.begin;
    if (shared > 0) {
      std::memcpy(g.buffer, RowCacheSlot(plan, index, col, scratch),
                  static_cast<size_t>(shared) * g.row_stride);
    }
  }
  const int32_t new_rows = g.new_rows.end - g.new_rows.begin;
  if (plan.cache_cols != 0 && col > 0 && new_rows > 0) {
    // Columns [e_c, f_{c-1}) of the new rows, the first of the buffer's.
    const int32_t shared =
        halo.col_spans[index * halo.num_tile_cols + col - 1].end - g.x.begin;
    if (shared > 0) {
      const size_t bytes = static_cast<size_t>(shared) * g.channels;
      CopyRows(g.buffer + static_cast<size_t>(g.new_rows.begin - g.y.begin) *
                              g.row_stride,
               g.row_stride, scratch + plan.layers[index].col_cache_offset,
               bytes, new_rows, bytes);
    }
  }
}

void SaveHalo(const StagePlan& plan, int32_t index, int32_t row, int32_t col,
              uint8_t* scratch) {
  const HaloCache& halo = *plan.halo;
  const PatchGeometry g = GeometryOf(plan, index, row, col, scratch);
  const int32_t new_rows = g.new_rows.end - g.new_rows.begin;
  if (plan.cache_cols != 0 && col + 1 < halo.num_tile_cols && new_rows > 0) {
    // Columns [e_{c+1}, f_c) of the new rows.
    const int32_t next_begin =
        halo.col_spans[index * halo.num_tile_cols + col + 1].begin;
    const int32_t kept = g.x.end - next_begin;
    if (kept > 0) {
      const size_t bytes = static_cast<size_t>(kept) * g.channels;
      CopyRows(scratch + plan.layers[index].col_cache_offset, bytes,
               g.buffer +
                   static_cast<size_t>(g.new_rows.begin - g.y.begin) *
                       g.row_stride +
                   static_cast<size_t>(next_begin - g.x.begin) * g.channels,
               g.row_stride, new_rows, bytes);
    }
  }
  if (plan.cache_rows != 0 && row + 1 < halo.num_tile_rows) {
    // Rows [a_{r+1}, b_r) x X(c) into slot c.
    const int32_t next_begin =
        halo.row_spans[index * halo.num_tile_rows + row + 1].begin;
    const int32_t kept = g.y.end - next_begin;
    if (kept > 0) {
      const size_t skipped = static_cast<size_t>(next_begin - g.y.begin);
      std::memcpy(RowCacheSlot(plan, index, col, scratch),
                  g.buffer + skipped * g.row_stride,
                  static_cast<size_t>(kept) * g.row_stride);
    }
  }
}

}  // namespace tflm_patch

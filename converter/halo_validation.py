"""Prepare's checks of a cached plan (format version 2), in Python.

Mirrors ValidateHaloCache in micro_ops/halo_cache.cc: the same steps (spans from
the patches of the first tile column and row, separability, monotone spans and
cache sizes, placement in the scratch area) with the same messages.
"""
from __future__ import annotations

from .options import StagePlan, fail
from .regions import is_empty, patch_regions


def tiles(plan: StagePlan):
    """(row, col, tile) of every patch, row-major."""
    for r in range(len(plan.grid_rows) - 1):
        for c in range(len(plan.grid_cols) - 1):
            yield r, c, (plan.grid_rows[r], plan.grid_rows[r + 1], plan.grid_cols[c], plan.grid_cols[c + 1])


def _flag_key(plan: StagePlan) -> str:
    return "cache_rows" if plan.cache_rows else "cache_cols"


def _spans(plan: StagePlan) -> tuple:
    """FillSpans: Y_i(r) from tiles (r, 0), X_i(c) from tiles (0, c)."""
    gr, gc = plan.grid_rows, plan.grid_cols
    rows = [patch_regions(plan.layers, (gr[r], gr[r + 1], gc[0], gc[1]))[0] for r in range(len(gr) - 1)]
    cols = [patch_regions(plan.layers, (gr[0], gr[1], gc[c], gc[c + 1]))[0] for c in range(len(gc) - 1)]
    n = len(plan.layers) - 1
    return ([[(reg[i][0], reg[i][1]) for reg in rows] for i in range(n)],
            [[(reg[i][2], reg[i][3]) for reg in cols] for i in range(n)])


def _check_separable(plan: StagePlan, y: list, x: list) -> None:
    for r, c, tile in tiles(plan):
        regions, _ = patch_regions(plan.layers, tile)
        for i in range(len(plan.layers) - 1):
            if is_empty(regions[i]):
                fail("cached plan: a layer's region is empty in a patch", _flag_key(plan), i)
            if tuple(regions[i]) != y[i][r] + x[i][c]:
                fail("cached plan: layer regions are not separable (rows vary with the tile column or columns "
                     "with the tile row)", _flag_key(plan), i)


def _monotone(spans: list) -> bool:
    return all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(spans, spans[1:]))


def _most_shared(spans: list) -> int:
    return max([0] + [a[1] - b[0] for a, b in zip(spans, spans[1:])])


def _most_new_rows(plan: StagePlan, spans: list) -> int:
    most = 0
    for r, (begin, end) in enumerate(spans):
        if plan.cache_rows and r > 0:
            begin = max(begin, spans[r - 1][1])
        most = max(most, end - begin)
    return most


def _derive_geometry(plan: StagePlan, y: list, x: list) -> None:
    for i, layer in enumerate(plan.layers[:-1]):
        if not _monotone(y[i]) or not _monotone(x[i]):
            fail("cached plan: layer regions do not move monotonically", _flag_key(plan), i)
        channels = layer.out_shape[2]
        width_sum = sum(b - a for a, b in x[i])
        if plan.cache_rows and _most_shared(y[i]) * width_sum * channels > layer.row_cache_bytes:
            fail("row cache smaller than needed", "row_cache_bytes", i)
        if plan.cache_cols and _most_new_rows(plan, y[i]) * _most_shared(x[i]) * channels > layer.col_cache_bytes:
            fail("column cache smaller than needed", "col_cache_bytes", i)


def _cache_extents(plan: StagePlan) -> list:
    """(begin, end, key, layer) of every cache, in (layer, row-then-column) order."""
    out = []
    for i, layer in enumerate(plan.layers[:-1]):
        if plan.cache_rows:
            out.append((layer.row_cache_offset, layer.row_cache_offset + layer.row_cache_bytes,
                        "row_cache_offset", i))
        if plan.cache_cols:
            out.append((layer.col_cache_offset, layer.col_cache_offset + layer.col_cache_bytes,
                        "col_cache_offset", i))
    return out


def _overlap(a: tuple, b: tuple) -> bool:
    return a[0] < a[1] and b[0] < b[1] and a[0] < b[1] and b[0] < a[1]


def _check_placement(plan: StagePlan) -> None:
    buffers_end = plan.scratch_bytes - plan.workspace_bytes
    caches = _cache_extents(plan)
    for begin, end, key, i in caches:
        if begin < 0 or end < begin or end > buffers_end:
            fail("cache lies outside scratch_bytes (before the workspace)", key, i)
        for other in plan.layers[:-1]:
            if _overlap((begin, end), (other.buffer_offset, other.buffer_offset + other.buffer_bytes)):
                fail("cache overlaps a layer buffer", key, i)
    for a in range(len(caches)):
        for b in range(a + 1, len(caches)):
            if _overlap(caches[a], caches[b]):
                fail("caches overlap", caches[b][2], caches[b][3])


def validate_halo_cache(plan: StagePlan) -> None:
    """ValidateHaloCache: nothing to check without a cache flag."""
    if not (plan.cache_rows or plan.cache_cols):
        return
    for key in ("cache_rows", "cache_cols"):
        if getattr(plan, key) not in (0, 1):
            fail("cache flag must be 0 or 1", key)
    y, x = _spans(plan)
    _check_separable(plan, y, x)
    _derive_geometry(plan, y, x)
    _check_placement(plan)

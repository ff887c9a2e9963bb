"""Cached halos (options format version 2): per-axis regions, new rows/columns, cache sizes.

A cached plan needs every layer's patch regions to be separable and monotone
(docs/patch_stage_format.md, "Cached halos"): region(r, c) = Y(r) x X(c), none
empty, Y and X non-decreasing at both ends. Then a layer computes only its
new rows N(r) x new columns M(c); the rest of its patch buffer comes from a row
cache (rows shared with the tile row above, one slot per tile column) and a
column cache (columns shared with the tile to the left). The C++ kernel
(micro_ops/halo_cache.cc) implements the same rules.
"""
from __future__ import annotations

from .layers import CONCAT, PAD, POINTWISE, RESIZE_NEAREST, STAGE_INPUT
from .regions import resize_input_span


def _input_interval(layer, axis: int, out: tuple, in_size: int):
    """What `layer` reads along one axis (0 rows, 1 columns) for output span `out`; None when empty."""
    if out is None:
        return None
    o0, o1 = out
    if layer.op in POINTWISE or layer.op == CONCAT:
        return out
    if layer.op == RESIZE_NEAREST:
        return resize_input_span(layer, axis, o0, o1, in_size)
    before = layer.padding[0 + axis]
    if layer.op == PAD:
        i0, i1 = max(0, o0 - before), min(in_size, o1 - before)
    else:
        k, s, d = layer.kernel[axis], layer.stride[axis], layer.dilation[axis]
        i0, i1 = max(0, o0 * s - before), min(in_size, (o1 - 1) * s - before + (k - 1) * d + 1)
    return (i0, i1) if i0 < i1 else None


def axis_spans(layers: list, axis: int, tile: tuple) -> list:
    """Every layer's output span along one axis for one tile span of the stage output (None = empty)."""
    spans = [None] * len(layers)
    spans[-1] = tile
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        for src, in_shape in zip(layer.inputs, layer.in_shapes):
            if src == STAGE_INPUT:
                continue
            need = _input_interval(layer, axis, spans[i], in_shape[axis])
            if need is None:
                continue
            cur = spans[src]
            spans[src] = need if cur is None else (min(cur[0], need[0]), max(cur[1], need[1]))
    return spans


def axis_table(layers: list, axis: int, cuts: list) -> list:
    """table[t][i]: layer i's span for tile t along the axis."""
    return [axis_spans(layers, axis, (cuts[t], cuts[t + 1])) for t in range(len(cuts) - 1)]


def is_separable(table: list) -> bool:
    """No empty span (so regions are boxes Y x X) and both ends non-decreasing, for every layer but the last."""
    for t, spans in enumerate(table):
        for i, s in enumerate(spans[:-1]):
            if s is None:
                return False
            if t > 0:
                p = table[t - 1][i]
                if s[0] < p[0] or s[1] < p[1]:
                    return False
    return True


def new_spans(table: list, layer: int, cached: bool) -> list:
    """N(t) for every tile t: the part of the span not shared with tile t-1 (all of it without caching)."""
    out = []
    for t, spans in enumerate(table):
        a, b = spans[layer]
        if cached and t > 0:
            a = max(a, table[t - 1][layer][1])
        out.append((a, max(a, b)))
    return out


def kept(table: list, layer: int, t: int) -> int:
    """Rows (columns) of tile t kept for tile t+1: max(0, b_t - a_{t+1})."""
    if t + 1 >= len(table):
        return 0
    return max(0, table[t][layer][1] - table[t + 1][layer][0])


class Axis:
    """One axis of a grid: every layer's span per tile, and what caching along it leaves to compute."""

    def __init__(self, table: list, cached: bool):
        self.table, self.cached = table, bool(cached)
        n = len(table[0])
        self.new = [new_spans(table, i, self.cached) for i in range(n)]
        self.kept = [max(kept(table, i, t) for t in range(len(table))) for i in range(n)]
        self.sizes = [[t[i][1] - t[i][0] for t in table] for i in range(n)]
        self.new_total = [sum(b - a for a, b in spans) for spans in self.new]
        self.new_most = [max(b - a for a, b in spans) for spans in self.new]
        self.largest = [max(sizes) for sizes in self.sizes]


class CacheGeometry:
    """Per-axis spans of every layer (rows[r][i] = Y_i(r), cols[c][i] = X_i(c)) and the caching mode."""

    def __init__(self, rows, cols, cache_rows: bool = False, cache_cols: bool = False):
        self.row_axis = rows if isinstance(rows, Axis) else Axis(rows, cache_rows)
        self.col_axis = cols if isinstance(cols, Axis) else Axis(cols, cache_cols)
        self.rows, self.cols = self.row_axis.table, self.col_axis.table
        self.cache_rows, self.cache_cols = self.row_axis.cached, self.col_axis.cached

    def new_rows(self, i: int) -> list:
        return self.row_axis.new[i]

    def new_cols(self, i: int) -> list:
        return self.col_axis.new[i]

    def largest_pixels(self, i: int) -> int:
        return self.row_axis.largest[i] * self.col_axis.largest[i]

    def row_cache_bytes(self, i: int, channels: int) -> int:
        return self.row_axis.kept[i] * sum(self.col_axis.sizes[i]) * channels if self.cache_rows else 0

    def col_cache_bytes(self, i: int, channels: int) -> int:
        return self.row_axis.new_most[i] * self.col_axis.kept[i] * channels if self.cache_cols else 0

    def row_slot_offset(self, i: int, c: int, channels: int) -> int:
        return self.row_axis.kept[i] * sum(self.col_axis.sizes[i][:c]) * channels

    def computed_pixels(self, i: int) -> int:
        return self.row_axis.new_total[i] * self.col_axis.new_total[i]


def geometry(layers: list, grid_rows: list, grid_cols: list, cache_rows: bool, cache_cols: bool):
    """The cache geometry of a plan, or None when its regions are not separable and monotone."""
    rows, cols = axis_table(layers, 0, grid_rows), axis_table(layers, 1, grid_cols)
    if not (is_separable(rows) and is_separable(cols)):
        return None
    return CacheGeometry(rows, cols, cache_rows, cache_cols)

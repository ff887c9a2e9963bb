"""Every schedule of a stage, sized at once: the front of scratch against MACs.

A schedule is a grid (row cuts and column cuts, chosen independently) and a
caching mode. Where a stage's regions are separable (halo_cache.py), every
size the planner needs is a product of per-axis figures: a layer's largest
region is (largest rows) x (largest columns), its MACs (new rows) x (new
columns), its caches (kept rows) x (summed columns) and (new rows) x (kept
columns). So each axis is measured once per cut list and every pair of cut
lists, in every caching mode, is sized together with numpy, with the same
figures as stage_cost.option (which sizes one schedule, and still sizes the
rare grids whose regions are not separable). Only the schedules no other beats
on both scratch and MACs are written out as Options: the planner's shortlist
under any MAC limit is that front cut at the limit.
"""
from __future__ import annotations

import numpy as np

from . import halo_cache, stage_cost
from .regions import even_boundaries
from .stage import Stage
from .stage_cost import BUFFER_ALIGNMENT

# Grids tried per axis: every count up to 8, then coarser steps; a count never exceeds the axis size.
GRID_COUNTS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32)
CACHE_MODES = ((False, False), (True, False), (True, True))
# With CMSIS-NN kernels every call has a fixed cost, measured on the Cortex-M4 (QEMU, bench_cortexm.py):
# about 2,000-2,400 instructions, as many as ~700 MACs take there. The kernel makes one call per layer
# and tile where the tile's input and output are dense, else one per output row (the first layer when
# its window of the stage input is narrower than the image; a layer whose columns are cached).
CALL_MACS = 700


def counts(size: int) -> list:
    return [n for n in GRID_COUNTS if n <= size] + ([size] if size > GRID_COUNTS[-1] else [])


def axis_cuts(size: int, parts: list) -> list:
    """The cut lists tried along an axis of `size`: even cuts into each count of parts."""
    return [even_boundaries(size, n) for n in parts]


class _Spans:
    """halo_cache.axis_table for one cut list along one axis, and its per-layer figures (numpy, int64,
    one column per layer). A layer's spans depend only on the ops after it up to the stage's end (all
    its consumers are inside the stage), so stages that end at the same op share one table, computed
    for the longest of them: a shorter stage's table is its last columns."""

    def __init__(self, layers: list, axis: int, cuts: list):
        self.table = halo_cache.axis_table(layers, axis, cuts)
        a = np.array([[s[0] if s else 0 for s in spans] for spans in self.table], dtype=np.int64)  # tiles x layers
        b = np.array([[s[1] if s else 0 for s in spans] for spans in self.table], dtype=np.int64)
        # Layers whose spans break separability (halo_cache.is_separable): an empty span, or an end going back.
        self.bad = np.array([any(spans[i] is None for spans in self.table) for i in range(a.shape[1])])
        if len(a) > 1:
            self.bad |= ((a[1:] < a[:-1]) | (b[1:] < b[:-1])).any(axis=0)
        sizes = b - a
        self.largest = sizes.max(axis=0)
        self.total = sizes.sum(axis=0)
        self.kept = np.maximum(b[:-1] - a[1:], 0).max(axis=0) if len(a) > 1 else np.zeros(a.shape[1], np.int64)
        new_a = a.copy()
        if len(a) > 1:
            new_a[1:] = np.maximum(a[1:], b[:-1])
        new = np.maximum(b - new_a, 0)
        self.new_total_cached, self.new_most_cached = new.sum(axis=0), new.max(axis=0)


def _spans(stage: Stage, axis: int, cuts: list, tables: dict | None) -> tuple:
    """(the shared _Spans, how many of its first columns are not the stage's); tables: a dict shared
    by the stages of one graph."""
    if tables is None:
        return _Spans(stage.layers, axis, cuts), 0
    key = (stage.end, axis, tuple(cuts))
    if key not in tables or tables[key][0] > stage.start:
        tables[key] = (stage.start, _Spans(stage.layers, axis, cuts))
    first, spans = tables[key]
    # the longer stage's extra leading layers (not stage.start - first: a lowered op group is 1 or 2 layers)
    return spans, len(spans.largest) - len(stage.layers)


class _AxisFigures:
    """One cut list along one axis of a stage: whether its regions are separable, per-layer figures."""

    def __init__(self, stage: Stage, axis: int, cuts: list, tables: dict | None):
        self.cuts = list(cuts)
        spans, skip = _spans(stage, axis, cuts, tables)
        self._spans, self._skip, self._axes = spans, skip, {}
        self.separable = not spans.bad[skip:-1].any()
        self.largest, self.total, self.kept = spans.largest[skip:], spans.total[skip:], spans.kept[skip:]
        # index 0: not cached (every tile computes its whole span), 1: cached
        self.new_total = (self.total, spans.new_total_cached[skip:])
        self.new_most = (self.largest, spans.new_most_cached[skip:])

    def axis(self, cached: bool) -> halo_cache.Axis:
        if cached not in self._axes:
            table = self._spans.table
            if self._skip:
                table = [spans[self._skip:] for spans in table]
            self._axes[cached] = halo_cache.Axis(table, cached)
        return self._axes[cached]


def _front(scratch: np.ndarray, macs: np.ndarray) -> np.ndarray:
    """Indices of the entries least in scratch, each cheaper in MACs than the last (ties: first entry)."""
    order = np.lexsort((np.arange(len(scratch)), macs, scratch))
    m = macs[order]
    best_before = np.minimum.accumulate(np.concatenate(([np.iinfo(np.int64).max], m[:-1])))
    return order[m < best_before]


def _calls(layers: list, r_new: list, r_parts, c_parts) -> np.ndarray:
    """CMSIS-NN calls per schedule, [row cut list, column cut list, caching mode] (see CALL_MACS)."""
    from .cmsis_nn import WINDOW_OPS
    from .layers import ADD, STAGE_INPUT
    nr, nc = r_parts[:, None], c_parts[None, :]
    out = np.zeros((len(r_parts), len(c_parts), len(CACHE_MODES)), dtype=np.int64)
    for m, (cache_rows, cache_cols) in enumerate(CACHE_MODES):
        for i, layer in enumerate(layers):
            if layer.op not in WINDOW_OPS and layer.op != ADD:
                continue
            rows = r_new[int(cache_rows)][:, :, i]  # output rows computed, all row tiles together
            if STAGE_INPUT in layer.inputs and layer.op != ADD:
                calls = np.where(nc > 1, rows * nc, nr)
            elif cache_cols:
                calls = np.where(nc > 1, nr + rows * (nc - 1), nr * nc)
            else:
                calls = nr * nc
            out[:, :, m] += calls
    return out


def front(graph, stage: Stage, patches: tuple | None = None, tables: dict | None = None,
          call_macs: int = 0) -> list:
    """The schedules of a stage (Options) that no other beats on both scratch and MACs, least scratch first.

    patches: one grid (rows, columns) only; otherwise every count of GRID_COUNTS per axis (not 1x1).
    tables: a dict shared by calls on the stages of one graph (see _spans). call_macs: what a kernel
    call costs in MACs (CMSIS-NN); the front is then of scratch against MACs plus calls (Option.work)."""
    layers = stage.layers
    h, w = layers[-1].out_shape[:2]
    input_shape = tuple(graph.tensors[stage.input_tensor].shape[1:])
    if patches is not None:
        if patches[0] > h or patches[1] > w:
            return []
        row_parts, col_parts = [patches[0]], [patches[1]]
    else:
        row_parts, col_parts = counts(h), counts(w)
    rows = [_AxisFigures(stage, 0, cuts, tables) for cuts in axis_cuts(h, row_parts)]
    cols = [_AxisFigures(stage, 1, cuts, tables) for cuts in axis_cuts(w, col_parts)]
    n = len(layers)
    channels = np.array([l.out_shape[2] for l in layers], dtype=np.int64)
    per_pixel = np.array([l.macs_per_output_pixel() for l in layers], dtype=np.int64)
    last_use = list(range(n))
    for i, layer in enumerate(layers):
        for s in layer.inputs:
            if s >= 0:
                last_use[s] = max(last_use[s], i)
    alive = np.zeros((n - 1, n), dtype=np.int64)  # alive[b, step]: layer b's buffer is alive at that step
    for i in range(n - 1):
        alive[i, i:last_use[i] + 1] = 1
    macs_original = stage_cost.full_macs(layers)

    def align(x):
        return (x + BUFFER_ALIGNMENT - 1) // BUFFER_ALIGNMENT * BUFFER_ALIGNMENT

    # Candidates indexed [row cut list, column cut list, caching mode (CACHE_MODES)], in that order.
    nr, nc, modes = len(rows), len(cols), len(CACHE_MODES)
    scratch = np.zeros((nr, nc, modes), dtype=np.int64)
    macs = np.zeros((nr, nc, modes), dtype=np.int64)
    valid = np.zeros((nr, nc, modes), dtype=bool)
    work = macs.copy() if call_macs else macs  # what the front weighs against scratch: MACs, plus the calls' cost when counted
    sized = {}
    r_sep = np.array([a.separable for a in rows])
    c_sep = np.array([a.separable for a in cols])
    r_parts = np.array([len(a.cuts) - 1 for a in rows])
    c_parts = np.array([len(a.cuts) - 1 for a in cols])
    single = (r_parts[:, None] * c_parts[None, :] == 1) & (patches is None)
    both = r_sep[:, None] & c_sep[None, :] & ~single
    if both.any():
        def stack(axes, name, k=None):
            zero = np.zeros(n, dtype=np.int64)
            return np.array([(getattr(a, name)[k] if k is not None else getattr(a, name)) if a.separable else zero
                             for a in axes])
        r_largest, c_largest = stack(rows, "largest")[:, None, :], stack(cols, "largest")[None, :, :]
        r_kept, c_kept = stack(rows, "kept")[:, None, :-1], stack(cols, "kept")[None, :, :-1]
        c_total = stack(cols, "total")[None, :, :-1]
        r_new = [stack(rows, "new_total", k)[:, None, :] for k in (0, 1)]
        c_new = [stack(cols, "new_total", k)[None, :, :] for k in (0, 1)]
        r_most = stack(rows, "new_most", 1)[:, None, :-1]
        ch = channels[:-1]
        bufs = align(np.maximum(r_largest[..., :-1] * c_largest[..., :-1] * ch, 1))
        peak = (bufs @ alive).max(axis=-1) if n > 1 else np.zeros((nr, nc), dtype=np.int64)
        row_cache = align(r_kept * c_total * ch).sum(axis=-1)
        col_cache = align(r_most * c_kept * ch).sum(axis=-1)  # with rows cached (the only mode that has it)
        for m, (cache_rows, cache_cols) in enumerate(CACHE_MODES):
            scratch[:, :, m] = peak + (row_cache if cache_rows else 0) + (col_cache if cache_cols else 0)
            macs[:, :, m] = (r_new[int(cache_rows)] * c_new[int(cache_cols)] * per_pixel).sum(axis=-1)
            ok = both.copy()
            if cache_rows:
                ok &= r_parts[:, None] > 1
            if cache_cols:
                ok &= c_parts[None, :] > 1
            valid[:, :, m] = ok
        if call_macs:
            work = macs + call_macs * _calls(layers, r_new, r_parts, c_parts)
    for ri, ci in zip(*np.nonzero(~(r_sep[:, None] & c_sep[None, :]) & ~single)):  # sized one by one
        opt = stage_cost.option(stage, input_shape, rows[ri].cuts, cols[ci].cuts)
        if opt is not None:
            scratch[ri, ci, 0], macs[ri, ci, 0], valid[ri, ci, 0] = opt.scratch_bytes, opt.macs_patched, True
            sized[(ri, ci)] = opt
            if call_macs:  # one call per layer and tile (no caching)
                work[ri, ci, 0] = opt.macs_patched + call_macs * int(r_parts[ri] * c_parts[ci]) * len(layers)
                opt.work = int(work[ri, ci, 0])
    flat = np.flatnonzero(valid)
    if not len(flat):
        return []
    out = []
    for k in flat[_front(scratch.ravel()[flat], work.ravel()[flat])]:
        ri, ci, m = np.unravel_index(k, valid.shape)
        if (ri, ci) in sized:
            out.append(sized[(ri, ci)])
            continue
        ra, ca = rows[ri], cols[ci]
        cache_rows, cache_cols = CACHE_MODES[m]

        def geo(ra=ra, ca=ca, cache_rows=cache_rows, cache_cols=cache_cols):  # made when written out
            return halo_cache.CacheGeometry(ra.axis(cache_rows), ca.axis(cache_cols))
        out.append(stage_cost.Option(stage, input_shape, list(ra.cuts), list(ca.cuts), cache_rows, cache_cols, geo,
                                     int(scratch[ri, ci, m]), macs_original, int(macs[ri, ci, m]),
                                     int(work[ri, ci, m]) if call_macs else None))
    return out

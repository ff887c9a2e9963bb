"""One stage under one schedule: its scratch layout and its MACs.

Given a stage's layers, a grid and a caching mode, lay out the per-patch layer
buffers (packed by their lifetimes inside a patch, with TFLM's greedy rule),
the halo caches (alive for the whole stage) and the CMSIS-NN workspace, and
count the MACs the kernel will spend. The planner calls this for every
candidate; analysis calls `plan_macs` on a written plan.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from . import arena, cmsis_nn, halo_cache
from .options import StagePlan
from .regions import area, grid_tiles, patch_regions
from .stage import Stage

BUFFER_ALIGNMENT = 4


@dataclass
class StagePatch:
    """A stage and the schedule chosen for it."""
    stage: Stage
    stage_plan: StagePlan
    macs_original: int         # MACs of the stage computed once
    macs_patched: int          # MACs the kernel spends (halos recomputed where not cached)

    @property
    def grid(self) -> tuple:
        return len(self.stage_plan.grid_rows) - 1, len(self.stage_plan.grid_cols) - 1

    @property
    def caching(self) -> str:
        p = self.stage_plan
        return "rows+cols" if p.cache_rows and p.cache_cols else "rows" if p.cache_rows else \
            "cols" if p.cache_cols else "none"


def full_macs(layers: list) -> int:
    return sum(l.out_shape[0] * l.out_shape[1] * l.macs_per_output_pixel() for l in layers)


def _largest_regions(layers: list, rows: list, cols: list, geo) -> tuple:
    """(bytes of every layer's largest region, MACs without caching)."""
    if geo is not None:  # separable: region(r, c) = Y(r) x X(c)
        return [geo.largest_pixels(i) * layer.out_shape[2] for i, layer in enumerate(layers)], None
    largest = [0] * len(layers)
    macs = 0
    for tile in grid_tiles(rows, cols):
        regions, _ = patch_regions(layers, tile)
        macs += sum(area(r) * l.macs_per_output_pixel() for l, r in zip(layers, regions))
        for i, r in enumerate(regions):
            largest[i] = max(largest[i], area(r) * layers[i].out_shape[2])
    return largest, macs


def plan_macs(plan: StagePlan) -> int:
    """MACs a written plan makes the kernel spend."""
    geo = halo_cache.geometry(plan.layers, plan.grid_rows, plan.grid_cols, plan.cache_rows, plan.cache_cols)
    if geo is None:
        return _largest_regions(plan.layers, plan.grid_rows, plan.grid_cols, None)[1]
    return sum(geo.computed_pixels(i) * l.macs_per_output_pixel() for i, l in enumerate(plan.layers))


@dataclass
class Option:
    """A schedule of a stage, sized but not yet written out (cheap to make, for the search)."""
    stage: Stage
    input_shape: tuple
    rows: list
    cols: list
    cache_rows: bool
    cache_cols: bool
    geo: object                # halo_cache.CacheGeometry, a function making it (deferred), or None when not separable
    scratch_bytes: int         # the most bytes alive at once in the scratch area (without CMSIS-NN workspace)
    macs_original: int
    macs_patched: int
    work: int | None = None    # MACs plus the kernel calls' cost in MACs (schedules.CALL_MACS), if counted

    @property
    def cost(self) -> int:
        """What the search spends: the work where the calls are counted, else the MACs."""
        return self.macs_patched if self.work is None else self.work


def option(stage: Stage, input_shape: tuple, rows: list, cols: list, cache_rows: bool = False,
           cache_cols: bool = False, geo=None) -> Option | None:
    """Size a schedule; None when caching is asked for but regions are not separable.

    geo: the plan's geometry if the caller already has it (the search shares per-axis tables)."""
    layers = stage.layers
    if geo is None:
        geo = halo_cache.geometry(layers, rows, cols, cache_rows, cache_cols)
    if geo is None and (cache_rows or cache_cols):
        return None
    largest, macs = _largest_regions(layers, rows, cols, geo)
    if geo is not None:
        macs = sum(geo.computed_pixels(i) * l.macs_per_output_pixel() for i, l in enumerate(layers))
    buffers, caches = _scratch_buffers(layers, largest, geo)
    # The most bytes alive at once: what the greedy packing (materialize) needs at least, and usually exactly.
    steps = range(len(layers))
    scratch = sum(c[2].size for c in caches) + max(
        (sum(b.size for b in buffers if b.first <= i <= b.last) for i in steps), default=0)
    return Option(stage, tuple(input_shape), list(rows), list(cols), bool(cache_rows), bool(cache_cols), geo,
                  scratch, full_macs(layers), macs)


def _scratch_buffers(layers: list, largest: list, geo) -> tuple:
    """Per-patch buffers (every layer but the last, which writes the output tensor), packed by their
    lifetimes in a patch, and the caches, alive for the whole patch loop so that nothing is placed over them."""
    n = len(layers)
    last_use = list(range(n))
    for i, layer in enumerate(layers):
        for s in layer.inputs:
            if s >= 0:
                last_use[s] = max(last_use[s], i)
    buffers = [arena.PlannedBuffer(f"layer{i}", arena.align_up(max(largest[i], 1), BUFFER_ALIGNMENT), i, last_use[i])
               for i in range(n - 1)]
    caches = []
    for i in range(n - 1):
        channels = layers[i].out_shape[2]
        for kind, nbytes in (("row", geo.row_cache_bytes(i, channels) if geo else 0),
                             ("col", geo.col_cache_bytes(i, channels) if geo else 0)):
            if nbytes > 0:
                caches.append((i, kind, arena.PlannedBuffer(f"{kind}{i}", arena.align_up(nbytes, BUFFER_ALIGNMENT),
                                                            0, n)))
    return buffers, caches


def materialize(opt: Option, kernels: str = cmsis_nn.REFERENCE) -> StagePatch:
    """The option written out: layer buffer and cache offsets, CMSIS-NN workspace."""
    layers = copy.deepcopy(opt.stage.layers)
    if callable(opt.geo):
        opt.geo = opt.geo()
    largest, _ = _largest_regions(layers, opt.rows, opt.cols, opt.geo)
    buffers, caches = _scratch_buffers(layers, largest, opt.geo)
    scratch_bytes = arena.greedy_plan(buffers + [c[2] for c in caches]) if buffers else 0
    for layer, buf in zip(layers, buffers):
        layer.buffer_offset, layer.buffer_bytes = buf.offset, buf.size
    for i, kind, buf in caches:
        setattr(layers[i], f"{kind}_cache_offset", buf.offset)
        setattr(layers[i], f"{kind}_cache_bytes", buf.size)
    cached = opt.geo if (opt.cache_rows or opt.cache_cols) else None
    workspace = cmsis_nn.workspace_bytes(layers, opt.rows, opt.cols, opt.input_shape, cached) \
        if kernels == cmsis_nn.CMSIS_NN else 0
    if workspace:
        scratch_bytes = arena.align_up(scratch_bytes, cmsis_nn.WORKSPACE_ALIGNMENT) + workspace
    plan = StagePlan(layers, list(opt.rows), list(opt.cols), opt.input_shape, scratch_bytes, workspace,
                     cache_rows=opt.cache_rows, cache_cols=opt.cache_cols)
    return StagePatch(opt.stage, plan, opt.macs_original, opt.macs_patched)

"""Choose the split and the patch grid; size the per-patch buffers.

For every candidate stage and grid the planner computes, with the same region
rules as the kernel, the largest region of every layer over all patches, packs
those per-patch buffers into one scratch area (TFLM's greedy planner, over the
layers' lifetimes inside a patch), and predicts the whole patched model's arena
with arena.py. It keeps the plan with the lowest predicted arena whose MAC
overhead is within the limit, or, given an SRAM budget, the cheapest plan that
fits it. Planning for TFLM's CMSIS-NN kernels (kernels="cmsis_nn") reserves
the kernel's CMSIS-NN workspace (cmsis_nn.py) at the end of the scratch area.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

from . import arena, cmsis_nn
from .errors import NoGainError, PlanError
from .graph import Graph, Op
from .options import CUSTOM_CODE, StagePlan
from .regions import area, even_boundaries, grid_tiles, patch_regions
from .schema import BuiltinOperator
from .stage import Stage, select_stage

BUFFER_ALIGNMENT = 4
MAX_GRID = 8


@dataclass
class Plan:
    stage: Stage
    stage_plan: StagePlan      # what goes into the options (layers carry buffer offsets)
    macs_original: int         # MACs of the stage computed once
    macs_patched: int          # MACs with halo recomputation
    arena_before: int          # predicted non-persistent arena, original model
    arena_after: int           # predicted non-persistent arena, patched model

    @property
    def grid(self) -> tuple:
        return len(self.stage_plan.grid_rows) - 1, len(self.stage_plan.grid_cols) - 1

    @property
    def mac_overhead(self) -> float:
        return self.macs_patched / self.macs_original if self.macs_original else 1.0


def stage_macs(layers: list, regions_per_layer: list) -> int:
    return sum(area(r) * layer.macs_per_output_pixel() for layer, r in zip(layers, regions_per_layer))


def patched_graph(graph: Graph, stage: Stage, scratch_bytes: int) -> tuple:
    """The graph as the rewrite will leave it (tensors renumbered in their order), and its scratch requests."""
    kept = [t for t in graph.tensors if t.index not in stage.removed_tensors]
    new_index = {t.index: i for i, t in enumerate(kept)}
    tensors = [dataclasses.replace(t, index=i) for i, t in enumerate(kept)]

    def remap(ts):
        return [new_index[t] if t >= 0 else t for t in ts]

    custom = Op(0, BuiltinOperator.CUSTOM, CUSTOM_CODE, remap([stage.input_tensor] + stage.constants),
                remap([stage.output_tensor]), None)
    ops = [custom] + [dataclasses.replace(op, index=i + 1, inputs=remap(op.inputs), outputs=remap(op.outputs))
                      for i, op in enumerate(graph.ops[stage.split:])]
    g = Graph(tensors, ops, remap(graph.inputs), remap(graph.outputs))
    scratch = {0: [scratch_bytes]} if scratch_bytes > 0 else {}
    return g, scratch


def evaluate(graph: Graph, stage: Stage, rows: list, cols: list, arena_before: int,
             kernels: str = cmsis_nn.REFERENCE) -> Plan:
    layers = copy.deepcopy(stage.layers)
    largest = [0] * len(layers)
    macs_patched = 0
    for tile in grid_tiles(rows, cols):
        regions, _ = patch_regions(layers, tile)
        macs_patched += stage_macs(layers, regions)
        for i, r in enumerate(regions):
            largest[i] = max(largest[i], area(r) * layers[i].out_shape[2])
    full = [(0, l.out_shape[0], 0, l.out_shape[1]) for l in layers]
    macs_original = stage_macs(layers, full)
    # Per-patch buffers: every layer but the last (which writes the output tensor).
    last_use = list(range(len(layers)))
    for i, layer in enumerate(layers):
        for s in layer.inputs:
            if s >= 0:
                last_use[s] = max(last_use[s], i)
    buffers = [arena.PlannedBuffer(f"layer{i}", arena.align_up(max(largest[i], 1), BUFFER_ALIGNMENT), i, last_use[i])
               for i in range(len(layers) - 1)]
    scratch_bytes = arena.greedy_plan(buffers) if buffers else 0
    for layer, buf in zip(layers, buffers):
        layer.buffer_offset, layer.buffer_bytes = buf.offset, buf.size
    input_shape = tuple(graph.tensors[stage.input_tensor].shape[1:])
    workspace = cmsis_nn.workspace_bytes(layers, rows, cols, input_shape) if kernels == cmsis_nn.CMSIS_NN else 0
    if workspace:
        scratch_bytes = arena.align_up(scratch_bytes, cmsis_nn.WORKSPACE_ALIGNMENT) + workspace
    g, scratch = patched_graph(graph, stage, scratch_bytes)
    arena_after = arena.plan_arena(g, scratch).head_bytes
    stage_plan = StagePlan(layers, list(rows), list(cols), input_shape, scratch_bytes, workspace)
    return Plan(stage, stage_plan, macs_original, macs_patched, arena_before, arena_after)


def _grids(height: int, width: int, patches: tuple | None):
    if patches is not None:
        r, c = patches
        if r > height or c > width:
            raise PlanError(f"--patches {r}x{c} is impossible: the stage output is only {height}x{width}")
        yield r, c
        return
    for r in range(1, min(MAX_GRID, height) + 1):
        for c in range(1, min(MAX_GRID, width) + 1):
            if abs(r - c) <= 1 and r * c > 1:
                yield r, c


def enumerate_plans(graph: Graph, patches: tuple | None = None, split: int | None = None,
                    prune: bool = True, kernels: str = cmsis_nn.REFERENCE) -> tuple:
    """(arena of the original model, every plan evaluated). With prune, splits
    that cannot beat the original whatever the grid are skipped."""
    arena_before = arena.plan_arena(graph).head_bytes
    stages = select_stage(graph, split)
    explicit = patches is not None or split is not None
    plans = []
    for stage in stages:
        tail_only, scratch = patched_graph(graph, stage, 0)
        floor = arena.plan_arena(tail_only, scratch).head_bytes
        if prune and not explicit and floor >= arena_before:
            continue
        h, w = stage.layers[-1].out_shape[:2]
        for r, c in _grids(h, w, patches):
            plans.append(evaluate(graph, stage, even_boundaries(h, r), even_boundaries(w, c), arena_before,
                                  kernels))
    return arena_before, plans


def pareto_front(plans: list) -> list:
    """Plans no other plan beats on both predicted arena and MACs, by increasing arena."""
    front = []
    for p in sorted(plans, key=lambda p: (p.arena_after, p.macs_patched, p.stage.split)):
        if not front or p.macs_patched < front[-1].macs_patched:
            front.append(p)
    return front


def make_plan(graph: Graph, patches: tuple | None = None, split: int | None = None,
              sram_budget: int | None = None, max_mac_overhead: float | None = None,
              require_gain: bool = True, kernels: str = cmsis_nn.REFERENCE) -> Plan:
    """The best plan for the model, or PlanError / NoGainError saying why there is none.

    require_gain=False returns the best plan even when it does not lower the
    peak (for tests of exactness; the CLI never writes such a plan).
    kernels: the TFLM build the model is for, cmsis_nn.REFERENCE or CMSIS_NN.
    """
    if kernels not in cmsis_nn.KERNELS:
        raise PlanError(f"unknown kernels {kernels!r} (choose {' or '.join(cmsis_nn.KERNELS)})")
    explicit = patches is not None or split is not None
    arena_before, candidates = enumerate_plans(graph, patches, split, prune=require_gain, kernels=kernels)
    if not candidates:
        raise NoGainError(f"no patch plan lowers the peak memory ({arena_before:,} bytes): model left unchanged")
    if max_mac_overhead is not None and not explicit:
        within = [p for p in candidates if p.mac_overhead <= max_mac_overhead]
        if not within:
            best = min(p.mac_overhead for p in candidates)
            raise NoGainError(f"every plan costs more than --max-mac-overhead {max_mac_overhead:.2f} "
                              f"(the cheapest is {best:.2f}x): model left unchanged")
        candidates = within
    if sram_budget is not None:
        if require_gain and arena_before <= sram_budget:
            raise NoGainError(f"the model already fits --sram-budget {sram_budget:,} bytes "
                              f"(planned arena {arena_before:,} bytes): model left unchanged")
        fitting = [p for p in candidates if p.arena_after <= sram_budget
                   and (p.arena_after < arena_before or not require_gain)]
        if fitting:
            return min(fitting, key=lambda p: (p.macs_patched, p.arena_after, p.stage.split))
    best = min(candidates, key=lambda p: (p.arena_after, p.macs_patched, p.stage.split))
    if require_gain and best.arena_after >= arena_before:
        raise NoGainError(f"patching does not lower the peak memory ({arena_before:,} bytes before, "
                          f"{best.arena_after:,} bytes with the best plan): model left unchanged")
    return best

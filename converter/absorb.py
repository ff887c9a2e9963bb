"""More stages where they save TFLM's persistent memory, not planned memory.

TFLM's convolution kernels copy two int32 per output channel into the
arena's persistent tail (OpDataConv's multipliers and shifts), and every op
adds its node and tensor structs; a PATCH_STAGE reads its layers' per-channel
data where the model keeps it (O(layers), docs/memory.md). So the wide, small
layers after the memory peak, which patching cannot make smaller, still cost
arena: a stage over them, even a single patch (grid 1x1, no halo, no extra
MAC), lowers arena_used_bytes() without raising the planned head.

After the search has chosen its stages, `absorb` walks the ops outside them
left to right and, at each op, tries the longest stages starting there (a
1x1 grid, and the least-scratch schedule that adds no MAC, cached halos) whose
bytes alive fit the current head; a stage is kept when TFLM's head (replayed,
the offline plan included) does not rise and the predicted arena_used_bytes()
falls. No MAC is added, so a plan chosen for its MACs (an SRAM budget) keeps
them. Reference-kernel plans only, like the offline plan it relies on.
"""
from __future__ import annotations

from . import arena, cmsis_nn, persistent, stage_cost, stage_overlap
from .stage import all_stages

TRIES_PER_OP = 3  # the longest stages tried exactly at each op


def _options(graph, stage, memo: dict) -> list:
    """The single-patch schedule, and the least-scratch one that adds no MAC (cached halos) if smaller."""
    from .planner import schedules
    h, w = stage.layers[-1].out_shape[:2]
    input_shape = tuple(graph.tensors[stage.input_tensor].shape[1:])
    single = stage_cost.option(stage, input_shape, [0, h], [0, w])
    found = [single] if single is not None else []
    key = (stage.start, stage.end, None, cmsis_nn.REFERENCE)
    if key not in memo:
        memo[key] = schedules(graph, stage, None, memo.setdefault("tables", {}), cmsis_nn.REFERENCE)
    within = [o for o in memo[key] if o.macs_patched <= o.macs_original]
    if within:
        best = min(within, key=lambda o: (o.scratch_bytes, o.cost))
        if single is None or best.scratch_bytes < single.scratch_bytes:
            found.append(best)
    return found


def absorb(graph, stages: list, head: int, used: int, memo: dict) -> tuple:
    """(stages, head, offline offsets or None, used) with the stages that lower arena_used_bytes() added;
    the inputs back when none does."""
    from .planner import _live_bytes, _real_heads, predict, predict_used  # planner calls absorb: import here
    covered = {k for sp in stages for k in range(sp.stage.start, sp.stage.end)}
    by_start = {}
    for st in all_stages(graph):
        if not covered.intersection(range(st.start, st.end)):
            by_start.setdefault(st.start, []).append(st)
    base = arena.plan_arena(graph)
    tail = persistent.predict_tail(_patched(graph, stages)).tail_bytes
    chosen, offsets = list(stages), None
    k = 0
    while k < len(graph.ops):
        taken = None
        for st in sorted(by_start.get(k, ()), key=lambda s: -s.end)[:TRIES_PER_OP]:
            io = _live_bytes(base, st.start + 1, st.end, st.removed_tensors)
            for opt in _options(graph, st, memo):
                saved = stage_overlap.stage_saving(graph, st, opt.rows, opt.cols, opt.input_shape)
                if io + arena.align_up(opt.scratch_bytes) - saved > head:
                    continue
                trial = sorted(chosen + [stage_cost.materialize(opt, cmsis_nn.REFERENCE)],
                               key=lambda sp: sp.stage.start)
                trial_tail = persistent.predict_tail(_patched(graph, trial)).tail_bytes
                if trial_tail >= tail:
                    continue
                real, offline_of = _real_heads(graph, [(predict(graph, trial).head_bytes, trial)])
                new_head = real[0][0]
                new_used = predict_used(graph, trial, new_head)
                if new_head <= head and new_used is not None and new_used < used:
                    taken = (st, trial, new_head, offline_of.get(id(trial)), new_used, trial_tail)
                    break
            if taken:
                break
        if taken is None:
            k += 1
            continue
        st, chosen, head, offsets, used, tail = taken
        k = st.end
    return chosen, head, offsets, used


def _patched(graph, stages):
    """The graph as the rewrite leaves it with these stages (planner.patched_graph)."""
    from .planner import patched_graph
    return patched_graph(graph, stages)[0]

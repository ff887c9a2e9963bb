"""Predict TFLM's non-persistent arena: its lifetimes and its greedy planner.

This reproduces, step for step, `AllocationInfoBuilder::MarkAllocationLifetimes`
(micro_allocation_info.cc), `CreatePlan` (micro_allocator.cc: sizes rounded up
to 16 bytes, tensors in index order then scratch buffers in request order) and
`GreedyMemoryPlanner::CalculateOffsetsIfNeeded` (buffers sorted by size,
largest first, by a stable bubble sort over the reversed list, each placed at
the lowest offset that fits among the buffers already placed whose lifetimes
overlap). The planner is order-sensitive, so only an exact replay gives TFLM's
number to the byte.
"""
from __future__ import annotations

from dataclasses import dataclass

from .graph import Graph
from .schema import BuiltinOperator, TensorType

ARENA_ALIGNMENT = 16  # MicroArenaBufferAlignment()


def align_up(n: int, alignment: int = ARENA_ALIGNMENT) -> int:
    return (n + alignment - 1) // alignment * alignment


@dataclass
class PlannedBuffer:
    label: str          # "t<index>" for a tensor, "scratch<op>.<k>" for a scratch buffer
    size: int           # aligned bytes
    first: int          # first allocation scope (0 = before the first op)
    last: int
    offset: int = -1
    offline: int = -1   # an offline-planned offset (OfflineMemoryAllocation metadata), -1 = online


@dataclass
class ArenaPlan:
    buffers: list
    head_bytes: int     # the planner's maximum: TFLM's non-persistent ("head") arena

    def live_bytes_at(self, scope: int) -> int:
        return sum(b.size for b in self.buffers if b.first <= scope <= b.last)

    def extent_at(self, scope: int) -> int:
        """Highest byte used by the buffers live in this scope (the planned footprint)."""
        return max((b.offset + b.size for b in self.buffers if b.first <= scope <= b.last), default=0)


def builtin_scratch_requests(graph: Graph) -> dict:
    """Scratch buffers that TFLM's reference kernels request in Prepare, per op.

    Covers the ops our models use; conv, depthwise conv and fully connected ask
    for scratch only with int4 filters (not produced by the int8 converter).
    """
    requests = {}
    for op in graph.ops:
        if op.opcode in (BuiltinOperator.MEAN, BuiltinOperator.SUM):
            inp, axis, out = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]], graph.tensors[op.outputs[0]]
            sizes = []
            if inp.type in (TensorType.INT8, TensorType.INT16):
                sizes.append(4 * out.num_elements)
            sizes += [4 * len(inp.shape), 4 * axis.num_elements]
            requests[op.index] = sizes
        elif op.opcode in (BuiltinOperator.REDUCE_MAX, BuiltinOperator.REDUCE_MIN, BuiltinOperator.REDUCE_PROD):
            inp, axis = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
            requests[op.index] = [4 * len(inp.shape), 4 * axis.num_elements]
    return requests


def allocation_lifetimes(graph: Graph, scratch_requests: dict) -> list:
    """The buffers TFLM plans, with their lifetimes, in CreatePlan's order."""
    first = {t.index: -1 for t in graph.tensors}
    last = {t.index: -1 for t in graph.tensors}
    scope = 0
    for t in graph.inputs:
        if first[t] == -1:
            first[t] = scope
        last[t] = scope
    scratch = []
    for op in graph.ops:
        scope += 1
        for t in op.outputs:
            if first[t] == -1:
                first[t] = scope
        for t in op.inputs:
            if t >= 0:
                last[t] = scope
        for t in op.outputs:
            last[t] = scope
        for k, size in enumerate(scratch_requests.get(op.index, [])):
            scratch.append(PlannedBuffer(f"scratch{op.index}.{k}", align_up(size), scope, scope))
    for t in graph.outputs:
        if first[t] == -1:
            first[t] = scope
        last[t] = scope
    buffers = []
    for t in graph.tensors:
        if t.is_constant or t.is_variable or t.nbytes == 0:
            continue
        buffers.append(PlannedBuffer(f"t{t.index}", align_up(t.nbytes), first[t.index], last[t.index]))
    return buffers + scratch


def greedy_plan(buffers: list) -> int:
    """Assign offsets like GreedyMemoryPlanner; return the maximum memory size."""
    if not buffers:
        return 0
    # Offline-planned buffers come first, in request order, at their offsets. Online buffers
    # enter the sort array from the tail: reversed order, then a stable descending sort (TFLM's
    # bubble sort swaps only on strictly smaller).
    offline = [i for i, b in enumerate(buffers) if b.offline >= 0]
    online = [i for i, b in enumerate(buffers) if b.offline < 0]
    order = offline + sorted(reversed(online), key=lambda i: -buffers[i].size)
    placed = []  # (offset, index), kept sorted by offset, ties in insertion order
    for n, i in enumerate(order):
        want = buffers[i]
        candidate = 0
        if want.offline >= 0:
            candidate = want.offline
        elif n > 0:
            for offset, j in placed:
                other = buffers[j]
                if other.first > want.last or want.first > other.last:
                    continue
                if offset - candidate >= want.size:
                    break
                candidate = max(candidate, offset + other.size)
        want.offset = candidate
        pos = len(placed)
        for k, (offset, _) in enumerate(placed):
            if offset > candidate:
                pos = k
                break
        placed.insert(pos, (candidate, i))
    return max(b.offset + b.size for b in buffers)


def scratch_requests(graph: Graph, extra_scratch: dict | None = None) -> dict:
    """Every op's scratch buffer requests: the builtin kernels' plus extra_scratch (custom ops)."""
    requests = builtin_scratch_requests(graph)
    for op_index, sizes in (extra_scratch or {}).items():
        requests[op_index] = list(sizes)
    return requests


def plan_arena(graph: Graph, extra_scratch: dict | None = None, offline_offsets: dict | None = None) -> ArenaPlan:
    """Predict TFLM's plan for a graph; extra_scratch adds custom ops' requests;
    offline_offsets (tensor index -> offset) replays an OfflineMemoryAllocation plan."""
    buffers = allocation_lifetimes(graph, scratch_requests(graph, extra_scratch))
    if offline_offsets is None:
        offline_offsets = graph.offline_offsets
    for b in buffers:
        if offline_offsets and b.label.startswith("t") and offline_offsets.get(int(b.label[1:]), -1) >= 0:
            b.offline = offline_offsets[int(b.label[1:])]
    head = greedy_plan(buffers)
    return ArenaPlan(buffers, head)

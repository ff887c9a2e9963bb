"""An offline memory plan better than TFLM's greedy one, written as TFLM reads it.

TFLM honours a model's `OfflineMemoryAllocation` metadata (micro_allocation_info.cc
GetOfflinePlannedOffsets): a buffer of int32 [version 1, subgraph 0, number of
tensors, one arena offset per tensor], -1 for tensors left to the online planner.
GreedyMemoryPlanner places the offline buffers at their offsets first, then the
online ones (scratch buffers always, and tensors marked -1) largest first in the
gaps, exactly as arena.greedy_plan replays it. So a candidate placement is
judged by replaying TFLM on it, scratch buffers included: what is predicted is
what TFLM does.

Candidates: placements of every buffer by several orderings (TFLM's size order,
lifetime start, area, duration), each with first-fit and best-fit, then a
bounded exact search (branch and bound over placement orders) for small
models. The plan is kept only if TFLM's replayed head is strictly below the
greedy head; never worse. `lower_bound` is the largest set of buffers live at
once.
"""
from __future__ import annotations

import numpy as np

from . import arena
from .graph import Graph
from .schema import schema

METADATA_NAME = "OfflineMemoryAllocation"
EXACT_MAX_BUFFERS = 9        # exhaustive-ish search only on small models
SEARCH_NODE_LIMIT = 200_000


def _overlap(a, b) -> bool:
    return not (a.first > b.last or b.first > a.last)


def _place(buffers: list, order: list, best_fit: bool) -> dict:
    """Offsets (index -> offset) placing buffers in `order`, each at the lowest (first-fit)
    or tightest (best-fit) gap among the time-overlapping buffers already placed."""
    offsets = {}
    for i in order:
        want = buffers[i]
        busy = sorted((offsets[j], offsets[j] + buffers[j].size) for j in offsets if _overlap(want, buffers[j]))
        gaps, cursor = [], 0
        for lo, hi in busy:
            if lo - cursor >= want.size:
                gaps.append((lo - cursor, cursor))
            cursor = max(cursor, hi)
        if best_fit and gaps:
            offsets[i] = min(gaps)[1]
        elif gaps:
            offsets[i] = gaps[0][1]
        else:
            offsets[i] = cursor
    return offsets


def lower_bound(buffers: list) -> int:
    """The largest total size of buffers live at the same time."""
    scopes = {b.first for b in buffers}
    return max((sum(b.size for b in buffers if b.first <= s <= b.last) for s in scopes), default=0)


def _extent(buffers, offsets) -> int:
    return max((offsets[i] + buffers[i].size for i in offsets), default=0)


def _exact(buffers: list, bound: int, best: int) -> dict | None:
    """Branch and bound over placement orders (first-fit), for few buffers."""
    n = len(buffers)
    best_offsets, nodes = None, 0

    def search(order, offsets, current):
        nonlocal best, best_offsets, nodes
        nodes += 1
        if nodes > SEARCH_NODE_LIMIT or best <= bound:
            return
        if len(order) == n:
            if current < best:
                best, best_offsets = current, dict(offsets)
            return
        for i in range(n):
            if i in offsets:
                continue
            placed = dict(offsets)
            placed.update(_place_one(buffers, placed, i))
            extent = max(current, placed[i] + buffers[i].size)
            if extent < best:
                search(order + [i], placed, extent)

    search([], {}, 0)
    return best_offsets


def _place_one(buffers, offsets, i) -> dict:
    want = buffers[i]
    busy = sorted((offsets[j], offsets[j] + buffers[j].size) for j in offsets if _overlap(want, buffers[j]))
    cursor = 0
    for lo, hi in busy:
        if lo - cursor >= want.size:
            break
        cursor = max(cursor, hi)
    return {i: cursor}


def _replay(graph: Graph, requests: dict, tensor_offsets: dict) -> int:
    buffers = arena.allocation_lifetimes(graph, requests)
    for b in buffers:
        if b.label.startswith("t"):
            b.offline = tensor_offsets.get(int(b.label[1:]), -1)
    return arena.greedy_plan(buffers)


def candidates(buffers: list):
    n = len(buffers)
    keys = [
        lambda i: (-buffers[i].size, i),
        lambda i: (buffers[i].first, -buffers[i].size),
        lambda i: (-buffers[i].size * (buffers[i].last - buffers[i].first + 1), i),
        lambda i: (-(buffers[i].last - buffers[i].first), -buffers[i].size),
        lambda i: (buffers[i].last, -buffers[i].size),
    ]
    for key in keys:
        order = sorted(range(n), key=key)
        for best_fit in (False, True):
            yield _place(buffers, order, best_fit)
    rng = np.random.default_rng(0)
    base = sorted(range(n), key=keys[0])
    for _ in range(60 if n < 200 else 10):  # perturbed size orders
        order = list(base)
        for _ in range(max(1, n // 8)):
            a, b = rng.integers(0, n, 2)
            order[a], order[b] = order[b], order[a]
        yield _place(buffers, order, bool(rng.integers(0, 2)))


def improve(graph: Graph, scratch_requests: dict | None = None) -> tuple:
    """(offsets, head_bytes): offsets is {tensor index: arena offset} for every planned
    tensor when an offline plan lowers TFLM's head below its greedy plan, else None;
    head_bytes is TFLM's head with that plan (or the greedy head).
    scratch_requests: every op's scratch requests (arena.scratch_requests)."""
    requests = scratch_requests if scratch_requests is not None else arena.builtin_scratch_requests(graph)
    buffers = arena.allocation_lifetimes(graph, requests)
    greedy = arena.greedy_plan(arena.allocation_lifetimes(graph, requests))
    bound = lower_bound(buffers)
    best_head, best_offsets = greedy, None

    def consider(offsets):
        nonlocal best_head, best_offsets
        tensors = {int(buffers[i].label[1:]): off for i, off in offsets.items() if buffers[i].label.startswith("t")}
        head = _replay(graph, requests, tensors)
        if head < best_head:
            best_head, best_offsets = head, tensors

    for offsets in candidates(buffers):
        if best_head <= bound:
            break
        if _extent(buffers, offsets) < best_head:
            consider(offsets)
    if len(buffers) <= EXACT_MAX_BUFFERS and best_head > bound:
        exact = _exact(buffers, bound, best_head)
        if exact is not None:
            consider(exact)
    return best_offsets, best_head


def offsets_vector(graph, offsets: dict) -> list:
    """The metadata's int32 words: version 1, subgraph 0, tensor count, offsets (-1 = online).
    graph: anything whose .tensors lists the subgraph's tensors in order (a Graph, a SubGraphT)."""
    return [1, 0, len(graph.tensors)] + [int(offsets.get(i, -1)) for i in range(len(graph.tensors))]


def with_offline_plan(model, graph, offsets: dict):
    """A copy of `model` (ModelT) whose OfflineMemoryAllocation metadata holds `offsets`
    (added, or replacing one already there); nothing else changes."""
    import copy

    from .rewrite import _AlignedBufferT
    new = copy.deepcopy(model)
    buf = _AlignedBufferT()
    buf.data = np.frombuffer(np.asarray(offsets_vector(graph, offsets), dtype="<i4").tobytes(), np.uint8).copy()
    buf.offset, buf.size = 0, 0
    kept = []
    for m in new.metadata or []:
        name = m.name.decode() if isinstance(m.name, bytes) else m.name
        if name == METADATA_NAME:
            new.buffers[m.buffer] = buf  # replace in place: keeps every other buffer index
            buf = None
        kept.append(m)
    if buf is not None:
        new.buffers.append(buf)
        meta = schema.MetadataT()
        meta.name = METADATA_NAME
        meta.buffer = len(new.buffers) - 1
        kept.append(meta)
    new.metadata = kept
    return new

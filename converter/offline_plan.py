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


def _fits(buffers: list, offsets: dict, i: int, at: int, group: tuple = ()) -> bool:
    """Buffer i at `at` meets no placed buffer alive at the same time (its own group's members aside)."""
    want, own = buffers[i], {k for k, _ in group}
    return all(j in own or not _overlap(want, buffers[j]) or at >= offsets[j] + buffers[j].size
               or offsets[j] >= at + want.size for j in offsets)


def _place_group(buffers: list, offsets: dict, group: tuple) -> dict:
    """Offsets of a fused group ((index, offset in the group) pairs): the lowest group start at
    which every member fits."""
    starts = {0} | {offsets[j] + buffers[j].size - rel for j in offsets for _, rel in group}
    for start in sorted(s for s in starts if s >= 0):
        if all(_fits(buffers, offsets, k, start + rel, group) for k, rel in group):
            return {k: start + rel for k, rel in group}
    raise AssertionError("a group always fits above every placed buffer")


def _place(buffers: list, order: list, best_fit: bool, groups: dict | None = None) -> dict:
    """Offsets (index -> offset) placing buffers in `order`, each at the lowest (first-fit)
    or tightest (best-fit) gap among the time-overlapping buffers already placed. A fused
    group (groups: index -> its group) is placed whole, first-fit, at its first member."""
    offsets = {}
    for i in order:
        if i in offsets:
            continue
        if groups and i in groups:
            offsets.update(_place_group(buffers, offsets, groups[i]))
            continue
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


def lower_bound(buffers: list, groups: dict | None = None) -> int:
    """The largest total size of buffers live at the same time; a fused group counts the span
    of its live members."""
    groups = groups or {}
    best = 0
    for s in {b.first for b in buffers}:
        live = [i for i, b in enumerate(buffers) if b.first <= s <= b.last]
        total = sum(buffers[i].size for i in live if i not in groups)
        for group in {groups[i] for i in live if i in groups}:
            spans = [(rel, rel + buffers[k].size) for k, rel in group if buffers[k].first <= s <= buffers[k].last]
            total += max(hi for _, hi in spans) - min(lo for lo, _ in spans)
        best = max(best, total)
    return best


def _extent(buffers, offsets) -> int:
    return max((offsets[i] + buffers[i].size for i in offsets), default=0)


def _exact(buffers: list, bound: int, best: int, groups: dict | None = None) -> dict | None:
    """Branch and bound over placement orders (first-fit), for few buffers."""
    n = len(buffers)
    best_offsets, nodes = None, 0

    def search(offsets, current):
        nonlocal best, best_offsets, nodes
        nodes += 1
        if nodes > SEARCH_NODE_LIMIT or best <= bound:
            return
        if len(offsets) == n:
            if current < best:
                best, best_offsets = current, dict(offsets)
            return
        for i in range(n):
            if i in offsets:
                continue
            new = _place_one(buffers, offsets, i, groups)
            extent = max([current] + [off + buffers[k].size for k, off in new.items()])
            if extent < best:
                search({**offsets, **new}, extent)

    search({}, 0)
    return best_offsets


def _place_one(buffers, offsets, i, groups=None) -> dict:
    if groups and i in groups:
        return _place_group(buffers, offsets, groups[i])
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


def groups_of(buffers: list, fusions) -> dict:
    """Buffer index -> its fused group: ((buffer index, offset in the group), ...), offsets >= 0.
    fusions: stage_overlap.Fusion (an output `lead` bytes before its input), chains allowed."""
    index_of = {int(b.label[1:]): i for i, b in enumerate(buffers) if b.label.startswith("t")}
    links = {}
    for f in fusions:
        links.setdefault(f.output, []).append((f.input, f.lead))
        links.setdefault(f.input, []).append((f.output, -f.lead))
    rel, groups = {}, {}
    for start in links:
        if start in rel:
            continue
        rel[start], stack, members = 0, [start], [start]
        while stack:
            t = stack.pop()
            for u, d in links[t]:
                if u not in rel:
                    rel[u] = rel[t] + d
                    stack.append(u)
                    members.append(u)
        low = min(rel[t] for t in members)
        group = tuple((index_of[t], rel[t] - low) for t in members)
        for k, _ in group:
            groups[k] = group
    return groups


def candidates(buffers: list, groups: dict | None = None):
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
            yield _place(buffers, order, best_fit, groups)
        # tensors first, the scratch buffers in the gaps after, as TFLM places them around an offline plan
        yield _place(buffers, sorted(range(n), key=lambda i: (not buffers[i].label.startswith("t"), key(i))),
                     False, groups)
    rng = np.random.default_rng(0)
    base = sorted(range(n), key=keys[0])
    for _ in range(60 if n < 200 else 10):  # perturbed size orders
        order = list(base)
        for _ in range(max(1, n // 8)):
            a, b = rng.integers(0, n, 2)
            order[a], order[b] = order[b], order[a]
        yield _place(buffers, order, bool(rng.integers(0, 2)), groups)


def _excess(graph: Graph, requests: dict, tensor_offsets: dict, protected: dict) -> tuple:
    """(TFLM's head with these offline offsets, the bytes by which the protected scopes' extents
    exceed their limits)."""
    buffers = arena.allocation_lifetimes(graph, requests)
    for b in buffers:
        if b.label.startswith("t"):
            b.offline = tensor_offsets.get(int(b.label[1:]), -1)
    head = arena.greedy_plan(buffers)
    extents = dict.fromkeys(protected, 0)
    for b in buffers:
        for scope in range(b.first, b.last + 1):
            if scope in extents:
                extents[scope] = max(extents[scope], b.offset + b.size)
    return head, sum(max(0, extents[s] - limit) for s, limit in protected.items())


def improve(graph: Graph, scratch_requests: dict | None = None, fusions=(), protected: dict | None = None) -> tuple:
    """(offsets, head_bytes): offsets is {tensor index: arena offset} for every planned
    tensor when an offline plan lowers TFLM's head below its greedy plan, else None;
    head_bytes is TFLM's head with that plan (or the greedy head).
    scratch_requests: every op's scratch requests (arena.scratch_requests).
    fusions: stage outputs that may lie over their inputs (stage_overlap.fusions).
    protected: {scope: bytes} the extents (highest byte in use) that ops should keep, where the head
    allows (the ops outside stages, at their extent before patching): among plans of the least head,
    the one exceeding them least."""
    requests = scratch_requests if scratch_requests is not None else arena.builtin_scratch_requests(graph)
    buffers = arena.allocation_lifetimes(graph, requests)
    greedy = arena.greedy_plan(arena.allocation_lifetimes(graph, requests))
    groups = groups_of(buffers, fusions)
    bound = lower_bound(buffers, groups)
    protected = protected or {}
    best, best_offsets = (greedy, 0), None  # (head, excess): only a lower head beats greedy

    def consider(offsets):
        nonlocal best, best_offsets
        tensors = {int(buffers[i].label[1:]): off for i, off in offsets.items() if buffers[i].label.startswith("t")}
        key = _excess(graph, requests, tensors, protected)
        if key[0] < greedy and key < best:
            best, best_offsets = key, tensors

    for offsets in candidates(buffers, groups):
        if best[0] <= bound and (best_offsets is None or best[1] == 0):
            break
        if _extent(buffers, offsets) <= best[0]:
            consider(offsets)
    if len(buffers) <= EXACT_MAX_BUFFERS and best[0] > bound:
        exact = _exact(buffers, bound, best[0], groups)
        if exact is not None:
            consider(exact)
    return best_offsets, best[0]


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

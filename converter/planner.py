"""Choose the stages, their patch grids and their halo caching.

A plan replaces one or more runs of ops (stages) by PATCH_STAGE ops. Every
valid stage (from any start to any end, stage.py) gets every grid (rows and
columns counted independently) and caching mode (none, rows, rows and
columns), sized by stage_cost.py; the schedules within the MAC limit that no
other beats on both scratch and MACs are kept. The model is then a path of
ops: each op costs the bytes alive while it runs, a stage its own plus its
scratch. A bottleneck search over that path finds, for each bound, the
least-MAC way through whose every step fits the bound; the least bound and the
next ones, and the best single stages, are predicted exactly (arena.py, TFLM's
own planner replayed) and the smallest arena wins. Given an SRAM budget, the
cheapest of those plans that fits wins.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from . import absorb, arena, cmsis_nn, offline_plan, persistent, stage_cost, stage_overlap
from .errors import NoGainError, PlanError
from .graph import Graph, Op, index_graph
from .options import CUSTOM_CODE, encode
from .schedules import CACHE_MODES, CALL_MACS, GRID_COUNTS  # noqa: F401 (the search's grids and modes)
from .schedules import front as schedule_front
from .schema import BuiltinOperator
from .stage import Stage, all_stages, select_stage
from .stage_cost import StagePatch

SINGLES = 24           # single-stage plans whose exact arena is predicted besides the searched ones
MAX_STAGES = 4


@dataclass
class Plan:
    stages: list               # StagePatch, in op order
    arena_before: int          # predicted non-persistent arena, original model
    arena_after: int           # predicted non-persistent arena, patched model
    total_before: int | None = None  # predicted arena_used_bytes() (64-bit host, reference kernels), if modelled
    total_after: int | None = None
    candidates: list = field(default_factory=list, repr=False)  # (arena, MACs added) of the plans searched
    # The OfflineMemoryAllocation plan the rewrite writes ({patched tensor index: offset}), when it
    # beats TFLM's greedy placement of the patched model; arena_after is then its head.
    offline_offsets: dict | None = field(default=None, repr=False)

    def output_leads(self, graph: Graph) -> list:
        """Per stage: how many bytes before its input the offline plan lays its output, over it
        (stage_overlap), or None where the two lie apart."""
        g, _ = patched_graph(graph, self.stages)
        g.offline_offsets = self.offline_offsets
        ops = [op for op in g.ops if op.custom_code == CUSTOM_CODE]
        return [stage_overlap.planned_output_lead(g, op) for op in ops]

    # The first stage, for single-stage callers.
    @property
    def stage(self) -> Stage:
        return self.stages[0].stage

    @property
    def stage_plan(self):
        return self.stages[0].stage_plan

    @property
    def grid(self) -> tuple:
        return self.stages[0].grid

    @property
    def macs_original(self) -> int:
        return sum(s.macs_original for s in self.stages)

    @property
    def macs_patched(self) -> int:
        return sum(s.macs_patched for s in self.stages)

    @property
    def mac_overhead(self) -> float:
        return self.macs_patched / self.macs_original if self.macs_original else 1.0


def tensor_mapping(num_tensors: int, removed: set) -> dict:
    """Old tensor index -> new, for the tensors a rewrite keeps (in their order)."""
    kept = [t for t in range(num_tensors) if t not in removed]
    return {old: new for new, old in enumerate(kept)}


def _encoded(sp: StagePatch) -> bytes:
    """The stage's options, encoded once per StagePatch (the search predicts each trial twice)."""
    if sp.__dict__.get("_encoded_plan") is not sp.stage_plan:
        sp.__dict__["_encoded"], sp.__dict__["_encoded_plan"] = encode(sp.stage_plan), sp.stage_plan
    return sp.__dict__["_encoded"]


def patched_graph(graph: Graph, stages: list) -> tuple:
    """The graph as the rewrite leaves it, and its PATCH_STAGE scratch requests.

    stages: StagePatch (or (Stage, scratch_bytes)) in op order, not overlapping."""
    pairs = [(s.stage, s.stage_plan.scratch_bytes) if isinstance(s, StagePatch) else s for s in stages]
    options_of = {s.stage.start: _encoded(s) for s in stages if isinstance(s, StagePatch)}
    removed = set().union(*(st.removed_tensors for st, _ in pairs)) if pairs else set()
    mapping = tensor_mapping(len(graph.tensors), removed)
    tensors = [dataclasses.replace(graph.tensors[old], index=new) for old, new in mapping.items()]

    def remap(ts):
        return [mapping[t] if t >= 0 else t for t in ts]

    ops, scratch = [], {}
    by_start = {st.start: (st, nbytes) for st, nbytes in pairs}
    i = 0
    while i < len(graph.ops):
        if i in by_start:
            st, nbytes = by_start[i]
            if nbytes > 0:
                scratch[len(ops)] = [nbytes]
            ops.append(Op(len(ops), BuiltinOperator.CUSTOM, CUSTOM_CODE, remap([st.input_tensor] + st.constants),
                          remap([st.output_tensor]), None, options_of.get(st.start)))
            i = st.end
            continue
        op = graph.ops[i]
        ops.append(dataclasses.replace(op, index=len(ops), inputs=remap(op.inputs), outputs=remap(op.outputs)))
        i += 1
    return index_graph(Graph(tensors, ops, remap(graph.inputs), remap(graph.outputs))), scratch


def predict(graph: Graph, stages: list) -> arena.ArenaPlan:
    g, scratch = patched_graph(graph, stages)
    return arena.plan_arena(g, scratch)


def schedules(graph: Graph, stage: Stage, patches: tuple | None = None, tables: dict | None = None,
              kernels: str = cmsis_nn.REFERENCE) -> list:
    """The stage's schedules that no other beats on both scratch and cost (schedules.front); for
    CMSIS-NN kernels the cost counts the kernel calls too."""
    return schedule_front(graph, stage, patches, tables, CALL_MACS if kernels == cmsis_nn.CMSIS_NN else 0)


def _shortlist(options: list, limit: float | None) -> list:
    """The options worth an exact prediction: least scratch, each cheaper in MACs than the last."""
    if limit is not None:
        options = [o for o in options if o.cost <= limit * o.macs_original]
    front = []
    for o in sorted(options, key=lambda o: (o.scratch_bytes, o.cost)):
        if not front or o.cost < front[-1].cost:
            front.append(o)
    return front


def _live_bytes(base: arena.ArenaPlan, first: int, last: int, removed: set) -> int:
    """Bytes of the original model's planned buffers alive in scopes [first, last], less the removed tensors."""
    return sum(b.size for b in base.buffers
               if b.first <= last and first <= b.last and not (b.label[0] == "t" and int(b.label[1:]) in removed))


def search(graph: Graph, kernels: str, limit: float | None, patches=None, split=None,
           max_stages: int = MAX_STAGES, bound: bool = True, memo: dict | None = None) -> tuple:
    """(arena before, [(arena, [StagePatch])] of the plans met, the best stages, their arena).

    The model is a path of ops; a plan replaces runs of it by stages. Each op
    or stage costs the bytes alive while it runs (its scratch included); a
    bottleneck search over that path (for a bound B, the cheapest way through
    whose every step costs at most B, each stage's schedules already within the
    MAC limit) finds, for every B, the least-MAC plan; the exact arena of the
    best few decides. bound=False also keeps plans that do not lower the arena.
    """
    base = arena.plan_arena(graph)
    before = base.head_bytes
    n = len(graph.ops)
    plain = [_live_bytes(base, k + 1, k + 1, set()) for k in range(n)]
    if split is not None:
        stages = select_stage(graph, split)
    else:
        stages = all_stages(graph)
        if patches is None:
            stages = [st for st in stages if st.end - st.start > 1 or st.layers[0].macs_per_output_pixel()]
    ceiling = before if bound else float("inf")
    edges = {}  # start -> [(end, cost, option)]
    tables = {} if memo is None else memo.setdefault("tables", {})  # per-axis span tables, shared by stages
    for stage in stages:
        io = _live_bytes(base, stage.start + 1, stage.end, stage.removed_tensors)
        if io >= ceiling:
            continue
        key = (stage.start, stage.end, patches, kernels)
        if memo is None or key not in memo:
            options = schedules(graph, stage, patches, tables, kernels)
            if memo is not None:
                memo[key] = options
        else:
            options = memo[key]
        for opt in _shortlist(options, limit):
            cost = io + arena.align_up(opt.scratch_bytes)
            if kernels == cmsis_nn.REFERENCE:  # its output over its consumed input (offline plans only)
                cost -= stage_overlap.stage_saving(graph, stage, opt.rows, opt.cols, opt.input_shape)
            if cost >= ceiling and bound:
                continue  # (not break: the saving of a fused output varies between options)
            edges.setdefault(stage.start, []).append((stage.end, cost, opt))
    if not edges:
        return before, [], [], before
    thresholds = sorted({cost for es in edges.values() for _, cost, _ in es} | set(plain))
    met, seen = [], set()
    lo, hi = 0, len(thresholds) - 1
    feasible = None
    while lo <= hi:  # the least bound with a plan within the MAC limit
        mid = (lo + hi) // 2
        path = _cheapest_path(n, plain, edges, thresholds[mid], max_stages)
        if path is not None:
            feasible, hi = mid, mid - 1
        else:
            lo = mid + 1
    if feasible is None:
        return before, [], [], before
    for k in range(feasible, min(len(thresholds), feasible + 12)):
        path = _cheapest_path(n, plain, edges, thresholds[k], max_stages)
        key = tuple((o.stage.start, o.stage.end, len(o.rows), len(o.cols), o.cache_rows, o.cache_cols)
                    for o in path or ())
        if path is None or key in seen:
            continue
        seen.add(key)
        trial = [stage_cost.materialize(o, kernels) for o in path]
        met.append((predict(graph, trial).head_bytes, trial))
    # The arena is TFLM's greedy packing, not the bytes alive: also try single stages outright.
    singles = sorted(((cost, opt) for es in edges.values() for _, cost, opt in es), key=lambda x: x[0])
    for _, opt in singles[:SINGLES]:
        key = ((opt.stage.start, opt.stage.end, len(opt.rows), len(opt.cols), opt.cache_rows, opt.cache_cols),)
        if key not in seen:
            seen.add(key)
            trial = [stage_cost.materialize(opt, kernels)]
            met.append((predict(graph, trial).head_bytes, trial))
    if not met:
        return before, [], [], before
    head, chosen = min(met, key=lambda m: (m[0], sum(s.macs_patched for s in m[1])))
    return before, met, chosen, head


def _cheapest_path(n: int, plain: list, edges: dict, bound: int, max_stages: int = MAX_STAGES):
    """Options along the path 0 -> n whose every step costs at most `bound` and that has one to
    `max_stages` stages, least in MACs added, then in stages; None if there is none. (Every option
    is within the MAC limit already, so the whole plan is.)"""
    inf = (float("inf"), 0)
    # labels[c][k]: the cheapest way to op k with c stages so far.
    labels = [[inf] * (n + 1) for _ in range(max_stages + 1)]
    back = [[None] * (n + 1) for _ in range(max_stages + 1)]
    labels[0][0] = (0.0, 0)
    for k in range(n):
        for c in range(max_stages + 1):
            w = labels[c][k]
            if w[0] == float("inf"):
                continue
            if plain[k] <= bound and w < labels[c][k + 1]:
                labels[c][k + 1], back[c][k + 1] = w, (k, None, c)
            if c == max_stages:
                continue
            for end, cost, opt in edges.get(k, ()):
                if cost > bound:
                    continue
                nw = (w[0] + opt.cost - opt.macs_original, w[1] + 1)
                if nw < labels[c + 1][end]:
                    labels[c + 1][end], back[c + 1][end] = nw, (k, opt, c)
    c = min(range(1, max_stages + 1), key=lambda c: labels[c][n])
    if labels[c][n][0] == float("inf"):
        return None
    path, k = [], n
    while k > 0:
        prev, opt, prev_c = back[c][k]
        if opt is not None:
            path.append(opt)
        k, c = prev, prev_c
    return path[::-1]


def make_plan(graph: Graph, patches: tuple | None = None, split: int | None = None,
              sram_budget: int | None = None, max_mac_overhead: float | None = None,
              require_gain: bool = True, kernels: str = cmsis_nn.REFERENCE,
              max_stages: int = MAX_STAGES, memo: dict | None = None) -> Plan:
    """The best plan for the model, or PlanError / NoGainError saying why there is none.

    max_mac_overhead bounds every patched stage's MACs against the same ops run
    once (also for an explicit --patches/--split). memo: a dict shared by calls on
    the same graph, to size each stage's schedules once. require_gain=False returns
    the best plan even when it does not lower the peak (for tests of
    exactness; the CLI never writes such a plan).
    """
    if kernels not in cmsis_nn.KERNELS:
        raise PlanError(f"unknown kernels {kernels!r} (choose {' or '.join(cmsis_nn.KERNELS)})")
    if split is not None:
        select_stage(graph, split)  # PlanError for an impossible split
    before, met, chosen, after = search(graph, kernels, max_mac_overhead, patches, split, max_stages,
                                        bound=require_gain, memo=memo)
    if not met:
        if patches is not None:
            raise PlanError(f"--patches {patches[0]}x{patches[1]} is impossible: no stage"
                            + (f" ending at op {split - 1}" if split else "") + " has an output that large")
        if max_mac_overhead is not None:
            raise NoGainError(f"every plan costs more than --max-mac-overhead {max_mac_overhead:.2f}: "
                              "model left unchanged")
        raise NoGainError(f"no patch plan lowers the peak memory ({before:,} bytes): model left unchanged")
    offline_of = {}
    if kernels == cmsis_nn.REFERENCE:
        if patches is None and split is None:  # judge every plan by the arena TFLM will really plan
            met, offline_of = _real_heads(graph, met)
            after, chosen = min(met, key=lambda m: (m[0], sum(s.macs_patched for s in m[1])))
        else:  # the grid or stage asked for, as before; its offline plan too where that is lower
            improved, offline_of = _real_heads(graph, [m for m in met if m[1] is chosen])
            met = [improved[0] if m[1] is chosen else m for m in met]
            after = improved[0][0]
    total_before = predict_used(graph, [], before)
    if total_before is not None:  # judge by what the firmware sizes: arena_used_bytes(), persistent memory included
        scored = [(h, t, predict_used(graph, t, h)) for h, t in met]
        used = {id(t): u for _, t, u in scored}
        met = [(h, t) for h, t, u in scored if u is None or u < total_before or not require_gain]
        if met:
            after, chosen = min(met, key=lambda m: (used[id(m[1])] or m[0], sum(s.macs_patched for s in m[1])))
        elif require_gain:
            raise NoGainError(f"patching lowers the planned arena but not arena_used_bytes() "
                              f"({total_before:,} bytes, persistent memory included): model left unchanged")
    if not chosen or (require_gain and after >= before):  # nothing lowered the arena
        if require_gain:
            best_head = min(h for h, _ in met)
            raise NoGainError(f"patching does not lower the peak memory ({before:,} bytes before, "
                              f"{best_head:,} bytes with the best plan): model left unchanged")
        after, chosen = min(met, key=lambda m: (m[0], sum(s.macs_patched for s in m[1])))
    if sram_budget is not None:
        if require_gain and before <= sram_budget:
            raise NoGainError(f"the model already fits --sram-budget {sram_budget:,} bytes "
                              f"(planned arena {before:,} bytes): model left unchanged")
        fitting = [(h, t) for h, t in met if h <= sram_budget and (h < before or not require_gain)]
        if not fitting:
            raise NoGainError(f"no plan fits --sram-budget {sram_budget:,} bytes: the smallest arena reachable "
                              f"is {after:,} bytes (stage MACs x{_overhead(chosen):.2f}): model left unchanged")
        after, chosen = min(fitting, key=lambda m: (sum(s.macs_patched for s in m[1]), m[0]))
    offsets = offline_of.get(id(chosen))
    used = predict_used(graph, chosen, after)
    if kernels == cmsis_nn.REFERENCE and patches is None and split is None and used is not None:
        # stages at no extra MAC over the ops left, where they save persistent memory (absorb.py)
        grown, head, grown_offsets, grown_used = absorb.absorb(graph, list(chosen), after, used,
                                                              memo if memo is not None else {})
        if len(grown) > len(chosen):
            chosen, after, offsets, used = grown, head, grown_offsets, grown_used
    return Plan(list(chosen), before, after, total_before, used,
                [(h, sum(s.macs_patched - s.macs_original for s in t)) for h, t in met], offsets)


def _real_heads(graph: Graph, met: list) -> tuple:
    """The plans met, each with the head TFLM will really plan for it: greedy, or the offline plan
    the rewrite writes where that is lower (offline_plan.improve, never worse). Returns the new
    list and {id(stages): offsets} for the plans that get an offline plan. A plan whose largest
    live set already exceeds the best head found keeps its greedy head (it cannot win).
    Reference-kernel plans only: CMSIS-NN builds request other scratch buffers, which TFLM
    places around offline buffers, so those plans keep TFLM's greedy placement."""
    best, real, offline_of = float("inf"), [], {}
    for head, stages in sorted(met, key=lambda m: m[0]):
        g, scratch = patched_graph(graph, stages)
        requests = arena.scratch_requests(g, scratch)
        fusions = stage_overlap.fusions(g)
        buffers = arena.allocation_lifetimes(g, requests)
        if offline_plan.lower_bound(buffers, offline_plan.groups_of(buffers, fusions)) <= min(best, head - 1):
            offsets, improved = offline_plan.improve(g, requests, fusions, _kept_extents(graph, stages))
            if offsets is not None and improved < head:
                head = improved
                offline_of[id(stages)] = offsets
        best = min(best, head)
        real.append((head, stages))
    return real, offline_of


def _kept_extents(graph: Graph, stages: list) -> dict:
    """{scope of the patched graph: the extent its op had before patching}, for the ops outside stages:
    an offline plan of the least head keeps them where it can (offline_plan.improve)."""
    base = arena.plan_arena(graph)
    starts = {sp.stage.start: sp.stage.end for sp in stages}
    kept, i, k = {}, 0, 0
    while i < len(graph.ops):
        if i in starts:
            i = starts[i]
        else:
            kept[k + 1] = base.extent_at(i + 1)
            i += 1
        k += 1
    return kept


PARETO_LIMITS = (1.0, 1.05, 1.1, 1.25, 1.5, 2.0)


def pareto(graph: Graph, limits=PARETO_LIMITS, kernels: str = cmsis_nn.REFERENCE) -> list:
    """(limit, Plan) for the best plan under each MAC limit, keeping only those no other beats
    on both predicted arena and MACs, by increasing arena. Empty when patching cannot help."""
    plans, memo = [], {}  # the stages' schedules are sized once for every limit
    for limit in limits:
        try:
            plans.append((limit, make_plan(graph, max_mac_overhead=limit, kernels=kernels, memo=memo)))
        except NoGainError:
            continue
    front = []
    for limit, p in sorted(plans, key=lambda lp: (lp[1].arena_after, lp[1].macs_patched, lp[0])):
        if not front or p.macs_patched < front[-1][1].macs_patched:
            front.append((limit, p))
    return front


def predict_used(graph: Graph, stages: list, head: int) -> int | None:
    """arena_used_bytes() (64-bit host, reference kernels) of the patched model, None where not modelled."""
    g, _ = patched_graph(graph, stages)
    try:
        return head + persistent.predict_tail(g).tail_bytes
    except persistent.Unpredictable:
        return None


def _overhead(stages: list) -> float:
    orig = sum(s.macs_original for s in stages)
    return sum(s.macs_patched for s in stages) / orig if orig else 1.0

#!/usr/bin/env python3
"""PATCH_STAGE's Prepare in real TFLM, fed mutated options (needs TFLM_ROOT or TFLM_SANITIZER_LIB).

Real patched models (small test models, several plans each: the default
search, fixed grids, cached halos) get their PATCH_STAGE custom options
mutated: byte flips, truncation, extreme integers, values swapped between
keys, keys dropped, splices, and valid-but-inconsistent plans (another
model's options, another plan of the same model, cached halos with spare or
overlapping cache memory). Each mutated model runs AllocateTensors + Invoke
in a host TFLM build: the sanitizer build when TFLM_SANITIZER_LIB names one
(ASan + UBSan, our kernel compiled with the same flags), else the plain
reference build under TFLM_ROOT. All cases run in a few runner processes
(`tflm_runner --batch`); the new options are appended to the model file and
the operator's offset pointed at them, so no model is re-serialised.

Every case must end in one of:
  * Prepare refused: AllocateTensors fails and the kernel said why (a line
    other than TFLM's "Node ... failed to prepare");
  * the model ran: no write to the arena's unused middle, and when the
    options mean the same plan as the original (or are another valid plan of
    the same stage), the outputs equal the unmutated model's.
Never a crash, a sanitizer finding, a hang, or a failed Invoke after a clean
Prepare (validation must catch what Eval would trip on). And the Python
mirror of Prepare (converter/options.py decode + plan_validation.py, which
`analyze` and `verify` run) must reach the same verdict as TFLM, with the same
message: it refuses exactly what the kernel refuses (a plan TFLM refuses only
for want of arena is counted apart).

    python tools/fuzz/fuzz_prepare.py --cases 10000 --seed 1    # the long run
    python tools/fuzz/fuzz_prepare.py --cases 300 --seed 2      # a CI-sized run
"""
from __future__ import annotations

import argparse
import os
import re
import struct
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from flatbuffers import flexbuffers  # noqa: E402

from tests import cached_plans  # noqa: E402
from tflm_patch import tflm_host  # noqa: E402
from tflm_patch.converter import model_io, options, plan_validation, planner, rewrite, stage_overlap  # noqa: E402
from tflm_patch.converter.errors import ModelError, TflmPatchError  # noqa: E402
from tflm_patch.converter.graph import build_graph  # noqa: E402
from tflm_patch.converter.schema import schema  # noqa: E402

SEED_MODELS = ("residual_add", "pooling_pad", "depth_multiplier", "dilation2", "kernels_5x5_7x7", "nonsquare",
               "stride2_odd", "stride2_even", "valid_padding")
PLANS = {"default": dict(), "grid2x2": dict(patches=(2, 2)), "grid3x3": dict(patches=(3, 3)),
         "grid1x4": dict(patches=(1, 4))}
EXTREMES = (0, 1, -1, 2, 3, 7, 8, 15, 16, 127, 128, 255, 256, 65535, 65536, 2**31 - 1, -2**31, 2**31, 2**32 - 1,
            2**32, 2**62, 2**63 - 1, -2**63, -2**31 + 1, -128, -129)
_CUSTOM_OPTIONS_VOFFSET = 14  # Operator.custom_options (field 5)
_TFLM_GENERIC = re.compile(r"^Node .* failed to (prepare|invoke)|^tflm_runner:")
_KERNEL_LINE = re.compile(r"PATCH_STAGE (?:options|prepare): (?:layer (-?\d+): )?(.*) \(key (.*)\)$")
_MIRROR_LINE = re.compile(r"PATCH_STAGE options: (?:layer (-?\d+): )?(.*?)(?: \('(.*)'\))?$")


@dataclass
class Seed:
    name: str             # model.plan
    model: bytes          # the patched model
    op: int               # operator index of the PATCH_STAGE whose options are mutated
    options: bytes
    siblings: list        # options of other plans of the same stage (same op range)
    input_path: str
    stock_output: bytes = b""
    inputs: list = field(default_factory=list)   # the op's tensors as Prepare sees them (plan_validation)
    output: object = None
    placement: int | None = None  # how far before its input the offline plan lays the output (None: apart)


@dataclass
class Case:
    seed: Seed
    mutation: str
    options: bytes
    must_match: bool      # a plan that means the original's (or another valid one of the stage)
    model_path: str = ""
    output_path: str = ""


@dataclass
class Outcome:
    case: int
    seed: str
    mutation: str
    status: str
    problem: str = ""
    messages: list = field(default_factory=list)


# ---- the models ----

def _field_position(model: bytes, op: int) -> int:
    tab = schema.Model.GetRootAs(model, 0).Subgraphs(0).Operators(op)._tab
    offset = tab.Offset(_CUSTOM_OPTIONS_VOFFSET)
    if offset == 0:
        raise ValueError("operator has no custom options")
    return tab.Pos + offset


def with_options(model: bytes, op: int, new_options: bytes, shift: int = 0) -> bytes:
    """The model with operator `op`'s custom options replaced: the new vector is
    appended and the operator's offset points at it (no re-serialisation).
    shift (0, 4, 8 or 12) moves the vector off 16-byte alignment (its length
    stays 4-byte aligned, as flatbuffers requires)."""
    pos = _field_position(model, op)
    data = bytearray(model)
    data += b"\0" * (-len(data) % 16 + shift)
    vector = len(data)
    data += struct.pack("<I", len(new_options)) + bytes(new_options)
    data += b"\0" * (-len(data) % 16)
    struct.pack_into("<I", data, pos, vector - pos)
    return bytes(data)


def _stage_ops(model_t) -> list:
    codes = model_t.operatorCodes
    return [k for k, op in enumerate(model_t.subgraphs[0].operators)
            if codes[op.opcodeIndex].customCode in (b"PATCH_STAGE", "PATCH_STAGE")]


def make_seeds(workdir: str, models=SEED_MODELS, plans=PLANS) -> list:
    seeds = []
    for name in models:
        model = model_io.load_model(os.path.join(ROOT, "tests", "models", f"{name}.tflite"))
        graph = build_graph(model)
        rng = np.random.default_rng(len(seeds))
        input_path = os.path.join(workdir, f"{name}.in")
        rng.integers(-128, 128, graph.tensors[graph.inputs[0]].shape, dtype=np.int8).tofile(input_path)
        made = []
        for plan_name, kw in plans.items():
            try:
                plan = planner.make_plan(graph, require_gain=False, **kw)
            except TflmPatchError:
                continue
            patched = rewrite.rewrite_model(model, plan, "fuzz")
            made.append((plan_name, plan, patched))
        for plan_name, plan, patched in made:
            data = model_io.serialize_model(patched)
            patched_graph = build_graph(model_io.parse_model(data))
            stage_ops = _stage_ops(patched)
            for k, (op, sp) in enumerate(zip(stage_ops, plan.stages)):
                opts = bytes(patched.subgraphs[0].operators[op].customOptions)
                siblings = [options.encode(s.stage_plan) for _, p, _ in made for s in p.stages
                            if (s.stage.start, s.stage.end) == (sp.stage.start, sp.stage.end)]
                g_op = patched_graph.ops[op]
                inputs = [plan_validation.desc_from_tensor(patched_graph.tensors[t]) if t >= 0 else
                          plan_validation.TensorDesc("OTHER", (), False) for t in g_op.inputs]
                seeds.append(Seed(f"{name}.{plan_name}.stage{k}", data, op, opts,
                                  [s for s in siblings if s != opts], input_path, inputs=inputs,
                                  output=plan_validation.desc_from_tensor(patched_graph.tensors[g_op.outputs[0]]),
                                  placement=stage_overlap.planned_output_lead(patched_graph, g_op)))
    return seeds


# ---- the mutations ----

def _leaves(doc: dict) -> list:
    """Paths to every integer in an options document: (key,), (key, i), ("layers", j, key), ..."""
    out = []
    for key, value in doc.items():
        if key == "layers":
            for j, layer in enumerate(value):
                for lk, lv in layer.items():
                    out += [("layers", j, lk, i) for i in range(len(lv))] if isinstance(lv, list) else \
                        [("layers", j, lk)]
        elif isinstance(value, list):
            out += [(key, i) for i in range(len(value))]
        else:
            out.append((key,))
    return out


def _keys(doc: dict) -> list:
    out = [(k,) for k in doc if k != "layers"]
    for j, layer in enumerate(doc.get("layers", [])):
        out += [("layers", j, k) for k in layer]
    return out


def _get_parent(doc, path):
    node = doc
    for p in path[:-1]:
        node = node[p]
    return node


def _doc(opts: bytes) -> dict:
    doc = flexbuffers.Loads(bytes(opts))
    doc = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in doc.items()}
    doc["layers"] = [{k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in layer.items()}
                     for layer in doc.get("layers", [])]
    return doc


def m_flip(rng, seed, donor):
    data = bytearray(seed.options)
    for _ in range(int(rng.integers(1, 5))):
        data[int(rng.integers(len(data)))] ^= int(rng.integers(1, 256))
    return "flip", bytes(data)


def m_truncate(rng, seed, donor):
    return "truncate", seed.options[:int(rng.integers(0, len(seed.options)))]


def m_extreme(rng, seed, donor):
    doc = _doc(seed.options)
    leaves = _leaves(doc)
    for _ in range(int(rng.integers(1, 3))):
        path = leaves[int(rng.integers(len(leaves)))]
        _get_parent(doc, path)[path[-1]] = int(EXTREMES[int(rng.integers(len(EXTREMES)))])
    return "extreme_int", cached_plans.encode_document(doc)


def m_nudge(rng, seed, donor):
    doc = _doc(seed.options)
    leaves = _leaves(doc)
    path = leaves[int(rng.integers(len(leaves)))]
    parent = _get_parent(doc, path)
    parent[path[-1]] = int(parent[path[-1]]) + int(rng.choice([-2, -1, 1, 2]))
    return "nudge", cached_plans.encode_document(doc)


def m_swap(rng, seed, donor):
    doc = _doc(seed.options)
    keys = _keys(doc)
    a, b = (keys[int(i)] for i in rng.choice(len(keys), size=2, replace=False))
    pa, pb = _get_parent(doc, a), _get_parent(doc, b)
    pa[a[-1]], pb[b[-1]] = pb[b[-1]], pa[a[-1]]
    return "swap_keys", cached_plans.encode_document(doc)


def m_drop(rng, seed, donor):
    doc = _doc(seed.options)
    keys = _keys(doc)
    path = keys[int(rng.integers(len(keys)))]
    del _get_parent(doc, path)[path[-1]]
    return "drop_key", cached_plans.encode_document(doc)


def m_layers(rng, seed, donor):
    doc = _doc(seed.options)
    layers = doc["layers"]
    choice = int(rng.integers(3))
    if choice == 0 and len(layers) > 1:
        del layers[int(rng.integers(len(layers)))]
    elif choice == 1:
        layers.insert(int(rng.integers(len(layers) + 1)), dict(layers[int(rng.integers(len(layers)))]))
    elif len(layers) > 1:
        i, j = rng.choice(len(layers), size=2, replace=False)
        layers[i], layers[j] = layers[j], layers[i]
    return "edit_layers", cached_plans.encode_document(doc)


def m_splice(rng, seed, donor):
    a, b = seed.options, donor.options
    cut_a, cut_b = int(rng.integers(len(a) + 1)), int(rng.integers(len(b) + 1))
    return "splice", a[:cut_a] + b[cut_b:]


def m_other_model(rng, seed, donor):
    return "other_model_plan", donor.options


def m_cached(rng, seed, donor):
    """A version-2 plan of the seed's: spare cache bytes (valid), or caches made to overlap (not)."""
    rows, cols = bool(rng.integers(2)), bool(rng.integers(2))
    rows = rows or not cols
    slack = int(rng.choice([0, 0, 1, 16]))
    if rng.integers(2):
        return "cached_valid", cached_plans.with_caches(seed.options, rows, cols, slack=slack)

    def overlap(doc, needs):
        layer = doc["layers"][int(rng.integers(max(1, len(doc["layers"]) - 1)))]
        key = str(rng.choice(["row_cache_offset", "col_cache_offset", "row_cache_bytes", "col_cache_bytes"]))
        layer[key] = int(rng.choice([0, -1, layer.get(key, 0) // 2, 2**31 - 1, doc["scratch_bytes"]]))
    return "cached_broken", cached_plans.with_caches(seed.options, rows, cols, slack=slack, edit=overlap)


def m_sibling(rng, seed, donor):
    return "other_valid_plan", seed.siblings[int(rng.integers(len(seed.siblings)))]


MUTATIONS = [m_flip, m_flip, m_truncate, m_extreme, m_extreme, m_nudge, m_nudge, m_swap, m_drop, m_layers,
             m_splice, m_other_model, m_cached, m_sibling]
VALID = {"cached_valid", "other_valid_plan"}
# accepted, these must still compute the stage right: their edits touch only cache memory
MUST_MATCH_IF_ACCEPTED = VALID | {"cached_broken"}


def make_case(rng, seeds) -> Case:
    seed = seeds[int(rng.integers(len(seeds)))]
    donor = seeds[int(rng.integers(len(seeds)))]
    mutation = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
    if mutation is m_sibling and not seed.siblings:
        mutation = m_nudge
    if mutation is m_cached and _doc(seed.options).get("version", 1) != 1:
        mutation = m_flip  # already cached: with_caches starts from version-1 options
    try:
        name, opts = mutation(rng, seed, donor)
    except (cached_plans.NotCacheable, KeyError, ValueError, IndexError, OverflowError, TypeError):
        name, opts = m_flip(rng, seed, donor)
    return Case(seed, name, bytes(opts), name in MUST_MATCH_IF_ACCEPTED or _same_plan(opts, seed.options))


def _same_plan(a: bytes, b: bytes) -> bool:
    try:
        return options.decode(bytes(a)) == options.decode(bytes(b))
    except Exception:  # the Python decoder refuses it: not the same plan  # noqa: BLE001
        return False


# ---- running ----

def find_runner() -> tuple:
    """(runner path, description) from the sanitizer build, else the plain reference build."""
    tree, why = tflm_host.find_tflm_sanitized()
    if tree is None:
        tree, why = tflm_host.find_tflm(tflm_host.REFERENCE)
    if tree is None:
        raise RuntimeError(why)
    return tflm_host.build_runner(tree), ("ASan+UBSan " if tree.sanitized else "") + tree.library


def mirror_verdict(case: Case):
    """None when the Python mirror of Prepare accepts the options, else (layer, message, key)."""
    try:
        plan = options.decode(case.options)
        plan_validation.validate_plan(plan, case.seed.inputs, case.seed.output)
    except ModelError as exc:
        m = _MIRROR_LINE.search(str(exc))
        return (int(m.group(1)) if m.group(1) else -1, m.group(2), m.group(3) or "-") if m else (-1, str(exc), "-")
    return None


def mirror_eval_refuses(case: Case) -> bool:
    """The Python mirror of Eval's placement check (stage_overlap): the seed's offline plan lays the
    output `placement` bytes before the input; the mutated plan may need more."""
    if case.seed.placement is None:
        return False
    try:
        return stage_overlap.plan_lead(options.decode(case.options)) > case.seed.placement
    except ModelError:
        return False


def kernel_verdict(messages: list):
    """(layer, message, key) of the kernel's refusal among a case's lines, or None."""
    for line in messages:
        m = _KERNEL_LINE.search(line)
        if m:
            return int(m.group(1)) if m.group(1) else -1, m.group(2), m.group(3)
    return None


def judge(case: Case, result) -> str:
    """'' if the case ended as it must, else the problem."""
    problem = _judge_tflm(case, result)
    if problem or result.status not in ("ok", "allocate_failed"):
        return problem
    mirror, kernel = mirror_verdict(case), kernel_verdict(result.messages)
    if result.status == "allocate_failed" and kernel is None:
        return ""  # TFLM itself refused (the arena): the mirror does not model arena size
    if mirror != kernel:
        return f"Python mirror of Prepare says {mirror or 'ok'}, the kernel in TFLM says {kernel or 'ok'}"
    return ""


def _judge_tflm(case: Case, result) -> str:
    if result.status in ("crash", "timeout"):
        return f"{result.status}: {result.finding}"
    findings = tflm_host.sanitizer_findings(result.messages)
    if findings:
        return "sanitizer finding: " + findings[0]
    if result.status == "allocate_failed":
        said = [m for m in result.messages if m.strip() and not _TFLM_GENERIC.search(m)]
        if not said:
            return "Prepare failed without a message"
        if case.mutation in VALID:
            return "a valid plan was refused: " + said[0]
        return ""
    if result.status == "invoke_failed":
        if mirror_eval_refuses(case) and any(stage_overlap.OVERLAP_MESSAGE in m for m in result.messages):
            return ""  # Eval refused an output laid on input the new plan still reads, as the mirror says
        return "Invoke failed after a clean Prepare: " + " | ".join(result.messages[-3:])
    if result.status != "ok":
        return f"runner status {result.status}"
    if mirror_eval_refuses(case):
        return "Eval ran a plan whose output overlaps input it still reads (the mirror refuses it)"
    if not result.arena_intact:
        return "Invoke wrote to the arena's unused middle"
    if case.must_match:
        with open(case.output_path, "rb") as f:
            if f.read() != case.seed.stock_output:
                return "outputs differ from the unmutated model's"
    return ""


def campaign(cases: int, seed: int, workdir: str, batch: int = 400, seeds_models=SEED_MODELS,
             log=print) -> dict:
    start = time.time()
    runner, build = find_runner()
    seeds = make_seeds(workdir, seeds_models)
    # the unmutated models first: they must run, and give the reference outputs
    base = [tflm_host.BatchCase(self_path(workdir, s, "seed", s.model), s.input_path,
                                os.path.join(workdir, f"{s.name}.out")) for s in seeds]
    for s, c, r in zip(seeds, base, tflm_host.run_batch(runner, base)):
        if r.status != "ok":
            raise RuntimeError(f"seed {s.name} does not run: {r.status} {r.messages} {r.finding}")
        with open(c.output, "rb") as f:
            s.stock_output = f.read()
    rng = np.random.default_rng(seed)
    outcomes, counts, by_mutation = [], Counter(), Counter()
    for first in range(0, cases, batch):
        chunk = [make_case(rng, seeds) for _ in range(min(batch, cases - first))]
        jobs = []
        for i, case in enumerate(chunk):
            n = first + i
            moved = with_options(case.seed.model, case.seed.op, case.options, int(rng.choice([0, 4, 8, 12])))
            case.model_path = self_path(workdir, case.seed, f"case{n}", moved)
            case.output_path = os.path.join(workdir, f"case{n}.out")
            jobs.append(tflm_host.BatchCase(case.model_path, case.seed.input_path, case.output_path))
        for i, (case, result) in enumerate(zip(chunk, tflm_host.run_batch(runner, jobs, case_timeout=60))):
            problem = judge(case, result)
            outcome = "refused" if result.status == "allocate_failed" else result.status
            if outcome == "refused" and kernel_verdict(result.messages) is None:
                outcome = "refused_by_tflm"  # not by the kernel: TFLM's own checks (e.g. arena size)
            if outcome == "invoke_failed" and not problem:
                outcome = "refused_in_eval"  # an output laid on input the mutated plan still reads
            counts[outcome] += 1
            counts["same_refusal_as_mirror"] += outcome == "refused" and not problem
            by_mutation[(case.mutation, outcome)] += 1
            counts["same_plan_checked"] += case.must_match and result.status == "ok"
            if problem:
                outcomes.append(Outcome(first + i, case.seed.name, case.mutation, result.status, problem,
                                        result.messages[-20:]))
                keep = os.path.join(workdir, "failures")
                os.makedirs(keep, exist_ok=True)
                os.replace(case.model_path, os.path.join(keep, f"case{first + i}.tflite"))
            for p in (case.model_path, case.output_path):
                if os.path.exists(p):
                    os.remove(p)
        log(f"{first + len(chunk)} cases, {dict(counts)}, {len(outcomes)} problems, {time.time() - start:.0f} s")
    return {"cases": cases, "seeds": len(seeds), "build": build, "counts": dict(counts),
            "by_mutation": {f"{m}:{o}": v for (m, o), v in sorted(by_mutation.items())},
            "problems": outcomes, "seconds": time.time() - start}


def self_path(workdir: str, seed: Seed, stem: str, data: bytes) -> str:
    path = os.path.join(workdir, f"{stem}.{seed.name}.tflite")
    with open(path, "wb") as f:
        f.write(data)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch", type=int, default=400, help="cases per runner process")
    p.add_argument("--workdir", help="keep the failing models here (default: a temporary directory)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or tmp
        os.makedirs(workdir, exist_ok=True)
        try:
            summary = campaign(args.cases, args.seed, workdir, args.batch)
        except RuntimeError as exc:
            print(f"fuzz_prepare: {exc}", file=sys.stderr)
            return 2
        print(f"build: {summary['build']}")
        print(f"{summary['cases']} cases from {summary['seeds']} seeds in {summary['seconds']:.0f} s: "
              f"{summary['counts']}")
        for key, value in summary["by_mutation"].items():
            print(f"  {key}: {value}")
        for o in summary["problems"][:20]:
            print(f"PROBLEM case {o.case} ({o.seed}, {o.mutation}): {o.problem}\n    " + "\n    ".join(o.messages))
        print(f"{len(summary['problems'])} problems")
        return 1 if summary["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())

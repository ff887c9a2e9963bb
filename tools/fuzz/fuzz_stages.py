#!/usr/bin/env python3
"""Exactness at scale: random wide stages, random uneven grids, both engines against TFLM.

Each case draws a stage wider than the CI property test
(tests/random_stages.py: wide_stage_spec — images up to 48x48, up to 8
layers, stride 3, non-square kernels, dilation 3, depth multipliers up to 3,
residual ADDs, PADs, pools), builds the int8 model (tests/modelgen.py), cuts
the stage output into a random uneven grid (or a searched even one), rewrites
the model and verifies it with both PATCH_STAGE engines (the Python reference
and the C++ kernel) against the TFLM wheel: the stage output byte for byte and
the model outputs; then runs the stage with its output laid over its input at
exactly the kernel's lead (both engines), which must give the same bytes. Reproducible (--seed, case i = seed * 1_000_003 + i).

    python tools/fuzz/fuzz_stages.py --cases 5000 --seed 1    # the long run
    python tools/fuzz/fuzz_stages.py --cases 30 --seed 3      # a CI-sized run
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from tests.random_stages import build, uneven_cuts, wide_stage_spec  # noqa: E402
from tflm_patch import native  # noqa: E402
from tflm_patch.converter import (arena, model_io, pipeline, planner, reference, stage_cost,  # noqa: E402
                                  stage_overlap, verify)
from tflm_patch.converter.options import encode  # noqa: E402
from tflm_patch.converter.errors import TflmPatchError  # noqa: E402
from tflm_patch.converter.graph import build_graph  # noqa: E402
from tflm_patch.converter.stage import select_stage  # noqa: E402

ENGINES = ("python", "cpp")


def run_case(i: int, seed: int, inputs: int = 2) -> dict:
    rng = np.random.default_rng(seed * 1_000_003 + i)
    spec = wide_stage_spec(rng)
    data = build(spec)
    if data is None:
        return {"case": i, "outcome": "empty image", "spec": spec}
    model = model_io.parse_model(data)
    graph = build_graph(model)
    split = len(graph.ops) - 1  # every op but the MEAN tail
    try:
        stage = select_stage(graph, split)[0]
    except TflmPatchError as exc:  # e.g. a layer the stage does not take
        return {"case": i, "outcome": "no stage", "reason": str(exc), "spec": spec}
    h, w = stage.layers[-1].out_shape[:2]
    rows, cols = uneven_cuts(rng, h), uneven_cuts(rng, w)
    input_shape = tuple(graph.tensors[stage.input_tensor].shape[1:])
    cache_rows, cache_cols = planner.CACHE_MODES[int(rng.integers(len(planner.CACHE_MODES)))]
    opt = stage_cost.option(stage, input_shape, rows, cols, cache_rows and len(rows) > 2, cache_cols and len(cols) > 2)
    if opt is None:  # regions not separable: halos recomputed
        opt = stage_cost.option(stage, input_shape, rows, cols)
    sp = stage_cost.materialize(opt)
    plan = planner.Plan([sp], arena.plan_arena(graph).head_bytes, planner.predict(graph, [sp]).head_bytes)
    patched = pipeline.write_patched(model, plan).data
    report = verify.verify(data, patched, verify.random_inputs(graph, inputs, seed=i % 1000), engines=ENGINES)
    fused = report.identical and _fused_identical(rng, graph, sp)
    return {"case": i, "outcome": "identical" if fused else "MISMATCH", "spec": spec,
            "grid": [rows, cols], "caching": sp.caching, "layers": len(stage.layers), "input": list(spec["input"]),
            "detail": report.first_difference or ("" if fused else "the stage laid over its input differs")}


def _fused_identical(rng, graph, sp) -> bool:
    """The stage run with its output over its input at exactly the kernel's lead, in both engines,
    gives the bytes it gives apart (docs "Output over the input")."""
    options = encode(sp.stage_plan)
    stage_input = rng.integers(-128, 128, (1,) + tuple(sp.stage_plan.input_shape), dtype=np.int8)
    inputs = [stage_input] + [graph.tensors[t].data for t in sp.stage.constants]
    shape = (1,) + tuple(sp.stage_plan.layers[-1].out_shape)
    apart = native.run_stage(options, inputs, shape)
    lead = native.last_min_output_lead()
    if lead != stage_overlap.plan_lead(sp.stage_plan):
        return False
    if lead == stage_overlap.NO_LIMIT:
        return True
    return (native.run_stage(options, inputs, shape, output_lead=lead).tobytes() == apart.tobytes()
            == reference.run_stage(options, inputs, output_lead=lead).tobytes())


def campaign(cases: int, seed: int, start: int = 0, save_dir: str | None = None, progress: int = 0) -> dict:
    counts, failures = Counter(), []
    t0 = time.time()
    features = Counter()
    for n, i in enumerate(range(start, start + cases)):
        try:
            r = run_case(i, seed)
        except Exception as exc:  # noqa: BLE001 - any escape is a finding
            r = {"case": i, "outcome": "ERROR", "detail": f"{type(exc).__name__}: {exc}"}
        counts[r["outcome"]] += 1
        if r["outcome"] == "identical":
            spec = r["spec"]
            features["max_layers"] = max(features["max_layers"], r["layers"])
            features["max_image"] = max(features["max_image"], max(spec["input"][:2]))
            features["uneven_grids"] += any(len({b - a for a, b in zip(g, g[1:])}) > 1 for g in r["grid"])
            features[f"halos_{r['caching']}"] += 1
            for s in spec["layers"]:
                if s.get("stride") == 3:
                    features["stride3_layers"] += 1
                if s.get("dilation") == 3:
                    features["dilation3_layers"] += 1
                if s.get("dm") == 3 and s["kind"] == "dw":
                    features["dm3_layers"] += 1
                if isinstance(s.get("k"), list) and s["k"][0] != s["k"][1]:
                    features["nonsquare_kernels"] += 1
        if r["outcome"] in ("MISMATCH", "ERROR"):
            failures.append(r)
            print(f"FAIL case {i}: {r['outcome']} {r.get('detail')}", flush=True)
            if save_dir:
                os.makedirs(save_dir, exist_ok=True)
                with open(os.path.join(save_dir, f"stage_seed{seed}_case{i}.json"), "w") as f:
                    json.dump(r, f, default=str, indent=1)
        if progress and (n + 1) % progress == 0:
            print(f"... {n + 1} cases, {time.time() - t0:.0f} s, {dict(counts)}", flush=True)
    return {"cases": cases, "counts": dict(counts), "failures": failures, "features": dict(features),
            "seconds": time.time() - t0, "seed": seed}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--save-dir", default="fuzz-failures")
    p.add_argument("--progress", type=int, default=0)
    args = p.parse_args(argv)
    s = campaign(args.cases, args.seed, args.start, args.save_dir, args.progress)
    c = s["counts"]
    verified = c.get("identical", 0) + c.get("MISMATCH", 0)
    print(f"\nstage campaign, seed {args.seed}: {s['cases']} cases in {s['seconds']:.0f} s; "
          f"{verified} stages verified with both engines against TFLM; identical {c.get('identical', 0)}, "
          f"mismatches {c.get('MISMATCH', 0)}, errors {c.get('ERROR', 0)}, skipped "
          f"{c.get('empty image', 0) + c.get('no stage', 0)} (spec shrinks the image to nothing / no stage)")
    print("features among verified stages: " + ", ".join(f"{k} {v}" for k, v in sorted(s["features"].items())))
    return 1 if s["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""Memory benchmark (no TFLM tree needed): what the planner reaches under each MAC limit.

For every model and every MAC limit it prints, from one run of the planner:
the planned (non-persistent) TFLM arena stock and patched (TFLM's greedy
planner replayed, as tested to the byte against TFLM), the activation peak
with the model input excluded (the same replay with the input tensor kept
outside the arena, the measure the patch-based papers use), the stages' and
the whole model's MAC ratios, the plan chosen and the planning time.

    python benchmarks/bench_memory.py                       # every model below
    python benchmarks/bench_memory.py --models mobilenetv2_035_144 --limits 1.0 1.1

MobileNetV2-1.0 at 224x224 (3.5 MB) is not shipped: it is made on first use with
tests/models/make_models.py (TensorFlow, a few minutes) into ~/.cache/tflm-patch/models.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tflm_patch.converter import analysis, arena, model_io, planner  # noqa: E402
from tflm_patch.converter.errors import NoGainError  # noqa: E402
from tflm_patch.converter.graph import build_graph  # noqa: E402

MODELS = ["mobilenetv2_035_96", "mobilenetv2_035_144", "mobilenetv2_100_224", "mobilenetv1_025_96_gray",
          "residual_add"]
LIMITS = [1.0, 1.05, 1.10, 1.25, 1.5]
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "tflm-patch", "models")


def model_path(name: str) -> str:
    for folder in (os.path.join(ROOT, "tests", "models"), CACHE):
        path = os.path.join(folder, name + ".tflite")
        if os.path.exists(path):
            return path
    os.makedirs(CACHE, exist_ok=True)
    print(f"making {name} in {CACHE} (TensorFlow) ...", flush=True)
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "models", "make_models.py"), "--out", CACHE,
                    "--only", name], check=True, stdout=subprocess.DEVNULL)
    return os.path.join(CACHE, name + ".tflite")


def input_excluded_peak(graph, stages) -> int:
    """The planned arena with the model inputs kept outside it (TFLM's greedy planner replayed)."""
    g, scratch = planner.patched_graph(graph, stages)
    requests = arena.builtin_scratch_requests(g)
    requests.update({k: list(v) for k, v in scratch.items()})
    inputs = {f"t{t}" for t in g.inputs}
    buffers = [b for b in arena.allocation_lifetimes(g, requests) if b.label not in inputs]
    return arena.greedy_plan(buffers)


def describe(plan) -> str:
    return " + ".join(f"ops {s.stage.start}-{s.stage.end - 1} {s.grid[0]}x{s.grid[1]} {s.caching}"
                      for s in plan.stages)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--limits", nargs="+", type=float, default=LIMITS)
    ap.add_argument("--kernels", default="reference", choices=["reference", "cmsis_nn"])
    args = ap.parse_args(argv)
    print("| model | MAC limit | planned arena stock -> patched | peak, input excluded, stock -> patched "
          "| stage MACs | model MACs | plan | planning |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        graph = build_graph(model_io.load_model(model_path(name)))
        stock = arena.plan_arena(graph).head_bytes
        stock_ex = input_excluded_peak(graph, [])
        total = analysis.analyze(graph).total_macs
        for limit in args.limits:
            t0 = time.time()
            try:
                plan = planner.make_plan(graph, max_mac_overhead=limit, kernels=args.kernels)
            except NoGainError as exc:
                print(f"| {name} | {limit:.2f} | {stock:,} -> (none) | {stock_ex:,} | | | {exc} | "
                      f"{time.time() - t0:.1f} s |")
                continue
            took = time.time() - t0
            ex = input_excluded_peak(graph, plan.stages)
            model_ratio = (total + plan.macs_patched - plan.macs_original) / total
            print(f"| {name} | {limit:.2f} | {stock:,} -> {plan.arena_after:,} ({stock / plan.arena_after:.2f}x) "
                  f"| {stock_ex:,} -> {ex:,} ({stock_ex / ex:.2f}x) | {plan.mac_overhead:.3f}x "
                  f"| {model_ratio:.3f}x | {describe(plan)} | {took:.1f} s |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

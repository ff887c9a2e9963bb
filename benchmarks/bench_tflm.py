"""Benchmark: stock vs patched models in the same real TFLM build on this host.

    TFLM_ROOT=/path/to/tflite-micro python benchmarks/bench_tflm.py [MODEL.tflite ...] [--repeats N]

For every model (default: tests/models/*.tflite), the default plan of
`tflm-patch convert` is made; both models run in TFLM (our runner linked to
the user's libtensorflow-microlite.a) on the same random input. The table
gives arena_used_bytes of both (measured), the planned arena (predicted), the
MAC overhead and host time per inference, each as a ratio patched/stock
measured in the same run. Outputs must be identical, or the row says so.
One table per host library found (reference kernels, CMSIS-NN kernels; the
patched model is planned with --kernels of that library).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile

from tflm_patch import tflm_host
from tflm_patch.converter import model_io, pipeline, planner, verify
from tflm_patch.converter.errors import NoGainError
from tflm_patch.converter.graph import build_graph

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-mac-overhead", type=float, default=1.05)
    args = ap.parse_args(argv)
    builds, why = tflm_host.find_tflm_builds()
    if not builds:
        print(f"bench_tflm: {why}", file=sys.stderr)
        return 2
    models = args.models or sorted(glob.glob(os.path.join(ROOT, "tests", "models", "*.tflite")))
    different = 0
    for tree in builds:
        different += table(tree, models, args)
        print()
    return 1 if different else 0


def table(tree, models: list, args) -> int:
    """Prints one table; returns the number of rows whose outputs differ."""
    runner = tflm_host.build_runner(tree)
    different = 0
    header = (f"{'model':<22} {'grid':>5} {'arena stock':>12} {'arena patched':>14} {'ratio':>6} "
              f"{'planned':>17} {'MACs':>6} {'us stock':>10} {'us patched':>11} {'time':>6}  outputs")
    print(f"TFLM library ({tree.kernels} kernels): {tree.library}")
    print(header)
    print("-" * len(header))
    for path in models:
        name = os.path.basename(path)[:-len(".tflite")]
        data = model_io.read_model_bytes(path)
        model = model_io.parse_model(data, path)
        graph = build_graph(model)
        try:
            plan = planner.make_plan(graph, max_mac_overhead=args.max_mac_overhead, kernels=tree.kernels)
        except NoGainError:
            print(f"{name:<22} {'-':>5}  no plan lowers the peak (left unchanged)")
            continue
        x = verify.random_inputs(graph, 1)[0][0]  # the model's own input type
        fill = tflm_host.arena_fill_for(graph)
        with tempfile.TemporaryDirectory() as d:
            patched_path = os.path.join(d, "patched.tflite")
            model_io.write_atomically(patched_path, pipeline.write_patched(model, plan).data)
            stock = tflm_host.run_model(runner, path, x, args.repeats, arena_fill=fill)
            patched = tflm_host.run_model(runner, patched_path, x, args.repeats, arena_fill=fill)
        same = "identical" if stock.outputs == patched.outputs else "DIFFERENT"
        different += same == "DIFFERENT"
        grid = f"{plan.grid[0]}x{plan.grid[1]}"
        print(f"{name:<22} {grid:>5} {stock.arena_used_bytes:>12,} {patched.arena_used_bytes:>14,} "
              f"{stock.arena_used_bytes / patched.arena_used_bytes:>5.2f}x "
              f"{plan.arena_before:>8,}->{plan.arena_after:<8,} {plan.mac_overhead:>5.2f}x "
              f"{stock.invoke_us:>10,.0f} {patched.invoke_us:>11,.0f} {patched.invoke_us / stock.invoke_us:>5.2f}x  {same}")
    return different


if __name__ == "__main__":
    sys.exit(main())

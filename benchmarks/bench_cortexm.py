"""Benchmark: stock vs patched models on a Cortex-M4 (QEMU mps2-an386, bare metal TFLM).

    TFLM_ROOT=/path/to/tflite-micro python benchmarks/bench_cortexm.py [MODEL.tflite ...] [--kernels K]

For every model (default: tests/models/*.tflite) the default plan of
`tflm-patch convert` is made; the original and the patched model are
cross-compiled into bare-metal programs with the user's Cortex-M4
libtensorflow-microlite.a and our kernel, and run on QEMU's mps2-an386 board
on the same random input. The table gives arena_used_bytes() measured on the
M4 and the guest instructions executed by one Invoke() (counted by our QEMU
plugin between two marker calls around Invoke()), each with the ratio
stock/patched, the MAC overhead of the plan, and whether the M4 outputs equal
the host TFLM run byte for byte (`identical`), or only each other (`same on
M4`, when the host library is not built), or not (`DIFFERENT`). One table per
Cortex-M4 library found: reference kernels and CMSIS-NN kernels (the patched
model planned with --kernels of that library, or --plan-kernels).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile

from tflm_patch import cortexm, tflm_host
from tflm_patch.converter import model_io, pipeline, planner, verify
from tflm_patch.converter.errors import NoGainError
from tflm_patch.converter.graph import build_graph

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*")
    ap.add_argument("--max-mac-overhead", type=float, default=1.05)
    ap.add_argument("--invokes", type=int, default=1, help="Invoke() calls per run; all must count the same")
    ap.add_argument("--timeout", type=float, default=cortexm.DEFAULT_TIMEOUT, help="seconds per QEMU run")
    ap.add_argument("--kernels", choices=(tflm_host.REFERENCE, tflm_host.CMSIS_NN),
                    help="only the library with these kernels (default: every one found)")
    ap.add_argument("--plan-kernels", choices=(tflm_host.REFERENCE, tflm_host.CMSIS_NN),
                    help="plan for these kernels (default: the library's; reference plans, the default of "
                         "`convert`, get offline memory plans)")
    args = ap.parse_args(argv)
    models = args.models or sorted(glob.glob(os.path.join(ROOT, "tests", "models", "*.tflite")))
    ran, failures = 0, 0
    for kernels in [args.kernels] if args.kernels else [tflm_host.REFERENCE, tflm_host.CMSIS_NN]:
        env, why = cortexm.find_cortexm(kernels)
        if env is None:
            print(f"bench_cortexm ({kernels} kernels): {why}", file=sys.stderr)
            continue
        ran += 1
        failures += table(env, kernels, models, args)
        print()
    return 2 if not ran else (1 if failures else 0)


def table(env, kernels: str, models: list, args) -> int:
    """Prints one table; returns the number of failed rows."""
    tree, host_why = tflm_host.find_tflm(kernels)
    runner = tflm_host.build_runner(tree) if tree is not None else None
    print(f"TFLM Cortex-M4 library ({kernels} kernels): {env.tree.library}; plans made for "
          f"{args.plan_kernels or kernels} kernels")
    print(f"board: QEMU {cortexm.BOARD} (Cortex-M4F); host check: "
          f"{tree.library if tree else 'skipped (' + host_why + ')'}")
    header = (f"{'model':<22} {'grid':>5} {'arena stock':>12} {'arena patched':>14} {'ratio':>6} "
              f"{'insns stock':>14} {'insns patched':>14} {'ratio':>6} {'MACs':>6}  outputs")
    print(header)
    print("-" * len(header))
    failures = 0
    for path in models:
        name = os.path.basename(path)[:-len(".tflite")]
        model = model_io.parse_model(model_io.read_model_bytes(path), path)
        graph = build_graph(model)
        try:
            plan = planner.make_plan(graph, max_mac_overhead=args.max_mac_overhead,
                                     kernels=args.plan_kernels or kernels)
        except NoGainError:
            print(f"{name:<22} {'-':>5}  no plan lowers the peak (left unchanged)")
            continue
        x = verify.random_inputs(graph, 1)[0][0]  # the model's own input type
        with tempfile.TemporaryDirectory() as d:
            patched_path = os.path.join(d, "patched.tflite")
            model_io.write_atomically(patched_path,
                                      pipeline.write_patched(model, plan).data)
            try:
                stock = cortexm.run_model(env, path, x, args.invokes, timeout=args.timeout)
                patched = cortexm.run_model(env, patched_path, x, args.invokes, timeout=args.timeout)
            except cortexm.CortexMError as exc:
                print(f"{name:<22} FAILED: {str(exc).splitlines()[0]}")
                failures += 1
                continue
            host = tflm_host.run_model(runner, path, x) if runner else None
        if host is not None:
            same = host.outputs == stock.outputs == patched.outputs
            verdict = "identical" if same else "DIFFERENT"
        else:
            same = stock.outputs == patched.outputs
            verdict = "same on M4" if same else "DIFFERENT"
        if len(set(stock.invoke_insns)) > 1 or len(set(patched.invoke_insns)) > 1:
            verdict += " (instruction counts vary between invokes)"
            same = False
        failures += not same
        grid = f"{plan.grid[0]}x{plan.grid[1]}"
        print(f"{name:<22} {grid:>5} {stock.arena_used_bytes:>12,} {patched.arena_used_bytes:>14,} "
              f"{stock.arena_used_bytes / patched.arena_used_bytes:>5.2f}x "
              f"{stock.insns:>14,} {patched.insns:>14,} {patched.insns / stock.insns:>5.2f}x "
              f"{plan.mac_overhead:>5.2f}x  {verdict}")
    print("arena ratio = stock/patched (higher is better); insns = guest instructions of one Invoke(), "
          "ratio patched/stock; MACs = patched/stock")
    return failures


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the whole arena, predicted and measured (needs no TFLM tree, only the wheel).

    python benchmarks/bench_arena.py [MODEL.tflite ...] [--max-mac-overhead 1.3]

For every model (default: tests/models/*.tflite) and its default patch plan:
TFLM's greedy head (planned arena), the offline plan's head (converter/
offline_plan.py), the largest-live-set lower bound, the predicted persistent
tail and arena_used_bytes() of a 64-bit host build (reference kernels), and
the arena_used_bytes() the tflite-micro wheel measures against our prediction
for the wheel's own build (RecordingMicroAllocator, compression on). The
patched rows need PATCH_STAGE, which the wheel cannot run: they are predicted
only (measured in bench_tflm.py with a host TFLM build).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

from tflm_patch.converter import analysis, arena, model_io, offline_plan, oracle, persistent, pipeline, planner, verify
from tflm_patch.converter.errors import NoGainError
from tflm_patch.converter.graph import build_graph

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def row(graph, data=None) -> dict:
    requests = arena.scratch_requests(graph, analysis.patch_stage_scratch(graph))
    greedy = arena.plan_arena(graph, analysis.patch_stage_scratch(graph)).head_bytes
    offsets, best = offline_plan.improve(graph, requests)
    bound = offline_plan.lower_bound(arena.allocation_lifetimes(graph, requests))
    host = persistent.try_predict_total(graph, greedy)
    r = {"greedy": greedy, "offline": best, "bound": bound,
         "tail": host.tail_bytes if host else None, "total": host.total_bytes if host else None,
         "total_offline": host.tail_bytes + best if host else None, "wheel": None, "wheel_pred": None}
    if data is not None:
        measured = oracle.measure_arena(data, verify.random_inputs(graph, 1)[0])
        r["wheel"] = measured.total
        r["wheel_pred"] = persistent.predict_total(graph, greedy, abi="wheel", recording=True).total_bytes
    return r


def fmt(v) -> str:
    return "-" if v is None else f"{v:,}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*")
    ap.add_argument("--max-mac-overhead", type=float, default=1.3)
    args = ap.parse_args(argv)
    paths = args.models or sorted(glob.glob(os.path.join(ROOT, "tests", "models", "*.tflite")))
    head = (f"| model | | greedy head | offline head | live-set bound | greedy/bound | persistent | "
            f"total (greedy) | total (offline) | wheel total measured | = predicted |")
    print(head)
    print("|" + "---|" * 11)
    summary = []
    for path in paths:
        data = model_io.read_model_bytes(path)
        model = model_io.parse_model(data, path)
        graph = build_graph(model)
        name = os.path.basename(path)[:-7]
        rows = [("stock", row(graph, data))]
        try:
            plan = planner.make_plan(graph, max_mac_overhead=args.max_mac_overhead)
            patched = pipeline.write_patched(model, plan).graph
            rows.append((f"patched {plan.grid[0]}x{plan.grid[1]}", row(patched)))
        except NoGainError:
            pass
        for kind, r in rows:
            ok = "" if r["wheel"] is None else ("yes" if r["wheel"] == r["wheel_pred"] else "NO")
            print(f"| {name} | {kind} | {fmt(r['greedy'])} | {fmt(r['offline'])} | {fmt(r['bound'])} | "
                  f"{r['greedy'] / max(1, r['bound']):.2f} | {fmt(r['tail'])} | {fmt(r['total'])} | "
                  f"{fmt(r['total_offline'])} | {fmt(r['wheel'])} | {ok} |")
        s = rows[0][1]
        if s["total"] is not None:
            p = rows[1][1]["total_offline"] if len(rows) == 2 else None
            best = min(v for v in (s["total_offline"], p) if v is not None)
            summary.append((name, s["total"], s["total_offline"], p, s["total"] / best))
    print("\n| model | arena_used_bytes() stock (greedy) | stock + offline plan | patched + offline plan | "
          "stock / best |")
    print("|---|---:|---:|---:|---:|")
    for name, s, o, p, ratio in summary:
        print(f"| {name} | {s:,} | {o:,} | {fmt(p)} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The tflm-patch command line: analyze, convert, verify, export-c.

Every failure a user can cause ends in one line on stderr and a non-zero exit:
2 bad input or impossible request, 3 no plan lowers the peak (nothing
written), 4 the patched model is not bit-identical, 1 an internal error.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from . import __version__
from .converter import analysis, cmsis_nn, export_c, model_io, oracle, planner, rewrite
from .converter import verify as verify_mod
from .converter.errors import ModelError, TflmPatchError
from .converter.graph import build_graph
from .units import kib, parse_size


def _grid(text: str) -> tuple:
    try:
        r, c = text.lower().split("x")
        r, c = int(r), int(c)
        if r < 1 or c < 1:
            raise ValueError
        return r, c
    except ValueError:
        raise argparse.ArgumentTypeError(f"--patches takes ROWSxCOLS, like 3x3 (got {text!r})") from None


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    try:
        v = float(text)
        if v < 1.0:
            raise ValueError
        return v
    except ValueError:
        raise argparse.ArgumentTypeError(f"--max-mac-overhead takes a ratio >= 1.0 (got {text!r})") from None


def _shape(s) -> str:
    return "x".join(str(d) for d in s)


def _load(path: str):
    data = model_io.read_model_bytes(path)
    model = model_io.parse_model(data, path)
    return data, model, build_graph(model)


def _require_int8_model(graph, path: str) -> None:
    for t in graph.inputs:
        tensor = graph.tensors[t]
        if tensor.type_name != "INT8":
            raise ModelError(f"{path}: input {tensor.name!r} is {tensor.type_name}; convert with full-integer "
                             "int8 quantization (inference_input_type=tf.int8)")


def print_table(rows, out=None) -> None:
    out = out if out is not None else sys.stdout
    print(f"{'#':>3}  {'op':<20} {'input':<14} {'output':<14} {'in+out B':>10} {'MACs':>12} {'arena B':>9}", file=out)
    for r in rows:
        ins = ",".join(_shape(s) for s in r.input_shapes) or "-"
        outs = ",".join(_shape(s) for s in r.output_shapes)
        print(f"{r.index:>3}  {r.name:<20} {ins:<14} {outs:<14} {r.io_bytes:>10,} {r.macs:>12,} {r.extent_bytes:>9,}", file=out)


def cmd_analyze(args) -> int:
    data, model, graph = _load(args.model)
    result = analysis.analyze(graph)
    print(f"{args.model}: {len(graph.ops)} ops, input {_shape(graph.tensors[graph.inputs[0]].shape)} "
          f"{graph.tensors[graph.inputs[0]].type_name}")
    print_table(result.rows)
    peak = result.peak_row
    print(f"Predicted TFLM arena (planned, non-persistent): {result.arena.head_bytes:,} bytes ({kib(result.arena.head_bytes)})")
    print(f"Peak at op {peak.index} ({peak.name}, {','.join(_shape(s) for s in peak.output_shapes)}): "
          f"{peak.extent_bytes:,} bytes in use")
    print(f"MACs: {result.total_macs:,}")
    if not analysis.patch_stage_scratch(graph) and not args.no_measure:
        try:
            measured = oracle.measure_arena(data, verify_mod.random_inputs(graph, 1)[0])
            agree = "matches the prediction" if measured.head == result.arena.head_bytes else "DIFFERS from the prediction"
            print(f"TFLM (tflite-micro wheel) measured: planned {measured.head:,} bytes ({agree}), "
                  f"persistent {measured.tail:,} bytes, total {measured.total:,} bytes")
        except TflmPatchError as exc:
            print(f"TFLM measurement skipped: {exc}")
    return 0


def _summary(plan, before_peak, after_peak) -> None:
    stage = plan.stage
    names = {}
    for layer in stage.layers:
        names[layer.name] = names.get(layer.name, 0) + 1
    ops = ", ".join(f"{n} x{c}" for n, c in names.items())
    last = stage.layers[-1]
    print(f"Stage: ops 0-{stage.split - 1} ({ops}); {_shape(plan.stage_plan.input_shape)} -> {_shape(last.out_shape)}")
    rows, cols = plan.grid
    workspace = plan.stage_plan.workspace_bytes
    print(f"Grid: {rows}x{cols} patches (row cuts {plan.stage_plan.grid_rows}, column cuts {plan.stage_plan.grid_cols}); "
          f"per-patch scratch {plan.stage_plan.scratch_bytes:,} bytes"
          + (f" (of which {workspace:,} CMSIS-NN workspace)" if workspace else ""))
    cut = 100.0 * (1 - plan.arena_after / plan.arena_before)
    print(f"{'':<26}{'before':>16}{'after':>16}")
    print(f"{'arena (planned, bytes)':<26}{plan.arena_before:>16,}{plan.arena_after:>16,}   "
          f"-{cut:.1f}% ({plan.arena_before / plan.arena_after:.2f}x smaller)")
    print(f"{'peak op':<26}{before_peak:>16}{after_peak:>16}")
    print(f"{'stage MACs':<26}{plan.macs_original:>16,}{plan.macs_patched:>16,}   {plan.mac_overhead:.3f}x")


def cmd_convert(args) -> int:
    data, model, graph = _load(args.model)
    _require_int8_model(graph, args.model)
    if os.path.abspath(args.output) == os.path.abspath(args.model):
        raise ModelError("the output must not overwrite the input model")
    plan = planner.make_plan(graph, patches=args.patches, split=args.split, sram_budget=args.sram_budget,
                             max_mac_overhead=args.max_mac_overhead, kernels=args.kernels)
    new_model = rewrite.rewrite_model(model, plan, __version__)
    new_bytes = model_io.serialize_model(new_model)
    before = analysis.analyze(graph).peak_row
    after_graph = build_graph(model_io.parse_model(new_bytes, "patched model"))
    after = analysis.analyze(after_graph).peak_row
    _summary(plan, f"{before.index} {before.name}", f"{after.index} {after.name}")
    if args.sram_budget is not None and plan.arena_after > args.sram_budget:
        print(f"warning: no plan fits --sram-budget {args.sram_budget:,} bytes; this is the smallest "
              f"({plan.arena_after:,} bytes)", file=sys.stderr)
    if args.verify_inputs > 0:
        report = verify_mod.verify(data, new_bytes, verify_mod.random_inputs(graph, args.verify_inputs, seed=1))
        verify_mod.require_identical(report)
        print(f"Verified bit-identical against TFLM on {report.inputs} random input(s)")
    model_io.write_atomically(args.output, new_bytes)
    print(f"Wrote {args.output} ({len(new_bytes):,} bytes); register the op with "
          f"resolver.AddCustom(\"PATCH_STAGE\", tflm_patch::Register_PATCH_STAGE())")
    return 0


def _input_sets(args, graph) -> list:
    if args.input_npy:
        try:
            arr = np.load(args.input_npy, allow_pickle=False)
        except Exception as exc:
            raise ModelError(f"{args.input_npy}: cannot read as .npy ({type(exc).__name__})") from None
        shape = tuple(graph.tensors[graph.inputs[0]].shape)
        if arr.dtype != np.int8:
            raise ModelError(f"{args.input_npy}: dtype {arr.dtype}, the model takes int8")
        if tuple(arr.shape) == shape:
            arr = arr[None]
        elif shape[:1] == (1,) and tuple(arr.shape[1:]) == shape[1:]:
            arr = arr[:, None]  # a stack [N, H, W, C] of batch-1 inputs
        if tuple(arr.shape[1:]) != shape:
            raise ModelError(f"{args.input_npy}: shape {list(arr.shape)}, the model takes {list(shape)} "
                             "(or a stack of them)")
        return [[x] for x in arr]
    return verify_mod.random_inputs(graph, args.inputs, seed=args.seed)


def cmd_verify(args) -> int:
    data, _, graph = _load(args.original)
    patched = model_io.read_model_bytes(args.patched)
    engines = {"python": ("python",), "cpp": ("cpp",), "both": ("python", "cpp")}[args.engine]
    report = verify_mod.verify(data, patched, _input_sets(args, graph), engines=engines)
    verify_mod.require_identical(report)
    print(f"OK: bit-identical on {report.inputs} input(s): stage output ({', '.join(engines)} vs TFLM) "
          "and model outputs (TFLM)")
    return 0


def cmd_export_c(args) -> int:
    data, _, _ = _load(args.model)
    name = export_c.c_identifier(args.name)
    header_path = export_c.header_path_for(args.output)
    source, header = export_c.render(data, name, os.path.basename(header_path),
                                     comment=f"Model: {os.path.basename(args.model)}, {len(data)} bytes.")
    model_io.write_atomically(header_path, header.encode())
    model_io.write_atomically(args.output, source.encode())
    print(f"Wrote {args.output} and {header_path} ({len(data):,} bytes as '{name}')")
    return 0


def cmd_report(args) -> int:
    from .report import write_report
    result = write_report(args.original, args.patched, args.output, args.sram_budget)
    print(f"Wrote {result['png']}, report.md and report.html in {args.output} ({result['rows']} ops; "
          f"arena {result['before']:,} -> {result['after']:,} bytes)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tflm-patch", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"tflm-patch {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("analyze", help="per-op memory/compute table and predicted TFLM arena")
    a.add_argument("model")
    a.add_argument("--no-measure", action="store_true", help="do not run the model in the TFLM wheel")
    a.set_defaults(func=cmd_analyze)

    c = sub.add_parser("convert", help="replace the first stage by a PATCH_STAGE op")
    c.add_argument("model")
    c.add_argument("-o", "--output", required=True)
    c.add_argument("--patches", type=_grid, help="patch grid ROWSxCOLS (default: searched)")
    c.add_argument("--split", type=int, help="number of leading ops in the stage (default: searched)")
    c.add_argument("--sram-budget", type=_size, help="pick the cheapest plan whose arena fits, e.g. 96KiB")
    c.add_argument("--max-mac-overhead", type=_positive_float, default=1.3,
                   help="largest MAC ratio patched/original the search may pick (default 1.3)")
    c.add_argument("--kernels", choices=cmsis_nn.KERNELS, default=cmsis_nn.REFERENCE,
                   help="the TFLM build the model is for: reference kernels (default) or cmsis_nn "
                        "(OPTIMIZED_KERNEL_DIR=cmsis_nn; reserves PATCH_STAGE's CMSIS-NN workspace in the plan)")
    c.add_argument("--verify-inputs", type=int, default=1,
                   help="random inputs to prove bit-exactness on before writing (0 skips; default 1)")
    c.set_defaults(func=cmd_convert)

    v = sub.add_parser("verify", help="prove a patched model bit-identical to its original")
    v.add_argument("original")
    v.add_argument("patched")
    g = v.add_mutually_exclusive_group()
    g.add_argument("--inputs", type=int, default=4, help="random inputs (default 4)")
    g.add_argument("--input-npy", help="int8 .npy file with one input or a stack of inputs")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--engine", choices=["python", "cpp", "both"], default="python",
                   help="PATCH_STAGE executor: Python reference, the C++ kernel built on the host, or both")
    v.set_defaults(func=cmd_verify)

    r = sub.add_parser("report", help="PNG plot + Markdown/HTML table of arena use per op, before and after")
    r.add_argument("original")
    r.add_argument("patched")
    r.add_argument("-o", "--output", required=True, help="directory for memory.png, report.md, report.html")
    r.add_argument("--sram-budget", type=_size, help="draw this budget as a line, e.g. 96KiB")
    r.set_defaults(func=cmd_report)

    e = sub.add_parser("export-c", help="write the model as a C array (.cc + .h)")
    e.add_argument("model")
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--name", default="g_model", help="C symbol name (default g_model)")
    e.set_defaults(func=cmd_export_c)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TflmPatchError as exc:
        print(f"tflm-patch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tflm-patch: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: still one line, never a traceback
        if os.environ.get("TFLM_PATCH_DEBUG"):
            raise
        print(f"tflm-patch: internal error: {type(exc).__name__}: {exc} (set TFLM_PATCH_DEBUG=1 for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

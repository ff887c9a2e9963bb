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
from .converter import arena as arena_mod
from .converter import analysis, cmsis_nn, export_c, model_io, offline_plan, oracle, pairing, persistent, planner
from .converter import pipeline
from .converter import verify as verify_mod
from .converter.errors import ModelError, NoGainError, TflmPatchError, VerifyError
from .converter.graph import _NUMPY_DTYPE, build_graph
from .converter.model_file import ModelFile
from .units import SIZE_HELP, kib, parse_size


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2) like every other error."""

    def error(self, message):
        sys.stderr.write(f"tflm-patch: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


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


def _count(least: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < least:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {least} (got {text!r})")
        return value
    return parse


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
    f = ModelFile.load(path)
    return f.data, f.model, f.graph


def _require_int8_model(graph, path: str) -> None:
    """Stages are int8 inside; the model's own inputs may be int8, uint8 or float32 (QUANTIZE'd in the model)."""
    for t in graph.inputs:
        tensor = graph.tensors[t]
        if tensor.type_name not in ("INT8", "UINT8", "FLOAT32"):
            raise ModelError(f"{path}: input {tensor.name!r} is {tensor.type_name}; tflm-patch takes models with "
                             "int8, uint8 or float32 inputs around an int8 body (full-integer quantization)")
    if not any(t.type_name == "INT8" and not t.is_constant for t in graph.tensors):
        kind = graph.tensors[graph.inputs[0]].type_name if graph.inputs else "?"
        raise ModelError(f"{path}: no int8 activations (input is {kind}): a float model; convert with "
                         "full-integer int8 quantization (a representative dataset)")


def print_table(rows, out=None) -> None:
    out = out if out is not None else sys.stdout
    cells = [(",".join(_shape(s) for s in r.input_shapes) or "-", ",".join(_shape(s) for s in r.output_shapes) or "-")
             for r in rows]
    wn = max([20] + [len(r.name) for r in rows])
    wi = max([14] + [len(i) for i, _ in cells])
    wo = max([14] + [len(o) for _, o in cells])
    print(f"{'#':>3}  {'op':<{wn}} {'input':<{wi}} {'output':<{wo}} {'in+out B':>10} {'MACs':>12} {'arena B':>9}",
          file=out)
    for r, (ins, outs) in zip(rows, cells):
        print(f"{r.index:>3}  {r.name:<{wn}} {ins:<{wi}} {outs:<{wo}} {r.io_bytes:>10,} {r.macs:>12,} "
              f"{r.extent_bytes:>9,}", file=out)


def cmd_analyze(args) -> int:
    data, model, graph = _load(args.model)
    if not args.no_measure:
        oracle.require_known_ops(graph, " (--no-measure prints the prediction without running the model in TFLM)",
                                 allow=(pairing.CUSTOM_CODE,))
    result = analysis.analyze(graph)
    print(f"{args.model}: {len(graph.ops)} ops, input {_shape(graph.tensors[graph.inputs[0]].shape)} "
          f"{graph.tensors[graph.inputs[0]].type_name}")
    print_table(result.rows)
    peak = result.peak_row
    print(f"Predicted TFLM arena (planned, non-persistent): {result.arena.head_bytes:,} bytes ({kib(result.arena.head_bytes)})")
    print(_total_line(graph, result.arena.head_bytes))
    if graph.offline_error:
        print(f"warning: {graph.offline_error}; the figures above are for TFLM's online planner")
    print(f"Peak at op {peak.index} ({peak.name}, {','.join(_shape(s) for s in peak.output_shapes)}): "
          f"{peak.extent_bytes:,} bytes in use")
    print(f"MACs: {result.total_macs:,}")
    if not analysis.patch_stage_scratch(graph) and not args.no_measure:
        try:
            measured = oracle.measure_arena(data, verify_mod.random_inputs(graph, 1)[0])
            agree = "matches the prediction" if measured.head == result.arena.head_bytes else "DIFFERS from the prediction"
            wheel = persistent.try_predict_total(graph, result.arena.head_bytes, abi="wheel", recording=True)
            agree_total = "" if wheel is None else (
                " (matches the prediction)" if wheel.total_bytes == measured.total else " (DIFFERS from the prediction)")
            print(f"TFLM (tflite-micro wheel) measured: planned {measured.head:,} bytes ({agree}), "
                  f"persistent {measured.tail:,} bytes, total {measured.total:,} bytes{agree_total}")
        except TflmPatchError as exc:
            print(f"TFLM measurement skipped: {exc}")
    if args.pareto:
        _print_pareto(graph, args.kernels)
    return 0


def _print_pareto(graph, kernels: str) -> None:
    """The best plan under each MAC limit, those no other beats on both arena and MACs."""
    front = planner.pareto(graph, kernels=kernels)
    if not front:
        print("Pareto front: no plan lowers the planned arena")
        return
    print("Pareto front (predicted planned arena vs stage MACs; `convert --max-mac-overhead LIMIT` writes the plan):")
    print(f"{'limit':>6} {'arena after':>12} {'smaller':>8} {'MACs':>7}  stages")
    for limit, p in front:
        stages = " + ".join(f"ops {s.stage.start}-{s.stage.end - 1} {s.grid[0]}x{s.grid[1]} halos {s.caching}"
                            for s in p.stages)
        print(f"{limit:>6.2f} {p.arena_after:>12,} {p.arena_before / p.arena_after:>7.2f}x {p.mac_overhead:>6.3f}x  {stages}")


def _totals(graph, head: int, kernels: str = cmsis_nn.REFERENCE) -> tuple:
    """(host, Cortex-M) predicted arena_used_bytes(), or None where not modelled."""
    totals = []
    for abi in ("host64", "cortex_m"):
        try:  # the head with the build's own scratch requests (equal to `head` for reference kernels)
            totals.append(persistent.predict_arena_used(graph, abi=abi, kernels=kernels))
        except persistent.Unpredictable:
            totals.append(None)
    return tuple(totals)


def _total_line(graph, head: int, kernels: str = cmsis_nn.REFERENCE) -> str:
    host, m = _totals(graph, head, kernels)
    if host is None and m is not None:
        return (f"Predicted arena_used_bytes() (kTensorArenaSize) on 32-bit Cortex-M with {kernels} kernels: "
                f"{m.total_bytes:,} bytes (planned {m.head_bytes:,} + persistent {m.tail_bytes:,})")
    if host is None:
        return ("Predicted arena_used_bytes(): not modelled for this model or build "
                "(persistent memory of its ops/kernels); the planned part above is exact")
    return (f"Predicted arena_used_bytes() (kTensorArenaSize): {host.total_bytes:,} bytes on a 64-bit host, "
            f"{m.total_bytes:,} on 32-bit Cortex-M (planned {head:,} + persistent {host.tail_bytes:,} / "
            f"{m.tail_bytes:,}; TFLM reference kernels)")


def _summary(plan, before_peak, after_peak, totals=None, leads=None) -> None:
    for n, sp in enumerate(plan.stages):
        stage, sched = sp.stage, sp.stage_plan
        names = {}
        for layer in stage.layers:
            names[layer.name] = names.get(layer.name, 0) + 1
        ops = ", ".join(f"{k} x{c}" for k, c in names.items())
        rows, cols = sp.grid
        workspace = sched.workspace_bytes
        caching = {'none': 'recomputed', 'rows': 'cached in rows', 'cols': 'cached in columns',
                   'rows+cols': 'cached'}[sp.caching]
        grid = ("one patch (whole tensors, no halo)" if (rows, cols) == (1, 1)
                else f"{rows}x{cols} patches, halos {caching}")
        print(f"Stage {n + 1}: ops {stage.start}-{stage.end - 1} ({ops}); {_shape(sched.input_shape)} -> "
              f"{_shape(stage.layers[-1].out_shape)}; {grid}; scratch {sched.scratch_bytes:,} bytes"
              + (f" (of which {workspace:,} CMSIS-NN workspace)" if workspace else "")
              + (f"; MACs x{sp.macs_patched / sp.macs_original:.3f}" if sp.macs_original else "")
              + (f"; output over its consumed input ({leads[n]:,} bytes ahead)" if leads and leads[n] is not None
                 else ""))
    cut = 100.0 * (1 - plan.arena_after / plan.arena_before)
    print(f"{'':<26}{'before':>16}{'after':>16}")
    print(f"{'arena (planned, bytes)':<26}{plan.arena_before:>16,}{plan.arena_after:>16,}   "
          f"-{cut:.1f}% ({plan.arena_before / plan.arena_after:.2f}x smaller)")
    if totals is not None:
        shown = False
        labels = ("arena_used_bytes() host", "  ... on 32-bit Cortex-M" if totals[0][0] is not None
                  else "arena_used_bytes() M4/M7")
        for label, (b, a) in zip(labels, zip(*totals)):
            if b is not None and a is not None:
                shown = True
                extra = f", planned {b.head_bytes:,} -> {a.head_bytes:,}" if b.head_bytes != plan.arena_before else ""
                print(f"{label:<26}{b.total_bytes:>16,}{a.total_bytes:>16,}   "
                      f"{b.total_bytes / a.total_bytes:.2f}x smaller (persistent {b.tail_bytes:,} -> {a.tail_bytes:,}"
                      f"{extra})")
        if not shown:
            print(f"{'arena_used_bytes()':<26}{'not predicted':>16}{'not predicted':>16}   "
                  "(persistent memory of these kernels/ops is not modelled)")
    print(f"{'stage MACs':<26}{plan.macs_original:>16,}{plan.macs_patched:>16,}   {plan.mac_overhead:.3f}x")
    print(f"{'peak before':<26}{before_peak}")
    print(f"{'peak after':<26}{after_peak}   (op numbers of the original model)")


def _peak(graph, mapping, patched_graph=None) -> str:
    """The peak op of a model, numbered as in the original model."""
    result = analysis.analyze(patched_graph or graph)
    row = result.peak_row
    if patched_graph is None:
        where = pairing.describe_ops(graph, [row.index], False)
    else:
        op = patched_graph.ops[row.index]
        where = pairing.describe_ops(graph, mapping[row.index], op.custom_code == pairing.CUSTOM_CODE)
    return f"{where}: {row.extent_bytes:,} bytes in use"


def _convert_plan_only(args, data, model, graph) -> int:
    """Only a better memory plan (OfflineMemoryAllocation metadata); the ops are untouched."""
    if any(op.opcode == analysis.BuiltinOperator.CUSTOM for op in graph.ops):
        raise ModelError(f"{args.model}: --plan-only takes a model without custom ops (plan before patching)")
    requests = arena_mod.scratch_requests(graph)
    greedy = arena_mod.plan_arena(graph).head_bytes
    offsets, head = offline_plan.improve(graph, requests)
    bound = offline_plan.lower_bound(arena_mod.allocation_lifetimes(graph, requests))
    if offsets is None:
        raise NoGainError(f"TFLM's greedy plan ({greedy:,} bytes; largest live set {bound:,}) is already the best "
                          "plan found: model left unchanged")
    new_model = offline_plan.with_offline_plan(model, graph, offsets)
    new_bytes = model_io.serialize_model(new_model)
    new_graph = build_graph(model_io.parse_model(new_bytes, "planned model"))
    before, after = _totals(graph, greedy), _totals(new_graph, head)
    print(f"{'':<26}{'greedy':>16}{'offline plan':>16}")
    print(f"{'arena (planned, bytes)':<26}{greedy:>16,}{head:>16,}   {greedy / head:.2f}x smaller "
          f"(largest live set {bound:,})")
    if before[0] is not None and after[0] is not None:
        print(f"{'arena_used_bytes() host':<26}{before[0].total_bytes:>16,}{after[0].total_bytes:>16,}")
    if args.verify_inputs > 0:
        for x in verify_mod.random_inputs(graph, args.verify_inputs, seed=1):
            a = oracle.run(data, x, len(graph.outputs)).outputs
            b = oracle.run(new_bytes, x, len(graph.outputs)).outputs
            if not all(np.array_equal(u, v) for u, v in zip(a, b)):
                raise VerifyError("the model with the offline plan does NOT give the original's outputs")
        measured = oracle.measure_arena(new_bytes, x)
        if measured.head != head:
            raise VerifyError(f"TFLM planned {measured.head:,} bytes with the offline plan, not the {head:,} predicted")
        print(f"Verified in TFLM on {args.verify_inputs} random input(s): identical outputs, planned arena {head:,} bytes")
    model_io.write_atomically(args.output, new_bytes)
    print(f"Wrote {args.output} ({len(new_bytes):,} bytes): the original ops with an OfflineMemoryAllocation plan")
    return 0


def cmd_convert(args) -> int:
    if os.path.exists(args.model) and os.path.exists(args.output) and os.path.samefile(args.output, args.model):
        raise ModelError("the output must not overwrite the input model")
    model_io.check_output_file(args.output)
    data, model, graph = _load(args.model)
    _require_int8_model(graph, args.model)
    if args.plan_only:
        return _convert_plan_only(args, data, model, graph)
    original = ModelFile(data, model, graph)
    conv = pipeline.convert(original, tool_version=__version__, patches=args.patches, split=args.split,
                            sram_budget=args.sram_budget, max_mac_overhead=args.max_mac_overhead,
                            kernels=args.kernels)
    plan, after_graph, new_bytes = conv.plan, conv.patched.graph, conv.patched.data
    mapping = pairing.op_map(graph, after_graph, pairing.plan_record(conv.patched.model))
    totals = (_totals(graph, plan.arena_before, args.kernels), _totals(after_graph, plan.arena_after, args.kernels))
    _summary(plan, _peak(graph, None), _peak(graph, mapping, after_graph), totals, plan.output_leads(graph))
    if args.verify_inputs > 0:
        report = conv.verify(verify_mod.random_inputs(graph, args.verify_inputs, seed=1))
        verify_mod.require_identical(report)
        print(f"Verified bit-identical against TFLM on {report.inputs} random input(s)")
    else:
        print("warning: --verify-inputs 0: the patched model was NOT verified; run 'tflm-patch verify ORIGINAL "
              "PATCHED' before you rely on it", file=sys.stderr)
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
        if len(graph.inputs) != 1:
            raise ModelError(f"{args.input_npy}: the model has {len(graph.inputs)} inputs; --input-npy feeds one")
        tensor = graph.tensors[graph.inputs[0]]
        shape = tuple(tensor.shape)
        dtype = np.dtype(_NUMPY_DTYPE.get(tensor.type, np.int8))
        if arr.dtype != dtype:
            raise ModelError(f"{args.input_npy}: dtype {arr.dtype}, the model takes {dtype}")
        if arr.size == 0:
            raise ModelError(f"{args.input_npy}: empty array (shape {list(arr.shape)}), no input to verify on")
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
    original = ModelFile.load(args.original)
    model, graph = original.model, original.graph
    patched = ModelFile.load(args.patched)
    if pairing.is_patched(model, graph):
        raise ModelError(f"{args.original} is itself a patched model (it has a PATCH_STAGE op): "
                         "give the original model first, then the patched one")
    engines = {"python": ("python",), "cpp": ("cpp",), "both": ("python", "cpp")}[args.engine]
    report = verify_mod.verify_files(original, patched, _input_sets(args, graph), engines=engines)
    verify_mod.require_identical(report)
    print(f"OK: bit-identical on {report.inputs} input(s): stage output ({', '.join(engines)} vs TFLM) "
          "and model outputs (TFLM)")
    return 0


def cmd_export_c(args) -> int:
    header_path = export_c.header_path_for(args.output)
    for path in (args.output, header_path):
        model_io.check_output_file(path)
    data, _, _ = _load(args.model)
    name = export_c.c_identifier(args.name)
    source, header = export_c.render(data, name, os.path.basename(header_path),
                                     comment=f"Model: {os.path.basename(args.model)}, {len(data):,} bytes.")
    model_io.write_atomically(header_path, header.encode())
    model_io.write_atomically(args.output, source.encode())
    print(f"Wrote {args.output} and {header_path} ({len(data):,} bytes as '{name}')")
    return 0


def cmd_report(args) -> int:
    from .report import write_report
    result = write_report(args.original, args.patched, args.output, args.sram_budget)
    total = (f"; arena_used_bytes() {result['total_before']:,} -> {result['total_after']:,} bytes"
             if result.get("total_before") is not None else "")
    print(f"Wrote {result['png']}, report.md and report.html in {args.output} ({result['rows']} ops; "
          f"arena {result['before']:,} -> {result['after']:,} bytes{total})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tflm-patch", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"tflm-patch {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("analyze", help="per-op memory/compute table and predicted TFLM arena")
    a.add_argument("model")
    a.add_argument("--no-measure", action="store_true", help="do not run the model in the TFLM wheel")
    a.add_argument("--pareto", action="store_true",
                   help="also search the patch plans and print the Pareto front of arena vs MACs")
    a.add_argument("--kernels", choices=cmsis_nn.KERNELS, default=cmsis_nn.REFERENCE,
                   help="with --pareto: plan for TFLM's reference (default) or CMSIS-NN kernels")
    a.set_defaults(func=cmd_analyze)

    c = sub.add_parser("convert", help="replace the first stage by a PATCH_STAGE op")
    c.add_argument("model")
    c.add_argument("-o", "--output", required=True,
                   help="the patched model (a file; missing directories are created); checked before any work")
    c.add_argument("--patches", type=_grid, help="patch grid ROWSxCOLS (default: searched)")
    c.add_argument("--split", type=int, help="number of leading ops in the stage (default: searched)")
    c.add_argument("--sram-budget", type=_size, metavar="SIZE",
                   help="pick the cheapest plan whose arena fits, e.g. 96KiB. " + SIZE_HELP)
    c.add_argument("--max-mac-overhead", type=_positive_float, default=1.05,
                   help="largest MAC ratio patched/original the search may pick (default 1.05: with cached halos most plans cost nothing extra; --patches and --split plans are held to it too)")
    c.add_argument("--kernels", choices=cmsis_nn.KERNELS, default=cmsis_nn.REFERENCE,
                   help="the TFLM build the model is for: reference kernels (default) or cmsis_nn "
                        "(OPTIMIZED_KERNEL_DIR=cmsis_nn; reserves PATCH_STAGE's CMSIS-NN workspace in the plan, "
                        "and --max-mac-overhead then also counts each CMSIS-NN call as 700 MACs, its cost on a "
                        "Cortex-M4, so the search prefers full-width bands)")
    c.add_argument("--plan-only", action="store_true",
                   help="do not patch: write the model with only a better memory plan (TFLM's "
                        "OfflineMemoryAllocation metadata), verified identical; exit 3 if greedy is already best")
    c.add_argument("--verify-inputs", type=_count(0), default=1, metavar="N",
                   help="random inputs to prove bit-exactness on before writing (default 1); 0 skips the proof "
                        "and says so on stderr: run 'tflm-patch verify' on the result yourself")
    c.set_defaults(func=cmd_convert)

    v = sub.add_parser("verify", help="prove a patched model bit-identical to its original")
    v.add_argument("original")
    v.add_argument("patched")
    g = v.add_mutually_exclusive_group()
    g.add_argument("--inputs", type=_count(1), default=4, metavar="N",
                   help="random inputs, at least 1 (default 4)")
    g.add_argument("--input-npy", help="int8 .npy file with one input or a stack of inputs")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--engine", choices=["python", "cpp", "both"], default="python",
                   help="PATCH_STAGE executor: Python reference, the C++ kernel built on the host, or both")
    v.set_defaults(func=cmd_verify)

    r = sub.add_parser("report", help="PNG plot + Markdown/HTML table of arena use per op, before and after")
    r.add_argument("original")
    r.add_argument("patched")
    r.add_argument("-o", "--output", required=True, help="directory for memory.png, report.md, report.html")
    r.add_argument("--sram-budget", type=_size, metavar="SIZE",
                   help="draw this budget as a line, e.g. 96KiB. " + SIZE_HELP)
    r.set_defaults(func=cmd_report)

    e = sub.add_parser("export-c", help="write the model as a C array (.cc + .h)")
    e.add_argument("model")
    e.add_argument("-o", "--output", required=True,
                   help="the .cc file (its .h goes next to it); checked before any work")
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

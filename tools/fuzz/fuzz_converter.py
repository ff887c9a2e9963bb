#!/usr/bin/env python3
"""Converter fuzzing campaign: mutated real models through analyze, convert and verify.

Seeds are the test models (tests/models/*.tflite) and models the tests make
(tests/modelgen.py). Each case mutates one seed (byte flips, flips in the
first kilobyte where the tables and offsets are, truncation, spliced chunks,
extreme integers, names that are not UTF-8, and targeted edits of the model's
tables: quantization, buffers, shapes, indices, options) and runs one CLI
command on it in-process (tflm_patch.cli.main, stderr captured), under a time
limit. A case passes when:

* the exit code is 0, 2, 3 or 4, and a failure prints exactly one line,
  "tflm-patch: error: ...", with no traceback and no "internal error";
* no output file (nor a temporary one) is left behind on failure;
* the input files' bytes are unchanged.

Reproducible: case i of --seed S is always the same input and command
(--only i replays it). Failing inputs go to --save-dir with a note.

    python tools/fuzz/fuzz_converter.py --cases 10000 --seed 1      # the long run
    python tools/fuzz/fuzz_converter.py --cases 300 --seed 7 --fast  # a CI-sized run
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import io
import os
import random
import signal
import struct
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from tflm_patch import cli  # noqa: E402
from tflm_patch.converter import model_io  # noqa: E402
from tflm_patch.converter.schema import schema  # noqa: E402

ALLOWED_EXITS = {0, 2, 3, 4}
EXTREME_INTS = [0, 1, -1, 0x7FFFFFFF, -0x80000000, 0xFFFF, 0x8000, 0x10000, 255, 256, 0x40000000, 12345678]


class CaseTimeout(Exception):
    pass


# ---------------------------------------------------------------- seeds

def seed_models(fast: bool = False) -> dict:
    """name -> bytes: the test models, and small models made like the tests make them."""
    seeds = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "models", "*.tflite"))):
        name = os.path.basename(path)
        if fast and name.startswith("mobilenetv2"):
            continue
        with open(path, "rb") as f:
            seeds[name] = f.read()
    from tests.modelgen import ModelBuilder
    from tflm_patch.converter.schema import ActivationFunctionType as A
    rng = np.random.default_rng(7)
    mb = ModelBuilder(rng)  # conftest's small_model_bytes
    x = mb.activation((32, 32, 3), 0.02, -5)
    y = mb.conv(x, 16, 3, stride=2)
    y = mb.conv(y, 0, 3, depthwise=True)
    y = mb.conv(y, 8, 1)
    y = mb.conv(y, 16, 3, stride=2)
    seeds["gen_small_cnn"] = mb.finish([x.index], [mb.mean_tail(y).index])
    mb = ModelBuilder(np.random.default_rng(11))  # residual ADD, PAD and pools
    x = mb.activation((24, 20, 4), 0.03, 3)
    y = mb.conv(x, 8, 3, stride=2, act=A.RELU6)
    z = mb.conv(y, 8, 3, act=A.RELU)
    y = mb.add(y, z)
    y = mb.pad(y, 1, 0, 0, 1)
    y = mb.pool(y, 3, 2, average=True)
    y = mb.pool(y, 2, 1)
    seeds["gen_residual_pool"] = mb.finish([x.index], [mb.mean_tail(y).index])
    return seeds


# ---------------------------------------------------------------- byte mutations

def flip_bytes(rng, data, lo=0, hi=None):
    b = bytearray(data)
    hi = len(b) if hi is None else min(hi, len(b))
    for _ in range(rng.choice([1, 1, 2, 4, 8])):
        i = rng.randrange(lo, hi)
        b[i] = b[i] ^ (1 << rng.randrange(8)) if rng.random() < 0.7 else rng.randrange(256)
    return bytes(b)


def truncate(rng, data, donor):
    return data[:rng.randrange(0, len(data))]


def splice(rng, data, donor):
    a = rng.randrange(len(data))
    n = rng.randrange(1, 512)
    s = rng.randrange(len(donor))
    chunk = donor[s:s + n]
    if rng.random() < 0.5:  # overwrite in place (offsets keep meaning)
        return data[:a] + chunk + data[a + len(chunk):]
    return data[:a] + chunk + data[a:]  # insert (offsets shift)


def extreme_int(rng, data, donor):
    b = bytearray(data)
    hi = min(len(b) - 4, 4096) if rng.random() < 0.7 else len(b) - 4
    i = rng.randrange(0, max(1, hi)) & ~3
    v = rng.choice(EXTREME_INTS)
    b[i:i + 4] = struct.pack("<I", v & 0xFFFFFFFF)
    return bytes(b)


def non_utf8_bytes(rng, data, donor):
    """Put bytes that are not UTF-8 into a printable run (a name) of the file."""
    b = bytearray(data)
    runs, start = [], None
    for i, c in enumerate(b):
        if 0x20 <= c < 0x7F:
            if start is None:
                start = i
        else:
            if start is not None and i - start >= 3:
                runs.append((start, i))
            start = None
    if not runs:
        return flip_bytes(rng, data)
    s, e = rng.choice(runs)
    for _ in range(rng.randrange(1, 3)):
        b[rng.randrange(s, e)] = rng.choice([0xFF, 0xFE, 0xC0, 0x80, 0xED])
    return bytes(b)


# ---------------------------------------------------------------- table mutations (object API)

def _tensors(m):
    return m.subgraphs[0].tensors


def _act_tensors(m):
    return [t for t in _tensors(m) if t.quantization is not None and t.quantization.scale is not None
            and len(t.quantization.scale)]


def mut_name(rng, m):
    t = rng.choice(_tensors(m))
    t.name = rng.choice([b"\xff\xfe\xfd", b"conv\xc3(", b"\x80abc", b"ok\xed\xa0\x80"])
    if rng.random() < 0.3 and m.operatorCodes:
        oc = rng.choice(m.operatorCodes)
        oc.customCode = b"\xffPATCH"


def mut_scale(rng, m):
    t = rng.choice(_act_tensors(m))
    q = t.quantization
    q.scale = list(q.scale)
    q.scale[rng.randrange(len(q.scale))] = rng.choice(
        [float("nan"), float("inf"), -float("inf"), 0.0, -0.02, 1e30, 1e-30, 3.4e38, 1e-45, 1e12])


def mut_zero_point(rng, m):
    t = rng.choice(_act_tensors(m))
    q = t.quantization
    q.zeroPoint = list(q.zeroPoint) if q.zeroPoint is not None else [0]
    q.zeroPoint[rng.randrange(len(q.zeroPoint))] = rng.choice(
        [-8214565720323784832, 128, -129, 1000, -(1 << 31), (1 << 63) - 1, 300])


def mut_quant_arrays(rng, m):
    t = rng.choice(_act_tensors(m))
    q = t.quantization
    choice = rng.randrange(4)
    if choice == 0:
        q.zeroPoint = list(q.zeroPoint or [])[:-1] if q.zeroPoint else []
    elif choice == 1:
        q.scale = list(q.scale) + [0.5]
    elif choice == 2:
        q.quantizedDimension = rng.choice([-1, 5, 99, 2**31 - 1])
    else:
        q.scale = []


def mut_empty_buffer(rng, m):
    used = [t.buffer for t in _tensors(m) if t.buffer and m.buffers[t.buffer].data is not None]
    if used:
        b = m.buffers[rng.choice(used)]
        b.data = None if rng.random() < 0.5 else b.data[: rng.randrange(len(b.data))]


def mut_buffer_index(rng, m):
    t = rng.choice(_tensors(m))
    t.buffer = rng.choice([len(m.buffers), 2**31 - 1, 0, rng.randrange(len(m.buffers))])


def mut_buffer_offset(rng, m):
    b = rng.choice(m.buffers)
    b.offset = rng.choice([1, 16, 2**40, 12345])
    b.size = rng.choice([0, 1, 100, 2**40])


def mut_shape(rng, m):
    t = rng.choice(_tensors(m))
    shape = list(t.shape if t.shape is not None else [])
    choice = rng.randrange(4)
    if choice == 0 and shape:
        shape[rng.randrange(len(shape))] = rng.choice([0, -1, -7, 2**31 - 1, 65536, 3])
    elif choice == 1:
        shape = shape + [rng.choice([1, 2, 0])]
    elif choice == 2:
        shape = shape[:-1]
    else:
        shape = [rng.choice([1, 2**20]) for _ in range(rng.randrange(1, 9))]
    t.shape = shape


def mut_op_index(rng, m):
    sg = m.subgraphs[0]
    op = rng.choice(sg.operators)
    n = len(sg.tensors)
    choice = rng.randrange(5)
    if choice == 0 and op.inputs is not None and len(op.inputs):
        op.inputs = list(op.inputs)
        op.inputs[rng.randrange(len(op.inputs))] = rng.choice([-1, -2, -(2**31), n, n + 5, rng.randrange(n)])
    elif choice == 1 and op.outputs is not None and len(op.outputs):
        op.outputs = list(op.outputs)
        op.outputs[rng.randrange(len(op.outputs))] = rng.choice([-1, n, rng.randrange(n)])
    elif choice == 2:
        op.opcodeIndex = rng.choice([len(m.operatorCodes), 2**31 - 1, rng.randrange(len(m.operatorCodes))])
    elif choice == 3:
        which = rng.choice(["inputs", "outputs"])
        setattr(sg, which, [rng.choice([-1, n, rng.randrange(n)])])
    else:
        op.inputs = list(op.inputs)[: rng.randrange(len(op.inputs) + 1)] if op.inputs is not None else []


def mut_options(rng, m):
    op = rng.choice(m.subgraphs[0].operators)
    o = op.builtinOptions
    if o is None or rng.random() < 0.2:
        op.builtinOptions, op.builtinOptionsType = None, 0
        return
    fields = [k for k, v in vars(o).items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if fields:
        setattr(o, rng.choice(fields), rng.choice([0, -1, 7, 99, 2**31 - 1, -(2**31), 3]))


def mut_opcode(rng, m):
    oc = rng.choice(m.operatorCodes)
    v = rng.choice([0, 3, 4, 17, 22, 32, 40, 127, 150, 1000, -5])
    oc.builtinCode = v
    oc.deprecatedBuiltinCode = max(-128, min(127, v))


def mut_unwritten_tensor(rng, m):
    """A tensor read but never written: an op reads a fresh activation tensor."""
    sg = m.subgraphs[0]
    op = rng.choice([o for o in sg.operators if o.inputs is not None and len(o.inputs)])
    src = sg.tensors[op.inputs[0]] if op.inputs[0] >= 0 else rng.choice(sg.tensors)
    t = schema.TensorT()
    t.shape, t.type, t.buffer, t.name = list(src.shape or []), src.type, 0, "orphan"
    t.quantization = src.quantization
    sg.tensors.append(t)
    op.inputs = list(op.inputs)
    op.inputs[0] = len(sg.tensors) - 1


def mut_type(rng, m):
    t = rng.choice(_tensors(m))
    t.type = rng.choice([0, 1, 2, 3, 7, 9, 10, 16, 17, 100, -1])


def mut_metadata(rng, m):
    md = schema.MetadataT()
    md.name = rng.choice([b"\xffmeta", b"min_runtime_version"])
    md.buffer = rng.choice([len(m.buffers), 0, 2**31 - 1])
    m.metadata = list(m.metadata or []) + [md]
    if rng.random() < 0.5:
        m.description = b"\xfe\xff desc"


def mut_subgraphs(rng, m):
    if rng.random() < 0.5:
        m.subgraphs = m.subgraphs + [m.subgraphs[0]]
    else:
        m.subgraphs[0].operators = []


TABLE_MUTATIONS = [mut_name, mut_scale, mut_zero_point, mut_quant_arrays, mut_empty_buffer, mut_buffer_index,
                   mut_buffer_offset, mut_shape, mut_op_index, mut_options, mut_opcode, mut_unwritten_tensor,
                   mut_type, mut_metadata, mut_subgraphs]


def table_mutation(rng, data, donor):
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    fn = rng.choice(TABLE_MUTATIONS)
    try:
        fn(rng, m)
        if rng.random() < 0.2:
            rng.choice(TABLE_MUTATIONS)(rng, m)
    except (IndexError, ValueError, TypeError, AttributeError):  # nothing of that kind in this model
        return flip_bytes(rng, data, 0, 1024), fn.__name__ + "(fallback flip_head)"
    try:
        return model_io.serialize_model(m), fn.__name__
    except Exception:  # the builder refuses some values (out of the field's range)
        return data, fn.__name__ + "(unpackable)"


BYTE_MUTATIONS = {
    "flip": lambda rng, d, donor: flip_bytes(rng, d),
    "flip_head": lambda rng, d, donor: flip_bytes(rng, d, 0, 1024),
    "truncate": truncate,
    "splice": splice,
    "extreme_int": extreme_int,
    "non_utf8": non_utf8_bytes,
}
MUTATION_WEIGHTS = [("flip", 2), ("flip_head", 4), ("truncate", 1), ("splice", 2), ("extreme_int", 3),
                    ("non_utf8", 1), ("table", 7)]


def mutate(rng, data, donor):
    names, weights = zip(*MUTATION_WEIGHTS)
    kind = rng.choices(names, weights)[0]
    if kind == "table":
        return table_mutation(rng, data, donor)
    return BYTE_MUTATIONS[kind](rng, data, donor), kind


# ---------------------------------------------------------------- one case

@dataclass
class Result:
    case: int
    seed_name: str
    mutation: str
    command: str
    code: int | None
    problems: list = field(default_factory=list)
    message: str = ""
    seconds: float = 0.0


def _alarm(signum, frame):
    raise CaseTimeout()


def run_cli_case(argv, inputs, output, timeout):
    """Run main(argv) in-process; returns (exit code or None, stderr, problems)."""
    before = {p: open(p, "rb").read() for p in inputs}
    err, out = io.StringIO(), io.StringIO()
    problems = []
    code = None
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("default")
            try:
                code = cli.main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
    except CaseTimeout:
        problems.append(f"timeout after {timeout} s")
    except BaseException as exc:  # noqa: BLE001 - an escape from main() is a finding
        problems.append(f"exception escaped main(): {type(exc).__name__}: {exc}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    text = err.getvalue()
    lines = [l for l in text.splitlines() if l.strip()]
    if code is not None and code not in ALLOWED_EXITS:
        problems.append(f"exit code {code}")
    if "Traceback" in text + out.getvalue():
        problems.append("traceback")
    if "internal error" in text:
        problems.append("internal error")
    if code not in (None, 0):
        if len(lines) != 1 or not lines[0].startswith("tflm-patch: error: "):
            problems.append(f"{len(lines)} stderr lines")
    if output is not None:
        directory = os.path.dirname(output)
        if code not in (None, 0) and os.path.exists(output):
            problems.append("output written on failure")
        if [f for f in os.listdir(directory) if f.startswith(".tflm-patch-")]:
            problems.append("temporary file left behind")
    for p, data in before.items():
        if open(p, "rb").read() != data:
            problems.append(f"input {os.path.basename(p)} modified")
    return code, text, problems


def choose_command(rng, fast):
    r = rng.random()
    if r < 0.35:
        return "analyze"
    if r < 0.75:
        return "convert"
    return "verify"


def run_case(i, args, seeds, patched, workdir):
    rng = random.Random(args.seed * 1_000_003 + i)
    names = sorted(seeds)
    # The two MobileNetV2s (600 KB, 65 ops) cost ~50x a small model to convert: drawn less often.
    seed_name = rng.choices(names, [0.15 if n.startswith("mobilenetv2") else 1.0 for n in names])[0]
    donor = seeds[rng.choice(names)]
    command = choose_command(rng, args.fast)
    if args.seed_filter and ((args.seed_filter[1:] in seed_name) if args.seed_filter.startswith("!")
                             else (args.seed_filter not in seed_name)):
        return None
    case_dir = os.path.join(workdir, f"c{i}")
    os.makedirs(case_dir, exist_ok=True)
    src = os.path.join(case_dir, "model.tflite")
    out = os.path.join(case_dir, "out.tflite")
    if command == "verify" and seed_name in patched:
        mutate_patched = rng.random() < 0.6
        base = patched[seed_name] if mutate_patched else seeds[seed_name]
        data, mutation = mutate(rng, base, donor)
        other = os.path.join(case_dir, "other.tflite")
        with open(other, "wb") as f:
            f.write(seeds[seed_name] if mutate_patched else patched[seed_name])
        with open(src, "wb") as f:
            f.write(data)
        orig, pat = (other, src) if mutate_patched else (src, other)
        engine = rng.choice(["python", "python", "cpp", "both"]) if args.cpp else "python"
        argv = ["verify", orig, pat, "--inputs", "1", "--engine", engine]
        inputs, output = [orig, pat], None
        mutation = ("patched:" if mutate_patched else "original:") + mutation
    else:
        if command == "verify":
            command = "convert"
        data, mutation = mutate(rng, seeds[seed_name], donor)
        with open(src, "wb") as f:
            f.write(data)
        if command == "analyze":
            argv = ["analyze", src] + (["--no-measure"] if rng.random() < 0.7 else [])
            inputs, output = [src], None
        else:
            argv = ["convert", src, "-o", out]
            extra = rng.random()
            if extra < 0.15:
                argv += ["--kernels", "cmsis_nn"]
            elif extra < 0.25 or seed_name.startswith("mobilenetv2"):
                argv += ["--patches", rng.choice(["2x2", "3x3", "2x3"])]
            inputs, output = [src], out
    if args.commands and argv[0] not in args.commands:
        for name in os.listdir(case_dir):
            os.unlink(os.path.join(case_dir, name))
        os.rmdir(case_dir)
        return None
    t0 = time.time()
    code, text, problems = run_cli_case(argv, inputs, output, args.timeout)
    if code == 4 and argv[0] == "convert":
        problems.append("convert refused with NOT bit-identical (a mismatch)")
    res = Result(i, seed_name, mutation, argv[0], code, problems,
                 (text.strip().splitlines() or [""])[-1][:300], time.time() - t0)
    if (problems or args.only is not None) and args.save_dir:
        os.makedirs(args.save_dir, exist_ok=True)
        stem = os.path.join(args.save_dir, f"seed{args.seed}_case{i}")
        with open(stem + ".tflite", "wb") as f:
            f.write(data)
        with open(stem + ".txt", "w") as f:
            f.write(f"seed model: {seed_name}\nmutation: {mutation}\ncommand: {' '.join(argv)}\n"
                    f"exit: {code}\nproblems: {problems}\nstderr:\n{text}\n")
    for name in os.listdir(case_dir):
        os.unlink(os.path.join(case_dir, name))
    os.rmdir(case_dir)
    return res


def prepare_patched(seeds, workdir):
    """A patched model per seed (for verify cases), made by the CLI itself."""
    patched = {}
    for name, data in seeds.items():
        src, out = os.path.join(workdir, "seed.tflite"), os.path.join(workdir, "seed_patched.tflite")
        with open(src, "wb") as f:
            f.write(data)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = cli.main(["convert", src, "-o", out, "--verify-inputs", "0"])
        if code == 0:
            with open(out, "rb") as f:
                patched[name] = f.read()
            os.unlink(out)
        os.unlink(src)
    return patched


def campaign(args) -> dict:
    seeds = seed_models(args.fast)
    with tempfile.TemporaryDirectory(prefix="tflm-patch-fuzz-") as workdir:
        patched = prepare_patched(seeds, workdir)
        cases = [args.only] if args.only is not None else range(args.start, args.start + args.cases)
        results = []
        t0 = time.time()
        for n, i in enumerate(cases):
            r = run_case(i, args, seeds, patched, workdir)
            if r is None:  # not one of --commands
                continue
            results.append(r)
            if r.problems:
                print(f"FAIL case {i} ({r.seed_name}, {r.mutation}, {r.command}): exit {r.code} "
                      f"{r.problems} :: {r.message}", flush=True)
            elif args.verbose:
                print(f"case {i} {r.seed_name} {r.mutation} {r.command}: exit {r.code} {r.seconds:.2f} s :: {r.message}", flush=True)
            if args.progress and (n + 1) % args.progress == 0:
                print(f"... {n + 1} cases, {time.time() - t0:.0f} s, "
                      f"{sum(1 for x in results if x.problems)} failing", flush=True)
    return summarize(results, time.time() - t0, args.seed)


def summarize(results, seconds, seed) -> dict:
    by_exit = Counter(r.code for r in results)
    by_command = Counter(r.command for r in results)
    failing = [r for r in results if r.problems]
    crashes = [r for r in failing if any(p in ("traceback", "internal error") or p.startswith(("exception", "exit code"))
                                         for p in r.problems)]
    mismatches = [r for r in results if r.code == 4 and r.command == "convert"]  # verify of a tampered pair may rightly say 4
    summary = {"cases": len(results), "by_exit": dict(by_exit), "by_command": dict(by_command),
               "failing": len(failing), "crashes": len(crashes), "mismatches": len(mismatches),
               "timeouts": sum(1 for r in failing if any(p.startswith("timeout") for p in r.problems)),
               "seconds": seconds, "seed": seed, "results": results}
    return summary


def print_summary(s) -> None:
    print(f"\nconverter fuzz campaign, seed {s['seed']}: {s['cases']} cases in {s['seconds']:.0f} s")
    print(f"| {'cases':>7} | {'exit 0':>7} | {'exit 2':>7} | {'exit 3':>7} | {'exit 4':>7} | {'other':>5} | "
          f"{'crashes':>7} | {'failing checks':>14} | {'timeouts':>8} |")
    other = sum(v for k, v in s["by_exit"].items() if k not in (0, 2, 3, 4))
    e = s["by_exit"]
    print(f"| {s['cases']:>7} | {e.get(0, 0):>7} | {e.get(2, 0):>7} | {e.get(3, 0):>7} | {e.get(4, 0):>7} | "
          f"{other:>5} | {s['crashes']:>7} | {s['failing']:>14} | {s['timeouts']:>8} |")
    print("by command: " + ", ".join(f"{k} {v}" for k, v in sorted(s["by_command"].items())))
    print(f"mismatches (convert refused with exit 4, NOT bit-identical): {s['mismatches']}")


def main_summary(argv=None) -> dict:
    """Run the campaign given command-line arguments; return its summary (for tests)."""
    return campaign(parser().parse_args(argv))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=int, default=0, help="first case number")
    p.add_argument("--only", type=int, help="replay one case (its input is saved to --save-dir)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per case")
    p.add_argument("--save-dir", default="fuzz-failures", help="where failing inputs go")
    p.add_argument("--fast", action="store_true", help="skip the two MobileNetV2 seeds (CI)")
    p.add_argument("--cpp", action="store_true", help="verify also with the C++ engine (builds it)")
    p.add_argument("--progress", type=int, default=0, help="print progress every N cases")
    p.add_argument("--commands", nargs="+", choices=["analyze", "convert", "verify"],
                   help="run only the cases of these commands (same inputs as in a full run)")
    p.add_argument("--seed-filter", help="run only the cases whose seed model's name contains this (!TEXT: does not contain)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv=None) -> int:
    s = campaign(parser().parse_args(argv))
    print_summary(s)
    return 1 if s["failing"] or s["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())

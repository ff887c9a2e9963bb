"""Run models in a real TFLM build on the host: the user's TFLM tree, our kernel.

TFLM is not on any package registry. Point `TFLM_ROOT` at a TFLM source tree
in which TFLM's own Makefile has built the host library
(`make -f tensorflow/lite/micro/tools/make/Makefile microlite`, reference
kernels, and/or with `OPTIMIZED_KERNEL_DIR=cmsis_nn`, CMSIS-NN kernels);
`TFLM_LIB` may name a library explicitly, and `TFLM_CXXFLAGS` replaces the
defines used to compile against it (they must match the library's build;
TFLM's defaults are used otherwise). A library with CMSIS-NN kernels is
recognised by the CMSIS-NN functions it contains; our kernel is then built
with `-DCMSIS_NN` and TFLM's CMSIS-NN headers, as TFLM's own kernels are.
The runner (micro_ops/host/tflm_runner.cc) is built from our sources only and
linked to that library.

A library built with AddressSanitizer and UBSan (its objects call
`__asan_*`; see the README's Reliability section for the make command) is
recognised too: the runner and our kernel are then compiled with the same
sanitizer flags, and `run_batch` reports each case's sanitizer findings.
`TFLM_SANITIZER_LIB` names such a library for the sanitizer tests
(`find_tflm_sanitized`); its tree is the one it was built in.
"""
from __future__ import annotations

import glob
import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np

from . import native

RUNNER_SOURCES = ("host/tflm_runner.cc",) + native.KERNEL_SOURCES
RUNNER_HEADERS = native.KERNEL_HEADERS
# What TFLM's Makefile uses for TARGET=linux; TF_LITE_STATIC_MEMORY changes struct layouts.
DEFAULT_DEFINES = ("-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON", "-DTF_LITE_USE_CTIME")
# What TFLM's Makefile adds for OPTIMIZED_KERNEL_DIR=cmsis_nn (ext_libs/cmsis_nn.inc).
CMSIS_NN_DEFINES = ("-DCMSIS_NN", "-DARM_NN_ENABLE_F16=0", "-DARM_NN_ENABLE_F32=0")
REFERENCE, CMSIS_NN = "reference", "cmsis_nn"
_CMSIS_NN_SYMBOL = b"arm_convolve_wrapper_s8"
_ASAN_SYMBOL = b"__asan_report_"
SANITIZER_FLAGS = ("-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                   "-fno-sanitize-recover=all")
SANITIZER_LINK_FLAGS = ("-fsanitize=address,undefined",)
# halt on the first finding; leaks are findings too
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1:exitcode=86",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=86"}
_WATCHDOG_EXIT = 87  # tflm_runner --batch: a case ran past its time limit
_FINDING_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                    "SUMMARY: UndefinedBehaviorSanitizer")


def library_kernels(library: str) -> str:
    """REFERENCE, or CMSIS_NN when the library holds TFLM's CMSIS-NN kernels."""
    with open(library, "rb") as f:
        return CMSIS_NN if _CMSIS_NN_SYMBOL in f.read() else REFERENCE


def library_sanitized(library: str) -> bool:
    """True when the library was compiled with AddressSanitizer."""
    with open(library, "rb") as f:
        return _ASAN_SYMBOL in f.read()


@dataclass
class TflmTree:
    root: str
    library: str
    kernels: str = REFERENCE  # REFERENCE or CMSIS_NN: the library's kernels
    sanitized: bool = False   # compiled with ASan and UBSan

    def include_flags(self) -> list:
        downloads = os.path.join(self.root, "tensorflow/lite/micro/tools/make/downloads")
        dirs = ["flatbuffers/include", "gemmlowp", "ruy"]
        if self.kernels == CMSIS_NN:
            dirs += ["cmsis_nn", "cmsis_nn/Include", "cmsis/CMSIS/Core/Include"]
        return [f"-isystem{self.root}"] + [f"-isystem{os.path.join(downloads, d)}" for d in dirs]

    def kernel_defines(self) -> list:
        return list(CMSIS_NN_DEFINES) if self.kernels == CMSIS_NN else []


def _tflm_root() -> tuple:
    """(root, None) or (None, why)."""
    root = os.environ.get("TFLM_ROOT")
    if not root:
        return None, "TFLM_ROOT is not set (point it at a TFLM source tree with a built libtensorflow-microlite.a)"
    if not os.path.isfile(os.path.join(root, "tensorflow/lite/micro/micro_interpreter.h")):
        return None, f"TFLM_ROOT={root} is not a TFLM source tree"
    return root, None


def find_tflm_builds() -> tuple:
    """([TflmTree, ...], None), one per host library (TFLM_LIB, or every
    gen/linux_x86_64*/lib/libtensorflow-microlite.a), or ([], why not)."""
    root, why = _tflm_root()
    if root is None:
        return [], why
    lib = os.environ.get("TFLM_LIB")
    if lib:
        if not os.path.isfile(lib):
            return [], f"TFLM_LIB={lib} does not exist"
        libs = [lib]
    else:
        libs = sorted(glob.glob(os.path.join(root, "gen/linux_x86_64*/lib/libtensorflow-microlite.a")))
        if not libs:
            return [], (f"no host libtensorflow-microlite.a under {root}/gen/ (build it with TFLM's Makefile: "
                        "make -f tensorflow/lite/micro/tools/make/Makefile microlite)")
    builds = [TflmTree(root, lib, library_kernels(lib), library_sanitized(lib)) for lib in libs]
    # reference first, plain before sanitized
    return sorted(builds, key=lambda b: (b.kernels != REFERENCE, b.sanitized)), None


def find_tflm_sanitized() -> tuple:
    """(TflmTree, None) for the ASan+UBSan library TFLM_SANITIZER_LIB names
    (ROOT/gen/CONFIG/lib/libtensorflow-microlite.a, its tree ROOT), or (None, why)."""
    lib = os.environ.get("TFLM_SANITIZER_LIB")
    if not lib:
        return None, ("TFLM_SANITIZER_LIB is not set (a host libtensorflow-microlite.a built with "
                      "-fsanitize=address,undefined, see the README's Reliability section)")
    if not os.path.isfile(lib):
        return None, f"TFLM_SANITIZER_LIB={lib} does not exist"
    if not library_sanitized(lib):
        return None, f"TFLM_SANITIZER_LIB={lib} was not built with -fsanitize=address"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(lib)))))
    if not os.path.isfile(os.path.join(root, "tensorflow/lite/micro/micro_interpreter.h")):
        return None, f"TFLM_SANITIZER_LIB={lib} is not inside a TFLM tree (ROOT/gen/CONFIG/lib/)"
    return TflmTree(root, lib, library_kernels(lib), sanitized=True), None


def find_tflm(kernels: str | None = None) -> tuple:
    """(TflmTree, None) or (None, the reason it is not usable); `kernels`
    asks for a library with REFERENCE or CMSIS_NN kernels (default: reference
    kernels if there is such a library)."""
    builds, why = find_tflm_builds()
    if kernels is not None:
        builds = [b for b in builds if b.kernels == kernels]
        if not builds and why is None:
            why = (f"no host TFLM library with {kernels} kernels under {os.environ.get('TFLM_ROOT')}/gen/"
                   + (" (build one with OPTIMIZED_KERNEL_DIR=cmsis_nn)" if kernels == CMSIS_NN else ""))
    return (builds[0], None) if builds else (None, why)


def build_runner(tree: TflmTree) -> str:
    defines = shlex.split(os.environ["TFLM_CXXFLAGS"]) if os.environ.get("TFLM_CXXFLAGS") else \
        list(DEFAULT_DEFINES) + tree.kernel_defines()
    # -Os like TFLM's own default build, so that timings compare like with like.
    optimize = SANITIZER_FLAGS if tree.sanitized else ("-Os",)
    flags = ("-std=c++17", *optimize, "-fno-exceptions", "-fno-rtti", "-Wall", "-Wextra", "-Werror",
             *defines, *tree.include_flags())
    link = (tree.library, "-lm") + (SANITIZER_LINK_FLAGS if tree.sanitized else ())
    return str(native.compile_cached("tflm_runner_asan" if tree.sanitized else "tflm_runner", RUNNER_SOURCES,
                                     RUNNER_HEADERS, flags, extra_inputs=(tree.library,), link_args=link))


def _runner_env() -> dict:
    return {**os.environ, **SANITIZER_ENV}


@dataclass
class TflmRun:
    outputs: bytes
    arena_used_bytes: int  # interpreter.arena_used_bytes(): head + tail
    invoke_us: float
    arena_head_bytes: int  # the planned part: tensors and scratch buffers
    arena_tail_bytes: int  # the persistent part


def arena_fill_for(graph) -> int | None:
    """The arena fill to run a model on. TFLM's SPACE_TO_BATCH_ND pads with
    SpaceToBatchParams::output_offset, which it never sets: the stock model's output then depends on
    the arena's bytes. A device's static arena is zero at boot, and the kernel pads such a lowered
    dilation with 0 (docs/patch_stage_format.md): run those models on a zeroed arena (0). Every other
    model runs on the runner's fill pattern (None)."""
    from .converter.schema import BuiltinOperator
    return 0 if any(op.opcode == BuiltinOperator.SPACE_TO_BATCH_ND for op in graph.ops) else None


def run_model(runner: str, model_path: str, input_array: np.ndarray, repeats: int = 1,
              arena_fill: int | None = None) -> TflmRun:
    """One model in the runner. arena_fill: the byte the arena starts filled with (default a pattern that
    makes reads of never-written memory visible; 0 is a static arena as a device has it at boot)."""
    env = _runner_env()
    if arena_fill is not None:
        env["TFLM_RUNNER_ARENA_FILL"] = str(arena_fill)
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.bin"), os.path.join(d, "out.bin")
        np.ascontiguousarray(input_array).tofile(inp)
        proc = subprocess.run([runner, model_path, inp, out, str(repeats)], capture_output=True, text=True,
                              timeout=600, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"TFLM runner failed on {model_path}: {(proc.stderr or proc.stdout).strip()}")
        values = dict(line.split("=", 1) for line in proc.stdout.split() if "=" in line)
        with open(out, "rb") as f:
            return TflmRun(f.read(), int(values["arena_used_bytes"]), float(values["invoke_us"]),
                           int(values["arena_head_bytes"]), int(values["arena_tail_bytes"]))


@dataclass
class BatchCase:
    model: str   # .tflite path
    input: str   # raw bytes of input 0
    output: str  # where the runner writes the outputs


@dataclass
class BatchResult:
    status: str          # ok, allocate_failed, invoke_failed, bad_input, no_output; crash, timeout
    messages: list       # what TFLM and the kernel printed for this case (MicroPrintf lines)
    finding: str = ""    # a sanitizer report, or the end of stderr of a crash
    arena_used_bytes: int = 0
    arena_intact: bool = True


def _parse_stderr(text: str) -> dict:
    """{case number: [lines]} from the runner's `@@case N` markers."""
    out, current = {}, None
    for line in text.splitlines():
        if line.startswith("@@case "):
            current = int(line.split()[1])
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return out


def run_batch(runner: str, cases: list, case_timeout: int = 60, workdir: str | None = None,
              arena_fill: int | None = None) -> list:
    """Run BatchCase's in as few runner processes as possible: a BatchResult per case.

    A case that crashes the runner (a sanitizer finding, a signal) or runs
    longer than `case_timeout` seconds (the runner's own watchdog) is
    recorded as "crash" or "timeout", and the run goes on with the next case
    in a new process. arena_fill: as for run_model."""
    env = _runner_env()
    if arena_fill is not None:
        env["TFLM_RUNNER_ARENA_FILL"] = str(arena_fill)
    results: list = []
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        while len(results) < len(cases):
            start = len(results)
            rest = cases[start:]
            listing = os.path.join(d, f"list{start}.txt")
            with open(listing, "w") as f:
                f.writelines(f"{c.model} {c.input} {c.output}\n" for c in rest)
            try:
                proc = subprocess.run([runner, "--batch", listing, str(case_timeout)], capture_output=True,
                                      text=True, timeout=case_timeout * (len(rest) + 1), env=env,
                                      errors="replace")
                stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
                timed_out = code == _WATCHDOG_EXIT
            except subprocess.TimeoutExpired as e:
                def text(b):
                    return b.decode("utf-8", "replace") if isinstance(b, bytes) else (b or "")
                stdout, stderr, code, timed_out = text(e.stdout), text(e.stderr), None, True
            messages = _parse_stderr(stderr)
            done = 0
            for line in stdout.splitlines():
                if not line.startswith("case="):
                    continue
                values = dict(item.split("=", 1) for item in line.split())
                n = int(values["case"])
                results.append(BatchResult(values["status"], messages.get(n, []),
                                           arena_used_bytes=int(values["arena_used_bytes"]),
                                           arena_intact=values["arena_intact"] == "1"))
                done = n + 1
            if done < len(rest):  # the process ended inside case `done`
                lines = messages.get(done, stderr.splitlines())
                tail = "\n".join(lines[-60:])
                if timed_out:
                    results.append(BatchResult("timeout", lines, f"no result within {case_timeout} s"))
                else:
                    results.append(BatchResult("crash", lines, f"exit code {code}\n{tail}"))
            elif code not in (0, None):
                raise RuntimeError(f"TFLM runner failed after its last case (exit {code}): {stderr[-2000:]}")
    return results


def sanitizer_findings(lines: list) -> list:
    """The lines of a sanitizer report among a case's stderr lines."""
    return [line for line in lines if any(m in line for m in _FINDING_MARKERS)]

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


def library_kernels(library: str) -> str:
    """REFERENCE, or CMSIS_NN when the library holds TFLM's CMSIS-NN kernels."""
    with open(library, "rb") as f:
        return CMSIS_NN if _CMSIS_NN_SYMBOL in f.read() else REFERENCE


@dataclass
class TflmTree:
    root: str
    library: str
    kernels: str = REFERENCE  # REFERENCE or CMSIS_NN: the library's kernels

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
    builds = [TflmTree(root, lib, library_kernels(lib)) for lib in libs]
    return sorted(builds, key=lambda b: b.kernels != REFERENCE), None  # reference first


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
    flags = ("-std=c++17", "-Os", "-fno-exceptions", "-fno-rtti", "-Wall", "-Wextra", "-Werror",
             *defines, *tree.include_flags())
    return str(native.compile_cached("tflm_runner", RUNNER_SOURCES, RUNNER_HEADERS, flags,
                                     extra_inputs=(tree.library,), link_args=(tree.library, "-lm")))


@dataclass
class TflmRun:
    outputs: bytes
    arena_used_bytes: int  # interpreter.arena_used_bytes(): head + tail
    invoke_us: float
    arena_head_bytes: int  # the planned part: tensors and scratch buffers
    arena_tail_bytes: int  # the persistent part


def run_model(runner: str, model_path: str, input_array: np.ndarray, repeats: int = 1) -> TflmRun:
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.bin"), os.path.join(d, "out.bin")
        np.ascontiguousarray(input_array).tofile(inp)
        proc = subprocess.run([runner, model_path, inp, out, str(repeats)], capture_output=True, text=True,
                              timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"TFLM runner failed on {model_path}: {(proc.stderr or proc.stdout).strip()}")
        values = dict(line.split("=", 1) for line in proc.stdout.split() if "=" in line)
        with open(out, "rb") as f:
            return TflmRun(f.read(), int(values["arena_used_bytes"]), float(values["invoke_us"]),
                           int(values["arena_head_bytes"]), int(values["arena_tail_bytes"]))

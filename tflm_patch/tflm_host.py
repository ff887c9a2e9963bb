"""Run models in a real TFLM build on the host: the user's TFLM tree, our kernel.

TFLM is not on any package registry. Point `TFLM_ROOT` at a TFLM source tree
in which TFLM's own Makefile has built the host library
(`make -f tensorflow/lite/micro/tools/make/Makefile microlite`); `TFLM_LIB`
may name the library explicitly, and `TFLM_CXXFLAGS` replaces the defines
used to compile against it (they must match the library's build; TFLM's
defaults are used otherwise). The runner (micro_ops/host/tflm_runner.cc) is
built from our sources only and linked to that library.
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


@dataclass
class TflmTree:
    root: str
    library: str

    def include_flags(self) -> list:
        downloads = os.path.join(self.root, "tensorflow/lite/micro/tools/make/downloads")
        return [f"-isystem{self.root}"] + [f"-isystem{os.path.join(downloads, d)}"
                                           for d in ("flatbuffers/include", "gemmlowp", "ruy")]


def find_tflm() -> tuple:
    """(TflmTree, None) or (None, the reason it is not usable)."""
    root = os.environ.get("TFLM_ROOT")
    if not root:
        return None, "TFLM_ROOT is not set (point it at a TFLM source tree with a built libtensorflow-microlite.a)"
    if not os.path.isfile(os.path.join(root, "tensorflow/lite/micro/micro_interpreter.h")):
        return None, f"TFLM_ROOT={root} is not a TFLM source tree"
    lib = os.environ.get("TFLM_LIB")
    if not lib:
        found = sorted(glob.glob(os.path.join(root, "gen/linux_x86_64*/lib/libtensorflow-microlite.a")))
        if not found:
            return None, (f"no host libtensorflow-microlite.a under {root}/gen/ (build it with TFLM's Makefile: "
                          "make -f tensorflow/lite/micro/tools/make/Makefile microlite)")
        lib = found[0]
    if not os.path.isfile(lib):
        return None, f"TFLM_LIB={lib} does not exist"
    return TflmTree(root, lib), None


def build_runner(tree: TflmTree) -> str:
    defines = shlex.split(os.environ["TFLM_CXXFLAGS"]) if os.environ.get("TFLM_CXXFLAGS") else list(DEFAULT_DEFINES)
    # -Os like TFLM's own default build, so that timings compare like with like.
    flags = ("-std=c++17", "-Os", "-fno-exceptions", "-fno-rtti", "-Wall", "-Wextra", "-Werror",
             *defines, *tree.include_flags())
    return str(native.compile_cached("tflm_runner", RUNNER_SOURCES, RUNNER_HEADERS, flags,
                                     extra_inputs=(tree.library,), link_args=(tree.library, "-lm")))


@dataclass
class TflmRun:
    outputs: bytes
    arena_used_bytes: int
    invoke_us: float


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
            return TflmRun(f.read(), int(values["arena_used_bytes"]), float(values["invoke_us"]))

"""Build and call the C++ PATCH_STAGE engine (micro_ops/) on the host.

The engine sources ship inside the package (``tflm_patch.micro_ops``), listed
in its ``kernel_sources.txt`` (the one list of the kernel's files). They are
compiled with the system C++ compiler (``$CXX``, default ``g++``) on first use
and cached by a hash of sources and flags in ``$TFLM_PATCH_CACHE`` (default
``~/.cache/tflm-patch``):

* a shared library loaded with ctypes (``run_stage``), the fast path;
* with ``sanitize=True``, a standalone driver (``host/engine_main.cc``) built
  with AddressSanitizer and UBSan, run as a subprocess, so a memory error
  aborts that process and is reported here instead of corrupting Python's.

Both variants can be built with ``single_rounding=True``
(``TFLITE_SINGLE_ROUNDING=1``), the rounding of TFLM builds that define it,
and with ``cmsis_nn=ROOT``: the engine's CMSIS-NN dispatch (``-DCMSIS_NN``,
as in TFLM's ``OPTIMIZED_KERNEL_DIR=cmsis_nn`` builds) linked to the CMSIS-NN
tree at ROOT (``Include/``, ``Source/``), compiled here with the host C
compiler (``$CC``, default ``gcc``): the real CMSIS-NN (its portable C
paths) or a stand-in with the same API under ``Include/cmsis_nn_stand_in.h``
(the test double in ``tests/cmsis_nn_double``).
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib.resources
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .converter.stage_overlap import fused_layout

KERNEL_SOURCES_LIST = "kernel_sources.txt"


def source_root():
    """The packaged micro_ops sources, or the repository's micro_ops/ dir."""
    try:
        root = importlib.resources.files("tflm_patch.micro_ops")
        if root.joinpath(KERNEL_SOURCES_LIST).is_file():
            return root
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "micro_ops"


def parse_kernel_sources(text: str) -> dict:
    """micro_ops/kernel_sources.txt as {section: (file, ...)}, in file order.

    Lines are a `[section]` header, a file name (relative to micro_ops/), a
    `#` comment or blank."""
    sections: dict = {}
    current = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif current is None:
            raise ValueError(f"{KERNEL_SOURCES_LIST}:{number}: a file before any [section]")
        else:
            current.append(line)
    return {name: tuple(files) for name, files in sections.items()}


def _kernel_files() -> dict:
    return parse_kernel_sources(source_root().joinpath(KERNEL_SOURCES_LIST).read_text(encoding="utf-8"))


def _split(files) -> tuple:
    return tuple(f for f in files if f.endswith(".cc")), tuple(f for f in files if not f.endswith(".cc"))


# The kernel as micro_ops/kernel_sources.txt lists it: the portable engine,
# then the TFLM op (what firmware compiles: both), then the host C API.
_KERNEL_FILES = _kernel_files()
ENGINE_CORE_SOURCES, ENGINE_CORE_HEADERS = _split(_KERNEL_FILES["engine"])
_OP_SOURCES, _OP_HEADERS = _split(_KERNEL_FILES["op"])
KERNEL_SOURCES = _OP_SOURCES + ENGINE_CORE_SOURCES
KERNEL_HEADERS = _OP_HEADERS + ENGINE_CORE_HEADERS
ENGINE_SOURCES = ENGINE_CORE_SOURCES + ("host/engine_capi.cc",)
ENGINE_HEADERS = ENGINE_CORE_HEADERS + ("host/engine_capi.h", "host/tensor_desc_array.h")
DRIVER_SOURCE = "host/engine_main.cc"
COMMON_FLAGS = ("-std=c++17", "-fno-exceptions", "-fno-rtti", "-Wall", "-Wextra", "-Werror")
LIBRARY_FLAGS = ("-O2", "-shared", "-fPIC")
SANITIZER_FLAGS = ("-O0", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                   "-fno-sanitize-recover=all")
CMSIS_NN_SANITIZER_FLAGS = ("-O0", "-g", "-fno-omit-frame-pointer", "-fsanitize=address")

# Element type codes of the C API (TfLiteType values).
_TYPE_CODES = {np.dtype(np.int8): 9, np.dtype(np.int32): 2, np.dtype(np.float32): 1, np.dtype(np.uint8): 3}
_OK, _REJECTED = 0, 1
_ERROR_BYTES = 512
_loaded: dict = {}


class EngineError(Exception):
    """The engine rejected the options or tensors; the message says why."""


class BuildError(RuntimeError):
    """The engine could not be compiled (no compiler, or a compile error)."""


class EngineCrash(RuntimeError):
    """The sanitizer build of the engine aborted: a memory or UB error."""


def _read_sources(names) -> dict:
    root = source_root()
    out = {}
    for name in names:
        node = root
        for part in name.split("/"):
            node = node.joinpath(part)
        out[name] = node.read_bytes()
    return out


def cache_dir() -> Path:
    path = Path(os.environ.get("TFLM_PATCH_CACHE") or Path.home() / ".cache" / "tflm-patch")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _compiler() -> str:
    return os.environ.get("CXX") or "g++"


def _c_compiler() -> str:
    return os.environ.get("CC") or "gcc"


def _run_compiler(cmd: list, what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except OSError as exc:
        raise BuildError(f"cannot run the compiler {cmd[0]!r}: {exc}") from None
    if proc.returncode != 0:
        raise BuildError(f"building {what} failed:\n{' '.join(cmd)}\n{proc.stderr}")


def cmsis_nn_sources(root) -> list:
    """The int8 CMSIS-NN sources under root/Source, as TFLM's Makefile picks
    them (no f16/f32 kernels)."""
    root = Path(root)
    return sorted(p for p in (root / "Source").rglob("*.c")
                  if not p.name.endswith(("_f16.c", "_f32.c")) and p.name != "arm_nntables_flt.c")


STAND_IN_HEADER = "cmsis_nn_stand_in.h"


def _cmsis_nn_header(root: Path) -> str | None:
    """The API header of a CMSIS-NN tree (or stand-in), None if it has none."""
    for name in ("arm_nnfunctions.h", STAND_IN_HEADER):
        if (root / "Include" / name).is_file():
            return name
    return None


def cmsis_nn_flags(root, single_rounding: bool = False) -> tuple:
    """What code calling the CMSIS-NN tree at root compiles with."""
    root = Path(root)
    flags = ("-DCMSIS_NN", f"-I{root}", f"-I{root / 'Include'}")
    if _cmsis_nn_header(root) == STAND_IN_HEADER:
        flags += (f'-DTFLM_PATCH_CMSIS_NN_HEADER="{STAND_IN_HEADER}"',)
    return flags + (("-DCMSIS_NN_USE_SINGLE_ROUNDING",) if single_rounding else ())


def build_cmsis_nn(root, sanitize: bool = False, single_rounding: bool = False) -> Path:
    """Static library of the CMSIS-NN tree at root, cached by content and flags."""
    root = Path(root)
    sources = cmsis_nn_sources(root)
    if _cmsis_nn_header(root) is None or not sources:
        raise BuildError(f"{root} is not a CMSIS-NN tree (no Include/arm_nnfunctions.h or Source/*.c)")
    # Sanitized: AddressSanitizer only, so that a call with wrong dimensions
    # shows as a bad access, while CMSIS-NN's own shifts of negative values
    # (undefined in C, intended there) do not count against the engine.
    flags = ["-std=gnu11", "-fPIC", *(CMSIS_NN_SANITIZER_FLAGS if sanitize else ("-O2",)),
             *(f for f in cmsis_nn_flags(root, single_rounding) if f != "-DCMSIS_NN")]
    digest = hashlib.sha256()
    for item in (_c_compiler(), *flags):
        digest.update(item.encode() + b"\0")
    for path in sorted(sources + list((root / "Include").rglob("*.h"))):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    target = cache_dir() / f"libcmsis-nn-{digest.hexdigest()[:16]}.a"
    if target.exists():
        return target
    work = Path(tempfile.mkdtemp(prefix="build-", dir=cache_dir()))
    try:
        objects = []
        for i, source in enumerate(sources):
            obj = work / f"{i:04d}_{source.stem}.o"
            _run_compiler([_c_compiler(), *flags, "-c", str(source), "-o", str(obj)], f"CMSIS-NN {source.name}")
            objects.append(str(obj))
        archive = work / target.name
        _run_compiler(["ar", "rcs", str(archive), *objects], "the CMSIS-NN library")
        os.replace(archive, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def compile_cached(stem: str, sources: tuple, headers: tuple, flags: tuple, suffix: str = "",
                   extra_inputs: tuple = (), link_args: tuple = ()) -> Path:
    """Compile packaged micro_ops sources into cache_dir(), once per content and flags.

    extra_inputs are paths outside the package (e.g. a TFLM library) whose
    identity (path, size, mtime) enters the cache key; link_args come last.
    """
    files = _read_sources(sources + headers)
    digest = hashlib.sha256()
    for item in (_compiler(), *flags, *link_args):
        digest.update(item.encode() + b"\0")
    for path in extra_inputs:
        st = os.stat(path)
        digest.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode() + b"\0")
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    target = cache_dir() / f"{stem}-{digest.hexdigest()[:16]}{suffix}"
    if target.exists():
        return target
    work = Path(tempfile.mkdtemp(prefix="build-", dir=cache_dir()))
    try:
        for name, data in files.items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_bytes(data)
        out = work / target.name
        cmd = [_compiler(), *flags, f"-I{work}", "-o", str(out), *(str(work / s) for s in sources), *link_args]
        _run_compiler(cmd, stem)
        os.replace(out, target)  # atomic: concurrent builders agree
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def build(sanitize: bool = False, single_rounding: bool = False, cmsis_nn=None) -> Path:
    """Path of the compiled engine (built on first use, then cached).

    sanitize=False: the ctypes shared library; sanitize=True: the ASan/UBSan
    driver executable. cmsis_nn: a CMSIS-NN tree to dispatch layers to.
    """
    sources = ENGINE_SOURCES + ((DRIVER_SOURCE,) if sanitize else ())
    flags = COMMON_FLAGS + (SANITIZER_FLAGS if sanitize else LIBRARY_FLAGS)
    if single_rounding:
        flags += ("-DTFLITE_SINGLE_ROUNDING=1",)
    stem = ("engine_main_sanitized" if sanitize else "libtflm_patch_engine") + ("_sr" if single_rounding else "")
    extra_inputs = link_args = ()
    if cmsis_nn is not None:
        library = build_cmsis_nn(cmsis_nn, sanitize=sanitize, single_rounding=single_rounding)
        flags += cmsis_nn_flags(cmsis_nn, single_rounding)
        extra_inputs = link_args = (str(library),)
        stem += "_cmsis"
    return compile_cached(stem, sources, ENGINE_HEADERS, flags, suffix="" if sanitize else ".so",
                          extra_inputs=extra_inputs, link_args=link_args)


def engine_library(single_rounding: bool = False, cmsis_nn=None) -> ctypes.CDLL:
    """The engine's shared library, loaded (once per build variant)."""
    key = (bool(single_rounding), None if cmsis_nn is None else str(Path(cmsis_nn).resolve()))
    if key not in _loaded:
        lib = ctypes.CDLL(str(build(sanitize=False, single_rounding=key[0], cmsis_nn=key[1])))
        fn = lib.tflm_patch_run_stage
        i32p = ctypes.POINTER(ctypes.c_int32)
        fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int32, ctypes.POINTER(ctypes.c_void_p),
                       i32p, i32p, i32p, ctypes.c_void_p, ctypes.c_int32, i32p,
                       ctypes.c_char_p, ctypes.c_size_t]
        fn.restype = ctypes.c_int
        lib.tflm_patch_single_rounding.restype = ctypes.c_int
        lib.tflm_patch_last_scratch_bytes.restype = ctypes.c_size_t
        lib.tflm_patch_last_min_output_lead.restype = ctypes.c_int64
        _loaded[key] = lib
    return _loaded[key]


def single_rounding_of_build(single_rounding: bool = False) -> bool:
    """What the compiled library reports (a self-check of the build flags)."""
    return bool(engine_library(single_rounding).tflm_patch_single_rounding())


def _prepare_inputs(inputs) -> list:
    arrays = [np.ascontiguousarray(x) for x in inputs]
    if not arrays:
        raise EngineError("no inputs")
    return arrays


def _int32_array(values):
    values = [int(v) for v in values]
    return (ctypes.c_int32 * max(1, len(values)))(*values)


def _run_in_process(options: bytes, arrays: list, output_shape: tuple, single_rounding: bool, cmsis_nn,
                    output_lead: int | None = None):
    fn = engine_library(single_rounding, cmsis_nn).tflm_patch_run_stage
    output = np.empty(output_shape, dtype=np.int8)
    if output_lead is not None:
        _memory, fused_input, output = fused_layout(arrays[0], output_shape, output_lead)
        arrays = [fused_input] + arrays[1:]
    data = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
    types = _int32_array(_TYPE_CODES.get(a.dtype, 0) for a in arrays)
    ndims = _int32_array(a.ndim for a in arrays)
    dims = _int32_array(d for a in arrays for d in a.shape)
    out_dims = _int32_array(output_shape)
    error = ctypes.create_string_buffer(_ERROR_BYTES)
    code = fn(options, len(options), len(arrays), data, types, ndims, dims,
              output.ctypes.data, len(output_shape), out_dims, error, _ERROR_BYTES)
    if code != _OK:
        return EngineError(error.value.decode(errors="replace") or f"engine error {code}")
    return output.copy() if output_lead is not None else output


def _run_sanitized(options_list: list, arrays: list, output_shape: tuple, single_rounding: bool,
                   cmsis_nn, output_lead: int | None = None) -> list:
    driver = build(sanitize=True, single_rounding=single_rounding, cmsis_nn=cmsis_nn)
    with tempfile.TemporaryDirectory(prefix="tflm-patch-") as tmp:
        tmp = Path(tmp)
        lines = []
        for i, a in enumerate(arrays):
            path = tmp / f"input{i}.bin"
            path.write_bytes(a.tobytes())
            dims = " ".join(str(d) for d in a.shape)
            lines.append(f"input {_TYPE_CODES.get(a.dtype, 0)} {a.ndim} {dims} {path}")
        lines.append(f"output {len(output_shape)} {' '.join(str(d) for d in output_shape)}")
        if output_lead is not None:
            lines.append(f"lead {int(output_lead)}")
        for k, options in enumerate(options_list):
            opt_path = tmp / f"options{k}.bin"
            opt_path.write_bytes(options)
            lines += [f"write {tmp / f'output{k}.bin'}", f"run {opt_path}"]
        manifest = tmp / "manifest.txt"
        manifest.write_text("\n".join(lines) + "\n")
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
                   UBSAN_OPTIONS="print_stacktrace=1")
        proc = subprocess.run([str(driver), str(manifest)], capture_output=True, text=True, env=env,
                              timeout=600)
        if proc.returncode != 0:
            raise EngineCrash(f"sanitized engine exited with {proc.returncode}:\n{proc.stderr[-4000:]}")
        results_lines = proc.stdout.splitlines()
        if len(results_lines) != len(options_list):
            raise EngineCrash(f"sanitized engine printed {len(results_lines)} results for "
                              f"{len(options_list)} runs:\n{proc.stderr[-4000:]}")
        results = []
        for k, line in enumerate(results_lines):
            if line == "ok":
                data = (tmp / f"output{k}.bin").read_bytes()
                results.append(np.frombuffer(data, dtype=np.int8).reshape(output_shape).copy())
            else:
                results.append(EngineError(line.removeprefix("rejected ").strip()))
        return results


def run_many(options_list, inputs, output_shape, *, sanitize: bool = False,
             single_rounding: bool = False, cmsis_nn=None, output_lead: int | None = None) -> list:
    """Run several option buffers against the same tensors.

    Returns, per options, the output array or the EngineError (not raised).
    With sanitize=True all runs share one sanitizer process; a memory error
    raises EngineCrash. cmsis_nn: see build(). output_lead: lay the output that
    many bytes before the input, over it, in one buffer (an offline plan's fused
    layout); None keeps them apart.
    """
    options_list = [bytes(o) for o in options_list]
    arrays = _prepare_inputs(inputs)
    output_shape = tuple(int(d) for d in output_shape)
    if sanitize:
        return _run_sanitized(options_list, arrays, output_shape, single_rounding, cmsis_nn, output_lead)
    return [_run_in_process(o, arrays, output_shape, single_rounding, cmsis_nn, output_lead)
            for o in options_list]


def last_min_output_lead(single_rounding: bool = False, cmsis_nn=None) -> int:
    """The kernel's ComputeMinOutputLead for the last plan run in this process."""
    return int(engine_library(single_rounding, cmsis_nn).tflm_patch_last_min_output_lead())


def run_stage(options: bytes, inputs: list, output_shape, *, sanitize: bool = False,
              single_rounding: bool = False, cmsis_nn=None, output_lead: int | None = None) -> np.ndarray:
    """Run PATCH_STAGE on the host: `inputs` are the op's inputs ([0] the int8
    stage input [1, H, W, C], then the constants in options order); returns the
    int8 stage output of `output_shape`. Raises EngineError on rejection."""
    result = run_many([options], inputs, output_shape, sanitize=sanitize, single_rounding=single_rounding,
                      cmsis_nn=cmsis_nn, output_lead=output_lead)[0]
    if isinstance(result, EngineError):
        raise result
    return result

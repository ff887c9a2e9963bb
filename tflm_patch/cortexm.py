"""Level 3: original and patched models on a Cortex-M4 (QEMU mps2-an386), bare metal.

A small program (cortexm/qemu_main.cc + our kernel + the model and input as C
arrays) is cross-compiled with arm-none-eabi-g++ (newlib, semihosting through
librdimon) and linked to the user's Cortex-M4 TFLM library; qemu-system-arm
runs it on the mps2-an386 board and the program prints the output bytes and
arena_used_bytes() over semihosting. An instruction-counting TCG plugin of our
own (cortexm/insn_count.c, built with the host C compiler) counts the guest
instructions executed inside Invoke(): the program calls two marker functions
around each Invoke() and the plugin reports the instructions between them.

Like the host level, TFLM is found through `TFLM_ROOT`: the libraries TFLM's
Makefile builds with
`make -f tensorflow/lite/micro/tools/make/Makefile TARGET=cortex_m_generic
TARGET_ARCH=cortex-m4+fp OPTIMIZED_KERNEL_DIR= microlite` (reference kernels)
or `... OPTIMIZED_KERNEL_DIR=cmsis_nn microlite` (CMSIS-NN kernels; our kernel
is then built with -DCMSIS_NN and calls CMSIS-NN too), under
gen/cortex_m_generic_cortex-m4+fp*/lib/, or `TFLM_M4_LIB` names one.
`TFLM_M4_CXXFLAGS` replaces the defines used to compile against it. Tools
come from PATH (`ARM_GXX`, `QEMU_SYSTEM_ARM` override). Everything built is
cached in tflm_patch.native.cache_dir() by a hash of its inputs.
"""
from __future__ import annotations

import glob
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import native, tflm_host
from .converter import export_c

REPO_ROOT = Path(__file__).resolve().parent.parent
CORTEXM_DIR = REPO_ROOT / "cortexm"
ARDUINO_DIR = REPO_ROOT / "arduino"
ARDUINO_EXAMPLE = ARDUINO_DIR / "examples" / "PatchedClassifier"
KERNEL_SOURCES = native.KERNEL_SOURCES
KERNEL_HEADERS = native.KERNEL_HEADERS
BOARD = "mps2-an386"
# Hard-float Cortex-M4, as TFLM's TARGET_ARCH=cortex-m4+fp (-mfpu=auto picks fpv4-sp-d16).
ARCH_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")
# The defines of TFLM's cortex_m_generic build that client code must share
# (TF_LITE_STATIC_MEMORY changes struct layouts).
DEFAULT_DEFINES = ("-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON", "-DTF_LITE_MCU_DEBUG_LOG")
# -O2 like TFLM's kernels (KERNEL_OPTIMIZATION_LEVEL), so that the reference
# kernels and PATCH_STAGE are compared like with like; -funsigned-char as TFLM.
CXX_FLAGS = ("-std=c++17", "-O2", "-funsigned-char", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics",
             "-ffunction-sections", "-fdata-sections", "-fno-unwind-tables", "-fno-asynchronous-unwind-tables",
             "-Wall", "-Wextra", "-Werror")
C_FLAGS = ("-std=gnu11", "-O2", "-ffunction-sections", "-fdata-sections", "-Wall", "-Wextra", "-Werror")
DEFAULT_ARENA_BYTES = 2 * 1024 * 1024
DEFAULT_TIMEOUT = 600.0
MARKERS = ("tflm_patch_window_begin", "tflm_patch_window_end")


class CortexMError(RuntimeError):
    """Building or running the Cortex-M program failed; the message says why."""


@dataclass
class CortexM:
    """The tools and the TFLM library of a Cortex-M4 build."""
    cxx: str           # arm-none-eabi-g++
    cc: str            # arm-none-eabi-gcc
    nm: str            # arm-none-eabi-nm
    qemu: str          # qemu-system-arm
    host_cc: str       # builds the QEMU plugin
    tree: tflm_host.TflmTree  # root + the Cortex-M4 library

    def defines(self) -> list:
        flags = os.environ.get("TFLM_M4_CXXFLAGS")
        return shlex.split(flags) if flags else list(DEFAULT_DEFINES)

    def cxx_flags(self) -> list:
        return [*ARCH_FLAGS, *CXX_FLAGS, *self.defines(), *self.tree.kernel_defines(), *self.tree.include_flags()]


@dataclass
class CortexMRun:
    outputs: bytes               # every output tensor's bytes, in order
    arena_used_bytes: int
    invoke_insns: list = field(default_factory=list)  # guest instructions per Invoke()
    total_insns: int | None = None                    # everything the guest executed
    stdout: str = ""

    @property
    def insns(self) -> int | None:
        return self.invoke_insns[0] if self.invoke_insns else None


def _which(env_var: str, name: str) -> str | None:
    return shutil.which(os.environ.get(env_var) or name)


def find_m4_library(root: str, kernels: str = tflm_host.REFERENCE) -> tuple:
    """(path, None) or (None, reason): a Cortex-M4 library with `kernels`."""
    lib = os.environ.get("TFLM_M4_LIB")
    if lib:
        if not os.path.isfile(lib):
            return None, f"TFLM_M4_LIB={lib} does not exist"
        if tflm_host.library_kernels(lib) != kernels:
            return None, f"TFLM_M4_LIB={lib} does not have {kernels} kernels"
        return lib, None
    found = sorted(glob.glob(os.path.join(root, "gen", "cortex_m_generic_cortex-m4+fp*", "lib",
                                          "libtensorflow-microlite.a")))
    found = [f for f in found if tflm_host.library_kernels(f) == kernels]
    if not found and kernels == tflm_host.CMSIS_NN:
        return None, (f"no Cortex-M4 libtensorflow-microlite.a with CMSIS-NN kernels under {root}/gen/ (build it "
                      "with TFLM's Makefile: ... TARGET=cortex_m_generic TARGET_ARCH=cortex-m4+fp "
                      "OPTIMIZED_KERNEL_DIR=cmsis_nn microlite)")
    if not found:
        return None, (f"no Cortex-M4 libtensorflow-microlite.a under {root}/gen/cortex_m_generic_cortex-m4+fp*/lib/ "
                      "(build it with TFLM's Makefile: make -f tensorflow/lite/micro/tools/make/Makefile "
                      "TARGET=cortex_m_generic TARGET_ARCH=cortex-m4+fp OPTIMIZED_KERNEL_DIR= microlite, "
                      "or set TFLM_M4_LIB)")
    return found[0], None


def find_cortexm(kernels: str = tflm_host.REFERENCE) -> tuple:
    """(CortexM, None) or (None, the reason the Cortex-M level cannot run here),
    for a TFLM library with `kernels` (tflm_host.REFERENCE or CMSIS_NN)."""
    cxx = _which("ARM_GXX", "arm-none-eabi-g++")
    if cxx is None:
        return None, ("arm-none-eabi-g++ is not installed (Debian: apt-get install gcc-arm-none-eabi "
                      "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib)")
    prefix = cxx[:-len("g++")] if cxx.endswith("g++") else None
    cc = prefix + "gcc" if prefix and os.path.isfile(prefix + "gcc") else shutil.which("arm-none-eabi-gcc")
    nm = prefix + "nm" if prefix and os.path.isfile(prefix + "nm") else shutil.which("arm-none-eabi-nm")
    if cc is None or nm is None:
        return None, "arm-none-eabi-gcc / arm-none-eabi-nm not found next to arm-none-eabi-g++"
    try:
        specs = subprocess.run([cc, *ARCH_FLAGS, "-print-file-name=rdimon.specs"], capture_output=True,
                               text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot run {cc}: {exc}"
    if not os.path.isabs(specs):
        return None, ("newlib's rdimon.specs (semihosting) is missing for arm-none-eabi-gcc "
                      "(Debian: apt-get install libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib)")
    qemu = _which("QEMU_SYSTEM_ARM", "qemu-system-arm")
    if qemu is None:
        return None, "qemu-system-arm is not installed (Debian: apt-get install qemu-system-arm)"
    try:
        machines = subprocess.run([qemu, "-machine", "help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot run {qemu}: {exc}"
    if BOARD not in machines:
        return None, f"{qemu} has no {BOARD} board (QEMU 6.0 or newer needed)"
    host_cc = shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc")
    if host_cc is None:
        return None, "no host C compiler (cc/gcc) to build the QEMU instruction-counting plugin"
    root = os.environ.get("TFLM_ROOT")
    if not root:
        return None, "TFLM_ROOT is not set (point it at a TFLM source tree with a built Cortex-M4 library)"
    if not os.path.isfile(os.path.join(root, "tensorflow/lite/micro/micro_interpreter.h")):
        return None, f"TFLM_ROOT={root} is not a TFLM source tree"
    lib, why = find_m4_library(root, kernels)
    if lib is None:
        return None, why
    if not CORTEXM_DIR.joinpath("qemu_main.cc").is_file():
        return None, f"the Cortex-M sources are not at {CORTEXM_DIR} (run from a source checkout of tflm-patch)"
    return CortexM(cxx, cc, nm, qemu, host_cc, tflm_host.TflmTree(root, lib, kernels)), None


# ----------------------------------------------------------------------------- building

def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):  # a file outside our sources: its identity
            st = os.stat(part)
            h.update(f"{part}:{st.st_size}:{st.st_mtime_ns}".encode())
        elif isinstance(part, bytes):
            h.update(part)
        else:
            h.update(str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _run(cmd: list, what: str, timeout: float = 900) -> None:
    try:
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    except OSError as exc:
        raise CortexMError(f"{what}: cannot run {cmd[0]}: {exc}") from None
    except subprocess.TimeoutExpired:
        raise CortexMError(f"{what}: timed out after {timeout:.0f} s") from None
    if proc.returncode != 0 or proc.stderr.strip():
        # Warnings are errors too: the sources must build cleanly.
        raise CortexMError(f"{what} failed:\n{' '.join(map(str, cmd))}\n{proc.stderr}")


def _cached(name: str, key: str, build) -> Path:
    """cache_dir()/name-key, made by build(work_dir) -> file in work_dir, atomically."""
    target = native.cache_dir() / f"{name}-{key}"
    if target.exists():
        return target
    work = Path(tempfile.mkdtemp(prefix="build-", dir=native.cache_dir()))
    try:
        os.replace(build(work), target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _kernel_files() -> dict:
    root = native.source_root()  # the packaged micro_ops (or the repository's)
    return {name: root.joinpath(name).read_bytes() for name in KERNEL_SOURCES + KERNEL_HEADERS}


def build_plugin(env: CortexM) -> Path:
    """The instruction-counting QEMU plugin (a host shared object)."""
    source = (CORTEXM_DIR / "insn_count.c").read_bytes()
    flags = ("-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror")

    def build(work: Path) -> Path:
        (work / "insn_count.c").write_bytes(source)
        out = work / "libinsn_count.so"
        _run([env.host_cc, *flags, "-o", out, work / "insn_count.c"], "building the QEMU plugin")
        return out
    return _cached("libinsn_count", _digest(env.host_cc, Path(env.host_cc), *flags, source) + ".so", build)


def _runtime_objects(env: CortexM, arena_bytes: int) -> list:
    """Our kernel, qemu_main.cc and startup.c compiled for the M4 (cached), as object paths."""
    kernel = _kernel_files()
    ours = {name: (CORTEXM_DIR / name).read_bytes() for name in ("qemu_main.cc", "startup.c")}
    cxx_flags = [*env.cxx_flags(), f"-DTFLM_PATCH_ARENA_BYTES={int(arena_bytes)}"]
    c_flags = [*ARCH_FLAGS, *C_FLAGS]
    key = _digest(env.cxx, Path(env.cxx), env.cc, *cxx_flags, *c_flags,
                  *(n.encode() + b"\0" + d for n, d in sorted({**kernel, **ours}.items())))

    def build(work: Path) -> Path:
        src, obj = work / "src", work / "obj"
        src.mkdir()
        obj.mkdir()
        for name, data in {**kernel, **ours}.items():
            (src / name).write_bytes(data)
        for name in (*KERNEL_SOURCES, "qemu_main.cc"):
            _run([env.cxx, *cxx_flags, f"-I{src}", "-c", src / name, "-o", obj / (name + ".o")],
                 f"compiling {name} for Cortex-M4")
        _run([env.cc, *c_flags, "-c", src / "startup.c", "-o", obj / "startup.c.o"], "compiling startup.c")
        return obj
    objdir = _cached("cortexm-objs", key, build)
    return sorted(str(p) for p in objdir.glob("*.o"))


def _link(env: CortexM, objects: list, out: Path) -> None:
    _run([env.cxx, *ARCH_FLAGS, *objects, env.tree.library, "--specs=rdimon.specs", "-nostartfiles",
          "-T", CORTEXM_DIR / "mps2_an386.ld", "-Wl,--gc-sections", "-lm", "-o", out], "linking the Cortex-M4 program")


def build_program(env: CortexM, model_bytes: bytes, input_bytes: bytes, invokes: int = 1,
                  arena_bytes: int = DEFAULT_ARENA_BYTES) -> Path:
    """The ELF that runs `model_bytes` on `input_bytes` `invokes` times (cached)."""
    runtime = _runtime_objects(env, arena_bytes)
    ld = (CORTEXM_DIR / "mps2_an386.ld").read_bytes()
    key = _digest(*runtime, Path(env.tree.library), ld, *ARCH_FLAGS, model_bytes, input_bytes, invokes)

    def build(work: Path) -> Path:
        model_cc, model_h = export_c.render(model_bytes, "g_model", "model_data.h", "Model under test.")
        input_cc, input_h = export_c.render(input_bytes, "g_input", "input_data.h", "Input 0 of the model.")
        (work / "model_data.cc").write_text(model_cc)
        (work / "model_data.h").write_text(model_h)
        (work / "input_data.cc").write_text(input_cc)
        (work / "input_data.h").write_text(input_h)
        (work / "config.cc").write_text(f"extern const unsigned int g_invokes;\n"
                                        f"const unsigned int g_invokes = {int(invokes)};\n")
        objects = []
        for name in ("model_data.cc", "input_data.cc", "config.cc"):
            # Data only: -O0 compiles the big arrays fastest; the code is unchanged.
            obj = work / (name + ".o")
            _run([env.cxx, *ARCH_FLAGS, "-std=c++17", "-O0", "-Wall", "-Wextra", "-Werror", "-fdata-sections",
                  f"-I{work}", "-c", work / name, "-o", obj], f"compiling {name}")
            objects.append(str(obj))
        out = work / "program.elf"
        _link(env, [*runtime, *objects], out)
        return out
    return _cached("cortexm", key + ".elf", build)


def build_arduino_example(env: CortexM, example_dir: Path = ARDUINO_EXAMPLE) -> Path:
    """The Arduino example's inference path (patched_inference.cpp + its model and
    input + arduino/src) with cortexm/arduino_main.cc, built with -Wall -Wextra -Werror."""
    example_dir = Path(example_dir)
    names = [p for p in sorted(example_dir.iterdir()) if p.suffix in (".cpp", ".h")]
    if not any(p.name == "patched_inference.cpp" for p in names):
        raise CortexMError(f"{example_dir} has no patched_inference.cpp")
    library = sorted(p for p in (ARDUINO_DIR / "src").iterdir() if p.suffix in (".cpp", ".h"))
    ours = [CORTEXM_DIR / "arduino_main.cc", CORTEXM_DIR / "startup.c", CORTEXM_DIR / "mps2_an386.ld"]
    flags = [*env.cxx_flags(), f"-I{ARDUINO_DIR / 'src'}", f"-I{example_dir}"]
    key = _digest(env.cxx, Path(env.cxx), Path(env.tree.library), *flags,
                  *(p.name.encode() + b"\0" + p.read_bytes() for p in (*names, *library, *ours)))

    def build(work: Path) -> Path:
        objects = []
        for src in [p for p in (*names, *library) if p.suffix == ".cpp"] + [CORTEXM_DIR / "arduino_main.cc"]:
            obj = work / f"{len(objects)}_{src.name}.o"
            _run([env.cxx, *flags, "-c", src, "-o", obj], f"compiling {src.name} for Cortex-M4")
            objects.append(str(obj))
        obj = work / "startup.c.o"
        _run([env.cc, *ARCH_FLAGS, *C_FLAGS, "-c", CORTEXM_DIR / "startup.c", "-o", obj], "compiling startup.c")
        objects.append(str(obj))
        out = work / "arduino_example.elf"
        _link(env, objects, out)
        return out
    return _cached("cortexm-arduino", key + ".elf", build)


# ----------------------------------------------------------------------------- running

def _symbol_addresses(env: CortexM, elf: Path, names) -> dict:
    proc = subprocess.run([env.nm, str(elf)], capture_output=True, text=True, timeout=60)
    found = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in names:
            found[parts[2]] = int(parts[0], 16)
    missing = [n for n in names if n not in found]
    if missing:
        raise CortexMError(f"{elf} lacks the marker symbols {missing}")
    return found


def run_elf(env: CortexM, elf: Path, count_insns: bool = True, timeout: float = DEFAULT_TIMEOUT) -> tuple:
    """Run an ELF on the board: (exit code, stdout, stderr, {window: insns}, total_insns)."""
    cmd = [env.qemu, "-M", BOARD, "-nographic", "-monitor", "none",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    with tempfile.TemporaryDirectory(prefix="tflm-patch-qemu-") as tmp:
        counts = os.path.join(tmp, "insns.txt")
        if count_insns:
            marks = _symbol_addresses(env, elf, MARKERS)
            plugin = build_plugin(env)
            cmd += ["-plugin", f"{plugin},begin={marks[MARKERS[0]]:#x},end={marks[MARKERS[1]]:#x},out={counts}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise CortexMError(f"QEMU did not finish {elf.name} within {timeout:.0f} s (killed)") from None
        windows, total = {}, None
        if count_insns and os.path.exists(counts):
            for line in open(counts):
                values = dict(item.split("=", 1) for item in line.split() if "=" in item)
                if "window" in values:
                    windows[int(values["window"])] = int(values["insns"])
                elif "total_insns" in values:
                    total = int(values["total_insns"])
    return proc.returncode, proc.stdout, proc.stderr, [windows[k] for k in sorted(windows)], total


def _parse(stdout: str) -> dict:
    values: dict = {}
    for line in stdout.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep:
            values.setdefault(key, []).append(value)
    return values


def run_model(env: CortexM, model, input_array: np.ndarray, invokes: int = 1, count_insns: bool = True,
              timeout: float = DEFAULT_TIMEOUT, arena_bytes: int = DEFAULT_ARENA_BYTES) -> CortexMRun:
    """Run a model (path or bytes) on the Cortex-M4 board; like tflm_host.run_model."""
    model_bytes = model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    input_bytes = np.ascontiguousarray(input_array).tobytes()
    elf = build_program(env, bytes(model_bytes), input_bytes, invokes, arena_bytes)
    code, out, err, windows, total = run_elf(env, elf, count_insns, timeout)
    values = _parse(out)
    if code != 0 or "done" not in out.split():
        why = (values.get("error") or [""])[0]
        raise CortexMError(f"the Cortex-M4 program exited with {code}{': ' + why if why else ''}\n"
                           f"{(out + err).strip()[-2000:]}")
    if count_insns and len(windows) != invokes:
        raise CortexMError(f"the instruction counter saw {len(windows)} Invoke() windows, expected {invokes}: "
                           f"{err.strip()[-2000:]}")
    return CortexMRun(bytes.fromhex("".join(values.get("output", []))), int(values["arena_used_bytes"][0]),
                      windows, total, out)


def run_arduino_example(env: CortexM, example_dir: Path = ARDUINO_EXAMPLE,
                        timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Build and run the example's code path; its printed values (ints) plus exit_code."""
    elf = build_arduino_example(env, example_dir)
    code, out, err, _, _ = run_elf(env, elf, count_insns=False, timeout=timeout)
    values = {k: v[-1] for k, v in _parse(out).items()}
    result = {k: int(v) for k, v in values.items() if v.lstrip("-").isdigit()}
    result["exit_code"] = code
    result["output"] = (out + err).strip()
    return result

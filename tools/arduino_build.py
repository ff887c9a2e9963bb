"""Build an example sketch of the Arduino library with a real Arduino build tool.

    python tools/arduino_build.py [SKETCH_DIR] [--work DIR] [--qemu] [--json]

Does what the Arduino IDE does after *Sketch > Include Library* and *Upload*:
installs arduino/ as the library TFLMPatch next to your Arduino_TensorFlowLite
(a copy in a staging folder, nothing of yours is changed), and compiles the
sketch (default: arduino/examples/PatchedClassifier) with arduino-builder for
your board: library discovery from the #includes, .ino preprocessing, every
file of both libraries' src/ under the core's flags, the link, and the size
report. Warnings are turned on (-warnings all); a warning located in
TFLMPatch or in the sketch fails the build. With --qemu, the objects the
build made (less the core, the board peripherals, Serial and the .ino) are
linked with cortexm/arduino_main.cc for QEMU mps2-an386 and run; a class other
than the one TFLM computes on the host fails.

Your Arduino installation is found through environment variables:

  ARDUINO_BUILDER    arduino-builder (default: arduino-builder on PATH; Debian
                     package arduino-builder)
  ARDUINO_HARDWARE   hardware folder(s) with the board's core, os.pathsep-separated:
                     ~/.arduino15/packages, or a sketchbook hardware/ folder laid out
                     PACKAGER/ARCH/ (required)
  ARDUINO_LIBRARIES  libraries folder(s), one holding Arduino_TensorFlowLite (required)
  ARDUINO_TOOLS      tools folder(s) (optional)
  ARDUINO_FQBN       the board (default arduino:mbed_nano:nano33ble, the Nano 33 BLE
                     (Sense), the one board Arduino_TensorFlowLite supports)
  ARDUINO_PREFS      extra build properties, key=value separated by newlines, e.g.
                     runtime.tools.arm-none-eabi-gcc-7-2017q4.path=/usr to compile with
                     the system's arm-none-eabi-gcc

Exit status: 0 built and linked; 1 the build failed (compile error, or a
warning in TFLMPatch or the sketch); 2 the Arduino installation is missing or
incomplete (the reason on stderr); 5 everything compiled without warnings but
the link could not run because the core lacks a file of its own (named).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = os.path.join(ROOT, "arduino")
EXAMPLE = os.path.join(LIBRARY, "examples", "PatchedClassifier")
DEFAULT_FQBN = "arduino:mbed_nano:nano33ble"
DEBIAN_PLATFORM = "/usr/share/arduino-builder"  # Debian's global platform.txt (ctags)
CORE_API_VERSION = "10819"  # what the Arduino IDE 1.8.19 passes as ARDUINO
TFLM_LIBRARY = "Arduino_TensorFlowLite"

_WARNING = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:\d+:)? warning: (?P<text>.*)$")
_USING = re.compile(r"^Using library (?P<name>\S+) at version (?P<version>\S+) in folder: (?P<folder>.+?)\s*$")
_SKETCH_SIZE = re.compile(r"Sketch uses (\d+) bytes .*Maximum is (\d+) bytes")
_RAM_SIZE = re.compile(r"Global variables use (\d+) bytes .*Maximum is (\d+) bytes")
_MISSING = re.compile(r"(?P<file>/\S+): No such file or directory")


@dataclass
class Setup:
    builder: str
    hardware: list
    libraries: list
    tools: list
    fqbn: str
    prefs: list


@dataclass
class BuildResult:
    command: list
    returncode: int
    compiled: bool = False  # the sketch and both libraries compiled
    linked: bool = False
    libraries: dict = field(default_factory=dict)  # name -> (version, folder)
    our_warnings: list = field(default_factory=list)  # warnings located in TFLMPatch or the sketch
    missing_core_file: str = ""  # the core's own file the link needed and did not find
    flash_bytes: int = 0
    flash_max: int = 0
    ram_bytes: int = 0
    ram_max: int = 0
    sections: dict = field(default_factory=dict)  # arm-none-eabi-size -A of the .elf
    elf: str = ""
    log_tail: str = ""


def _paths(var: str) -> list:
    return [p for p in os.environ.get(var, "").split(os.pathsep) if p]


def find_setup() -> tuple:
    """(Setup, None) from the environment, or (None, why not)."""
    builder = os.environ.get("ARDUINO_BUILDER") or shutil.which("arduino-builder")
    if not builder or not os.access(builder, os.X_OK):
        return None, ("no arduino-builder (set ARDUINO_BUILDER, or apt-get install arduino-builder)"
                      if not builder else f"ARDUINO_BUILDER={builder} is not executable")
    hardware = _paths("ARDUINO_HARDWARE")
    if not hardware:
        return None, "ARDUINO_HARDWARE is not set (the hardware folder holding the board core)"
    libraries = _paths("ARDUINO_LIBRARIES")
    if not any(os.path.isfile(os.path.join(d, TFLM_LIBRARY, "library.properties")) for d in libraries):
        return None, f"no {TFLM_LIBRARY}/library.properties in ARDUINO_LIBRARIES={os.pathsep.join(libraries)!r}"
    for d in hardware + libraries:
        if not os.path.isdir(d):
            return None, f"{d} (from ARDUINO_HARDWARE or ARDUINO_LIBRARIES) is not a folder"
    if os.path.isfile(os.path.join(DEBIAN_PLATFORM, "platform.txt")) and DEBIAN_PLATFORM not in hardware:
        hardware = [DEBIAN_PLATFORM] + hardware
    prefs = [p.strip() for p in os.environ.get("ARDUINO_PREFS", "").splitlines() if p.strip()]
    return Setup(builder, hardware, libraries, _paths("ARDUINO_TOOLS"),
                 os.environ.get("ARDUINO_FQBN", DEFAULT_FQBN), prefs), None


def stage(work: str, sketch: str = EXAMPLE) -> tuple:
    """Copies the library (as the IDE installs it) and the sketch into `work`;
    returns (libraries folder, sketch .ino). The same `work` gives the same
    paths, so arduino-builder reuses what it compiled before."""
    libs = os.path.join(work, "libraries")
    shutil.rmtree(os.path.join(libs, "TFLMPatch"), ignore_errors=True)
    shutil.copytree(LIBRARY, os.path.join(libs, "TFLMPatch"))
    name = os.path.basename(os.path.normpath(sketch))
    target = os.path.join(work, "sketch", name)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(sketch, target)
    return libs, os.path.join(target, f"{name}.ino")


def _ours(path: str, roots: list) -> bool:
    real = os.path.realpath(path)
    return any(real == r or real.startswith(r + os.sep) for r in roots)


def build(setup: Setup, work: str, sketch: str = EXAMPLE, build_path: str | None = None,
          timeout: float = 3600) -> BuildResult:
    libs, ino = stage(work, sketch)
    build_path = build_path or os.path.join(work, "build")
    os.makedirs(build_path, exist_ok=True)
    tools = setup.tools
    if not tools:  # arduino-builder insists on one
        tools = [os.path.join(work, "no-tools")]
        os.makedirs(tools[0], exist_ok=True)
    cmd = [setup.builder, "-compile", "-verbose", "-warnings", "all", "-core-api-version", CORE_API_VERSION,
           "-fqbn", setup.fqbn, "-build-path", build_path]
    for flag, values in (("-hardware", setup.hardware), ("-tools", tools), ("-libraries", setup.libraries + [libs])):
        for v in values:
            cmd += [flag, v]
    for p in setup.prefs:
        cmd += ["-prefs", p]
    cmd.append(ino)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    result = BuildResult(command=cmd, returncode=proc.returncode)
    ours = [os.path.realpath(os.path.join(libs, "TFLMPatch")), os.path.realpath(os.path.dirname(ino)),
            os.path.realpath(os.path.join(build_path, "sketch"))]
    for line in log.splitlines():
        m = _USING.match(line)
        if m:
            result.libraries[m["name"]] = (m["version"], m["folder"])
        m = _WARNING.match(line)
        if m and _ours(m["file"], ours):
            result.our_warnings.append(line)
        m = _SKETCH_SIZE.search(line)
        if m:
            result.flash_bytes, result.flash_max = int(m[1]), int(m[2])
        m = _RAM_SIZE.search(line)
        if m:
            result.ram_bytes, result.ram_max = int(m[1]), int(m[2])
    objects = os.path.join(build_path, "libraries", "TFLMPatch")
    sketch_objects = os.path.join(build_path, "sketch")
    kernel_sources = [f for f in os.listdir(os.path.join(libs, "TFLMPatch", "src")) if f.endswith(".cpp")]
    sketch_sources = [f for f in os.listdir(os.path.dirname(ino)) if f.endswith(".cpp")]
    result.compiled = (all(os.path.isfile(os.path.join(objects, f + ".o")) for f in kernel_sources) and
                       all(os.path.isfile(os.path.join(sketch_objects, f + ".o")) for f in sketch_sources) and
                       os.path.isfile(os.path.join(sketch_objects, os.path.basename(ino) + ".cpp.o")) and
                       os.path.isdir(os.path.join(build_path, "libraries", TFLM_LIBRARY)))
    elf = os.path.join(build_path, os.path.basename(ino) + ".elf")
    result.linked = proc.returncode == 0 and os.path.isfile(elf)
    if result.linked:
        result.elf = elf
        result.sections = _sections(elf)
    elif result.compiled:
        for m in _MISSING.finditer(log):
            if not _ours(m["file"], ours) and not m["file"].startswith(os.path.realpath(build_path)):
                result.missing_core_file = m["file"]
    result.log_tail = "\n".join(line for line in log.splitlines()[-40:] if not line.startswith('"'))[-4000:]
    return result


def _sections(elf: str) -> dict:
    size = shutil.which("arm-none-eabi-size")
    if not size:
        return {}
    out = subprocess.run([size, "-A", elf], capture_output=True, text=True).stdout
    sections = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    return sections


# ----------------------------------------------------------------------------- the build's code on QEMU

QEMU_BOARD = "mps2-an386"  # Cortex-M4 with FPU, as the Nano 33 BLE's nRF52840
CORTEXM_DIR = os.path.join(ROOT, "cortexm")
# cortexm/arduino_main.cc logs through TFLM's cortex_m_generic callback; the
# Arduino library's DebugLog (system_setup.cpp) prints to Serial instead.
_SHIM_HEADER = """#ifndef TFLM_PATCH_QEMU_DEBUG_LOG_CALLBACK_H_
#define TFLM_PATCH_QEMU_DEBUG_LOG_CALLBACK_H_
extern "C" {
typedef void (*DebugLogCallback)(const char* s);
void RegisterDebugLogCallback(DebugLogCallback callback);
}
#endif
"""
_SHIM_SOURCE = """#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
static DebugLogCallback g_callback = nullptr;
extern "C" void RegisterDebugLogCallback(DebugLogCallback callback) { g_callback = callback; }
extern "C" void DebugLog(const char* s) { if (g_callback) g_callback(s); }
"""


@dataclass
class QemuRun:
    exit_code: int
    values: dict  # predicted_class, expected_class, score, arena_used_bytes, arena_size
    output: str


def run_on_qemu(result: BuildResult, work: str, sketch: str = EXAMPLE, timeout: float = 300) -> QemuRun:
    """Links the objects arduino-builder compiled for the board (the Arduino_TensorFlowLite
    library less its board peripherals and Serial logging, TFLMPatch, the sketch's .cpp files
    less the .ino) with cortexm/arduino_main.cc (setup() and loop() without Serial) for QEMU
    mps2-an386, a Cortex-M4 like the Nano 33 BLE's, and runs it."""
    gxx, gcc, qemu = shutil.which("arm-none-eabi-g++"), shutil.which("arm-none-eabi-gcc"), \
        shutil.which("qemu-system-arm")
    if not (gxx and gcc and qemu):
        raise RuntimeError("arm-none-eabi-g++/gcc and qemu-system-arm are needed to run the build under QEMU")
    build_path = os.path.dirname(result.elf) if result.elf else _build_path_of(result)
    libs = os.path.join(build_path, "libraries")
    tflm_objects = []  # archived, so that only what the sketch uses is linked, as on the board
    for root, _, files in os.walk(os.path.join(libs, TFLM_LIBRARY)):
        rel = os.path.relpath(root, os.path.join(libs, TFLM_LIBRARY))
        if rel.split(os.sep)[0] == "peripherals":
            continue
        tflm_objects += [os.path.join(root, f) for f in files if f.endswith(".o") and f != "system_setup.cpp.o"]
    objects = [os.path.join(libs, "TFLMPatch", f) for f in os.listdir(os.path.join(libs, "TFLMPatch"))
               if f.endswith(".o")]
    objects += [os.path.join(build_path, "sketch", f) for f in os.listdir(os.path.join(build_path, "sketch"))
                if f.endswith(".cpp.o") and not f.endswith(".ino.cpp.o")]
    arch = _board_arch_flags(result)
    qemu_dir = os.path.join(work, "qemu")
    shutil.rmtree(qemu_dir, ignore_errors=True)
    shim = os.path.join(qemu_dir, "shim", "tensorflow", "lite", "micro", "cortex_m_generic")
    os.makedirs(shim)
    with open(os.path.join(shim, "debug_log_callback.h"), "w") as f:
        f.write(_SHIM_HEADER)
    with open(os.path.join(qemu_dir, "debug_log.cc"), "w") as f:
        f.write(_SHIM_SOURCE)
    includes = [f"-I{os.path.join(qemu_dir, 'shim')}", f"-I{os.path.join(work, 'sketch', os.path.basename(sketch))}",
                f"-I{_tflm_src(result)}"]
    cxx = [gxx, *arch, "-Os", "-std=gnu++14", "-fno-rtti", "-fno-exceptions", "-funsigned-char", *includes]
    for src in (os.path.join(CORTEXM_DIR, "arduino_main.cc"), os.path.join(qemu_dir, "debug_log.cc")):
        obj = os.path.join(qemu_dir, os.path.basename(src) + ".o")
        _check([*cxx, "-c", src, "-o", obj], f"compiling {os.path.basename(src)}")
        objects.append(obj)
    obj = os.path.join(qemu_dir, "startup.c.o")
    _check([gcc, *arch, "-Os", "-c", os.path.join(CORTEXM_DIR, "startup.c"), "-o", obj], "compiling startup.c")
    objects.append(obj)
    archive = os.path.join(qemu_dir, "libArduino_TensorFlowLite.a")
    _check([shutil.which("arm-none-eabi-ar") or "arm-none-eabi-ar", "rcs", archive, *sorted(tflm_objects)],
           "archiving the Arduino_TensorFlowLite objects")
    elf = os.path.join(qemu_dir, "sketch_on_mps2.elf")
    _check([gxx, *arch, *sorted(objects), archive, "--specs=rdimon.specs", "-nostartfiles", "-T",
            os.path.join(CORTEXM_DIR, "mps2_an386.ld"), "-Wl,--gc-sections", "-lm", "-o", elf],
           "linking the build's objects for mps2-an386")
    proc = subprocess.run([qemu, "-M", QEMU_BOARD, "-nographic", "-monitor", "none",
                           "-semihosting-config", "enable=on,target=native", "-kernel", elf],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    values = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and value.lstrip("-").isdigit():
            values[key] = int(value)
    return QemuRun(proc.returncode, values, (proc.stdout + proc.stderr).strip())


def _check(cmd: list, what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed: {proc.stderr.strip()[-2000:]}")


def _build_path_of(result: BuildResult) -> str:
    return result.command[result.command.index("-build-path") + 1]


def _board_arch_flags(result: BuildResult) -> list:
    """The board's -mcpu, -mfpu and -mfloat-abi (build.mcu, build.fpu, build.float-abi), as
    arduino-builder -dump-prefs gives them for the same build."""
    cmd = ["-dump-prefs" if c == "-compile" else c for c in result.command]
    with tempfile.TemporaryDirectory(prefix="tflmpatch-prefs-") as scratch:  # leaves the build alone
        cmd[cmd.index("-build-path") + 1] = scratch
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    prefs = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if not prefs.get("build.mcu"):
        raise RuntimeError("arduino-builder -dump-prefs gave no build.mcu for this board")
    flags = ["-mthumb", f"-mcpu={prefs['build.mcu']}"]
    flags += [prefs[k] for k in ("build.fpu", "build.float-abi") if prefs.get(k, "").startswith("-m")]
    return flags


def _tflm_src(result: BuildResult) -> str:
    return os.path.join(result.libraries[TFLM_LIBRARY][1], "src")


def status(result: BuildResult) -> int:
    if result.our_warnings or not result.compiled:
        return 1
    if result.linked:
        return 0
    return 5 if result.missing_core_file else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sketch", nargs="?", default=EXAMPLE, help="sketch folder (default: the example)")
    ap.add_argument("--work", help="staging folder to keep and reuse (default: a temporary one)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--qemu", action="store_true",
                    help=f"then run the build's code (less the core and Serial) on QEMU {QEMU_BOARD}")
    args = ap.parse_args(argv)
    setup, why = find_setup()
    if setup is None:
        print(f"arduino_build: {why}", file=sys.stderr)
        return 2
    if not os.path.isdir(args.sketch):
        print(f"arduino_build: {args.sketch} is not a sketch folder", file=sys.stderr)
        return 2
    work = args.work or tempfile.mkdtemp(prefix="tflmpatch-arduino-")
    result = build(setup, work, args.sketch)
    code = status(result)
    run = None
    if args.qemu and result.compiled:
        try:
            run = run_on_qemu(result, work, args.sketch)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            print(f"arduino_build: QEMU run: {e}", file=sys.stderr)
            code = code or 1
    if args.json:
        print(json.dumps(asdict(result), indent=1))
    else:
        print(" ".join(f'"{c}"' if " " in c else c for c in result.command))
        for name, (version, folder) in sorted(result.libraries.items()):
            print(f"library {name} {version}: {folder}")
        for w in result.our_warnings:
            print(w)
        if result.linked:
            print(f"flash {result.flash_bytes} of {result.flash_max} bytes, RAM (data+bss) {result.ram_bytes} "
                  f"of {result.ram_max} bytes; sections {result.sections}")
        elif result.missing_core_file and code == 5:
            print(f"compiled without warnings; not linked: the core lacks {result.missing_core_file}")
        else:
            print(result.log_tail, file=sys.stderr)
        if run is not None:
            print(f"QEMU {QEMU_BOARD}: exit {run.exit_code}, {run.values}")
    if run is not None and args.json:
        print(json.dumps(asdict(run), indent=1))
    if run is not None and run.exit_code != 0:
        code = code or 1
    return code


if __name__ == "__main__":
    sys.exit(main())

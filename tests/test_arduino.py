"""The Arduino library: layout per the Arduino library specification (1.5), sources in sync,
example sketches written for a user's model, and (with an Arduino installation, see
tools/arduino_build.py) the example built by arduino-builder for a real board."""
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tflm_patch import tflm_host
from tflm_patch.converter import analysis, model_io, oracle, pipeline, planner
from tflm_patch.converter.graph import build_graph

from .conftest import MODELS_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "arduino")
EXAMPLE = os.path.join(LIB, "examples", "PatchedClassifier")
CATEGORIES = {"Display", "Communication", "Signal Input/Output", "Sensors", "Device Control", "Timing",
              "Data Storage", "Data Processing", "Other"}
REQUIRED = ("name", "version", "author", "maintainer", "sentence", "paragraph", "category", "url", "architectures")


def _properties():
    props = {}
    with open(os.path.join(LIB, "library.properties"), encoding="utf-8") as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                key, _, value = line.rstrip("\n").partition("=")
                props[key] = value
    return props


def test_library_properties_are_complete():
    props = _properties()
    for key in REQUIRED:
        assert props.get(key), f"library.properties lacks {key}"
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.\-]*", props["name"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", props["version"])
    assert props["category"] in CATEGORIES
    assert "Arduino_TensorFlowLite" in props["depends"]
    for header in props["includes"].split(","):
        assert os.path.isfile(os.path.join(LIB, "src", header.strip()))


def test_src_is_generated_from_micro_ops_and_in_sync():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "sync_arduino.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert not [f for f in os.listdir(os.path.join(LIB, "src")) if f.endswith(".cc")], "Arduino compiles .cpp"


def test_sync_check_detects_drift(tmp_path):
    """The drift check must fail when arduino/src differs from micro_ops/."""
    copy = tmp_path / "repo"
    shutil.copytree(os.path.join(ROOT, "micro_ops"), copy / "micro_ops")
    shutil.copytree(os.path.join(ROOT, "arduino"), copy / "arduino")
    shutil.copytree(os.path.join(ROOT, "tools"), copy / "tools")
    with open(copy / "micro_ops" / "schedule.cc", "a") as f:
        f.write("// an edit in the source of truth\n")
    proc = subprocess.run([sys.executable, str(copy / "tools" / "sync_arduino.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "schedule.cpp" in proc.stderr


def test_examples_and_keywords():
    examples = os.path.join(LIB, "examples")
    sketches = os.listdir(examples)
    assert sketches
    for sketch in sketches:
        assert os.path.isfile(os.path.join(examples, sketch, f"{sketch}.ino")), "the .ino must match its folder"
    ino = open(os.path.join(examples, "PatchedClassifier", "PatchedClassifier.ino")).read()
    assert "#include <TensorFlowLite.h>" in ino and "#include <TFLMPatch.h>" in ino
    code = open(os.path.join(examples, "PatchedClassifier", "patched_inference.cpp")).read()
    ops = open(os.path.join(examples, "PatchedClassifier", "model_ops.h")).read()
    assert '#include "model_ops.h"' in code and "Register_PATCH_STAGE()" in ops and "arena_used_bytes()" in code
    for line in open(os.path.join(LIB, "keywords.txt")):
        if line.strip() and not line.startswith("#"):
            word, kind = line.rstrip("\n").split("\t")[:2]
            assert kind in {"KEYWORD1", "KEYWORD2", "KEYWORD3", "LITERAL1", "LITERAL2"}


def _arm_gxx():
    return shutil.which("arm-none-eabi-g++")


TREE, WHY = tflm_host.find_tflm()


@pytest.mark.skipif(TREE is None or _arm_gxx() is None,
                    reason=f"Cortex-M4 compile check skipped: {WHY or 'arm-none-eabi-g++ not installed'}")
def test_example_code_path_compiles_for_cortex_m4_without_warnings(tmp_path):
    example = os.path.join(LIB, "examples", "PatchedClassifier")
    sources = [os.path.join(example, f) for f in ("patched_inference.cpp", "test_input.cpp")] + \
              [os.path.join(LIB, "src", f) for f in os.listdir(os.path.join(LIB, "src")) if f.endswith(".cpp")]
    for src in sources:
        cmd = [_arm_gxx(), "-std=c++17", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
               "-Os", "-fno-exceptions", "-fno-rtti", "-Wall", "-Wextra", "-Werror", "-DTF_LITE_STATIC_MEMORY",
               f"-I{os.path.join(LIB, 'src')}", f"-I{example}", *TREE.include_flags(),
               "-c", src, "-o", str(tmp_path / (os.path.basename(src) + ".o"))]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


# ----------------------------------------------------------------------------- a user's model as a sketch

def _tool(name):
    spec = importlib.util.spec_from_file_location(f"tflm_patch_tools_{name}", os.path.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"tflm_patch_tools_{name}"] = module
    spec.loader.exec_module(module)
    return module


def _user_sketch(tmp_path, model="pooling_pad", name="PatchedClassifier"):
    """A sketch for one of the test models, written by make_arduino_example.py --out as a user would."""
    path = os.path.join(MODELS_DIR, f"{model}.tflite")
    graph = build_graph(model_io.load_model(path))
    plan = planner.make_plan(graph, max_mac_overhead=1.3)
    patched = tmp_path / "patched.tflite"
    patched.write_bytes(pipeline.write_patched(model_io.load_model(path), plan).data)
    x = np.random.default_rng(3).integers(-128, 128, graph.tensors[graph.inputs[0]].shape, dtype=np.int8)
    np.save(tmp_path / "input.npy", x)
    out = tmp_path / name
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_arduino_example.py"), path,
                           str(patched), str(tmp_path / "input.npy"), "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


def test_make_arduino_example_writes_a_sketch_for_the_users_model(tmp_path):
    out = _user_sketch(tmp_path, name="MySketch")
    files = sorted(os.listdir(out))
    assert files == sorted(["MySketch.ino", "patched_inference.cpp", "patched_inference.h", "model_data.cpp",
                            "model_data.h", "model_ops.h", "model_settings.h", "test_input.cpp", "test_input.h"])
    ops = (out / "model_ops.h").read_text()
    # pooling_pad keeps MAX_POOL_2D, AVERAGE_POOL_2D or PAD only where the patch stage did not take them;
    # the resolver registers exactly the patched model's ops, PATCH_STAGE first.
    patched = build_graph(model_io.load_model(str(tmp_path / "patched.tflite")))
    names = sorted({op.name for op in patched.ops})
    assert f"MicroMutableOpResolver<{len(names)}>" in ops
    assert ops.count("resolver.Add") == len(names) and "Register_PATCH_STAGE()" in ops
    assert "AddMean()" in ops and "AddFullyConnected()" in ops and "AddConv2d" not in ops


def test_make_arduino_example_refuses_what_it_cannot_write(tmp_path):
    out = _user_sketch(tmp_path)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_arduino_example.py"),
                           os.path.join(MODELS_DIR, "pooling_pad.tflite"), str(tmp_path / "patched.tflite"),
                           str(tmp_path / "input.npy"), "0", "--out", str(tmp_path / "my sketch")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--out" in proc.stderr
    assert not (tmp_path / "my sketch").exists()
    np.save(tmp_path / "short.npy", np.zeros(5, np.int8))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_arduino_example.py"),
                           os.path.join(MODELS_DIR, "pooling_pad.tflite"), str(tmp_path / "patched.tflite"),
                           str(tmp_path / "short.npy"), "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "holds 5 values" in proc.stderr


# ----------------------------------------------------------------------------- the real Arduino build

arduino_build = _tool("arduino_build")
SETUP, SETUP_WHY = arduino_build.find_setup()
needs_arduino = pytest.mark.skipif(SETUP is None, reason=f"Arduino build skipped: {SETUP_WHY} "
                                                         "(see arduino/README.md, 'Build check')")


def test_arduino_setup_names_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("ARDUINO_BUILDER", sys.executable)
    monkeypatch.delenv("ARDUINO_HARDWARE", raising=False)
    setup, why = arduino_build.find_setup()
    assert setup is None and "ARDUINO_HARDWARE" in why
    monkeypatch.setenv("ARDUINO_HARDWARE", str(tmp_path))
    monkeypatch.setenv("ARDUINO_LIBRARIES", str(tmp_path))
    setup, why = arduino_build.find_setup()
    assert setup is None and "Arduino_TensorFlowLite" in why
    (tmp_path / "Arduino_TensorFlowLite").mkdir()
    (tmp_path / "Arduino_TensorFlowLite" / "library.properties").write_text("name=Arduino_TensorFlowLite\n")
    setup, why = arduino_build.find_setup()
    assert why is None and setup.fqbn == os.environ.get("ARDUINO_FQBN", arduino_build.DEFAULT_FQBN)


@pytest.fixture(scope="module")
def arduino_work(tmp_path_factory):
    """Where sketches are staged and built; ARDUINO_WORK keeps it between runs (the TFLM library
    then compiles once)."""
    return os.environ.get("ARDUINO_WORK") or str(tmp_path_factory.mktemp("arduino"))


def _assert_built(result, work):
    print(f"libraries {result.libraries}; flash {result.flash_bytes}/{result.flash_max}, "
          f"RAM {result.ram_bytes}/{result.ram_max}; sections {result.sections}")
    assert result.compiled, result.log_tail
    assert not result.our_warnings, "\n".join(result.our_warnings)
    # Library discovery found both libraries from the #includes, TFLMPatch where it was installed.
    assert os.path.realpath(result.libraries["TFLMPatch"][1]) == os.path.realpath(
        os.path.join(work, "libraries", "TFLMPatch"))
    assert "Arduino_TensorFlowLite" in result.libraries
    if result.linked:
        assert 0 < result.flash_bytes <= result.flash_max and 0 < result.ram_bytes <= result.ram_max
    else:
        assert result.missing_core_file, result.log_tail


def _skip_if_not_linked(result, run):
    if not result.linked:
        ran = f"; its code ran on QEMU: {run.values}" if run else ""
        pytest.skip(f"compiled without warnings; not linked: the core lacks {result.missing_core_file}{ran}")


def _can_run_qemu():
    return all(shutil.which(t) for t in ("arm-none-eabi-g++", "arm-none-eabi-gcc", "qemu-system-arm"))


def _run_build_on_qemu(result, work, sketch):
    """The board build's objects on QEMU mps2-an386."""
    run = arduino_build.run_on_qemu(result, work, str(sketch))
    print(run.output)
    assert run.exit_code == 0 and "done" in run.output, run.output
    assert 0 < run.values["arena_used_bytes"] <= run.values["arena_size"]
    return run


@needs_arduino
def test_example_builds_with_arduino_builder_and_runs(arduino_work):
    result = arduino_build.build(SETUP, arduino_work)
    _assert_built(result, arduino_work)
    # Exit 0: the class TFLM computes on the host (kExpectedClass) for the original model.
    run = _run_build_on_qemu(result, arduino_work, EXAMPLE) if _can_run_qemu() else None
    if run:
        assert run.values["predicted_class"] == run.values["expected_class"]
    _skip_if_not_linked(result, run)
    assert result.ram_bytes > 81920  # the arena is a static array: RAM holds it


@needs_arduino
def test_users_model_sketch_builds_with_arduino_builder_and_runs(arduino_work, tmp_path):
    sketch = _user_sketch(tmp_path)  # named as the example: the build reuses the compiled libraries
    result = arduino_build.build(SETUP, arduino_work, sketch=str(sketch))
    _assert_built(result, arduino_work)
    run = _run_build_on_qemu(result, arduino_work, sketch) if _can_run_qemu() else None
    if run:
        # The board's code (TFLM's CMSIS-NN kernels + PATCH_STAGE) gives the host's output.
        original = model_io.read_model_bytes(os.path.join(MODELS_DIR, "pooling_pad.tflite"))
        host = oracle.run(original, [np.load(tmp_path / "input.npy")], 1).outputs[0].reshape(-1)
        assert run.values["predicted_class"] == int(np.argmax(host))
        assert run.values["score"] == int(host.max())
        planned = analysis.analyze(build_graph(model_io.load_model(str(tmp_path / "patched.tflite"))))
        assert run.values["arena_used_bytes"] >= planned.arena.head_bytes
    _skip_if_not_linked(result, run)

"""The Arduino library: layout per the Arduino library specification (1.5), sources in sync."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from tflm_patch import tflm_host

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "arduino")
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
    assert "Register_PATCH_STAGE()" in code and "arena_used_bytes()" in code
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

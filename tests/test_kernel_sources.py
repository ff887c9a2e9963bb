"""micro_ops/kernel_sources.txt is the one list of the kernel's files: the host
builds, the Arduino generator, packaging and the docs all follow it, and the
kernel keeps TFLM's shape (one job per file, no file-level dependency cycle)."""
import fnmatch
import os
import re
import shutil
import subprocess
import sys

import pytest

from tflm_patch import native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICRO_OPS = os.path.join(ROOT, "micro_ops")
LIST = os.path.join(MICRO_OPS, "kernel_sources.txt")


def listed():
    with open(LIST, encoding="utf-8") as f:
        return native.parse_kernel_sources(f.read())


def all_listed():
    return [name for files in listed().values() for name in files]


def test_the_list_names_exactly_the_kernel_files_in_micro_ops():
    names = all_listed()
    assert len(names) == len(set(names)), "a file is listed twice"
    on_disk = sorted(f for f in os.listdir(MICRO_OPS) if f.endswith((".cc", ".h")))
    assert sorted(names) == on_disk, "micro_ops/*.cc|*.h and kernel_sources.txt disagree"
    assert set(listed()) == {"engine", "op"}


def test_host_builds_use_the_list():
    sections = listed()
    assert set(native.KERNEL_SOURCES) | set(native.KERNEL_HEADERS) == set(all_listed())
    assert set(native.ENGINE_CORE_SOURCES) | set(native.ENGINE_CORE_HEADERS) == set(sections["engine"])
    assert set(native.ENGINE_SOURCES) == {f for f in sections["engine"] if f.endswith(".cc")} | \
        {"host/engine_capi.cc"}
    # the portable engine never includes TFLM; the op files are the ones that do
    for name in sections["engine"]:
        text = open(os.path.join(MICRO_OPS, name), encoding="utf-8").read()
        assert not re.search(r'^#include "tensorflow/', text, re.M), f"{name} is listed as portable but includes TFLM"


def test_packaging_ships_every_listed_file():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        globs = tomllib.load(f)["tool"]["setuptools"]["package-data"]["tflm_patch.micro_ops"]
    for name in all_listed() + ["kernel_sources.txt", "host/engine_capi.cc", "host/engine_capi.h",
                                "host/engine_main.cc", "host/tflm_runner.cc"]:
        assert any(fnmatch.fnmatch(name, g) and name.count("/") == g.count("/") for g in globs), \
            f"pyproject package-data does not ship micro_ops/{name}"


def test_docs_point_to_the_list():
    for doc in ("README.md", "docs/patch_stage_format.md", "arduino/README.md"):
        assert "kernel_sources.txt" in open(os.path.join(ROOT, doc), encoding="utf-8").read(), doc


def test_arduino_src_is_the_list_and_sync_removes_stale_files(tmp_path):
    expected = {n[:-3] + ".cpp" if n.endswith(".cc") else n for n in all_listed()} | {"TFLMPatch.h"}
    assert set(os.listdir(os.path.join(ROOT, "arduino", "src"))) == expected
    copy = tmp_path / "repo"
    for part in ("micro_ops", "arduino", "tools"):
        shutil.copytree(os.path.join(ROOT, part), copy / part)
    (copy / "arduino" / "src" / "patch_engine.cpp").write_text("// from an older kernel\n")
    sync = [sys.executable, str(copy / "tools" / "sync_arduino.py")]
    proc = subprocess.run(sync + ["--check"], capture_output=True, text=True)
    assert proc.returncode == 1 and "patch_engine.cpp" in proc.stderr
    proc = subprocess.run(sync, capture_output=True, text=True)
    assert proc.returncode == 0 and "removed stale patch_engine.cpp" in proc.stdout
    assert not (copy / "arduino" / "src" / "patch_engine.cpp").exists()
    assert subprocess.run(sync + ["--check"], capture_output=True, text=True).returncode == 0


def _module_dependencies():
    """{module: modules it includes}, a module being a .h/.cc pair of micro_ops/."""
    deps = {}
    for name in all_listed():
        module = os.path.splitext(name)[0]
        text = open(os.path.join(MICRO_OPS, name), encoding="utf-8").read()
        included = {os.path.splitext(h)[0] for h in re.findall(r'^#include "([^"/]+\.h)"', text, re.M)}
        deps.setdefault(module, set()).update(included - {module})
    return deps


def test_no_dependency_cycle_between_kernel_files():
    deps = _module_dependencies()
    state = {}

    def visit(module, path):
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", f"dependency cycle: {' -> '.join(path + [module])}"
        state[module] = "open"
        for dep in sorted(deps.get(module, ())):
            visit(dep, path + [module])
        state[module] = "done"

    for module in deps:
        visit(module, [])
    # the schedule and the layer kernels meet only through layer_backend.h
    assert "reference_layers" not in deps["schedule"] and "cmsis_nn_layers" not in deps["schedule"]
    assert "schedule" not in deps["cmsis_nn_layers"] and "schedule" not in deps["reference_layers"]


def test_no_kernel_file_over_500_lines():
    for name in all_listed():
        with open(os.path.join(MICRO_OPS, name), encoding="utf-8") as f:
            assert sum(1 for _ in f) <= 500, name

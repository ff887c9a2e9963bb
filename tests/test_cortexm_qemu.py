"""Level 3: original and patched models on a Cortex-M4 under QEMU (mps2-an386), bare metal.

Needs arm-none-eabi-g++ (newlib), qemu-system-arm and TFLM_ROOT with TFLM's
Cortex-M4 library (and its host library with the same kernels, the reference
the outputs must equal byte for byte); skips with the reason otherwise. Runs
for each kind of library found: reference kernels, and CMSIS-NN kernels
(where PATCH_STAGE calls CMSIS-NN's DSP code, as TFLM's own kernels do).
"""
import os

import numpy as np
import pytest

from tflm_patch import cortexm, tflm_host
from tflm_patch.converter import model_io, pipeline, planner
from tflm_patch.converter.graph import build_graph

from .conftest import MODELS_DIR

ENV, WHY = cortexm.find_cortexm()
TREE, HOST_WHY = tflm_host.find_tflm()
needs_board = pytest.mark.skipif(ENV is None or TREE is None,
                                 reason=f"Cortex-M4/QEMU tests skipped: {WHY or HOST_WHY}")
# Bounds every QEMU run; MobileNetV2-0.35 at 96x96 takes a few seconds.
TIMEOUT = 120


@pytest.fixture(scope="module", params=[tflm_host.REFERENCE, tflm_host.CMSIS_NN])
def board(request):
    """(kernels, Cortex-M4 environment, host runner with the same kernels)."""
    env, why = cortexm.find_cortexm(request.param)
    tree, host_why = tflm_host.find_tflm(request.param)
    if env is None or tree is None:
        pytest.skip(f"Cortex-M4/QEMU tests with {request.param} kernels skipped: {why or host_why}")
    return request.param, env, tflm_host.build_runner(tree)


def _patched(path, tmp_path, kernels=tflm_host.REFERENCE):
    model = model_io.load_model(path)
    graph = build_graph(model)
    plan = planner.make_plan(graph, max_mac_overhead=1.3, kernels=kernels)
    out = tmp_path / "patched.tflite"
    out.write_bytes(pipeline.write_patched(model, plan).data)
    return graph, str(out)


def test_missing_tools_or_tflm_give_a_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("TFLM_ROOT", str(tmp_path / "nowhere"))
    env, why = cortexm.find_cortexm()
    assert env is None and why
    if cortexm._which("ARM_GXX", "arm-none-eabi-g++") and cortexm._which("QEMU_SYSTEM_ARM", "qemu-system-arm"):
        assert "TFLM_ROOT" in why
    monkeypatch.setenv("TFLM_ROOT", str(tmp_path))
    (tmp_path / "tensorflow/lite/micro").mkdir(parents=True)
    (tmp_path / "tensorflow/lite/micro/micro_interpreter.h").write_text("")
    monkeypatch.delenv("TFLM_M4_LIB", raising=False)
    lib, why = cortexm.find_m4_library(str(tmp_path))
    assert lib is None and "cortex-m4+fp" in why


@pytest.mark.parametrize("name", ["residual_add", "pooling_pad", "mobilenetv2_035_96"])
def test_stock_and_patched_on_cortex_m4_equal_the_host_run(board, tmp_path, name):
    kernels, env, runner = board
    path = os.path.join(MODELS_DIR, f"{name}.tflite")
    graph, patched = _patched(path, tmp_path, kernels)
    x = np.random.default_rng(5).integers(-128, 128, graph.tensors[graph.inputs[0]].shape, dtype=np.int8)
    host_stock = tflm_host.run_model(runner, path, x)
    host_patched = tflm_host.run_model(runner, patched, x)
    # Two Invoke() calls each: every one must count the same instructions.
    m4_stock = cortexm.run_model(env, path, x, invokes=2, timeout=TIMEOUT)
    m4_patched = cortexm.run_model(env, patched, x, invokes=2, timeout=TIMEOUT)
    print(f"{name} ({kernels}): arena_used_bytes on M4 stock {m4_stock.arena_used_bytes}, patched "
          f"{m4_patched.arena_used_bytes} ({m4_stock.arena_used_bytes / m4_patched.arena_used_bytes:.2f}x); "
          f"instructions per Invoke stock {m4_stock.insns:,}, patched {m4_patched.insns:,} "
          f"({m4_patched.insns / m4_stock.insns:.2f}x)")
    assert len(m4_stock.outputs) == len(host_stock.outputs) > 0
    assert m4_stock.outputs == host_stock.outputs
    assert m4_patched.outputs == host_patched.outputs == host_stock.outputs
    assert m4_patched.arena_used_bytes < m4_stock.arena_used_bytes
    from tflm_patch.converter import persistent  # arena_used_bytes() predicted to the byte for Cortex-M4
    for model_path, run in ((path, m4_stock), (patched, m4_patched)):
        predicted = persistent.predict_arena_used(build_graph(model_io.load_model(model_path)), abi="cortex_m",
                                                  kernels=kernels)
        assert run.arena_used_bytes == predicted.total_bytes, model_path
    for run in (m4_stock, m4_patched):
        assert len(run.invoke_insns) == 2 and run.invoke_insns[0] == run.invoke_insns[1] > 0
        assert run.total_insns > sum(run.invoke_insns)


def test_default_cmsis_nn_plan_costs_at_most_5_percent_more_instructions(tmp_path):
    """The default plan for CMSIS-NN kernels (--kernels cmsis_nn, --max-mac-overhead 1.05) keeps the
    instructions of one Invoke() on the Cortex-M4 within 1.05x of the stock model's: the planner counts
    each CMSIS-NN call's fixed cost, not only MACs (MobileNetV2-0.35 at 96x96)."""
    env, why = cortexm.find_cortexm(tflm_host.CMSIS_NN)
    if env is None:
        pytest.skip(f"Cortex-M4/QEMU tests with cmsis_nn kernels skipped: {why}")
    path = os.path.join(MODELS_DIR, "mobilenetv2_035_96.tflite")
    model = model_io.load_model(path)
    graph = build_graph(model)
    plan = planner.make_plan(graph, max_mac_overhead=1.05, kernels=tflm_host.CMSIS_NN)
    patched = tmp_path / "patched.tflite"
    patched.write_bytes(pipeline.write_patched(model, plan).data)
    x = np.random.default_rng(5).integers(-128, 128, graph.tensors[graph.inputs[0]].shape, dtype=np.int8)
    stock = cortexm.run_model(env, path, x, invokes=1, timeout=TIMEOUT)
    patched_run = cortexm.run_model(env, str(patched), x, invokes=1, timeout=TIMEOUT)
    assert patched_run.outputs == stock.outputs
    assert patched_run.arena_used_bytes < stock.arena_used_bytes / 1.5
    assert patched_run.insns <= 1.05 * stock.insns, (patched_run.insns, stock.insns)


EXAMPLE_FILES = ("patched_inference.cpp", "model_data.cpp", "model_data.h", "test_input.cpp", "test_input.h",
                 "model_settings.h")
MISSING_EXAMPLE = [f for f in EXAMPLE_FILES if not (cortexm.ARDUINO_EXAMPLE / f).is_file()]


@needs_board
@pytest.mark.skipif(bool(MISSING_EXAMPLE), reason=f"the Arduino example lacks {MISSING_EXAMPLE} "
                                                  "(tools/make_arduino_example.py makes them)")
def test_arduino_example_code_path_runs_on_cortex_m4():
    """patched_inference.cpp + its bundled model and input + arduino/src, built with
    -Wall -Wextra -Werror, classify the input as TFLM does on the host."""
    result = cortexm.run_arduino_example(ENV, timeout=TIMEOUT)
    print(result["output"])
    assert result["exit_code"] == 0, result["output"]
    assert result["predicted_class"] == result["expected_class"]
    assert 0 < result["arena_used_bytes"] <= result["arena_size"]

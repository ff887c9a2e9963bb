"""The engine's CMSIS-NN dispatch: a TFLM build with CMSIS-NN kernels (CMSIS_NN
defined) computes the stage's layers with the CMSIS-NN functions TFLM's own
cmsis_nn kernels call, patch by patch, and must still give TFLM's bytes.

Always (CI): against the CMSIS-NN test double in tests/cmsis_nn_double (its
API under another header name, the preconditions the real functions rely on,
TFLite's arithmetic),
since CMSIS-NN is on no package registry. With a real CMSIS-NN tree
(CMSIS_NN_ROOT, or the one TFLM's Makefile placed under TFLM_ROOT): the same
tests on its portable C code. The real CMSIS-NN inside TFLM (host and
Cortex-M4) is tested in test_tflm_host.py and test_cortexm_qemu.py.
"""
import ctypes
import glob
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tflm_patch import native
from tflm_patch.converter import model_io, pipeline, planner, reference, verify
from tflm_patch.converter.errors import NoGainError
from tflm_patch.converter.graph import build_graph
from tflm_patch.converter.layers import ADD, CONV, DEPTHWISE

from .conftest import MODELS_DIR
from .random_stages import stage_specs
from .test_property import patched_pair

DOUBLE = os.path.join(os.path.dirname(__file__), "cmsis_nn_double")
MODELS = sorted(glob.glob(os.path.join(MODELS_DIR, "*.tflite")))
NAMES = [os.path.basename(m)[:-len(".tflite")] for m in MODELS]


def real_cmsis_nn():
    """(root, None) or (None, why not)."""
    root = os.environ.get("CMSIS_NN_ROOT")
    if not root and os.environ.get("TFLM_ROOT"):
        candidate = os.path.join(os.environ["TFLM_ROOT"], "tensorflow/lite/micro/tools/make/downloads/cmsis_nn")
        root = candidate if os.path.isdir(candidate) else None
    if not root:
        return None, "no CMSIS-NN tree: set CMSIS_NN_ROOT (or TFLM_ROOT with TFLM's downloads/cmsis_nn)"
    if not os.path.isfile(os.path.join(root, "Include", "arm_nnfunctions.h")):
        return None, f"{root} is not a CMSIS-NN tree (no Include/arm_nnfunctions.h)"
    return root, None


REAL, WHY_NOT_REAL = real_cmsis_nn()
BACKENDS = [pytest.param(DOUBLE, id="double"),
            pytest.param(REAL, id="cmsis-nn", marks=pytest.mark.skipif(REAL is None, reason=str(WHY_NOT_REAL)))]


def cmsis_engine(root, **kw):
    return lambda options, inputs, shape, **lead: native.run_stage(options, inputs, shape, cmsis_nn=root, **kw,
                                                                   **lead)


def double_counts(single_rounding=False):
    """Calls the double received, per kind, since the last reset_double_counts()."""
    lib = native.engine_library(single_rounding, DOUBLE)
    fields = ("conv_1x1", "conv_general", "depthwise", "max_pool", "avg_pool", "add", "mul")

    class Counts(ctypes.Structure):
        _fields_ = [(f, ctypes.c_int64) for f in fields]

    lib.tflm_patch_cmsis_double_get.restype = Counts
    counts = lib.tflm_patch_cmsis_double_get()
    return {f: getattr(counts, f) for f in fields}


def reset_double_counts():
    native.engine_library(False, DOUBLE).tflm_patch_cmsis_double_reset()


def stage_inputs(g, op, seed=1):
    """A PATCH_STAGE's op inputs: a random stage input (the stage may start inside the model), its constants."""
    x = np.random.default_rng(seed).integers(-128, 128, g.tensors[op.inputs[0]].shape, dtype=np.int8)
    return [x] + [g.tensors[t].data for t in op.inputs[1:]]


def patched(path, **kw):
    model = model_io.load_model(path)
    graph = build_graph(model)
    plan = planner.make_plan(graph, **kw)
    return graph, plan, pipeline.write_patched(model, plan).data


@pytest.mark.parametrize("root", BACKENDS)
@pytest.mark.parametrize("path", MODELS, ids=NAMES)
def test_every_model_stage_through_cmsis_nn_equals_tflm(root, path):
    """Default plan and an uneven 3x2 grid: stage output equals TFLM's tensor, model outputs TFLM's."""
    data = open(path, "rb").read()
    for kw in (dict(max_mac_overhead=1.3), dict(patches=(3, 2), require_gain=False)):
        try:
            graph, _, patched_bytes = patched(path, **kw)
        except NoGainError:
            continue
        report = verify.verify(data, patched_bytes, verify.random_inputs(graph, 2, seed=7),
                               engines=(cmsis_engine(root),))
        assert report.identical, f"{kw}: {report.first_difference}"


def test_the_dispatch_really_calls_cmsis_nn():
    """On MobileNetV2 every conv, depthwise conv and ADD of the stage goes to CMSIS-NN:
    1x1 convolutions to the wrapper's 1x1 kernels, the 3x3 stem to arm_convolve_s8."""
    _, plan, patched_bytes = patched(os.path.join(MODELS_DIR, "mobilenetv2_035_144.tflite"), patches=(3, 3),
                                     split=10, require_gain=False)
    g = build_graph(model_io.parse_model(patched_bytes))
    op = verify.patch_ops(g)[0]
    inputs = stage_inputs(g, op)
    reset_double_counts()
    got = native.run_stage(op.custom_options, inputs, g.tensors[op.outputs[0]].shape, cmsis_nn=DOUBLE)
    counts = double_counts()
    assert got.tobytes() == reference.run_stage(op.custom_options, inputs).tobytes()
    kinds = [layer.op for layer in plan.stage_plan.layers]
    assert kinds.count(DEPTHWISE) >= 3 and kinds.count(ADD) >= 1, kinds
    # each layer runs at least once per patch (several calls where it is cut into rows)
    assert counts["depthwise"] >= 9 * kinds.count(DEPTHWISE)
    assert counts["add"] >= 9 * kinds.count(ADD)
    assert counts["conv_general"] >= 9 and counts["conv_1x1"] >= 9 * (kinds.count(CONV) - 1)
    assert counts["max_pool"] == counts["avg_pool"] == 0


def test_without_cmsis_nn_the_double_is_not_called():
    """The reference build never reaches CMSIS-NN: the dispatch is compiled in by CMSIS_NN only."""
    _, _, patched_bytes = patched(os.path.join(MODELS_DIR, "pooling_pad.tflite"), patches=(2, 2),
                                  require_gain=False)
    g = build_graph(model_io.parse_model(patched_bytes))
    op = verify.patch_ops(g)[0]
    inputs = stage_inputs(g, op)
    shape = g.tensors[op.outputs[0]].shape
    reset_double_counts()
    plain = native.run_stage(op.custom_options, inputs, shape)
    assert sum(double_counts().values()) == 0
    via = native.run_stage(op.custom_options, inputs, shape, cmsis_nn=DOUBLE)
    counts = double_counts()
    assert counts["max_pool"] + counts["avg_pool"] > 0 and counts["conv_general"] + counts["conv_1x1"] > 0
    assert via.tobytes() == plain.tobytes()


@pytest.mark.parametrize("root", BACKENDS)
@pytest.mark.parametrize("name", ["residual_add", "pooling_pad", "depth_multiplier", "kernels_5x5_7x7",
                                  "mobilenetv2_035_96"])
def test_cmsis_nn_dispatch_under_address_and_ub_sanitizers(root, name):
    """Sanitized engine + CMSIS-NN (double: every precondition checked, the whole
    context buffer written): clean, and the same bytes as the reference."""
    _, _, patched_bytes = patched(os.path.join(MODELS_DIR, f"{name}.tflite"), patches=(3, 2),
                                  require_gain=False)
    g = build_graph(model_io.parse_model(patched_bytes))
    for op in verify.patch_ops(g):
        inputs = stage_inputs(g, op)
        expected = reference.run_stage(op.custom_options, inputs)
        got = native.run_stage(op.custom_options, inputs, expected.shape, sanitize=True, cmsis_nn=root)
        assert got.tobytes() == expected.tobytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=stage_specs(), data=st.data(), single=st.booleans())
def test_random_stages_through_the_double_equal_tflm(spec, data, single):
    """Random stages (kernels 1-7, strides, dilation, SAME/VALID, PAD, pools, ADD) and grids."""
    original, patched_bytes, graph, _ = patched_pair(spec, data.draw)
    engine = cmsis_engine(DOUBLE, single_rounding=single)
    if single:  # TFLM's wheel rounds doubly: compare the single-rounding build with the reference
        g = build_graph(model_io.parse_model(patched_bytes))
        op = verify.patch_ops(g)[0]
        inputs = stage_inputs(g, op, seed=spec["seed"] % 1000)
        expected = native.run_stage(op.custom_options, inputs, g.tensors[op.outputs[0]].shape,
                                    single_rounding=True)
        assert engine(op.custom_options, inputs, expected.shape).tobytes() == expected.tobytes()
        return
    report = verify.verify(original, patched_bytes, verify.random_inputs(graph, 1, seed=spec["seed"] % 1000),
                           engines=(engine,))
    assert report.identical, report.first_difference


@pytest.mark.parametrize("name", ["residual_add", "pooling_pad", "kernels_5x5_7x7", "mobilenetv2_035_96"])
def test_a_plan_for_cmsis_nn_reserves_the_workspace_the_kernel_uses(name):
    """--kernels cmsis_nn: the kernel's CMSIS-NN workspace fits the reserved tail, so the
    op asks TFLM for exactly the planned scratch; a reference plan makes it ask for more."""
    path = os.path.join(MODELS_DIR, f"{name}.tflite")
    model = model_io.load_model(path)
    graph = build_graph(model)
    for kernels in ("cmsis_nn", "reference"):
        plan = planner.make_plan(graph, patches=(3, 2), require_gain=False, kernels=kernels)
        g = pipeline.write_patched(model, plan).graph
        op = verify.patch_ops(g)[0]
        inputs = stage_inputs(g, op)
        got = native.run_stage(op.custom_options, inputs, g.tensors[op.outputs[0]].shape, cmsis_nn=DOUBLE)
        assert got.tobytes() == reference.run_stage(op.custom_options, inputs).tobytes()
        asked = native.engine_library(False, DOUBLE).tflm_patch_last_scratch_bytes()
        if kernels == "cmsis_nn":
            assert plan.stage_plan.workspace_bytes > 0
            assert asked == plan.stage_plan.scratch_bytes
        else:
            assert plan.stage_plan.workspace_bytes == 0 and asked > plan.stage_plan.scratch_bytes

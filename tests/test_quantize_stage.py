"""A stage that starts with the model's QUANTIZE, and the pointwise ops in whole models.

cnn_uint8 (uint8 camera input) and mobilenetv2_035_96_float (float32 in and
out) peak at their QUANTIZE: the input and its whole int8 copy. A stage that
starts after the QUANTIZE cannot remove that peak; one that absorbs it reads the
input itself and quantizes patch by patch. mobilenetv3_small_like has every
standalone activation the kernel knows. All three are made by TensorFlow
(tests/models/make_models.py). The C++ engine must refuse malformed pointwise
options in Prepare with a message naming the layer and key.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from tflm_patch import native
from tflm_patch.converter import analysis, arena, model_io, planner, rewrite, verify
from tflm_patch.converter.graph import build_graph
from tflm_patch.converter.layers import HARD_SWISH, LOGISTIC, QUANTIZE, RELU, Layer
from tflm_patch.converter.layers_pointwise import float_bits
from tflm_patch.converter.options import StagePlan, encode
from tflm_patch.converter.stage import stages_from

from .conftest import MODELS_DIR, run_cli
from .test_plan_validation import python_verdict

ABSORBING = ["cnn_uint8", "mobilenetv2_035_96_float"]


def _load(name):
    path = os.path.join(MODELS_DIR, f"{name}.tflite")
    data = open(path, "rb").read()
    m = model_io.parse_model(data, path)
    return path, data, m, build_graph(m)


def _quantize_peak(graph) -> int:
    """Bytes alive while the original QUANTIZE runs: what any plan that keeps it outside a stage still has."""
    base = arena.plan_arena(graph)
    q = graph.ops[0]
    assert q.name == "QUANTIZE"
    return sum(b.size for b in base.buffers if b.first <= 1 <= b.last)


@pytest.mark.parametrize("name", ABSORBING)
def test_the_stage_absorbs_the_quantize_and_beats_its_peak(name):
    _, data, m, graph = _load(name)
    in_type = graph.tensors[graph.inputs[0]].type_name
    assert in_type == {"cnn_uint8": "UINT8", "mobilenetv2_035_96_float": "FLOAT32"}[name]
    peak = _quantize_peak(graph)
    plan = planner.make_plan(graph)
    first = plan.stages[0]
    assert first.stage.start == 0 and first.stage_plan.layers[0].op == QUANTIZE
    assert plan.arena_after < peak < plan.arena_before + 1
    assert plan.total_after < plan.total_before
    patched = model_io.serialize_model(rewrite.rewrite_model(m, plan, "test"))
    pg = build_graph(model_io.parse_model(patched))
    assert pg.ops[0].name == "PATCH_STAGE"
    assert pg.tensors[pg.ops[0].inputs[0]].type_name == in_type   # the model input itself
    assert analysis.analyze(pg).arena.head_bytes == plan.arena_after
    report = verify.verify(data, patched, verify.random_inputs(graph, 3, seed=11), engines=("python", "cpp"))
    assert report.identical, report.first_difference


def test_an_op_reading_two_outside_tensors_starts_no_stage():
    """MobileNetV2's residual ADD (op 47) reads two tensors made before it: no stage can start there."""
    _, _, _, graph = _load("mobilenetv2_035_96_float")
    add = graph.ops[47]
    assert add.name == "ADD" and len({t for t in add.inputs}) == 2
    stages, reason = stages_from(graph, 47)
    assert stages == [] and "second tensor from outside" in reason


def test_every_activation_in_a_stage_is_bit_identical():
    _, data, m, graph = _load("mobilenetv3_small_like")
    plan = planner.make_plan(graph)
    ops = {layer.name for sp in plan.stages for layer in sp.stage_plan.layers}
    assert {"HARD_SWISH", "LEAKY_RELU", "RELU6", "RELU", "LOGISTIC"} <= ops
    assert plan.arena_after < plan.arena_before
    patched = model_io.serialize_model(rewrite.rewrite_model(m, plan, "test"))
    report = verify.verify(data, patched, verify.random_inputs(graph, 3, seed=12), engines=("python", "cpp"))
    assert report.identical, report.first_difference


def test_cli_converts_and_verifies_a_uint8_model(tmp_path):
    src, _, _, _ = _load("cnn_uint8")
    out = tmp_path / "p.tflite"
    code, stdout, err = run_cli("convert", src, "-o", out, "--verify-inputs", "2")
    assert code == 0, err
    assert "QUANTIZE x1" in stdout and "Verified bit-identical" in stdout
    code, stdout, err = run_cli("verify", src, out, "--inputs", "2", "--engine", "cpp")
    assert code == 0, err
    assert stdout.startswith("OK: bit-identical")


# ---- Prepare rejects malformed pointwise options (C++ engine) ----

SHAPE = (4, 6, 3)


def _relu(**kw):
    args = dict(in_zp=[-3], out_zp=-3, act=(-3, 127), act_params=[1 << 30, 1])
    return Layer(RELU, [-1], [SHAPE], SHAPE, **{**args, **kw})


def _quantize(input_type=1, params=None, in_zp=0):
    return Layer(QUANTIZE, [-1], [SHAPE], SHAPE, in_zp=[in_zp], out_zp=-5, input_type=input_type,
                 act_params=params if params is not None else [float_bits(0.05)])


def _options(layers, raw_edit=None) -> bytes:
    for i, layer in enumerate(layers[:-1]):
        layer.buffer_offset, layer.buffer_bytes = 0, int(np.prod(SHAPE))
    layers[-1].inputs = [len(layers) - 2] if len(layers) > 1 else [-1]
    return encode(StagePlan(layers, [0, 2, 4], [0, 3, 6], SHAPE, int(np.prod(SHAPE)) if len(layers) > 1 else 0))


def _run(options, x):
    return native.run_stage(options, [x], (1,) + SHAPE)


F32 = np.linspace(-3, 3, int(np.prod(SHAPE)), dtype=np.float32).reshape((1,) + SHAPE)
I8 = np.arange(int(np.prod(SHAPE)), dtype=np.int8).reshape((1,) + SHAPE)


def test_engine_runs_quantize_then_relu_on_a_float_input():
    out = _run(_options([_quantize(), _relu(in_zp=[-5])]), F32)
    q = np.clip(np.round(F32 / np.float32(0.05)) - 5, -128, 127)  # no ties in F32
    assert np.array_equal(out, np.clip(q + 2, -3, 127).astype(np.int8))  # RELU x1 from zp -5 to zp -3


@pytest.mark.parametrize("layers,x,message", [
    (lambda: [_quantize()], I8, "input_type"),                                   # int8 tensor, float plan
    (lambda: [_relu()], F32, "not an int8"),                                     # float tensor, int8 plan
    (lambda: [_quantize(input_type=3, params=[1 << 30, 1], in_zp=128)], F32, "input_type"),
    (lambda: [_relu(), _quantize()], I8, "QUANTIZE must be layer 0"),
    (lambda: [_quantize(input_type=9)], F32, "neither float32 nor uint8"),
    (lambda: [_quantize(params=[float_bits(-1.0)])], F32, "act_params value out of range"),
    (lambda: [_quantize(params=[float_bits(0.1), 3])], F32, "wrong length"),
    (lambda: [_quantize(input_type=3, params=[1 << 30, 1], in_zp=300)], F32.astype(np.uint8), "zero point"),
    (lambda: [_relu(act_params=[1 << 30, 31])], I8, "shift out of range"),
    (lambda: [_relu(act_params=[-5, 0])], I8, "act_params value out of range"),
    (lambda: [Layer(HARD_SWISH, [-1], [SHAPE], SHAPE, in_zp=[0], out_zp=0, act_params=[16384, 2, 100, 0])],
     I8, "shift out of range"),
    (lambda: [Layer(LOGISTIC, [-1], [SHAPE], SHAPE, in_zp=[0], out_zp=-128, act_params=[1 << 30, 31, 10])],
     I8, "shift out of range"),
    (lambda: [Layer(RELU, [-1], [SHAPE], (4, 6, 2), in_zp=[0], out_zp=0, act_params=[1 << 30, 1])],
     I8, "out_shape"),
])
def test_prepare_rejects_malformed_pointwise_options(layers, x, message):
    options = _options(layers())
    with pytest.raises(native.EngineError, match=message) as info:
        _run(options, x)
    # The Python mirror of Prepare (analyze, verify, the reference executor) says the same words.
    assert python_verdict(options, [x], (1,) + SHAPE) == str(info.value)

"""Pointwise stage ops against TFLM (the tflite-micro wheel), exhaustively.

RELU, RELU6, LEAKY_RELU, HARD_SWISH and LOGISTIC map each of the 256 int8
values to one int8 value, and the uint8 QUANTIZE each of the 256 uint8 values:
every value is checked, for quantizations that include the edges (zero points
at -128/127, scales far apart). The float32 QUANTIZE is checked on random and
edge floats (ties, huge values, signed zeros). The layer is lowered from the
one-op model by the converter itself, so Prepare's parameter math is tested too.
"""
from __future__ import annotations

import numpy as np
import pytest

from tflm_patch.converter import oracle, pointwise, reference
from tflm_patch.converter.options import StagePlan, encode
from tflm_patch.converter.graph import build_graph
from tflm_patch.converter import model_io
from tflm_patch.converter.layers import STAGE_INPUT, Unsupported, lower_op
from tflm_patch.converter.schema import BuiltinOperator, BuiltinOptions, TensorType, schema

from .modelgen import ModelBuilder

QUANTS = [(0.05, -3, 0.05, -3), (0.02, -128, 0.1, 127), (0.5, 127, 0.004, -128), (1e-3, 0, 0.25, 10),
          (0.0625, 5, 0.0625, -7), (3.0, -100, 0.01, 100)]


def _one_op_model(code, in_type, in_q, out_q, options_type=0, options=None, shape=(4, 8, 8)):
    mb = ModelBuilder(np.random.default_rng(0))
    x = mb.tensor((1,) + shape, in_type, *([[in_q[0]], [in_q[1]]] if in_q else [None, None]))
    y = mb.tensor((1,) + shape, TensorType.INT8, [out_q[0]], [out_q[1]])
    mb.op(code, [x], [y], options_type, options)
    return mb.finish([x], [y])


def _check(data: bytes, values: np.ndarray):
    g = build_graph(model_io.parse_model(data))
    layer = lower_op(g, g.ops[0], [STAGE_INPUT])
    shape = tuple(g.tensors[g.inputs[0]].shape)
    x = values.reshape(shape)
    expected = oracle.run(data, [x], 1).outputs[0]
    got = pointwise.run(layer, x)
    _same(x, got, expected, "Python arithmetic")
    # The whole stage, patch by patch: the Python reference and the C++ engine.
    h, w, c = shape[1:]
    options = encode(StagePlan([layer], [0, h // 2, h], [0, w // 3, w], (h, w, c), 0))
    _same(x, reference.run_stage(options, [x]), expected, "reference executor")
    from tflm_patch import native
    _same(x, native.run_stage(options, [x], shape), expected, "C++ engine")
    return layer


def _same(x, got, expected, who):
    bad = np.flatnonzero(got.reshape(-1) != expected.reshape(-1))
    assert bad.size == 0, (f"{who}: {bad.size} differ, e.g. input {x.reshape(-1)[bad[0]]}: "
                           f"got {got.reshape(-1)[bad[0]]}, TFLM {expected.reshape(-1)[bad[0]]}")


ALL_INT8 = np.arange(-128, 128, dtype=np.int8)


@pytest.mark.parametrize("q", QUANTS)
@pytest.mark.parametrize("code", ["RELU", "RELU6", "HARD_SWISH"])
def test_int8_activation_every_value(code, q):
    data = _one_op_model(getattr(BuiltinOperator, code), TensorType.INT8, q[:2], q[2:])
    if code == "HARD_SWISH" and q[0] / 128 / q[2] > 1:  # TFLM's Prepare refuses it; so does the converter
        with pytest.raises(Unsupported, match="above 1"):
            _check(data, ALL_INT8)
        return
    _check(data, ALL_INT8)


@pytest.mark.parametrize("q", QUANTS)
@pytest.mark.parametrize("alpha", [0.2, 0.01, 1.5, -0.3, 0.0])
def test_leaky_relu_every_value(q, alpha):
    o = schema.LeakyReluOptionsT()
    o.alpha = alpha
    data = _one_op_model(BuiltinOperator.LEAKY_RELU, TensorType.INT8, q[:2], q[2:],
                         BuiltinOptions.LeakyReluOptions, o)
    _check(data, ALL_INT8)


@pytest.mark.parametrize("in_q", [(0.05, -3), (0.02, -128), (0.5, 127), (1e-3, 0), (0.0625, 5), (0.1, 60)])
def test_logistic_every_value(in_q):
    data = _one_op_model(BuiltinOperator.LOGISTIC, TensorType.INT8, in_q, (1 / 256, -128))
    _check(data, ALL_INT8)


def test_logistic_refuses_what_tflm_refuses():
    data = _one_op_model(BuiltinOperator.LOGISTIC, TensorType.INT8, (0.05, 0), (1 / 256, 0))
    g = build_graph(model_io.parse_model(data))
    with pytest.raises(Unsupported, match="-128"):
        lower_op(g, g.ops[0], [STAGE_INPUT])


@pytest.mark.parametrize("q", [(1.0, 128, 1.0, 0), (0.02, 128, 0.02, 0), (0.02, 0, 0.05, -128),
                               (1 / 255, 0, 1 / 255, -128), (0.3, 255, 0.001, 127), (0.01, 17, 0.5, -3)])
def test_uint8_quantize_every_value(q):
    data = _one_op_model(BuiltinOperator.QUANTIZE, TensorType.UINT8, q[:2], q[2:])
    _check(data, np.arange(256, dtype=np.uint8))


@pytest.mark.parametrize("out_q", [(0.05, -3), (1 / 255, -128), (0.5, 127), (1e-4, 0), (0.1, 0)])
def test_float_quantize(out_q):
    rng = np.random.default_rng(1)
    s = np.float32(out_q[0])
    ties = (np.arange(-40, 40, dtype=np.float32) + np.float32(0.5)) * s
    edge = np.array([0.0, -0.0, 1e30, -1e30, 3e9, -3e9, 1e-30, 127 * s, -128 * s, 6.0, -6.0], dtype=np.float32)
    values = np.concatenate([ties, edge, rng.normal(0, 4, 256 - ties.size - edge.size).astype(np.float32)])
    data = _one_op_model(BuiltinOperator.QUANTIZE, TensorType.FLOAT32, None, out_q)
    _check(data, values)

"""Pointwise stage layers: standalone activations and an absorbed QUANTIZE.

Each op maps one input element to one output element (no window, no halo):
RELU, RELU6, LEAKY_RELU, HARD_SWISH and LOGISTIC on int8, and QUANTIZE from
the model's float32 or uint8 input to int8 (only as a stage's first layer).
The lowering computes the parameters exactly as TFLM's Prepare does
(activations_common.cc, leaky_relu_common.cc, hard_swish_common.cc,
logistic_common.cc, quantize_common.cc): float32 arithmetic where TFLM uses
float, double where it uses double. `act_params` holds them in the order
docs/patch_stage_format.md gives per op; `pointwise.py` runs them.
"""
from __future__ import annotations

import math

import numpy as np

from . import quant
from .layers import (HARD_SWISH, INPUT_FLOAT32, INPUT_UINT8, LEAKY_RELU, LOGISTIC, QUANTIZE, RELU, RELU6,
                     STAGE_INPUT, Layer, Unsupported, image_shape)
from .schema import BuiltinOperator, TensorType


def f32(x) -> np.float32:
    return np.float32(x)


def float_bits(x: float) -> int:
    """The float32's bit pattern as an int32 (how options carry a float)."""
    return int(np.array([x], dtype=np.float32).view(np.int32)[0])


def bits_float(bits: int) -> np.float32:
    return np.array([bits], dtype=np.int32).view(np.float32)[0]


def relu_params(in_scale, out_scale, out_zp) -> tuple:
    """CalculateReluOpData<int8_t>: (act_params, (act_min, act_max))."""
    m, s = quant.quantize_multiplier(float(f32(in_scale) / f32(out_scale)))
    act_min = max(quant.INT8_MIN, out_zp + quant.round_half_away(float(f32(0.0) / f32(out_scale))))
    return [m, s], (act_min, quant.INT8_MAX)


def relu6_range(in_scale, in_zp) -> tuple:
    """Relu6Prepare for int8: (zero, six); the output quantization is not used."""
    six = quant.round_half_away(float(f32(6.0) / f32(in_scale))) + in_zp
    return in_zp, min(quant.INT8_MAX, max(quant.INT8_MIN, six))


def leaky_relu_params(in_scale, out_scale, alpha) -> list:
    """CalculateOpDataLeakyRelu: identity then alpha multiplier/shift."""
    mi, si = quant.quantize_multiplier(float(f32(in_scale) / f32(out_scale)))
    ma, sa = quant.quantize_multiplier(float(f32(f32(in_scale) * f32(alpha)) / f32(out_scale)))
    return [mi, si, ma, sa]


def _downscale_to_int16(m: int) -> int:
    """DownScaleInt32ToInt16Multiplier."""
    if m >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1
    return (m + (1 << 15)) >> 16


def hard_swish_params(in_scale, out_scale) -> list:
    """HardSwishPrepare: [out_mult_int16, out_exponent, reluish_mult_int16, reluish_exponent]."""
    hires = f32(f32(1.0 / 128.0) * f32(in_scale))
    reluish_scale = f32(3.0 / 32768.0)
    om, oe = quant.quantize_multiplier(float(f32(hires / f32(out_scale))))
    rm, re_ = quant.quantize_multiplier(float(f32(hires / reluish_scale)))
    return [_downscale_to_int16(om), oe, _downscale_to_int16(rm), re_]


def logistic_params(in_scale) -> list:
    """CalculateArithmeticOpDataLogistic for int8: [multiplier, left_shift, range_radius]."""
    real = float(np.float64(f32(in_scale))) * float(1 << 27)
    q, left_shift = math.frexp(real)
    multiplier = quant.round_half_away(q * (1 << 31))
    if not 0 <= left_shift <= 30 or multiplier >= (1 << 31):
        raise ValueError(f"input scale {float(in_scale)} outside what TFLM's int8 LOGISTIC computes")
    # CalculateInputRadius(4, left_shift, 31)
    max_rescaled = 1.0 * 15 * (1 << 27) / (1 << left_shift)
    return [multiplier, left_shift, int(math.floor(max_rescaled))]


def quantize_uint8_params(in_scale, out_scale) -> list:
    """PrepareQuantizeReference for uint8 -> int8: the requantize multiplier and shift (double)."""
    m, s = quant.quantize_multiplier(float(np.float64(f32(in_scale))) / float(np.float64(f32(out_scale))))
    return [m, s]


def tensor_input_type(type_code: int) -> int:
    return {TensorType.FLOAT32: INPUT_FLOAT32, TensorType.UINT8: INPUT_UINT8}[type_code]


def _layer(graph, op, kind: int, sources: list, **kw) -> Layer:
    in_shape = image_shape(graph, op.inputs[0], "input")
    out_shape = image_shape(graph, op.outputs[0], "output")
    if in_shape != out_shape:
        raise Unsupported("input and output shapes differ")
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    return Layer(kind, sources, [in_shape], out_shape, in_zp=[inp.zero_point], out_zp=out.zero_point,
                 op_index=op.index, **kw)


def lower_relu(graph, op, sources):
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    params, act = relu_params(inp.scale, out.scale, out.zero_point)
    return _layer(graph, op, RELU, sources, act=act, act_params=params)


def lower_relu6(graph, op, sources):
    inp = graph.tensors[op.inputs[0]]
    return _layer(graph, op, RELU6, sources, act=relu6_range(inp.scale, inp.zero_point))


def lower_leaky_relu(graph, op, sources):
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    alpha = op.options.alpha if op.options is not None else 0.0
    return _layer(graph, op, LEAKY_RELU, sources, act_params=leaky_relu_params(inp.scale, out.scale, alpha))


def lower_hard_swish(graph, op, sources):
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    params = hard_swish_params(inp.scale, out.scale)
    if params[1] > 0:
        raise Unsupported("HARD_SWISH output multiplier above 1 (TFLM's Prepare refuses it)")
    if params[1] < -15 or params[3] < -15:
        raise Unsupported("HARD_SWISH scales more than 2^15 apart (int16 shifts out of range)")
    return _layer(graph, op, HARD_SWISH, sources, act_params=params)


def lower_logistic(graph, op, sources):
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if out.zero_point != quant.INT8_MIN:
        raise Unsupported("LOGISTIC output zero point is not -128 (TFLM's Prepare refuses it)")
    try:
        params = logistic_params(inp.scale)
    except ValueError as exc:
        raise Unsupported(str(exc)) from None
    return _layer(graph, op, LOGISTIC, sources, act_params=params)


def lower_quantize(graph, op, sources):
    """QUANTIZE float32/uint8 -> int8 per-tensor: only ever a stage's first layer (stage.py checks)."""
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if inp.type not in (TensorType.FLOAT32, TensorType.UINT8):
        raise Unsupported(f"QUANTIZE from {inp.type_name} (only float32 or uint8 inputs)")
    out_shape = image_shape(graph, op.outputs[0], "output")
    if list(inp.shape) != [1, *out_shape]:
        raise Unsupported("QUANTIZE input and output shapes differ")
    if sources != [STAGE_INPUT]:
        raise Unsupported("QUANTIZE of a tensor made inside the stage")
    if inp.type == TensorType.FLOAT32:
        params, in_zp = [float_bits(out.scale)], [0]
    else:
        if len(inp.scales) != 1:
            raise Unsupported("QUANTIZE input is not per-tensor quantized")
        params, in_zp = quantize_uint8_params(inp.scale, out.scale), [inp.zero_point]
    return Layer(QUANTIZE, sources, [out_shape], out_shape, in_zp=in_zp, out_zp=out.zero_point,
                 act_params=params, input_type=tensor_input_type(inp.type), op_index=op.index)


LOWERINGS = {BuiltinOperator.RELU: lower_relu, BuiltinOperator.RELU6: lower_relu6,
             BuiltinOperator.LEAKY_RELU: lower_leaky_relu, BuiltinOperator.HARD_SWISH: lower_hard_swish,
             BuiltinOperator.LOGISTIC: lower_logistic, BuiltinOperator.QUANTIZE: lower_quantize}

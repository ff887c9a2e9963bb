"""Lower ADD / SUB / MUL with a broadcast constant, and MUL of two images, into layer records.

TFLM runs int8 ADD, SUB and MUL whose operands differ in shape with
reference_integer_ops::BroadcastAdd4DSlow / reference_ops::BroadcastQuantSubSlow /
reference_integer_ops::BroadcastMul4DSlow, element by element with the
arithmetic of the same-shape kernels, in reference and in CMSIS-NN builds
alike (cmsis_nn add.cc / mul.cc fall back to the reference code for
broadcasts; SUB has no CMSIS-NN kernel). Same-shape MUL goes to
arm_elementwise_mul_s8 in CMSIS-NN builds. The parameters are computed as
TFLM's Prepare does (add_common.cc CalculateOpDataAdd in double,
sub_common.cc CalculateOpDataSub in float32 -- see _add_params --,
mul_common.cc CalculateOpDataMul).

The constant operand is an int8 per-tensor-quantized tensor broadcast along
channels: a scalar or `[C]`, with any number of leading 1s (`[1, 1, 1, C]`).
Its order among TFLite's inputs does not matter for ADD and MUL: the int32
sum of the two scaled ADD operands and the MUL product are symmetric, so the
layer holds the image as operand 1 and the constant as operand 2 (ADD's input
parameters swapped when the constant is TFLite's input1). SUB takes only
image - constant (Keras Normalization); constant - image is refused.
"""
from __future__ import annotations

import numpy as np

from . import quant
from .graph import Graph, Op
from .layers import ADD_CONST, MUL, MUL_CONST, SUB_CONST, Layer, Unsupported, image_shape
from .schema import TensorType

ADD_LEFT_SHIFT = 20  # CalculateOpDataAdd, int8


def _act(op: Op) -> int:
    return op.options.fusedActivationFunction if op.options is not None else 0


def _operands(graph: Graph, op: Op, name: str) -> tuple:
    """(image tensor index, constant tensor index or -1, whether the constant is input1)."""
    if len(op.inputs) != 2 or min(op.inputs) < 0:
        raise Unsupported(f"{name} does not have two inputs")
    constant = [graph.tensors[t].is_constant for t in op.inputs]
    if all(constant):
        raise Unsupported(f"{name} of two constants")
    if not any(constant):
        return op.inputs[0], -1, False
    first = constant[0]
    return op.inputs[1 if first else 0], op.inputs[0 if first else 1], first


def _check_constant(graph: Graph, t: int, image_shape: tuple, name: str) -> None:
    c = graph.tensors[t]
    if c.type != TensorType.INT8:
        raise Unsupported(f"{name} constant is {c.type_name}, not INT8")
    if len(c.scales) != 1 or len(c.zero_points) != 1:
        raise Unsupported(f"{name} constant is not per-tensor quantized")
    shape = tuple(int(d) for d in c.shape)
    channels = image_shape[2]
    if len(shape) > 4 or any(d != 1 for d in shape[:-1]) or (shape and shape[-1] not in (1, channels)):
        raise Unsupported(f"{name} constant of shape {list(shape)} is not a scalar or per-channel [{channels}]")
    if image_shape[0] * image_shape[1] == 1:
        # [1,1,1,C] against a [1,1,1,C] constant is no broadcast: CMSIS-NN builds run arm_elementwise_* there
        raise Unsupported(f"{name} constant is as large as its 1x1 image (no broadcast)")


def _quantize_mul(real: float, name: str) -> list:
    m, shift = quant.quantize_multiplier(real)
    if not -31 <= shift <= 30:
        raise Unsupported(f"{name} output multiplier {real:g} outside what int8 requantization takes")
    return [m, shift]


def _smaller_than_one(real: float, name: str) -> tuple:
    if not 0.0 < real < 1.0:
        raise Unsupported(f"{name} rescaling {real:g} is not in (0, 1)")
    return quant.quantize_multiplier_smaller_than_one(real)


def _add_params(a, b, out, name: str, sub: bool) -> list:
    """[left_shift, m1, s1, m2, s2, mo, so] for image a and constant b, as TFLM's Prepare computes them.

    ADD (CalculateOpDataAdd) divides in double. SUB (CalculateOpDataSub) divides in float32 in
    TFLM's source, and TFLM built from source (host, Cortex-M) gives those results, but the
    tflite-micro wheel (the oracle) gives the double ones: SUB is lowered only where both agree,
    so that the stage is bit-exact in either.
    """
    params = _double_params(a, b, out, name)
    if sub and _float32_params(a, b, out, name) != params:
        raise Unsupported(f"{name} rescaling differs between TFLM's float32 Prepare arithmetic and the "
                          "tflite-micro wheel's for these scales")
    return params


def _float32_params(a, b, out, name: str) -> list:
    f = np.float32
    twice_max = f(2) * max(f(a.scale), f(b.scale))
    r1, r2 = float(f(a.scale) / twice_max), float(f(b.scale) / twice_max)
    ro = float(twice_max / (f(1 << ADD_LEFT_SHIFT) * f(out.scale)))
    return _quantize_add(r1, r2, ro, name)


def _double_params(a, b, out, name: str) -> list:
    twice_max = 2 * max(float(a.scale), float(b.scale))
    r1, r2 = float(a.scale) / twice_max, float(b.scale) / twice_max
    ro = twice_max / ((1 << ADD_LEFT_SHIFT) * float(out.scale))
    return _quantize_add(r1, r2, ro, name)


def _quantize_add(r1: float, r2: float, ro: float, name: str) -> list:
    m1, s1 = _smaller_than_one(r1, name)
    m2, s2 = _smaller_than_one(r2, name)
    mo, so = _smaller_than_one(ro, name)
    return [ADD_LEFT_SHIFT, m1, s1, m2, s2, mo, so]


def _lower_add_or_sub(graph: Graph, op: Op, sources: list, kind: int, name: str) -> Layer:
    image_t, const_t, const_first = _operands(graph, op, name)
    if kind == SUB_CONST and const_first:
        raise Unsupported("SUB of an image from a constant")
    shape = image_shape(graph, image_t, f"{name} input")
    if image_shape(graph, op.outputs[0], "output") != shape:
        raise Unsupported(f"{name} output shape differs from its image input")
    _check_constant(graph, const_t, shape, name)
    a, b, out = graph.tensors[image_t], graph.tensors[const_t], graph.tensors[op.outputs[0]]
    return Layer(kind, sources, [shape], shape, in_zp=[a.zero_point], out_zp=out.zero_point,
                 act=quant.activation_range(_act(op), out.scale, out.zero_point),
                 add_params=_add_params(a, b, out, name, sub=kind == SUB_CONST), const_zp=b.zero_point,
                 const_count=b.num_elements, op_index=op.index, constant_tensor=const_t)


def lower_add_const(graph: Graph, op: Op, sources: list) -> Layer:
    return _lower_add_or_sub(graph, op, sources, ADD_CONST, "ADD")


def lower_sub_const(graph: Graph, op: Op, sources: list) -> Layer:
    if not any(t >= 0 and graph.tensors[t].is_constant for t in op.inputs[:2]):
        raise Unsupported("SUB of two images")
    return _lower_add_or_sub(graph, op, sources, SUB_CONST, "SUB")


def lower_mul(graph: Graph, op: Op, sources: list) -> Layer:
    image_t, const_t, _ = _operands(graph, op, "MUL")
    shape = image_shape(graph, image_t, "MUL input")
    if image_shape(graph, op.outputs[0], "output") != shape:
        raise Unsupported("MUL output shape differs from its image input")
    out = graph.tensors[op.outputs[0]]
    act = quant.activation_range(_act(op), out.scale, out.zero_point)
    if const_t < 0:
        other = image_shape(graph, op.inputs[1], "MUL input")
        if other != shape:
            raise Unsupported("MUL with broadcasting between two images")
        a, b = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
        params = _quantize_mul(float(a.scale) * float(b.scale) / float(out.scale), "MUL")
        return Layer(MUL, sources, [shape, shape], shape, in_zp=[a.zero_point, b.zero_point],
                     out_zp=out.zero_point, act=act, mul_params=params, op_index=op.index)
    _check_constant(graph, const_t, shape, "MUL")
    a, b = graph.tensors[image_t], graph.tensors[const_t]
    # CalculateOpDataMul: input1.scale * input2.scale / output.scale in double (the product commutes)
    first, second = (b, a) if op.inputs[0] == const_t else (a, b)
    params = _quantize_mul(float(first.scale) * float(second.scale) / float(out.scale), "MUL")
    return Layer(MUL_CONST, sources, [shape], shape, in_zp=[a.zero_point], out_zp=out.zero_point, act=act,
                 mul_params=params, const_zp=b.zero_point, const_count=b.num_elements, op_index=op.index,
                 constant_tensor=const_t)

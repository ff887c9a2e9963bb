"""Python reference of the arithmetic layers: ADD / SUB / MUL with a broadcast constant, MUL of two images.

Element by element as TFLM's reference_integer_ops AddFunc, reference_ops
SubElementwise and reference_integer_ops MulElementwise (and their
Broadcast*Slow versions, which apply the same function), in
int64 with int32 wrapping where TFLM's int32 would wrap.
"""
from __future__ import annotations

import numpy as np

from . import quant
from .layers import ADD_CONST, MUL, MUL_CONST, SUB_CONST


def _values(view, region) -> np.ndarray:
    """The region of a source view, as int64 [y, x, c]."""
    y0, y1, x0, x1 = region
    ry, rx = view.region[0], view.region[2]
    return view.data[y0 - ry:y1 - ry, x0 - rx:x1 - rx, :].astype(np.int64)


def _finish(layer, raw: np.ndarray) -> np.ndarray:
    return np.clip(quant._wrap_int32(raw + layer.out_zp), layer.act[0], layer.act[1]).astype(np.int8)


def _add(layer, image: np.ndarray, other: np.ndarray, other_zp: int, sign: int) -> np.ndarray:
    left_shift, m1, s1, m2, s2, mo, so = layer.add_params
    scale = quant.multiply_by_quantized_multiplier_smaller_than_one_exp
    a = scale((image - layer.in_zp[0]) * (1 << left_shift), m1, s1)
    b = scale((other - other_zp) * (1 << left_shift), m2, s2)
    return _finish(layer, scale(quant._wrap_int32(a + sign * b), mo, so))


def _mul(layer, a: np.ndarray, a_zp: int, b: np.ndarray, b_zp: int) -> np.ndarray:
    multiplier, shift = layer.mul_params
    product = (a - a_zp) * (b - b_zp)
    return _finish(layer, quant.multiply_by_quantized_multiplier(product, multiplier, shift))


def run_arith_layer(layer, region, sources: list, constants: list) -> np.ndarray:
    image = _values(sources[0], region)
    if layer.op == MUL:
        return _mul(layer, image, layer.in_zp[0], _values(sources[1], region), layer.in_zp[1])
    constant = np.asarray(constants[layer.constant]).astype(np.int64).reshape(-1)  # 1 or C values
    constant = np.broadcast_to(constant, image.shape)
    if layer.op in (ADD_CONST, SUB_CONST):
        return _add(layer, image, constant, layer.const_zp, 1 if layer.op == ADD_CONST else -1)
    if layer.op == MUL_CONST:
        return _mul(layer, image, layer.in_zp[0], constant, layer.const_zp)
    raise ValueError(f"not an arithmetic layer: {layer.op}")

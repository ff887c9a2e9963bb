"""The arithmetic of the pointwise layers (layers_pointwise.py), on NumPy arrays.

Each function is the element loop of TFLM's int8 kernel, bit for bit:
ReluQuantized and Relu6Quantized (micro/kernels/activations.h),
QuantizeLeakyRelu (reference/leaky_relu.h), HardSwish (reference/
hard_swish.h), reference_integer_ops::Logistic with gemmlowp's fixed-point
logistic, AffineQuantize and Requantize (reference/quantize.h,
requantize.h). int32 arithmetic is done in int64 and wrapped where C++
would wrap; micro_ops/pointwise_layers.cc is the C++ twin.
"""
from __future__ import annotations

import numpy as np

from . import quant
from .layers import HARD_SWISH, INPUT_FLOAT32, LEAKY_RELU, LOGISTIC, QUANTIZE, RELU, RELU6
from .layers_pointwise import bits_float

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
I16_MIN, I16_MAX = -(1 << 15), (1 << 15) - 1


def _wrap32(x):
    return quant._wrap_int32(np.asarray(x, dtype=np.int64))


def _wrap16(x):
    return ((np.asarray(x, dtype=np.int64) + (1 << 15)) & 0xFFFF) - (1 << 15)


def _mbqm(x, m, s):
    return quant.multiply_by_quantized_multiplier(np.asarray(x, dtype=np.int64), m, s)


def relu(x, layer):
    in_zp, out_zp = layer.in_zp[0], layer.out_zp
    m, s = layer.act_params
    out = out_zp + _mbqm(x.astype(np.int64) - in_zp, m, s)
    return np.clip(out, layer.act[0], layer.act[1])


def relu6(x, layer):
    return np.clip(x.astype(np.int64), layer.act[0], layer.act[1])


def leaky_relu(x, layer):
    mi, si, ma, sa = layer.act_params
    v = x.astype(np.int64) - layer.in_zp[0]
    identity = _mbqm(v, mi, si)
    scaled = _mbqm(v, abs(ma), sa)
    alpha = -scaled if ma < 0 else scaled
    return np.clip(layer.out_zp + np.where(v >= 0, identity, alpha), quant.INT8_MIN, quant.INT8_MAX)


def _srdhm16(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul for int16."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    total = ab + nudge
    high = np.where(total >= 0, total // (1 << 15), -((-total) // (1 << 15)))
    return np.where((a == b) & (a == I16_MIN), I16_MAX, _wrap16(high))


def _sdhm16(a, b):
    """reference_ops::SaturatingDoublingHighMul (rounds toward zero)."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    ab = a * b
    high = np.where(ab >= 0, ab // (1 << 15), -((-ab) // (1 << 15)))
    return np.where((a == b) & (a == I16_MIN), I16_MAX, _wrap16(high))


def _sat_left_shift16(v, amount):
    return np.clip(np.asarray(v, dtype=np.int64) * (1 << amount), I16_MIN, I16_MAX)


def hard_swish(x, layer):
    om, oe, rm, re_ = layer.act_params
    v = _wrap16(x.astype(np.int64) - layer.in_zp[0])
    hires = _wrap16(v * (1 << 7))
    preshift = _srdhm16(hires, om)
    reluish = hires
    if re_ > 0:
        reluish = _sat_left_shift16(reluish, re_ - 1)
    reluish = _srdhm16(reluish, rm)
    if re_ > 0:
        reluish = _sat_left_shift16(reluish, 1)
    if re_ < 0:
        reluish = quant.rounding_divide_by_pot(reluish, -re_)
    reluish = _wrap16((reluish + (1 << 15)) >> 1)
    out = _sdhm16(reluish, preshift)
    out = _wrap16(quant.rounding_divide_by_pot(out, -oe))
    out = _wrap16(out + layer.out_zp)
    return np.clip(out, quant.INT8_MIN, quant.INT8_MAX)


# ---- gemmlowp fixed point on int32 raws (int64 arrays holding int32 values) ----

def _mul(a, b):
    return quant.saturating_rounding_doubling_high_mul(_wrap32(a), b)


def _sat_shift_left(x, e):
    threshold = (1 << (31 - e)) - 1
    return np.where(x > threshold, I32_MAX, np.where(x < -threshold, I32_MIN, _wrap32(x * (1 << e))))


def _exp_quarter(a):
    """exp_on_interval_between_negative_one_quarter_and_0_excl (F0)."""
    constant_term, one_third = 1895147668, 715827883
    x = _wrap32(a + (1 << 28))
    x2 = _mul(x, x)
    x3 = _mul(x2, x)
    x4 = _mul(x2, x2)
    x4_over_4 = quant.rounding_divide_by_pot(x4, 2)
    inner = quant.rounding_divide_by_pot(_wrap32(_mul(_wrap32(x4_over_4 + x3), one_third) + x2), 1)
    return _wrap32(constant_term + _mul(constant_term, _wrap32(x + inner)))


def _exp_on_negative_values_f4(a):
    """exp_on_negative_values for FixedPoint<int32, 4> (27 fractional bits)."""
    frac = 27
    one_quarter = 1 << (frac - 2)
    a_mod = _wrap32((a & (one_quarter - 1)) - one_quarter)
    result = _exp_quarter(_sat_shift_left(a_mod, 4))  # Rescale<0> from 4 integer bits
    remainder = _wrap32(a_mod - a)
    for exponent, multiplier in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                                 (2, 39332535), (3, 720401)):
        bit = (remainder & (1 << (frac + exponent))) != 0
        result = np.where(bit, _mul(result, multiplier), result)
    return np.where(a == 0, I32_MAX, result)


def _one_over_one_plus_x(a):
    """one_over_one_plus_x_for_x_in_0_1 (F0 in, F0 out; F2 inside)."""
    s = a.astype(np.int64) + I32_MAX
    half_denominator = np.where(s >= 0, (s + 1) // 2, -((-(s - 1)) // 2))
    x = _wrap32(1515870810 + _mul(half_denominator, -1010580540))
    for _ in range(3):
        hdx = _mul(half_denominator, x)
        one_minus = _wrap32((1 << 29) - hdx)
        x = _wrap32(x + _sat_shift_left(_mul(x, one_minus), 2))
    return _sat_shift_left(x, 1)


def logistic(x, layer):
    multiplier, left_shift, radius = layer.act_params
    v = x.astype(np.int64) - layer.in_zp[0]
    a = _mbqm(np.clip(v, -radius, radius), multiplier, left_shift)  # clipped values are overridden below
    positive = a > 0
    abs_input = np.where(positive, a, _wrap32(-a))
    rp = _one_over_one_plus_x(_exp_on_negative_values_f4(_wrap32(-abs_input)))
    result = np.where(a == 0, 1 << 30, np.where(positive, rp, _wrap32(I32_MAX - rp)))
    out = np.clip(quant.rounding_divide_by_pot(result, 23) - 128, quant.INT8_MIN, quant.INT8_MAX)
    return np.where(v <= -radius, quant.INT8_MIN, np.where(v >= radius, quant.INT8_MAX, out))


def affine_quantize(x, scale: np.float32, zero_point: int):
    """AffineQuantize float32 -> int8: float division, std::round, static_cast<int32_t>.

    A quotient outside int32 (or NaN) converts to INT32_MIN, as x86's cvttss2si
    gives (C++ leaves it undefined; TFLM's own kernel does the same thing).
    """
    q = np.asarray(x, dtype=np.float32) / np.float32(scale)
    with np.errstate(invalid="ignore"):
        r = np.sign(q) * np.floor(np.abs(q.astype(np.float64)) + 0.5)
        inside = np.isfinite(r) & (r >= -2.0 ** 31) & (r < 2.0 ** 31)
        ints = np.where(inside, np.where(inside, r, 0).astype(np.int64), I32_MIN)
    return np.clip(_wrap32(ints + zero_point), quant.INT8_MIN, quant.INT8_MAX)


def requantize_uint8(x, layer):
    m, s = layer.act_params
    if m == 1 << 30 and s == 1 and layer.in_zp[0] - layer.out_zp == 128:
        return (x.astype(np.int64) ^ 0x80) - 256 * ((x.astype(np.int64) ^ 0x80) > 127)
    out = _mbqm(x.astype(np.int64) - layer.in_zp[0], m, s) + layer.out_zp
    return np.clip(out, quant.INT8_MIN, quant.INT8_MAX)


def quantize(x, layer):
    if layer.input_type == INPUT_FLOAT32:
        return affine_quantize(x, bits_float(layer.act_params[0]), layer.out_zp)
    return requantize_uint8(x, layer)


FUNCTIONS = {RELU: relu, RELU6: relu6, LEAKY_RELU: leaky_relu, HARD_SWISH: hard_swish, LOGISTIC: logistic,
             QUANTIZE: quantize}


def run(layer, values: np.ndarray) -> np.ndarray:
    """The layer's output (int8) for input values (int8, or the QUANTIZE's float32/uint8)."""
    return FUNCTIONS[layer.op](values, layer).astype(np.int8)

"""TFLite's integer quantization helpers, reproduced bit for bit in Python.

Everything here mirrors tensorflow/lite/kernels/internal/quantization_util.cc,
kernel_util.cc and common.h: the kernel computes the same numbers in Prepare,
so converter, reference executor and kernel agree to the bit.
"""
from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def round_half_away(x: float) -> int:
    """TfLiteRound / std::round: halves round away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(real: float) -> tuple:
    """QuantizeMultiplier(double, int32*, int*), double-rounding build; negative multipliers too, as TFLite."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = round_half_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return q_fixed, shift


def quantize_multiplier_smaller_than_one(real: float) -> tuple:
    if not 0.0 < real < 1.0:
        raise ValueError(f"multiplier {real} outside (0, 1)")
    return quantize_multiplier(real)


def activation_range(activation: int, scale: float, zero_point: int) -> tuple:
    """CalculateActivationRangeQuantized for int8 (float32 arithmetic, like TFLM)."""
    from .schema import ActivationFunctionType as Act

    def quantize(f: float) -> int:
        return zero_point + round_half_away(float(np.float32(f) / np.float32(scale)))

    if activation == Act.NONE:
        return INT8_MIN, INT8_MAX
    if activation == Act.RELU:
        return max(INT8_MIN, quantize(0.0)), INT8_MAX
    if activation == Act.RELU6:
        return max(INT8_MIN, quantize(0.0)), min(INT8_MAX, quantize(6.0))
    if activation == Act.RELU_N1_TO_1:
        return max(INT8_MIN, quantize(-1.0)), min(INT8_MAX, quantize(1.0))
    raise ValueError(f"unsupported fused activation {activation}")


# ---- integer arithmetic on numpy arrays (int64 to emulate int32 exactly) ----

def saturating_rounding_doubling_high_mul(a: np.ndarray, b) -> np.ndarray:
    a = a.astype(np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == -(1 << 31)) & (b == -(1 << 31))
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    # C++ integer division truncates toward zero.
    total = ab + nudge
    high = np.where(total >= 0, total >> 31, -((-total) >> 31))
    return np.where(overflow, (1 << 31) - 1, high)


def rounding_divide_by_pot(x: np.ndarray, exponent) -> np.ndarray:
    x = x.astype(np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x: np.ndarray, multiplier, shift) -> np.ndarray:
    """MultiplyByQuantizedMultiplier(int32, int32, int), double rounding."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.where(shift > 0, shift, 0)
    right = np.where(shift > 0, 0, -shift)
    shifted = _wrap_int32(x.astype(np.int64) * (np.int64(1) << left))
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def multiply_by_quantized_multiplier_smaller_than_one_exp(x: np.ndarray, multiplier, left_shift) -> np.ndarray:
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), -np.asarray(left_shift))


def _wrap_int32(x: np.ndarray) -> np.ndarray:
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)

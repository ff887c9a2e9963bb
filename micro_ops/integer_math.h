/* Copyright 2025 The tflm-patch Authors. All Rights Reserved.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
==============================================================================*/

// TFLite's integer arithmetic, bit-exact with tensorflow/lite/kernels/
// internal/common.h and gemmlowp: what the reference kernels (and CMSIS-NN)
// requantize with. Like TFLM, the rounding of MultiplyByQuantizedMultiplier
// follows TFLITE_SINGLE_ROUNDING: build with the define TFLM is built with.

#ifndef TFLM_PATCH_MICRO_OPS_INTEGER_MATH_H_
#define TFLM_PATCH_MICRO_OPS_INTEGER_MATH_H_

#include <cstdint>

namespace tflm_patch {

// int32 addition that wraps instead of being undefined on overflow (TFLM's
// reference kernels overflow the same way in practice).
inline int32_t WrappingAdd(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) +
                              static_cast<uint32_t>(b));
}

inline int32_t SaturatingRoundingDoublingHighMul(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  const int64_t product = static_cast<int64_t>(a) * static_cast<int64_t>(b);
  const int64_t nudge =
      product >= 0 ? (int64_t{1} << 30) : (int64_t{1} - (int64_t{1} << 30));
  // Division truncates toward zero, as in gemmlowp.
  return static_cast<int32_t>((product + nudge) / (int64_t{1} << 31));
}

inline int32_t RoundingDivideByPOT(int32_t x, int exponent) {
  const int32_t mask = static_cast<int32_t>((int64_t{1} << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

#if defined(TFLITE_SINGLE_ROUNDING) && TFLITE_SINGLE_ROUNDING
constexpr bool kUsesSingleRounding = true;

// Requires multiplier >= 0 and -31 <= shift <= 30 (ValidatePlan checks).
inline int32_t MultiplyByQuantizedMultiplier(int32_t x, int32_t multiplier,
                                             int shift) {
  const int total_shift = 31 - shift;
  const int64_t round = int64_t{1} << (total_shift - 1);
  const int64_t result =
      static_cast<int64_t>(x) * static_cast<int64_t>(multiplier) + round;
  return static_cast<int32_t>(result >> total_shift);
}

inline int32_t MultiplyByQuantizedMultiplierSmallerThanOneExp(
    int32_t x, int32_t multiplier, int shift) {
  return MultiplyByQuantizedMultiplier(x, multiplier, shift);
}
#else
constexpr bool kUsesSingleRounding = false;

// Requires -31 <= shift <= 30 (ValidatePlan checks).
inline int32_t MultiplyByQuantizedMultiplier(int32_t x, int32_t multiplier,
                                             int shift) {
  const int left_shift = shift > 0 ? shift : 0;
  const int right_shift = shift > 0 ? 0 : -shift;
  // x * (1 << left_shift), wrapping like int32.
  const int32_t shifted =
      static_cast<int32_t>(static_cast<uint32_t>(x) << left_shift);
  return RoundingDivideByPOT(
      SaturatingRoundingDoublingHighMul(shifted, multiplier), right_shift);
}

inline int32_t MultiplyByQuantizedMultiplierSmallerThanOneExp(
    int32_t x, int32_t multiplier, int left_shift) {
  return RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, multiplier),
                             -left_shift);
}
#endif  // TFLITE_SINGLE_ROUNDING

inline int32_t Clamp(int32_t value, int32_t low, int32_t high) {
  return value < low ? low : (value > high ? high : value);
}

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_INTEGER_MATH_H_

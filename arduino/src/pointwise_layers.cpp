// Generated from micro_ops/pointwise_layers.cc by tools/sync_arduino.py: edit micro_ops/, not this file.
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

#include "pointwise_layers.h"

#include <cmath>
#include <cstddef>
#include <cstring>

#include "integer_math.h"

namespace tflm_patch {
namespace {

int8_t ClampToInt8(int32_t value) {
  return static_cast<int8_t>(Clamp(value, kInt8Min, kInt8Max));
}

// ReluQuantized<int8_t>.
int8_t Relu(int32_t value, const LayerPlan& layer) {
  const int32_t* p = layer.pointwise.params;
  const int32_t out =
      layer.output_zero_point +
      MultiplyByQuantizedMultiplier(value - layer.input_zero_point[0], p[0],
                                    p[1]);
  return static_cast<int8_t>(
      Clamp(out, layer.activation_min, layer.activation_max));
}

// QuantizeLeakyRelu<int8_t>.
int8_t LeakyRelu(int32_t value, const LayerPlan& layer) {
  const int32_t* p = layer.pointwise.params;
  const int32_t input = value - layer.input_zero_point[0];
  int32_t out = layer.output_zero_point;
  if (input >= 0) {
    out += MultiplyByQuantizedMultiplier(input, p[0], p[1]);
  } else {
    const bool negative_alpha = p[2] < 0;
    const int32_t scaled = MultiplyByQuantizedMultiplier(
        input, negative_alpha ? -p[2] : p[2], p[3]);
    out += negative_alpha ? -scaled : scaled;
  }
  return ClampToInt8(out);
}

// gemmlowp::SaturatingRoundingDoublingHighMul for int16.
int16_t SaturatingRoundingDoublingHighMul16(int16_t a, int16_t b) {
  if (a == b && a == INT16_MIN) return INT16_MAX;
  const int32_t ab = int32_t{a} * int32_t{b};
  const int16_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
  return static_cast<int16_t>((ab + nudge) / (1 << 15));
}

// reference_ops::SaturatingDoublingHighMul (rounds toward zero).
int16_t SaturatingDoublingHighMul16(int16_t a, int16_t b) {
  if (a == b && a == INT16_MIN) return INT16_MAX;
  return static_cast<int16_t>((int32_t{a} * int32_t{b}) / (1 << 15));
}

int16_t SaturatingLeftShift16(int16_t value, int amount) {
  int64_t result = static_cast<int64_t>(value) * (1 << amount);
  if (result > INT16_MAX) result = INT16_MAX;
  if (result < INT16_MIN) result = INT16_MIN;
  return static_cast<int16_t>(result);
}

// gemmlowp::RoundingDivideByPOT for int16 (exponent <= 15).
int16_t RoundingDivideByPOT16(int16_t x, int exponent) {
  const int16_t mask = static_cast<int16_t>((1 << exponent) - 1);
  const int16_t remainder = static_cast<int16_t>(x & mask);
  const int16_t threshold = static_cast<int16_t>((mask >> 1) + (x < 0 ? 1 : 0));
  return static_cast<int16_t>((x >> exponent) +
                              (remainder > threshold ? 1 : 0));
}

// reference_ops::HardSwish<int8_t>.
int8_t HardSwish(int32_t value, const LayerPlan& layer) {
  const int32_t* p = layer.pointwise.params;
  const int16_t output_multiplier = static_cast<int16_t>(p[0]);
  const int output_exponent = p[1];
  const int16_t reluish_multiplier = static_cast<int16_t>(p[2]);
  const int reluish_exponent = p[3];
  const int16_t input =
      static_cast<int16_t>(value - layer.input_zero_point[0]);
  const int16_t hires = static_cast<int16_t>(input * (1 << 7));
  const int16_t preshift =
      SaturatingRoundingDoublingHighMul16(hires, output_multiplier);
  int16_t reluish = hires;
  if (reluish_exponent > 0) {
    reluish = SaturatingLeftShift16(reluish, reluish_exponent - 1);
  }
  reluish = SaturatingRoundingDoublingHighMul16(reluish, reluish_multiplier);
  if (reluish_exponent > 0) reluish = SaturatingLeftShift16(reluish, 1);
  if (reluish_exponent < 0) {
    reluish = RoundingDivideByPOT16(reluish, -reluish_exponent);
  }
  reluish = static_cast<int16_t>((reluish + (1 << 15)) >> 1);
  const int16_t product = SaturatingDoublingHighMul16(reluish, preshift);
  int16_t out = RoundingDivideByPOT16(product, -output_exponent);
  out = static_cast<int16_t>(out + layer.output_zero_point);
  return ClampToInt8(out);
}

// ---- gemmlowp fixed point on int32 raws (fixedpoint.h) ----

int32_t Wrap(int64_t value) {
  return static_cast<int32_t>(static_cast<uint32_t>(value));
}

int32_t FixedMul(int32_t a, int32_t b) {
  return SaturatingRoundingDoublingHighMul(a, b);
}

// SaturatingRoundingMultiplyByPOT<exponent> for exponent > 0.
int32_t SaturatingShiftLeft(int32_t x, int exponent) {
  const int32_t threshold = (int32_t{1} << (31 - exponent)) - 1;
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return Wrap(static_cast<int64_t>(x) * (int64_t{1} << exponent));
}

// exp_on_interval_between_negative_one_quarter_and_0_excl (0 integer bits).
int32_t ExpOnQuarter(int32_t a) {
  const int32_t constant_term = 1895147668;
  const int32_t one_third = 715827883;
  const int32_t x = Wrap(int64_t{a} + (1 << 28));
  const int32_t x2 = FixedMul(x, x);
  const int32_t x3 = FixedMul(x2, x);
  const int32_t x4 = FixedMul(x2, x2);
  const int32_t x4_over_4 = RoundingDivideByPOT(x4, 2);
  const int32_t inner = RoundingDivideByPOT(
      Wrap(int64_t{FixedMul(Wrap(int64_t{x4_over_4} + x3), one_third)} + x2),
      1);
  return Wrap(int64_t{constant_term} +
              FixedMul(constant_term, Wrap(int64_t{x} + inner)));
}

// exp_on_negative_values for FixedPoint<int32_t, 4> (27 fractional bits).
int32_t ExpOnNegativeValuesQ4(int32_t a) {
  constexpr int kFractionalBits = 27;
  constexpr int32_t kOneQuarter = int32_t{1} << (kFractionalBits - 2);
  const int32_t a_mod = Wrap(int64_t{a & (kOneQuarter - 1)} - kOneQuarter);
  int32_t result = ExpOnQuarter(SaturatingShiftLeft(a_mod, 4));
  const int32_t remainder = Wrap(int64_t{a_mod} - a);
  static const int32_t kMultipliers[6] = {1672461947, 1302514674, 790015084,
                                          290630308,  39332535,   720401};
  for (int i = 0; i < 6; ++i) {  // exponents -2 .. 3
    if ((remainder & (int32_t{1} << (kFractionalBits - 2 + i))) != 0) {
      result = FixedMul(result, kMultipliers[i]);
    }
  }
  return a == 0 ? INT32_MAX : result;
}

// one_over_one_plus_x_for_x_in_0_1 (0 integer bits in and out).
int32_t OneOverOnePlusX(int32_t a) {
  const int64_t sum = int64_t{a} + INT32_MAX;
  const int32_t half_denominator =
      static_cast<int32_t>((sum + (sum >= 0 ? 1 : -1)) / 2);
  int32_t x =
      Wrap(int64_t{1515870810} + FixedMul(half_denominator, -1010580540));
  for (int i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = FixedMul(half_denominator, x);
    const int32_t one_minus =
        Wrap(int64_t{1} * (1 << 29) - half_denominator_times_x);
    x = Wrap(int64_t{x} + SaturatingShiftLeft(FixedMul(x, one_minus), 2));
  }
  return SaturatingShiftLeft(x, 1);
}

// reference_integer_ops::Logistic for one int8 value.
int8_t Logistic(int32_t value, const LayerPlan& layer) {
  const int32_t multiplier = layer.pointwise.params[0];
  const int32_t left_shift = layer.pointwise.params[1];
  const int32_t radius = layer.pointwise.params[2];
  const int32_t input = value - layer.input_zero_point[0];
  if (input <= -radius) return kInt8Min;
  if (input >= radius) return kInt8Max;
  const int32_t a =
      MultiplyByQuantizedMultiplier(input, multiplier, left_shift);
  int32_t result = 1 << 30;  // logistic(0) = 1/2
  if (a != 0) {
    const int32_t abs_input = a > 0 ? a : Wrap(-int64_t{a});
    const int32_t positive =
        OneOverOnePlusX(ExpOnNegativeValuesQ4(Wrap(-int64_t{abs_input})));
    result = a > 0 ? positive : Wrap(int64_t{INT32_MAX} - positive);
  }
  return ClampToInt8(RoundingDivideByPOT(result, 23) + kInt8Min);
}

// AffineQuantize<float, int8_t>: float division, std::round, then the
// conversion to int32 exactly as TFLM writes it.
int8_t QuantizeFloat(float value, float scale, int32_t zero_point) {
  const int32_t unclamped =
      static_cast<int32_t>(std::round(value / scale)) + zero_point;
  return ClampToInt8(unclamped);
}

// Requantize<uint8_t, int8_t> (its xor fast path gives the same values).
int8_t QuantizeUInt8(int32_t value, const LayerPlan& layer) {
  const int32_t* p = layer.pointwise.params;
  const int32_t out = MultiplyByQuantizedMultiplier(
                          value - layer.input_zero_point[0], p[0], p[1]) +
                      layer.output_zero_point;
  return ClampToInt8(out);
}

int8_t Int8Element(int32_t value, const LayerPlan& layer) {
  switch (layer.op) {
    case LayerOp::kRelu:
      return Relu(value, layer);
    case LayerOp::kRelu6:
      return static_cast<int8_t>(
          Clamp(value, layer.activation_min, layer.activation_max));
    case LayerOp::kLeakyRelu:
      return LeakyRelu(value, layer);
    case LayerOp::kHardSwish:
      return HardSwish(value, layer);
    case LayerOp::kLogistic:
      return Logistic(value, layer);
    default:
      return 0;
  }
}

// Element offset of (y, x) in a view (strides count elements).
ptrdiff_t ElementOffset(const InputView& view, int32_t y, int32_t x) {
  return static_cast<ptrdiff_t>(y - view.origin_y) * view.row_stride +
         static_cast<ptrdiff_t>(x - view.origin_x) * view.channels;
}

}  // namespace

void PointwiseRegion(const LayerPlan& layer, const InputView& input,
                     const Region& region, const OutputView& output) {
  const int32_t channels = layer.output_shape.channels;
  float scale = 0.0f;
  std::memcpy(&scale, &layer.pointwise.params[0], sizeof(scale));
  for (int32_t y = region.y0; y < region.y1; ++y) {
    for (int32_t x = region.x0; x < region.x1; ++x) {
      int8_t* out = output.Pixel(y, x);
      const ptrdiff_t offset = ElementOffset(input, y, x);
      if (layer.op != LayerOp::kQuantize) {
        const int8_t* in = input.data + offset;
        for (int32_t c = 0; c < channels; ++c) {
          out[c] = Int8Element(in[c], layer);
        }
      } else if (layer.pointwise.input_type == kInputFloat32) {
        const float* in = reinterpret_cast<const float*>(input.data) + offset;
        for (int32_t c = 0; c < channels; ++c) {
          out[c] = QuantizeFloat(in[c], scale, layer.output_zero_point);
        }
      } else {
        const uint8_t* in =
            reinterpret_cast<const uint8_t*>(input.data) + offset;
        for (int32_t c = 0; c < channels; ++c) {
          out[c] = QuantizeUInt8(in[c], layer);
        }
      }
    }
  }
}

}  // namespace tflm_patch

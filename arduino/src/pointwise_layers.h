// Generated from micro_ops/pointwise_layers.h by tools/sync_arduino.py: edit micro_ops/, not this file.
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

// The pointwise layers (RELU, RELU6, LEAKY_RELU, HARD_SWISH, LOGISTIC and a
// first-layer QUANTIZE) over one output region, bit-exact with TFLM's int8
// kernels: activations.h (ReluQuantized, Relu6Quantized), reference/
// leaky_relu.h, reference/hard_swish.h, reference/integer_ops/logistic.h
// (gemmlowp's fixed-point logistic), reference/quantize.h (AffineQuantize)
// and reference/requantize.h. act_params hold what TFLM's Prepare computes.

#ifndef TFLM_PATCH_MICRO_OPS_POINTWISE_LAYERS_H_
#define TFLM_PATCH_MICRO_OPS_POINTWISE_LAYERS_H_

#include "geometry.h"
#include "image_view.h"
#include "plan.h"

namespace tflm_patch {

// Computes `region` of a pointwise layer. `input` views the source image;
// for a QUANTIZE it views the float32 / uint8 stage input (its data pointer
// is that tensor's, its strides in elements).
void PointwiseRegion(const LayerPlan& layer, const InputView& input,
                     const Region& region, const OutputView& output);

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_POINTWISE_LAYERS_H_

// Generated from micro_ops/reference_layers.h by tools/sync_arduino.py: edit micro_ops/, not this file.
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

// The stage's layers with TFLM's reference arithmetic, each over one output
// region: bit-exact with tensorflow/lite/kernels/internal/reference/
// integer_ops (conv, depthwise_conv, pooling, add) and reference/pad.h.
// Each reads its inputs through views (any region of a full image, with a
// row stride) and writes the region through an output view; the trusted
// plan (ValidatePlan) guarantees every tap it reads is in the views.

#ifndef TFLM_PATCH_MICRO_OPS_REFERENCE_LAYERS_H_
#define TFLM_PATCH_MICRO_OPS_REFERENCE_LAYERS_H_

#include <cstdint>

#include "geometry.h"
#include "image_view.h"
#include "layer_backend.h"
#include "plan.h"

namespace tflm_patch {

// reference_integer_ops::ConvPerChannel over `region`.
void ConvRegion(const LayerPlan& layer, const ImageShape& in_shape,
                const InputView& input, const int8_t* filter,
                const int32_t* bias, const Region& region,
                const OutputView& output);

// reference_integer_ops::DepthwiseConvPerChannel over `region`.
void DepthwiseConvRegion(const LayerPlan& layer, const ImageShape& in_shape,
                         const InputView& input, const int8_t* filter,
                         const int32_t* bias, const Region& region,
                         const OutputView& output);

// reference_integer_ops::MaxPool over `region`.
void MaxPoolRegion(const LayerPlan& layer, const ImageShape& in_shape,
                   const InputView& input, const Region& region,
                   const OutputView& output);

// reference_integer_ops::AveragePool over `region`.
void AveragePoolRegion(const LayerPlan& layer, const ImageShape& in_shape,
                       const InputView& input, const Region& region,
                       const OutputView& output);

// reference_integer_ops::Add (no broadcast) over `region`.
void AddRegion(const LayerPlan& layer, const InputView& input1,
               const InputView& input2, const Region& region,
               const OutputView& output);

// reference_ops::Pad (constant value) over `region`.
void PadRegion(const LayerPlan& layer, const ImageShape& in_shape,
               const InputView& input, const Region& region,
               const OutputView& output);

// The layer's kernel above for `call`.
void RunReferenceLayer(const LayerCall& call);

// The reference kernels as a backend (no workspace, never fails).
extern const LayerBackend kReferenceLayerBackend;

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_REFERENCE_LAYERS_H_

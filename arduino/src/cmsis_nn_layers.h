// Generated from micro_ops/cmsis_nn_layers.h by tools/sync_arduino.py: edit micro_ops/, not this file.
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

// The stage's layers on CMSIS-NN. In a TFLM build with CMSIS-NN kernels
// (TFLM defines CMSIS_NN for OPTIMIZED_KERNEL_DIR=cmsis_nn), PATCH_STAGE
// computes CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, AVERAGE_POOL_2D and ADD
// with the CMSIS-NN functions that TFLM's cmsis_nn kernels call, so that the
// patched stage gives the bytes the unpatched model gives in that build, at
// CMSIS-NN's speed. PAD, a copy, stays the reference kernel. Without CMSIS_NN
// nothing here is compiled in: patch_stage.cc then runs the reference
// kernels, patch_stage_cmsis_nn.cc these.
//
// CMSIS-NN takes dense NHWC tensors and non-negative top/left padding. A
// patch region is computed in bands of output rows such that every call sees
// a dense input and a dense output: the whole region in one call when its
// input rows and output rows are contiguous in memory, else one call per
// output row, whose input rows are copied into the workspace first when they
// are not contiguous (the first layer reading a window of the whole stage
// input). Each call's input is the band's input region clipped to the image,
// so the image border falls where CMSIS-NN pads, and its padding is what is
// left of the layer's padding there (never more than the layer's own).
//
// Targets the CMSIS-NN that TFLM pins (arm_convolve_s8 with upscale_dims).
// CMSIS-NN's header is found as TFLM's and the Arduino library's layouts
// have it, or named by TFLM_PATCH_CMSIS_NN_HEADER (a quoted include).

#ifndef TFLM_PATCH_MICRO_OPS_CMSIS_NN_LAYERS_H_
#define TFLM_PATCH_MICRO_OPS_CMSIS_NN_LAYERS_H_

#include "layer_backend.h"

namespace tflm_patch {

// The layers on CMSIS-NN as a backend; layers and regions CMSIS-NN does not
// take run the reference kernels (reference_layers.h). Defined only when
// CMSIS_NN is.
extern const LayerBackend kCmsisNnLayerBackend;

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_CMSIS_NN_LAYERS_H_

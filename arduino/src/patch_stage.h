// Generated from micro_ops/patch_stage.h by tools/sync_arduino.py: edit micro_ops/, not this file.
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

// The PATCH_STAGE custom operator for TensorFlow Lite Micro.
//
//   tflite::MicroMutableOpResolver<N> resolver;
//   resolver.AddCustom(tflm_patch::kPatchStageCustomName,
//                      tflm_patch::Register_PATCH_STAGE());
//
// Build every .cc file listed in kernel_sources.txt with the TFLM library,
// with the defines TFLM's own kernels are built with: TFLITE_SINGLE_ROUNDING=1
// exactly when TFLM has it, and, for TFLM with CMSIS-NN kernels
// (OPTIMIZED_KERNEL_DIR=cmsis_nn), CMSIS_NN and TFLM's CMSIS-NN include
// paths: the op must compute like the kernels it replaces. CMSIS_NN picks
// the op's backend (patch_stage_cmsis_nn.cc, else patch_stage.cc).

#ifndef TFLM_PATCH_MICRO_OPS_PATCH_STAGE_H_
#define TFLM_PATCH_MICRO_OPS_PATCH_STAGE_H_

#if __has_include("tensorflow/lite/micro/micro_common.h")
#include "tensorflow/lite/micro/micro_common.h"
#else
#include "tensorflow/lite/c/common.h"
#endif

namespace tflm_patch {

constexpr char kPatchStageCustomName[] = "PATCH_STAGE";

// What MicroMutableOpResolver::AddCustom takes: TFLMRegistration since TFLM
// has micro_common.h (mid 2023), TfLiteRegistration before, as in the
// Arduino_TensorFlowLite library (2.4.0-ALPHA).
#if __has_include("tensorflow/lite/micro/micro_common.h")
using OpRegistration = TFLMRegistration;
#else
using OpRegistration = TfLiteRegistration;
#endif

OpRegistration* Register_PATCH_STAGE();

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_PATCH_STAGE_H_

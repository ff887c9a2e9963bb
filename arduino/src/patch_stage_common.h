// Generated from micro_ops/patch_stage_common.h by tools/sync_arduino.py: edit micro_ops/, not this file.
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

// PATCH_STAGE's Init, Prepare and Eval shared by its backends (like TFLM's
// kernels/*_common.cc): Init parses the options once into persistent
// memory; Prepare validates the plan against the actual tensors and
// requests one scratch buffer, sized for the backend's layer kernels; Eval
// allocates nothing and runs the schedule with them. patch_stage.cc
// (reference kernels) and patch_stage_cmsis_nn.cc (CMSIS-NN) register the
// op with their backend; the CMSIS_NN define picks one, as TFLM's
// OPTIMIZED_KERNEL_DIR=cmsis_nn picks kernels/cmsis_nn/.

#ifndef TFLM_PATCH_MICRO_OPS_PATCH_STAGE_COMMON_H_
#define TFLM_PATCH_MICRO_OPS_PATCH_STAGE_COMMON_H_

#include <cstddef>

#include "layer_backend.h"
#include "tensorflow/lite/c/common.h"

namespace tflm_patch {

void* PatchStageInit(TfLiteContext* context, const char* buffer, size_t length);

TfLiteStatus PatchStagePrepare(TfLiteContext* context, TfLiteNode* node,
                               const LayerBackend& backend);

TfLiteStatus PatchStageEval(TfLiteContext* context, TfLiteNode* node,
                            const LayerBackend& backend);

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_PATCH_STAGE_COMMON_H_

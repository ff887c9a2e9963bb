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

// PATCH_STAGE with the reference layer kernels: the op of a TFLM build with
// reference kernels (CMSIS_NN not defined). patch_stage_cmsis_nn.cc is the
// op of a build with CMSIS-NN kernels.

#if !defined(CMSIS_NN)

#include "patch_stage.h"

#include "patch_stage_common.h"
#include "reference_layers.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"

namespace tflm_patch {
namespace {

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  return PatchStagePrepare(context, node, kReferenceLayerBackend);
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  return PatchStageEval(context, node, kReferenceLayerBackend);
}

}  // namespace

OpRegistration* Register_PATCH_STAGE() {
  static OpRegistration registration =
      tflite::micro::RegisterOp(PatchStageInit, Prepare, Eval);
  return &registration;
}

}  // namespace tflm_patch

#endif  // !defined(CMSIS_NN)

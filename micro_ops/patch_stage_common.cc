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

#include "patch_stage_common.h"

#include <new>

#include "plan_parser.h"
#include "plan_validation.h"
#include "schedule.h"
#include "stage_overlap.h"
#include "tensorflow/lite/kernels/internal/compatibility.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace tflm_patch {
namespace {

constexpr int kStageOutputTensor = 0;

struct OpData {
  const StagePlan* plan;    // nullptr when Init could not parse the options
  Status init_status;       // why, in that case
  Region* regions;          // per-layer working memory, plan->num_layers
  const void** input_data;  // op input data pointers, refreshed in Eval
  int32_t num_inputs;
  int scratch_index;  // -1 when the stage needs no scratch
  size_t scratch_bytes;
  int64_t min_output_lead;  // where the output may lie over the input
};

void Report(const char* phase, const Status& status) {
  const char* key = status.key != nullptr ? status.key : "-";
  if (status.layer >= 0) {
    MicroPrintf("PATCH_STAGE %s: layer %d: %s (key %s)", phase,
                static_cast<int>(status.layer), status.message, key);
  } else {
    MicroPrintf("PATCH_STAGE %s: %s (key %s)", phase, status.message, key);
  }
}

Status ParseIntoOpData(TfLiteContext* context, const uint8_t* options,
                       size_t options_bytes, OpData* data) {
  size_t plan_bytes = 0;
  Status status = ComputePlanMemoryBytes(options, options_bytes, &plan_bytes);
  if (!status.ok()) return status;
  void* plan_memory = context->AllocatePersistentBuffer(context, plan_bytes);
  if (plan_memory == nullptr)
    return ErrorStatus("no persistent memory for plan");
  const StagePlan* plan = nullptr;
  status = ParsePlan(options, options_bytes, plan_memory, plan_bytes, &plan);
  if (!status.ok()) return status;
  void* regions = context->AllocatePersistentBuffer(
      context, sizeof(Region) * static_cast<size_t>(plan->num_layers));
  if (regions == nullptr)
    return ErrorStatus("no persistent memory for regions");
  data->regions = static_cast<Region*>(regions);
  data->plan = plan;
  return OkStatus();
}

}  // namespace

void* PatchStageInit(TfLiteContext* context, const char* buffer,
                     size_t length) {
  TFLITE_DCHECK(context->AllocatePersistentBuffer != nullptr);
  void* raw = context->AllocatePersistentBuffer(context, sizeof(OpData));
  if (raw == nullptr) return nullptr;
  OpData* data = new (raw) OpData();
  data->plan = nullptr;
  data->scratch_index = -1;
  // Errors are kept and reported by Prepare, which can fail the model.
  data->init_status = ParseIntoOpData(
      context, reinterpret_cast<const uint8_t*>(buffer), length, data);
  return data;
}

namespace {

ElementType ToElementType(TfLiteType type) {
  switch (type) {
    case kTfLiteInt8:
      return ElementType::kInt8;
    case kTfLiteInt32:
      return ElementType::kInt32;
    case kTfLiteFloat32:
      return ElementType::kFloat32;
    case kTfLiteUInt8:
      return ElementType::kUInt8;
    default:
      return ElementType::kOther;
  }
}

TensorDesc DescribeTensor(const TfLiteTensor& tensor) {
  TensorDesc desc = {};
  desc.type = ToElementType(tensor.type);
  desc.num_dims = tensor.dims != nullptr ? tensor.dims->size : 0;
  for (int i = 0; i < desc.num_dims && i < kMaxTensorDims; ++i) {
    desc.dims[i] = tensor.dims->data[i];
  }
  desc.is_constant = tflite::IsConstantTensor(&tensor);
  desc.num_scales = 0;
  if (tensor.quantization.type == kTfLiteAffineQuantization) {
    const auto* quantization = static_cast<const TfLiteAffineQuantization*>(
        tensor.quantization.params);
    desc.has_zero_point = true;
    desc.zero_point = tensor.params.zero_point;
    desc.num_scales =
        (quantization != nullptr && quantization->scale != nullptr)
            ? quantization->scale->size
            : 0;
  }
  return desc;
}

// The node's inputs, described one at a time with temporary tensors.
class NodeInputs final : public InputTensors {
 public:
  NodeInputs(tflite::MicroContext* micro_context, TfLiteNode* node)
      : micro_context_(micro_context), node_(node) {}

  int32_t count() const override { return node_->inputs->size; }

  bool Describe(int32_t index, TensorDesc* desc) const override {
    TfLiteTensor* tensor =
        micro_context_->AllocateTempInputTensor(node_, index);
    if (tensor == nullptr) return false;
    *desc = DescribeTensor(*tensor);
    micro_context_->DeallocateTempTfLiteTensor(tensor);
    return true;
  }

 private:
  tflite::MicroContext* micro_context_;
  TfLiteNode* node_;
};

TfLiteStatus RejectCompressedInputs(tflite::MicroContext* micro_context,
                                    TfLiteNode* node) {
#ifdef USE_TFLM_COMPRESSION
  for (int i = 0; i < node->inputs->size; ++i) {
    if (micro_context->IsTensorCompressed(node, i)) {
      MicroPrintf("PATCH_STAGE prepare: input %d is compressed (unsupported)",
                  i);
      return kTfLiteError;
    }
  }
#else
  (void)micro_context;
  (void)node;
#endif
  return kTfLiteOk;
}

}  // namespace

TfLiteStatus PatchStagePrepare(TfLiteContext* context, TfLiteNode* node,
                               const LayerBackend& backend) {
  TFLITE_DCHECK(node->user_data != nullptr);
  OpData* data = static_cast<OpData*>(node->user_data);
  if (data->plan == nullptr) {
    Report("options", data->init_status);
    return kTfLiteError;
  }
  TF_LITE_ENSURE_EQ(context, tflite::NumOutputs(node), 1);
  TF_LITE_ENSURE(context, tflite::NumInputs(node) >= 1);
  tflite::MicroContext* micro_context = tflite::GetMicroContext(context);
  TF_LITE_ENSURE_OK(context, RejectCompressedInputs(micro_context, node));

  TfLiteTensor* output =
      micro_context->AllocateTempOutputTensor(node, kStageOutputTensor);
  TF_LITE_ENSURE(context, output != nullptr);
  const TensorDesc output_desc = DescribeTensor(*output);
  micro_context->DeallocateTempTfLiteTensor(output);

  Status status =
      ValidatePlan(*data->plan, NodeInputs(micro_context, node), output_desc,
                   data->regions, data->plan->num_layers);
  size_t scratch_bytes = 0;
  if (status.ok()) {
    status = ComputeScratchBytes(*data->plan, backend, data->regions,
                                 data->plan->num_layers, &scratch_bytes);
  }
  if (status.ok()) {
    status = ComputeMinOutputLead(*data->plan, data->regions,
                                  data->plan->num_layers,
                                  &data->min_output_lead);
  }
  if (!status.ok()) {
    Report("prepare", status);
    return kTfLiteError;
  }

  data->num_inputs = tflite::NumInputs(node);
  data->input_data =
      static_cast<const void**>(context->AllocatePersistentBuffer(
          context,
          sizeof(const void*) * static_cast<size_t>(data->num_inputs)));
  TF_LITE_ENSURE(context, data->input_data != nullptr);
  data->scratch_bytes = scratch_bytes;
  data->scratch_index = -1;
  if (scratch_bytes > 0) {
    TF_LITE_ENSURE_OK(
        context, context->RequestScratchBufferInArena(context, scratch_bytes,
                                                      &data->scratch_index));
  }
  return kTfLiteOk;
}

TfLiteStatus PatchStageEval(TfLiteContext* context, TfLiteNode* node,
                            const LayerBackend& backend) {
  TFLITE_DCHECK(node->user_data != nullptr);
  OpData* data = static_cast<OpData*>(node->user_data);
  for (int32_t i = 0; i < data->num_inputs; ++i) {
    const TfLiteEvalTensor* input =
        tflite::micro::GetEvalInput(context, node, i);
    data->input_data[i] = input != nullptr ? input->data.data : nullptr;
  }
  TfLiteEvalTensor* output =
      tflite::micro::GetEvalOutput(context, node, kStageOutputTensor);
  uint8_t* scratch = data->scratch_index >= 0
                         ? static_cast<uint8_t*>(context->GetScratchBuffer(
                               context, data->scratch_index))
                         : nullptr;
  const Status status =
      RunStage(*data->plan, backend, data->input_data, data->num_inputs,
               tflite::micro::GetTensorData<int8_t>(output),
               data->min_output_lead, scratch, data->scratch_bytes,
               data->regions, data->plan->num_layers);
  if (!status.ok()) {
    Report("eval", status);
    return kTfLiteError;
  }
  return kTfLiteOk;
}

}  // namespace tflm_patch

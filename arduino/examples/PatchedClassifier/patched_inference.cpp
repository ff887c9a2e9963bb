#include "patched_inference.h"

#include <cstring>

#include "model_data.h"
#include "model_ops.h"  // the model's ops, PATCH_STAGE among them
#include "model_settings.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "test_input.h"

namespace {

alignas(16) uint8_t g_tensor_arena[kTensorArenaSize];
tflite::MicroInterpreter* g_interpreter = nullptr;

}  // namespace

bool SetUpInference() {
  const tflite::Model* model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("model schema version %d, expected %d",
                static_cast<int>(model->version()), TFLITE_SCHEMA_VERSION);
    return false;
  }
  static ModelOpResolver resolver;
  if (!RegisterModelOps(resolver)) {
    MicroPrintf("could not register the ops");
    return false;
  }
  static tflite::MicroInterpreter interpreter(model, resolver, g_tensor_arena,
                                              kTensorArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    MicroPrintf("AllocateTensors failed: is kTensorArenaSize (%d) too small?",
                kTensorArenaSize);
    return false;
  }
  TfLiteTensor* input = interpreter.input(0);
  if (input->type != kTfLiteInt8 ||
      input->bytes != static_cast<size_t>(kTestInputBytes)) {
    MicroPrintf("the model's input is not %d int8 values", kTestInputBytes);
    return false;
  }
  g_interpreter = &interpreter;
  return true;
}

bool RunInference(InferenceResult* result) {
  if (g_interpreter == nullptr) return false;
  // Set the input before every Invoke: TFLM reuses its memory once it is dead.
  std::memcpy(g_interpreter->input(0)->data.int8, g_test_input,
              static_cast<size_t>(kTestInputBytes));
  if (g_interpreter->Invoke() != kTfLiteOk) {
    MicroPrintf("Invoke failed");
    return false;
  }
  const TfLiteTensor* output = g_interpreter->output(0);
  const int classes = static_cast<int>(output->bytes);
  int best = 0;
  for (int i = 1; i < classes; ++i) {
    if (output->data.int8[i] > output->data.int8[best]) best = i;
  }
  result->predicted_class = best;
  result->score = output->data.int8[best];
  result->arena_used_bytes = g_interpreter->arena_used_bytes();
  return true;
}

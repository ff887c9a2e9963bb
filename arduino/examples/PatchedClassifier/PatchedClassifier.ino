// PatchedClassifier: a CNN whose first stage runs patch by patch (tflm-patch),
// inside the stock Arduino TensorFlow Lite Micro library.
//
// It runs the bundled patched model on a bundled test image and prints over
// Serial the predicted class, the inference time and the arena TFLM used.
// To use your own model: `tflm-patch convert` it, then
// `python tools/make_arduino_example.py ORIGINAL PATCHED INPUT.npy LABEL`
// regenerates model_data.*, test_input.* and model_settings.h.
#include <TensorFlowLite.h>
#include <TFLMPatch.h>

#include "model_settings.h"
#include "patched_inference.h"
#include "tensorflow/lite/micro/system_setup.h"

namespace {
bool g_ready = false;
}

void setup() {
  Serial.begin(115200);
  while (!Serial && millis() < 4000) {
  }
  tflite::InitializeTarget();
  g_ready = SetUpInference();
  Serial.println(g_ready ? "PatchedClassifier ready" : "PatchedClassifier: set-up failed");
}

void loop() {
  if (!g_ready) return;
  InferenceResult result;
  const unsigned long start = micros();
  const bool ok = RunInference(&result);
  const unsigned long elapsed = micros() - start;
  if (!ok) {
    Serial.println("inference failed");
    delay(2000);
    return;
  }
  Serial.print("predicted class: ");
  Serial.print(result.predicted_class);
  if (kNumClasses > 0) {
    Serial.print(" (");
    Serial.print(kClassNames[result.predicted_class]);
    Serial.print(")");
  }
  Serial.print(", expected ");
  Serial.print(kExpectedClass);
  Serial.print(", true label ");
  Serial.println(kTrueClass);
  Serial.print("inference time: ");
  Serial.print(elapsed / 1000.0f);
  Serial.println(" ms");
  Serial.print("arena_used_bytes: ");
  Serial.print(static_cast<unsigned long>(result.arena_used_bytes));
  Serial.print(" of ");
  Serial.println(kTensorArenaSize);
  delay(2000);
}

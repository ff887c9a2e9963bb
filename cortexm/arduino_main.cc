// Copyright 2025 The tflm-patch Authors. Licensed under the Apache License 2.0.
//
// Runs the Arduino example's inference path
// (arduino/examples/PatchedClassifier/patched_inference.cpp, with its bundled
// patched model and test input, and the library in arduino/src) on QEMU
// mps2-an386, as the sketch's setup() and loop() would on a board, and prints
// over semihosting:
//
//   predicted_class=N
//   expected_class=N     (kExpectedClass: what TFLM computes on the host)
//   score=S
//   arena_used_bytes=N
//   arena_size=N         (kTensorArenaSize)
//   done
//
// Exit code: 0 when the class is the expected one, 1 if setup or inference
// failed, 2 on a different class.
#include <cstdio>

#include "model_settings.h"
#include "patched_inference.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"

extern "C" {
static void PrintLog(const char* s) { std::fputs(s, stderr); }
}

int main() {
  RegisterDebugLogCallback(PrintLog);
  if (!SetUpInference()) {
    std::printf("error=SetUpInference failed\n");
    return 1;
  }
  InferenceResult result;
  if (!RunInference(&result)) {
    std::printf("error=RunInference failed\n");
    return 1;
  }
  std::printf("predicted_class=%d\nexpected_class=%d\nscore=%d\narena_used_bytes=%lu\narena_size=%d\ndone\n",
              result.predicted_class, kExpectedClass, static_cast<int>(result.score),
              static_cast<unsigned long>(result.arena_used_bytes), kTensorArenaSize);
  std::fflush(stdout);
  return result.predicted_class == kExpectedClass ? 0 : 2;
}

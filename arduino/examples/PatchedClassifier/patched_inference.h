// The whole inference path of the example, free of Arduino APIs, so that the
// same code runs on a board, on the host and under QEMU (Cortex-M4).
#ifndef PATCHED_INFERENCE_H_
#define PATCHED_INFERENCE_H_

#include <cstddef>
#include <cstdint>

struct InferenceResult {
  int predicted_class;
  int8_t score;             // the winning int8 output
  size_t arena_used_bytes;  // what TFLM actually used of the arena
};

// Builds the interpreter over the bundled patched model; false on error
// (the reason is printed with MicroPrintf).
bool SetUpInference();

// Copies the bundled test input into the model and runs it once.
bool RunInference(InferenceResult* result);

#endif  // PATCHED_INFERENCE_H_

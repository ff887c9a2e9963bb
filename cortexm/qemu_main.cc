// Copyright 2025 The tflm-patch Authors. Licensed under the Apache License 2.0.
//
// A bare-metal TFLM program for QEMU mps2-an386 (Cortex-M4): runs one model on
// one input with PATCH_STAGE registered and reports over semihosting (stdout):
//
//   arena_used_bytes=N
//   output=HEX          (all output tensors' bytes, in order; several lines,
//   output=HEX           to be concatenated)
//   invokes=K
//   done
//
// The model (g_model), the input (g_input) and the number of Invoke() calls
// (g_invokes) come from sources generated for each program
// (tflm_patch/cortexm.py). Each Invoke() is bracketed by calls to
// tflm_patch_window_begin() and tflm_patch_window_end(): an instruction
// counting QEMU plugin (cortexm/insn_count.c) samples its counter when their
// first instructions execute, so the count covers Invoke() alone, not the
// startup, AllocateTensors() or the printing. Exit code: 0 on success,
// 1-5 on the errors below (QEMU exits with it).
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "patch_stage.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

#ifndef TFLM_PATCH_ARENA_BYTES
#define TFLM_PATCH_ARENA_BYTES (2 * 1024 * 1024)
#endif

// Generated per program.
extern const unsigned char g_model[];
extern const unsigned int g_model_len;
extern const unsigned char g_input[];
extern const unsigned int g_input_len;
extern const unsigned int g_invokes;

extern "C" {
// The markers: distinct bodies (so that no pass folds them into one
// address), never inlined or analysed across calls, kept by the linker.
volatile uint32_t tflm_patch_window_state;
__attribute__((noinline, noipa, used)) void tflm_patch_window_begin(void) { tflm_patch_window_state = 1; }
__attribute__((noinline, noipa, used)) void tflm_patch_window_end(void) { tflm_patch_window_state = 2; }

static void PrintLog(const char* s) { std::fputs(s, stderr); }
}

namespace {

alignas(16) uint8_t g_arena[TFLM_PATCH_ARENA_BYTES];

int Fail(int code, const char* message) {
  std::printf("error=%s\n", message);
  std::fflush(stdout);
  return code;
}

void PrintHex(const char* key, const uint8_t* data, size_t size) {
  static const char kDigits[] = "0123456789abcdef";
  char line[2 * 64 + 1];
  for (size_t start = 0; start < size; start += 64) {
    const size_t n = size - start < 64 ? size - start : 64;
    for (size_t i = 0; i < n; ++i) {
      line[2 * i] = kDigits[data[start + i] >> 4];
      line[2 * i + 1] = kDigits[data[start + i] & 15];
    }
    line[2 * n] = '\0';
    std::printf("%s=%s\n", key, line);
  }
}

}  // namespace

int main() {
  RegisterDebugLogCallback(PrintLog);
  tflite::InitializeTarget();

  const tflite::Model* model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) return Fail(1, "model schema version mismatch");

  static tflite::MicroMutableOpResolver<32> resolver;
  resolver.AddConv2D();
  resolver.AddDepthwiseConv2D();
  resolver.AddAdd();
  resolver.AddPad();
  resolver.AddPadV2();
  resolver.AddMaxPool2D();
  resolver.AddAveragePool2D();
  resolver.AddMean();
  resolver.AddFullyConnected();
  resolver.AddSoftmax();
  resolver.AddReshape();
  resolver.AddQuantize();
  resolver.AddDequantize();
  resolver.AddConcatenation();
  resolver.AddResizeNearestNeighbor();
  resolver.AddRelu();
  resolver.AddRelu6();
  resolver.AddLeakyRelu();
  resolver.AddHardSwish();
  resolver.AddLogistic();
  resolver.AddMul();
  resolver.AddSub();
  resolver.AddSpaceToBatchNd();
  resolver.AddBatchToSpaceNd();
  if (resolver.AddCustom(tflm_patch::kPatchStageCustomName, tflm_patch::Register_PATCH_STAGE()) != kTfLiteOk) {
    return Fail(1, "cannot register PATCH_STAGE");
  }

  static tflite::MicroInterpreter interpreter(model, resolver, g_arena, sizeof(g_arena));
  if (interpreter.AllocateTensors() != kTfLiteOk) return Fail(2, "AllocateTensors failed");
  TfLiteTensor* input = interpreter.input(0);
  if (input->bytes != g_input_len) return Fail(3, "input size does not match the model");

  for (unsigned i = 0; i < (g_invokes > 0 ? g_invokes : 1); ++i) {
    // The planner reuses the input's memory once it is dead: set it every time.
    std::memcpy(input->data.raw, g_input, g_input_len);
    tflm_patch_window_begin();
    const TfLiteStatus status = interpreter.Invoke();
    tflm_patch_window_end();
    if (status != kTfLiteOk) return Fail(4, "Invoke failed");
  }

  std::printf("arena_used_bytes=%lu\n", static_cast<unsigned long>(interpreter.arena_used_bytes()));
  for (size_t i = 0; i < interpreter.outputs_size(); ++i) {
    const TfLiteTensor* t = interpreter.output(i);
    PrintHex("output", reinterpret_cast<const uint8_t*>(t->data.raw), t->bytes);
  }
  std::printf("invokes=%u\ndone\n", g_invokes > 0 ? g_invokes : 1u);
  std::fflush(stdout);
  return 0;
}

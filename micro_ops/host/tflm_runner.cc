// A small host program that runs a .tflite in TFLM with PATCH_STAGE registered.
//
//   tflm_runner MODEL INPUT OUTPUT [REPEATS]
//
// Reads MODEL (.tflite) and INPUT (raw bytes of input 0), runs the model in
// tflite::MicroInterpreter, writes the raw bytes of every output, one after the
// other, to OUTPUT, and prints `arena_used_bytes=N` (with its two parts,
// `arena_head_bytes` and `arena_tail_bytes`) and `invoke_us=T` (mean over
// REPEATS invocations, default 1). Built from our sources only and linked
// against the user's libtensorflow-microlite.a.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <new>

#include "patch_stage.h"
#include "tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.h"
#include "tensorflow/lite/micro/memory_planner/greedy_memory_planner.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

constexpr size_t kArenaSize = 8 * 1024 * 1024;
alignas(16) uint8_t g_arena[kArenaSize];

bool ReadFile(const char* path, std::vector<uint8_t>* out) {
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr) return false;
  std::fseek(f, 0, SEEK_END);
  const long size = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  out->resize(size > 0 ? static_cast<size_t>(size) : 0);
  const bool ok = size >= 0 && std::fread(out->data(), 1, out->size(), f) == out->size();
  std::fclose(f);
  return ok;
}

int Fail(const char* message) {
  std::fprintf(stderr, "tflm_runner: %s\n", message);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return Fail("usage: tflm_runner MODEL INPUT OUTPUT [REPEATS]");
  const int repeats = argc > 4 ? std::atoi(argv[4]) : 1;
  std::vector<uint8_t> model_file, input_bytes;
  if (!ReadFile(argv[1], &model_file)) return Fail("cannot read the model");
  if (!ReadFile(argv[2], &input_bytes)) return Fail("cannot read the input");
  // The flatbuffer must be 16-byte aligned, as it is in flash on a device.
  std::vector<uint8_t> storage(model_file.size() + 16);
  uint8_t* model_data = reinterpret_cast<uint8_t*>(
      (reinterpret_cast<uintptr_t>(storage.data()) + 15) & ~uintptr_t{15});
  std::memcpy(model_data, model_file.data(), model_file.size());

  const tflite::Model* model = tflite::GetModel(model_data);
  tflite::MicroMutableOpResolver<24> resolver;
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
  resolver.AddMul();
  resolver.AddSub();
  resolver.AddSpaceToBatchNd();
  resolver.AddBatchToSpaceNd();
  resolver.AddCustom("PATCH_STAGE", tflm_patch::Register_PATCH_STAGE());

  // What MicroInterpreter(model, resolver, g_arena, kArenaSize) builds
  // (MicroAllocator::Create with the greedy planner), step for step, so that
  // arena_used_bytes() is unchanged and the arena's two parts can be read:
  // the planned head (tensors and scratch buffers) and the persistent tail.
  tflite::SingleArenaBufferAllocator* arena =
      tflite::SingleArenaBufferAllocator::Create(g_arena, kArenaSize);
  void* planner_memory = arena->AllocatePersistentBuffer(
      sizeof(tflite::GreedyMemoryPlanner), alignof(tflite::GreedyMemoryPlanner));
  tflite::GreedyMemoryPlanner* planner = new (planner_memory) tflite::GreedyMemoryPlanner();
  tflite::MicroAllocator* allocator = tflite::MicroAllocator::Create(arena, planner);
  tflite::MicroInterpreter interpreter(model, resolver, allocator);
  if (interpreter.AllocateTensors() != kTfLiteOk) return Fail("AllocateTensors failed");
  TfLiteTensor* input = interpreter.input(0);
  if (input->bytes != input_bytes.size()) return Fail("input size does not match the model");

  double total_us = 0;
  for (int i = 0; i < (repeats > 0 ? repeats : 1); ++i) {
    // The planner reuses the input's memory once it is dead: set it every time.
    std::memcpy(input->data.raw, input_bytes.data(), input_bytes.size());
    const auto start = std::chrono::steady_clock::now();
    if (interpreter.Invoke() != kTfLiteOk) return Fail("Invoke failed");
    total_us += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
  }
  FILE* out = std::fopen(argv[3], "wb");
  if (out == nullptr) return Fail("cannot write the output");
  for (size_t i = 0; i < interpreter.outputs_size(); ++i) {
    const TfLiteTensor* t = interpreter.output(i);
    std::fwrite(t->data.raw, 1, t->bytes, out);
  }
  std::fclose(out);
  std::printf("arena_used_bytes=%zu\narena_head_bytes=%zu\narena_tail_bytes=%zu\ninvoke_us=%.1f\n",
              interpreter.arena_used_bytes(), arena->GetNonPersistentUsedBytes(),
              arena->GetPersistentUsedBytes(), total_us / (repeats > 0 ? repeats : 1));
  return 0;
}

// A small host program that runs a .tflite in TFLM with PATCH_STAGE registered.
//
//   tflm_runner MODEL INPUT OUTPUT [REPEATS]
//   tflm_runner --batch LIST [SECONDS]
//
// Reads MODEL (.tflite) and INPUT (raw bytes of input 0), runs the model in
// tflite::MicroInterpreter, writes the raw bytes of every output, one after the
// other, to OUTPUT, and prints `arena_used_bytes=N` (with its two parts,
// `arena_head_bytes` and `arena_tail_bytes`) and `invoke_us=T` (mean over
// REPEATS invocations, default 1). Built from our sources only and linked
// against the user's libtensorflow-microlite.a.
//
// --batch runs many cases in one process (for the sanitizer runs and the
// Prepare fuzz): LIST has one case a line, `MODEL INPUT OUTPUT`. For case N
// it writes `@@case N` to stderr before running it (so the messages TFLM
// prints, and a sanitizer report, follow their case), then one line to
// stdout, `case=N status=S arena_used_bytes=B arena_intact=0|1`, where S is
// ok, allocate_failed, invoke_failed or bad_input. arena_intact says the
// arena's unused middle (between the planned head and the persistent tail)
// was not written by Invoke (in an AddressSanitizer build it is also poisoned
// during Invoke, so any access there is reported where it happens). A case running longer than SECONDS (default 60)
// ends the process with exit code 87 (a watchdog). The model is held in a heap
// block of exactly its size, so a sanitizer sees any read past its end.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include <signal.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define RUNNER_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define RUNNER_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define RUNNER_POISON(p, n) ((void)(p), (void)(n))
#define RUNNER_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#include "patch_stage.h"
#include "tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.h"
#include "tensorflow/lite/micro/memory_planner/greedy_memory_planner.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

constexpr size_t kArenaSize = 8 * 1024 * 1024;
constexpr uint8_t kArenaFill = 0xA5;
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

// The flatbuffer 16-byte aligned, as it is in flash on a device, in a block
// of exactly its size.
class AlignedModel {
 public:
  explicit AlignedModel(const std::vector<uint8_t>& bytes) {
    if (posix_memalign(&data_, 16, bytes.empty() ? 1 : bytes.size()) != 0) data_ = nullptr;
    if (data_ != nullptr) std::memcpy(data_, bytes.data(), bytes.size());
  }
  ~AlignedModel() { std::free(data_); }
  AlignedModel(const AlignedModel&) = delete;
  AlignedModel& operator=(const AlignedModel&) = delete;
  const void* data() const { return data_; }

 private:
  void* data_ = nullptr;
};

enum class Outcome { kOk, kAllocateFailed, kInvokeFailed, kBadInput, kNoOutput };

const char* OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kOk: return "ok";
    case Outcome::kAllocateFailed: return "allocate_failed";
    case Outcome::kInvokeFailed: return "invoke_failed";
    case Outcome::kBadInput: return "bad_input";
    case Outcome::kNoOutput: return "no_output";
  }
  return "?";
}

struct RunResult {
  size_t arena_used_bytes = 0;
  size_t arena_head_bytes = 0;
  size_t arena_tail_bytes = 0;
  double invoke_us = 0;
  bool arena_intact = true;
};

// Poisons [begin, end) for AddressSanitizer while it lives.
class PoisonedRange {
 public:
  PoisonedRange(uint8_t* begin, uint8_t* end)
      : begin_(begin), size_(end > begin ? static_cast<size_t>(end - begin) : 0) {
    RUNNER_POISON(begin_, size_);
  }
  ~PoisonedRange() { RUNNER_UNPOISON(begin_, size_); }
  PoisonedRange(const PoisonedRange&) = delete;
  PoisonedRange& operator=(const PoisonedRange&) = delete;

 private:
  uint8_t* begin_;
  size_t size_;
};

bool Untouched(const uint8_t* begin, const uint8_t* end) {
  for (const uint8_t* p = begin; p < end; ++p) {
    if (*p != kArenaFill) return false;
  }
  return true;
}

Outcome RunModel(const std::vector<uint8_t>& model_file, const std::vector<uint8_t>& input_bytes,
                 const char* output_path, int repeats, RunResult* result) {
  AlignedModel model_data(model_file);
  if (model_data.data() == nullptr) return Outcome::kBadInput;
  const tflite::Model* model = tflite::GetModel(model_data.data());
  tflite::MicroMutableOpResolver<32> resolver;
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
  resolver.AddCustom("PATCH_STAGE", tflm_patch::Register_PATCH_STAGE());

  // The arena starts filled with kArenaFill, so that a kernel reading memory
  // it never wrote shows up as a different output; TFLM_RUNNER_ARENA_FILL
  // sets another byte (0: a static arena as a device has it at boot; TFLM's
  // own SPACE_TO_BATCH_ND reads a pad value it never sets from there).
  const char* fill = std::getenv("TFLM_RUNNER_ARENA_FILL");
  std::memset(g_arena, fill != nullptr ? std::atoi(fill) & 0xFF : kArenaFill,
              kArenaSize);
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
  if (interpreter.AllocateTensors() != kTfLiteOk) return Outcome::kAllocateFailed;
  TfLiteTensor* input = interpreter.input(0);
  if (input == nullptr || input->bytes != input_bytes.size()) return Outcome::kBadInput;

  // The middle of the arena, neither planned head nor persistent tail: nothing
  // may write there from now on (temporaries of Prepare are gone).
  uint8_t* middle_begin = g_arena + arena->GetNonPersistentUsedBytes();
  uint8_t* middle_end = g_arena + kArenaSize - arena->GetPersistentUsedBytes();
  std::memset(middle_begin, kArenaFill, middle_end > middle_begin ? middle_end - middle_begin : 0);

  double total_us = 0;
  {
    PoisonedRange poisoned(middle_begin, middle_end);
    for (int i = 0; i < (repeats > 0 ? repeats : 1); ++i) {
      // The planner reuses the input's memory once it is dead: set it every time.
      std::memcpy(input->data.raw, input_bytes.data(), input_bytes.size());
      const auto start = std::chrono::steady_clock::now();
      if (interpreter.Invoke() != kTfLiteOk) return Outcome::kInvokeFailed;
      total_us += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    }
  }
  result->arena_intact = Untouched(middle_begin, middle_end);
  FILE* out = std::fopen(output_path, "wb");
  if (out == nullptr) return Outcome::kNoOutput;
  for (size_t i = 0; i < interpreter.outputs_size(); ++i) {
    const TfLiteTensor* t = interpreter.output(i);
    std::fwrite(t->data.raw, 1, t->bytes, out);
  }
  std::fclose(out);
  result->arena_used_bytes = interpreter.arena_used_bytes();
  result->arena_head_bytes = arena->GetNonPersistentUsedBytes();
  result->arena_tail_bytes = arena->GetPersistentUsedBytes();
  result->invoke_us = total_us / (repeats > 0 ? repeats : 1);
  return Outcome::kOk;
}

constexpr int kWatchdogExit = 87;

void OnWatchdog(int) {
  static const char kMessage[] = "tflm_runner: case timed out\n";
  (void)!write(2, kMessage, sizeof(kMessage) - 1);
  _exit(kWatchdogExit);
}

int RunBatch(const char* list_path, unsigned seconds) {
  signal(SIGALRM, OnWatchdog);
  FILE* list = std::fopen(list_path, "r");
  if (list == nullptr) return Fail("cannot read the batch list");
  char model_path[4096], input_path[4096], output_path[4096];
  for (int n = 0; std::fscanf(list, "%4095s %4095s %4095s", model_path, input_path, output_path) == 3; ++n) {
    std::fprintf(stderr, "@@case %d\n", n);
    std::vector<uint8_t> model_file, input_bytes;
    RunResult result;
    Outcome outcome = Outcome::kBadInput;
    if (ReadFile(model_path, &model_file) && ReadFile(input_path, &input_bytes)) {
      alarm(seconds);
      outcome = RunModel(model_file, input_bytes, output_path, 1, &result);
      alarm(0);
    }
    std::printf("case=%d status=%s arena_used_bytes=%zu arena_intact=%d\n", n, OutcomeName(outcome),
                result.arena_used_bytes, result.arena_intact ? 1 : 0);
    std::fflush(stdout);
  }
  std::fclose(list);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "--batch") == 0) {
    return RunBatch(argv[2], argc > 3 ? static_cast<unsigned>(std::atoi(argv[3])) : 60u);
  }
  if (argc < 4) return Fail("usage: tflm_runner MODEL INPUT OUTPUT [REPEATS] | --batch LIST [SECONDS]");
  const int repeats = argc > 4 ? std::atoi(argv[4]) : 1;
  std::vector<uint8_t> model_file, input_bytes;
  if (!ReadFile(argv[1], &model_file)) return Fail("cannot read the model");
  if (!ReadFile(argv[2], &input_bytes)) return Fail("cannot read the input");
  RunResult result;
  switch (RunModel(model_file, input_bytes, argv[3], repeats, &result)) {
    case Outcome::kOk: break;
    case Outcome::kAllocateFailed: return Fail("AllocateTensors failed");
    case Outcome::kInvokeFailed: return Fail("Invoke failed");
    case Outcome::kBadInput: return Fail("input size does not match the model");
    case Outcome::kNoOutput: return Fail("cannot write the output");
  }
  if (!result.arena_intact) return Fail("Invoke wrote to the unused middle of the arena");
  std::printf("arena_used_bytes=%zu\narena_head_bytes=%zu\narena_tail_bytes=%zu\ninvoke_us=%.1f\n",
              result.arena_used_bytes, result.arena_head_bytes, result.arena_tail_bytes, result.invoke_us);
  return 0;
}

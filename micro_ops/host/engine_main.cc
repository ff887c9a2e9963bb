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

// A standalone driver of the host C API, so that the engine can run under
// AddressSanitizer/UBSan in its own process (tflm_patch.native builds it).
//
//   engine_main MANIFEST
//
// The manifest is text, one directive per line:
//   input TYPE NDIMS D0 .. Dn-1 PATH   an op input (TfLiteType code), in order
//   output NDIMS D0 .. Dn-1            the output shape
//   run OPTIONS_PATH                   run the stage with these options
//   write OUTPUT_PATH                  where the next `run` writes its output
//   lead BYTES                         later runs lay the output BYTES before
//                                      input 0, over it, in one allocation
// For every `run` it prints one line: "ok" or "rejected <message>".
// Exit status: 0 when every run was carried out (accepted or rejected),
// 2 on a bad manifest or file; a sanitizer error aborts with its own status.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine_capi.h"

namespace {

bool ReadFile(const char* path, std::vector<uint8_t>* data) {
  FILE* file = std::fopen(path, "rb");
  if (file == nullptr) return false;
  data->clear();
  uint8_t chunk[4096];
  size_t got = 0;
  while ((got = std::fread(chunk, 1, sizeof(chunk), file)) > 0) {
    data->insert(data->end(), chunk, chunk + got);
  }
  const bool ok = std::ferror(file) == 0;
  std::fclose(file);
  return ok;
}

bool WriteFile(const char* path, const int8_t* data, size_t size) {
  FILE* file = std::fopen(path, "wb");
  if (file == nullptr) return false;
  const bool ok = std::fwrite(data, 1, size, file) == size;
  return std::fclose(file) == 0 && ok;
}

// Strips the trailing newline of a manifest line.
void Chomp(char* line) {
  size_t length = std::strlen(line);
  while (length > 0 && (line[length - 1] == '\n' || line[length - 1] == '\r')) {
    line[--length] = '\0';
  }
}

// Parses "NDIMS D0 .. Dn-1" at *cursor; advances the cursor.
bool ParseDims(char** cursor, std::vector<int32_t>* dims, int32_t* ndims) {
  char* end = nullptr;
  const long rank = std::strtol(*cursor, &end, 10);
  if (end == *cursor || rank < 0 || rank > 16) return false;
  *cursor = end;
  for (long i = 0; i < rank; ++i) {
    const long dim = std::strtol(*cursor, &end, 10);
    if (end == *cursor || dim < 0 || dim > INT32_MAX) return false;
    dims->push_back(static_cast<int32_t>(dim));
    *cursor = end;
  }
  *ndims = static_cast<int32_t>(rank);
  return true;
}

char* SkipSpaces(char* text) {
  while (*text == ' ' || *text == '\t') ++text;
  return text;
}

struct Stage {
  std::vector<std::vector<uint8_t>> input_bytes;
  std::vector<int32_t> input_types;
  std::vector<int32_t> input_ndims;
  std::vector<int32_t> input_dims;
  std::vector<int32_t> output_dims;
  int32_t output_ndims = -1;
  bool fused = false;  // a `lead` line was read
  long long lead = 0;
};

int Fail(const char* message, const char* detail) {
  std::fprintf(stderr, "engine_main: %s %s\n", message, detail);
  return 2;
}

size_t OutputElements(const Stage& stage) {
  size_t count = 1;
  for (int32_t dim : stage.output_dims) count *= static_cast<size_t>(dim);
  return count;
}

void RunOnce(const Stage& stage, const std::vector<uint8_t>& options,
             const char* output_path) {
  std::vector<const void*> data;
  for (const auto& bytes : stage.input_bytes) data.push_back(bytes.data());
  std::vector<int8_t> separate(OutputElements(stage) + 1);
  int8_t* output = separate.data();
  // The fused layout: output at `out_at`, input 0 at `in_at`, in exactly
  // the bytes they span.
  std::vector<int8_t> fused;
  if (stage.fused && !stage.input_bytes.empty()) {
    const size_t in_bytes = stage.input_bytes[0].size() - 1;
    const size_t in_at = stage.lead > 0 ? static_cast<size_t>(stage.lead) : 0;
    const size_t out_at = stage.lead < 0 ? static_cast<size_t>(-stage.lead) : 0;
    const size_t out_end = out_at + OutputElements(stage);
    fused.assign(out_end > in_at + in_bytes ? out_end : in_at + in_bytes, 0);
    if (in_bytes > 0) {
      std::memcpy(fused.data() + in_at, stage.input_bytes[0].data(), in_bytes);
    }
    data[0] = fused.data() + in_at;
    output = fused.data() + out_at;
  }
  char error[512];
  const int result = tflm_patch_run_stage(
      options.data(), options.size(),
      static_cast<int32_t>(stage.input_bytes.size()), data.data(),
      stage.input_types.data(), stage.input_ndims.data(),
      stage.input_dims.data(), output, stage.output_ndims,
      stage.output_dims.data(), error, sizeof(error));
  if (result != TFLM_PATCH_OK) {
    std::printf("rejected %s\n", error);
    return;
  }
  if (output_path[0] != '\0' &&
      !WriteFile(output_path, output, OutputElements(stage))) {
    std::printf("rejected cannot write %s\n", output_path);
    return;
  }
  std::printf("ok\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return Fail("usage: engine_main", "MANIFEST");
  FILE* manifest = std::fopen(argv[1], "r");
  if (manifest == nullptr) return Fail("cannot open", argv[1]);
  Stage stage;
  std::vector<char> output_path(1, '\0');
  char line[8192];
  while (std::fgets(line, sizeof(line), manifest) != nullptr) {
    Chomp(line);
    char* cursor = line;
    if (std::strncmp(line, "input ", 6) == 0) {
      cursor += 6;
      char* end = nullptr;
      const long type = std::strtol(cursor, &end, 10);
      if (end == cursor) return Fail("bad input line:", line);
      cursor = end;
      int32_t ndims = 0;
      if (!ParseDims(&cursor, &stage.input_dims, &ndims)) {
        return Fail("bad input dims:", line);
      }
      std::vector<uint8_t> bytes;
      if (!ReadFile(SkipSpaces(cursor), &bytes)) {
        return Fail("cannot read", SkipSpaces(cursor));
      }
      bytes.push_back(0);  // never hand out an empty vector's null data()
      stage.input_bytes.push_back(bytes);
      stage.input_types.push_back(static_cast<int32_t>(type));
      stage.input_ndims.push_back(ndims);
    } else if (std::strncmp(line, "output ", 7) == 0) {
      cursor += 7;
      stage.output_dims.clear();
      if (!ParseDims(&cursor, &stage.output_dims, &stage.output_ndims)) {
        return Fail("bad output line:", line);
      }
    } else if (std::strncmp(line, "lead ", 5) == 0) {
      char* end = nullptr;
      stage.lead = std::strtoll(line + 5, &end, 10);
      if (end == line + 5 || stage.lead < -(1LL << 40) ||
          stage.lead > (1LL << 40)) {
        return Fail("bad lead line:", line);
      }
      stage.fused = true;
    } else if (std::strncmp(line, "write ", 6) == 0) {
      const char* path = SkipSpaces(line + 6);
      output_path.assign(path, path + std::strlen(path) + 1);
    } else if (std::strncmp(line, "run ", 4) == 0) {
      std::vector<uint8_t> options;
      if (!ReadFile(SkipSpaces(line + 4), &options)) {
        return Fail("cannot read", SkipSpaces(line + 4));
      }
      RunOnce(stage, options, output_path.data());
      output_path.assign(1, '\0');
      std::fflush(stdout);
    } else if (line[0] != '\0') {
      return Fail("unknown directive:", line);
    }
  }
  std::fclose(manifest);
  return 0;
}

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

// The portable PATCH_STAGE engine: parses the custom options, validates the
// plan against the op's tensors and runs the stage patch by patch.
// The contract it implements is docs/patch_stage_format.md.
//
// C++17, no heap, no exceptions, no RTTI, no mutable globals, no TFLM
// dependency: every buffer comes from the caller. Typical use:
//
//   ComputePlanMemoryBytes(options, size, &plan_bytes);     // once (Init)
//   ParsePlan(options, size, memory, plan_bytes, &plan);    // once (Init)
//   ValidatePlan(*plan, inputs, output, regions, n, &scratch_bytes);  //
//   Prepare RunStage(*plan, input_data, n, output, scratch, scratch_bytes,
//            regions, n);                                    // Eval
//
// RunStage trusts a plan that ValidatePlan accepted for tensors of the same
// shapes; it performs only cheap pointer and size checks itself.

#ifndef TFLM_PATCH_MICRO_OPS_PATCH_ENGINE_H_
#define TFLM_PATCH_MICRO_OPS_PATCH_ENGINE_H_

#include <cstddef>
#include <cstdint>

namespace tflm_patch {

// The newest options format the engine reads; it reads version 1 too.
constexpr int32_t kPatchStageFormatVersion = 2;
constexpr int32_t kStageInputSource = -1;  // a layer source: the stage input
constexpr int kMaxLayerSources = 2;        // ADD has two, the others one
constexpr int kAddParamCount = 7;
constexpr size_t kPlanMemoryAlignment = 8;  // ParsePlan's memory alignment

// The result of an engine call. `message` is a static string, nullptr on
// success; `key` optionally names the options key concerned (static string or
// nullptr); `layer` is the layer concerned, or -1.
struct Status {
  const char* message;
  const char* key;
  int32_t layer;
  bool ok() const { return message == nullptr; }
};

inline Status OkStatus() { return Status{nullptr, nullptr, -1}; }

enum class LayerOp : int32_t {
  kConv2D = 0,
  kDepthwiseConv2D = 1,
  kAdd = 2,
  kPad = 3,
  kMaxPool2D = 4,
  kAveragePool2D = 5,
};

// An H x W x C image (batch 1).
struct ImageShape {
  int32_t height;
  int32_t width;
  int32_t channels;
};

// A half-open box [y0, y1) x [x0, x1) in an image's own coordinates.
// Empty when y0 >= y1 or x0 >= x1.
struct Region {
  int32_t y0;
  int32_t y1;
  int32_t x0;
  int32_t x1;
};

// ADD's quantization, in the `add_params` order of the options.
struct AddParams {
  int32_t left_shift;
  int32_t input1_multiplier;
  int32_t input1_shift;
  int32_t input2_multiplier;
  int32_t input2_shift;
  int32_t output_multiplier;
  int32_t output_shift;
};

// One layer of the stage, as the options describe it. Fields an op does not
// use keep neutral values (stride/dilation/kernel 1, padding 0, index -1).
struct LayerPlan {
  LayerOp op;
  int32_t num_sources;
  int32_t sources[kMaxLayerSources];  // kStageInputSource or an earlier layer
  ImageShape output_shape;
  int32_t buffer_offset;  // in the scratch area; unused by the last layer
  int32_t buffer_bytes;
  int32_t filter_input;  // op input index of the int8 filter, -1 if none
  int32_t bias_input;    // op input index of the int32 bias, -1 if none
  int32_t kernel_height;
  int32_t kernel_width;
  int32_t stride_height;
  int32_t stride_width;
  int32_t dilation_height;
  int32_t dilation_width;
  int32_t pad_top;
  int32_t pad_left;
  int32_t pad_bottom;
  int32_t pad_right;
  int32_t depth_multiplier;
  int32_t input_zero_point[kMaxLayerSources];
  int32_t output_zero_point;
  int32_t activation_min;
  int32_t activation_max;
  int32_t num_channel_params;        // entries of the two arrays below
  const int32_t* output_multiplier;  // per output channel (conv, dw)
  const int32_t* output_shift;       // per output channel, positive = left
  AddParams add;
  int32_t pad_value;
  // Version 2, all but the last layer, read when the plan's flag is on.
  int32_t row_cache_offset;  // the layer's row cache in the scratch area
  int32_t row_cache_bytes;
  int32_t col_cache_offset;  // its column cache
  int32_t col_cache_bytes;
};

struct HaloCache;  // halo_cache.h

// The parsed options. Everything lives in the caller's plan memory; nothing
// points into the options buffer.
struct StagePlan {
  int32_t num_layers;
  const LayerPlan* layers;
  int32_t num_grid_rows;  // row boundaries: num_grid_rows - 1 tile rows
  const int32_t* grid_rows;
  int32_t num_grid_cols;
  const int32_t* grid_cols;
  ImageShape input_shape;
  int32_t scratch_bytes;
  // The tail of scratch_bytes reserved for the CMSIS-NN workspace (optional
  // key, 0 if absent); layer buffers lie before it.
  int32_t workspace_bytes;
  // Version 2 (0 in version 1): keep halo rows / columns in caches.
  int32_t cache_rows;
  int32_t cache_cols;
  // The cache geometry (in plan memory), nullptr when both flags are 0;
  // ValidatePlan fills it.
  HaloCache* halo;
};

// Bytes of plan memory ParsePlan needs for these options.
Status ComputePlanMemoryBytes(const uint8_t* options, size_t options_bytes,
                              size_t* plan_memory_bytes);

// Parses the options into `plan_memory` (kPlanMemoryAlignment-aligned, at
// least ComputePlanMemoryBytes bytes). `*plan` points into plan_memory.
// Checks the format (keys, types, vector lengths, int32 ranges, version);
// the semantic checks are ValidatePlan's.
Status ParsePlan(const uint8_t* options, size_t options_bytes,
                 void* plan_memory, size_t plan_memory_bytes,
                 const StagePlan** plan);

// Tensor element types the engine distinguishes (values as TfLiteType).
enum class ElementType : int32_t {
  kOther = 0,
  kInt32 = 2,
  kInt8 = 9,
};

constexpr int kMaxTensorDims = 6;

// What ValidatePlan needs to know about one tensor of the op.
struct TensorDesc {
  ElementType type;
  int32_t num_dims;  // > kMaxTensorDims: rejected wherever a shape is checked
  int32_t dims[kMaxTensorDims];
  bool is_constant;
  bool has_zero_point;  // per-tensor zero point known (checked if true)
  int32_t zero_point;
  int32_t num_scales;  // quantization scale count, -1 if unknown
};

// The op's inputs for ValidatePlan: index 0 is the stage input, 1.. are the
// constants. An interface rather than an array so that a kernel can describe
// tensors one at a time without a large temporary array.
class InputTensors {
 public:
  virtual int32_t count() const = 0;
  // Fills `desc` for input `index` (0 <= index < count()); false on failure.
  virtual bool Describe(int32_t index, TensorDesc* desc) const = 0;

 protected:
  ~InputTensors() = default;
};

// InputTensors over a plain array.
class TensorDescArray final : public InputTensors {
 public:
  TensorDescArray(const TensorDesc* descs, int32_t count)
      : descs_(descs), count_(count) {}
  int32_t count() const override { return count_; }
  bool Describe(int32_t index, TensorDesc* desc) const override {
    if (index < 0 || index >= count_) return false;
    *desc = descs_[index];
    return true;
  }

 private:
  const TensorDesc* descs_;
  int32_t count_;
};

// Checks the plan against the op's tensors (docs "What the kernel
// validates"): tensor types, shapes and zero points; every layer's geometry,
// parameters and constants; the grid; the buffers (inside the scratch area,
// no overlap with a live buffer, large enough for every patch's region).
// `regions` is working memory of at least plan.num_layers entries.
// On success `*scratch_bytes` is the scratch size RunStage needs: the plan's
// scratch_bytes; in a CMSIS-NN build whose workspace exceeds the plan's
// reserved workspace_bytes, the workspace is appended after it instead.
Status ValidatePlan(const StagePlan& plan, const InputTensors& inputs,
                    const TensorDesc& output, Region* regions,
                    int32_t num_regions, size_t* scratch_bytes);

// Runs the stage. `input_data[i]` is op input i (0: the stage input, int8
// NHWC; then the constants); `output` is the int8 stage output. `scratch`
// holds exactly the ValidatePlan scratch size (`scratch_bytes`), which also
// tells where the CMSIS-NN workspace is; `regions` is working memory
// of at least plan.num_layers entries. Allocates nothing.
Status RunStage(const StagePlan& plan, const void* const* input_data,
                int32_t num_inputs, int8_t* output, uint8_t* scratch,
                size_t scratch_bytes, Region* regions, int32_t num_regions);

// What `layer` reads of its source image (shape `in_shape`) to compute its
// output region `out`, clipped to the image (docs "Coordinates and regions").
Region LayerInputRegion(const LayerPlan& layer, const Region& out,
                        const ImageShape& in_shape);

// The output region of every layer for one tile of the stage output
// (docs "Coordinates and regions"). Exposed for tests and tools.
void ComputePatchRegions(const StagePlan& plan, const Region& tile,
                         Region* regions);

// True when the engine was built with TFLITE_SINGLE_ROUNDING.
bool UsesSingleRounding();

}  // namespace tflm_patch

#endif  // TFLM_PATCH_MICRO_OPS_PATCH_ENGINE_H_

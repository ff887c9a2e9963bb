// Generated from micro_ops/plan_parser.cc by tools/sync_arduino.py: edit micro_ops/, not this file.
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

#include "plan_parser.h"

#include <limits>
#include <new>

#include "flexbuffer_reader.h"
#include "geometry.h"
#include "halo_cache.h"

namespace tflm_patch {
namespace {

constexpr int32_t kMaxLayers = 1024;

// A bump allocator over the caller's plan memory. With no memory it only
// counts, so that sizing and parsing run the same code.
class PlanMemory {
 public:
  PlanMemory(uint8_t* base, size_t capacity)
      : base_(base), capacity_(capacity) {}

  template <typename T>
  T* AllocateArray(size_t count) {
    const size_t start = AlignUp(used_, kPlanMemoryAlignment);
    if (start < used_ || count > (SIZE_MAX - start) / sizeof(T)) {
      failed_ = true;
      return nullptr;
    }
    used_ = start + count * sizeof(T);
    if (base_ == nullptr) return nullptr;
    if (used_ > capacity_) {
      failed_ = true;
      return nullptr;
    }
    return reinterpret_cast<T*>(base_ + start);
  }

  bool counting() const { return base_ == nullptr; }
  bool failed() const { return failed_; }
  size_t used() const { return used_; }

 private:
  uint8_t* base_;
  size_t capacity_;
  size_t used_ = 0;
  bool failed_ = false;
};

Status FlexError(FlexStatus status, const char* wrong_type_message,
                 const char* key, int32_t layer) {
  switch (status) {
    case FlexStatus::kNotFound:
      return ErrorStatus("missing key", key, layer);
    case FlexStatus::kWrongType:
      return ErrorStatus(wrong_type_message, key, layer);
    case FlexStatus::kOutOfRange:
      return ErrorStatus("integer out of range", key, layer);
    default:
      return ErrorStatus("malformed FlexBuffer", key, layer);
  }
}

Status FindKey(const FlexMap& map, const char* key, int32_t layer,
               FlexRef* value) {
  const FlexStatus status = FlexMapLookup(map, key, value);
  if (status != FlexStatus::kOk) {
    return FlexError(status, "malformed FlexBuffer", key, layer);
  }
  return OkStatus();
}

Status ToInt32(const FlexRef& ref, const char* wrong_type_message,
               const char* key, int32_t layer, int32_t* value) {
  int64_t wide = 0;
  const FlexStatus status = FlexReadInt64(ref, &wide);
  if (status != FlexStatus::kOk) {
    return FlexError(status, wrong_type_message, key, layer);
  }
  if (wide < INT32_MIN || wide > INT32_MAX) {
    return ErrorStatus("integer does not fit int32", key, layer);
  }
  *value = static_cast<int32_t>(wide);
  return OkStatus();
}

Status ReadInt(const FlexMap& map, const char* key, int32_t layer,
               int32_t* value) {
  FlexRef ref;
  TFLM_PATCH_RETURN_IF_ERROR(FindKey(map, key, layer, &ref));
  return ToInt32(ref, "not an integer", key, layer, value);
}

// A key that may be absent: `*value` keeps its default then.
Status ReadOptionalInt(const FlexMap& map, const char* key, int32_t layer,
                       int32_t* value) {
  FlexRef ref;
  const FlexStatus status = FlexMapLookup(map, key, &ref);
  if (status == FlexStatus::kNotFound) return OkStatus();
  if (status != FlexStatus::kOk) {
    return FlexError(status, "malformed FlexBuffer", key, layer);
  }
  return ToInt32(ref, "not an integer", key, layer, value);
}

Status OpenIntVector(const FlexMap& map, const char* key, int32_t layer,
                     FlexVector* vector) {
  FlexRef ref;
  TFLM_PATCH_RETURN_IF_ERROR(FindKey(map, key, layer, &ref));
  const FlexStatus status = FlexReadVector(ref, vector);
  if (status != FlexStatus::kOk) {
    return FlexError(status, "not a vector of integers", key, layer);
  }
  return OkStatus();
}

Status ReadIntElement(const FlexVector& vector, size_t index, const char* key,
                      int32_t layer, int32_t* value) {
  FlexRef element;
  const FlexStatus status = FlexVectorElement(vector, index, &element);
  if (status != FlexStatus::kOk) {
    return FlexError(status, "not a vector of integers", key, layer);
  }
  return ToInt32(element, "not a vector of integers", key, layer, value);
}

// A vector of exactly `length` ints into `values`.
Status ReadFixedInts(const FlexMap& map, const char* key, int32_t layer,
                     size_t length, int32_t* values) {
  FlexVector vector;
  TFLM_PATCH_RETURN_IF_ERROR(OpenIntVector(map, key, layer, &vector));
  if (vector.length != length) {
    return ErrorStatus("vector has the wrong length", key, layer);
  }
  for (size_t i = 0; i < length; ++i) {
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadIntElement(vector, i, key, layer, &values[i]));
  }
  return OkStatus();
}

// A vector of any length of T: read where the options store it when they
// hold it as aligned T (the converter always writes them so,
// docs/patch_stage_format.md), else copied into plan memory (options from
// an older converter, or not aligned in memory). Both ParseOptions passes
// take the same branch, so the counted plan memory is exact. Nothing is
// copied when the memory only counts; the values are checked either way.
template <typename T>
Status ReadArray(const FlexMap& map, const char* key, int32_t layer,
                 PlanMemory* memory, const T** values, int32_t* count) {
  FlexVector vector;
  TFLM_PATCH_RETURN_IF_ERROR(OpenIntVector(map, key, layer, &vector));
  if (vector.length > static_cast<size_t>(INT32_MAX)) {
    return ErrorStatus("vector too long", key, layer);
  }
  *count = static_cast<int32_t>(vector.length);
  const T* in_place = FlexInPlace<T>(vector);
  if (in_place != nullptr) {
    *values = in_place;
    return OkStatus();
  }
  T* copy = memory->AllocateArray<T>(vector.length);
  for (size_t i = 0; i < vector.length; ++i) {
    FlexRef element;
    int64_t value = 0;
    FlexStatus status = FlexVectorElement(vector, i, &element);
    if (status == FlexStatus::kOk) status = FlexReadInt64(element, &value);
    if (status != FlexStatus::kOk) {
      return FlexError(status, "not a vector of integers", key, layer);
    }
    if (value < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
        value > static_cast<int64_t>(std::numeric_limits<T>::max())) {
      return ErrorStatus("vector element out of range", key, layer);
    }
    if (copy != nullptr) copy[i] = static_cast<T>(value);
  }
  *values = copy;
  return OkStatus();
}

Status ReadShape(const FlexMap& map, const char* key, int32_t layer,
                 ImageShape* shape) {
  int32_t dims[3];
  TFLM_PATCH_RETURN_IF_ERROR(ReadFixedInts(map, key, layer, 3, dims));
  *shape = ImageShape{dims[0], dims[1], dims[2]};
  return OkStatus();
}

LayerPlan DefaultLayer() {
  LayerPlan layer = {};  // null vectors, zero counts
  layer.filter_input = -1;
  layer.bias_input = -1;
  layer.kernel_height = layer.kernel_width = 1;
  layer.stride_height = layer.stride_width = 1;
  layer.dilation_height = layer.dilation_width = 1;
  layer.depth_multiplier = 1;
  layer.activation_min = kInt8Min;
  layer.activation_max = kInt8Max;
  return layer;
}

Status ReadPadding(const FlexMap& map, int32_t index, LayerPlan* layer) {
  int32_t padding[4];
  TFLM_PATCH_RETURN_IF_ERROR(ReadFixedInts(map, "padding", index, 4, padding));
  layer->pad_top = padding[0], layer->pad_left = padding[1];
  layer->pad_bottom = padding[2], layer->pad_right = padding[3];
  return OkStatus();
}

Status ReadPair(const FlexMap& map, const char* key, int32_t index,
                int32_t* first, int32_t* second) {
  int32_t pair[2];
  TFLM_PATCH_RETURN_IF_ERROR(ReadFixedInts(map, key, index, 2, pair));
  *first = pair[0];
  *second = pair[1];
  return OkStatus();
}

Status ReadWindowKeys(const FlexMap& map, int32_t index, LayerPlan* layer) {
  TFLM_PATCH_RETURN_IF_ERROR(ReadPair(
      map, "kernel", index, &layer->kernel_height, &layer->kernel_width));
  TFLM_PATCH_RETURN_IF_ERROR(ReadPair(
      map, "stride", index, &layer->stride_height, &layer->stride_width));
  return ReadPadding(map, index, layer);
}

Status ReadFilterKeys(const FlexMap& map, int32_t index, PlanMemory* memory,
                      LayerPlan* layer) {
  TFLM_PATCH_RETURN_IF_ERROR(ReadPair(
      map, "dilation", index, &layer->dilation_height, &layer->dilation_width));
  TFLM_PATCH_RETURN_IF_ERROR(
      ReadInt(map, "filter", index, &layer->filter_input));
  TFLM_PATCH_RETURN_IF_ERROR(ReadInt(map, "bias", index, &layer->bias_input));
  int32_t num_shifts = 0;
  TFLM_PATCH_RETURN_IF_ERROR(ReadArray(map, "multiplier", index, memory,
                                      &layer->output_multiplier,
                                      &layer->num_channel_params));
  TFLM_PATCH_RETURN_IF_ERROR(
      ReadArray(map, "shift", index, memory, &layer->output_shift, &num_shifts));
  if (num_shifts != layer->num_channel_params) {
    return ErrorStatus("multiplier and shift have different lengths", "shift",
                       index);
  }
  return OkStatus();
}

// A per-source vector (`inputs`, `in_zp`) of `*count` int32, read in place
// like the other int32 vectors (ReadArray). `*count` 0: CONCATENATION's
// `inputs`, 2 to kMaxLayerSources, whose length it returns.
Status ReadSourceArray(const FlexMap& map, const char* key, int32_t index,
                       PlanMemory* memory, int32_t* count,
                       const int32_t** values) {
  FlexVector vector;
  TFLM_PATCH_RETURN_IF_ERROR(OpenIntVector(map, key, index, &vector));
  if (*count == 0) {
    if (vector.length < 2 ||
        vector.length > static_cast<size_t>(kMaxLayerSources)) {
      return ErrorStatus("CONCATENATION needs 2 to 10 inputs", key, index);
    }
    *count = static_cast<int32_t>(vector.length);
  }
  if (vector.length != static_cast<size_t>(*count)) {
    return ErrorStatus("vector has the wrong length", key, index);
  }
  int32_t read = 0;
  return ReadArray(map, key, index, memory, values, &read);
}

// input_type (QUANTIZE) and act_params (every pointwise op but RELU6).
Status ReadPointwiseKeys(const FlexMap& map, int32_t index, LayerPlan* layer) {
  layer->pointwise = PointwiseParams{kInputInt8, 0, {0, 0, 0, 0}};
  if (layer->op == LayerOp::kQuantize) {
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadInt(map, "input_type", index, &layer->pointwise.input_type));
    if (layer->pointwise.input_type != kInputFloat32 &&
        layer->pointwise.input_type != kInputUInt8) {
      return ErrorStatus("QUANTIZE input_type is neither float32 nor uint8",
                         "input_type", index);
    }
  }
  layer->pointwise.num_params =
      ActParamCount(layer->op, layer->pointwise.input_type);
  if (layer->pointwise.num_params == 0) return OkStatus();
  return ReadFixedInts(map, "act_params", index,
                       static_cast<size_t>(layer->pointwise.num_params),
                       layer->pointwise.params);
}

Status ParseLayer(const FlexMap& map, int32_t index, bool is_last,
                  PlanMemory* memory, LayerPlan* layer) {
  *layer = DefaultLayer();
  int32_t op = 0;
  TFLM_PATCH_RETURN_IF_ERROR(ReadInt(map, "op", index, &op));
  if (!IsKnownOp(op)) return ErrorStatus("unknown layer op", "op", index);
  layer->op = static_cast<LayerOp>(op);
  layer->num_sources = HasTwoSources(layer->op) ? 2 : 1;
  if (layer->op == LayerOp::kConcatenation) layer->num_sources = 0;  // 2-10
  TFLM_PATCH_RETURN_IF_ERROR(ReadSourceArray(
      map, "inputs", index, memory, &layer->num_sources, &layer->sources));
  TFLM_PATCH_RETURN_IF_ERROR(
      ReadShape(map, "out_shape", index, &layer->output_shape));
  if (!is_last) {
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadInt(map, "buffer_offset", index, &layer->buffer_offset));
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadInt(map, "buffer_bytes", index, &layer->buffer_bytes));
  }
  int32_t zp_count = layer->num_sources;
  TFLM_PATCH_RETURN_IF_ERROR(ReadSourceArray(
      map, "in_zp", index, memory, &zp_count, &layer->input_zero_point));
  TFLM_PATCH_RETURN_IF_ERROR(
      ReadInt(map, "out_zp", index, &layer->output_zero_point));
  if (layer->op == LayerOp::kPad) {
    TFLM_PATCH_RETURN_IF_ERROR(ReadPadding(map, index, layer));
    return ReadInt(map, "pad_value", index, &layer->pad_value);
  }
  if (layer->op == LayerOp::kConcatenation) return OkStatus();  // no act
  if (layer->op == LayerOp::kResizeNearestNeighbor) {
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadInt(map, "align_corners", index, &layer->align_corners));
    return ReadInt(map, "half_pixel_centers", index,
                   &layer->half_pixel_centers);
  }
  TFLM_PATCH_RETURN_IF_ERROR(ReadPair(map, "act", index, &layer->activation_min,
                                      &layer->activation_max));
  if (IsWindowOp(layer->op)) {
    TFLM_PATCH_RETURN_IF_ERROR(ReadWindowKeys(map, index, layer));
  }
  if (HasFilter(layer->op)) {
    TFLM_PATCH_RETURN_IF_ERROR(ReadFilterKeys(map, index, memory, layer));
  }
  if (layer->op == LayerOp::kDepthwiseConv2D) {
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadInt(map, "depth_multiplier", index, &layer->depth_multiplier));
  }
  if (layer->op == LayerOp::kAdd || layer->op == LayerOp::kAddConst ||
      layer->op == LayerOp::kSubConst) {
    int32_t p[kAddParamCount];
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadFixedInts(map, "add_params", index, kAddParamCount, p));
    layer->add = AddParams{p[0], p[1], p[2], p[3], p[4], p[5], p[6]};
  }
  if (layer->op == LayerOp::kMul || layer->op == LayerOp::kMulConst) {
    TFLM_PATCH_RETURN_IF_ERROR(ReadPair(map, "mul_params", index,
                                        &layer->add.output_multiplier,
                                        &layer->add.output_shift));
  }
  if (HasConstantOperand(layer->op)) {
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadInt(map, "constant", index, &layer->filter_input));
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadInt(map, "const_zp", index, &layer->const_zero_point));
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadInt(map, "const_count", index, &layer->num_channel_params));
  }
  if (IsActivationOp(layer->op)) return ReadPointwiseKeys(map, index, layer);
  return OkStatus();
}

// Version 2: a layer's cache keys, for each flag that is on (all but the
// last layer).
Status ReadCacheKeys(const FlexMap& map, int32_t index, const StagePlan& plan,
                     LayerPlan* layer) {
  if (plan.cache_rows != 0) {
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadInt(map, "row_cache_offset", index, &layer->row_cache_offset));
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadInt(map, "row_cache_bytes", index, &layer->row_cache_bytes));
  }
  if (plan.cache_cols != 0) {
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadInt(map, "col_cache_offset", index, &layer->col_cache_offset));
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadInt(map, "col_cache_bytes", index, &layer->col_cache_bytes));
  }
  return OkStatus();
}

Status ParseLayers(const FlexMap& root, PlanMemory* memory, StagePlan* plan) {
  FlexRef ref;
  TFLM_PATCH_RETURN_IF_ERROR(FindKey(root, "layers", -1, &ref));
  FlexVector vector;
  if (FlexReadVector(ref, &vector) != FlexStatus::kOk ||
      !vector.has_type_table) {
    return ErrorStatus("not a vector of maps", "layers");
  }
  if (vector.length == 0) return ErrorStatus("no layers", "layers");
  if (vector.length > static_cast<size_t>(kMaxLayers)) {
    return ErrorStatus("too many layers", "layers");
  }
  const int32_t num_layers = static_cast<int32_t>(vector.length);
  LayerPlan* layers = memory->AllocateArray<LayerPlan>(vector.length);
  for (int32_t i = 0; i < num_layers; ++i) {
    FlexRef element;
    FlexMap layer_map;
    if (FlexVectorElement(vector, static_cast<size_t>(i), &element) !=
            FlexStatus::kOk ||
        FlexReadMap(element, &layer_map) != FlexStatus::kOk) {
      return ErrorStatus("layer is not a map", "layers", i);
    }
    LayerPlan layer;
    TFLM_PATCH_RETURN_IF_ERROR(
        ParseLayer(layer_map, i, i == num_layers - 1, memory, &layer));
    if (i < num_layers - 1) {
      TFLM_PATCH_RETURN_IF_ERROR(ReadCacheKeys(layer_map, i, *plan, &layer));
    }
    if (layers != nullptr) new (&layers[i]) LayerPlan(layer);
  }
  plan->layers = layers;
  plan->num_layers = num_layers;
  return OkStatus();
}

Status ParseOptions(const uint8_t* options, size_t options_bytes,
                    PlanMemory* memory, const StagePlan** plan_out) {
  FlexRef root;
  FlexMap root_map;
  if (FlexGetRoot(options, options_bytes, &root) != FlexStatus::kOk ||
      FlexReadMap(root, &root_map) != FlexStatus::kOk) {
    return ErrorStatus("options are not a FlexBuffer map");
  }
  int32_t version = 0;
  TFLM_PATCH_RETURN_IF_ERROR(ReadInt(root_map, "version", -1, &version));
  if (version != 1 && version != kPatchStageFormatVersion) {
    return ErrorStatus("unsupported options format version", "version");
  }
  StagePlan plan = {};
  if (version >= 2) {
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadOptionalInt(root_map, "cache_rows", -1, &plan.cache_rows));
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadOptionalInt(root_map, "cache_cols", -1, &plan.cache_cols));
  }
  TFLM_PATCH_RETURN_IF_ERROR(
      ReadShape(root_map, "input_shape", -1, &plan.input_shape));
  TFLM_PATCH_RETURN_IF_ERROR(
      ReadInt(root_map, "scratch_bytes", -1, &plan.scratch_bytes));
  plan.workspace_bytes = 0;
  TFLM_PATCH_RETURN_IF_ERROR(
      ReadOptionalInt(root_map, "workspace_bytes", -1, &plan.workspace_bytes));
  TFLM_PATCH_RETURN_IF_ERROR(ReadArray(root_map, "grid_rows", -1, memory,
                                      &plan.grid_rows, &plan.num_grid_rows));
  TFLM_PATCH_RETURN_IF_ERROR(ReadArray(root_map, "grid_cols", -1, memory,
                                      &plan.grid_cols, &plan.num_grid_cols));
  TFLM_PATCH_RETURN_IF_ERROR(ParseLayers(root_map, memory, &plan));
  bool halo_too_large = false;
  const size_t halo_bytes = HaloCacheMemoryBytes(plan, &halo_too_large);
  if (halo_too_large) return ErrorStatus("too many cached tiles", "grid_rows");
  if (halo_bytes > 0) {
    uint8_t* halo = memory->AllocateArray<uint8_t>(halo_bytes);
    if (halo != nullptr) plan.halo = PlaceHaloCache(plan, halo);
  }
  StagePlan* stored = memory->AllocateArray<StagePlan>(1);
  if (memory->failed()) return ErrorStatus("plan memory too small");
  if (stored != nullptr) {
    new (stored) StagePlan(plan);
    *plan_out = stored;
  }
  return OkStatus();
}

}  // namespace

Status ComputePlanMemoryBytes(const uint8_t* options, size_t options_bytes,
                              size_t* plan_memory_bytes) {
  PlanMemory counter(nullptr, 0);
  const StagePlan* unused = nullptr;
  TFLM_PATCH_RETURN_IF_ERROR(
      ParseOptions(options, options_bytes, &counter, &unused));
  *plan_memory_bytes = AlignUp(counter.used(), kPlanMemoryAlignment);
  return OkStatus();
}

Status ParsePlan(const uint8_t* options, size_t options_bytes,
                 void* plan_memory, size_t plan_memory_bytes,
                 const StagePlan** plan) {
  if (plan_memory == nullptr ||
      reinterpret_cast<uintptr_t>(plan_memory) % kPlanMemoryAlignment != 0) {
    return ErrorStatus("plan memory missing or misaligned");
  }
  PlanMemory memory(static_cast<uint8_t*>(plan_memory), plan_memory_bytes);
  return ParseOptions(options, options_bytes, &memory, plan);
}

}  // namespace tflm_patch

// Generated from micro_ops/patch_engine.cc by tools/sync_arduino.py: edit micro_ops/, not this file.
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

#include "patch_engine.h"

#include <new>

#include "cmsis_nn_layers.h"
#include "flexbuffer_reader.h"
#include "halo_cache.h"
#include "image_view.h"

#define TFLM_PATCH_RETURN_IF_ERROR(expr)         \
  do {                                           \
    const ::tflm_patch::Status status_ = (expr); \
    if (!status_.ok()) return status_;           \
  } while (0)

namespace tflm_patch {
namespace {

constexpr int32_t kInt8Min = -128;
constexpr int32_t kInt8Max = 127;
constexpr int32_t kMaxLayers = 1024;
// Kernel sizes, strides, dilations and paddings above this are rejected; it
// keeps every region computation far from overflow.
constexpr int32_t kMaxWindowParam = 1 << 16;
constexpr int32_t kMaxAddLeftShift = 22;  // (255 << 22) * 2 still fits int32
// Image heights and widths above this are rejected, so that every coordinate
// computation (padded sizes, dilated taps) stays far from int32 overflow.
constexpr int32_t kMaxImageSide = 1 << 20;

Status Error(const char* message, const char* key = nullptr,
             int32_t layer = -1) {
  return Status{message, key, layer};
}

// ---------------------------------------------------------------------------
// Integer arithmetic, bit-exact with TFLite's common.h / gemmlowp.
// ---------------------------------------------------------------------------

// int32 addition that wraps instead of being undefined on overflow (TFLM's
// reference kernels overflow the same way in practice).
inline int32_t WrappingAdd(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) +
                              static_cast<uint32_t>(b));
}

inline int32_t SaturatingRoundingDoublingHighMul(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  const int64_t product = static_cast<int64_t>(a) * static_cast<int64_t>(b);
  const int64_t nudge =
      product >= 0 ? (int64_t{1} << 30) : (int64_t{1} - (int64_t{1} << 30));
  // Division truncates toward zero, as in gemmlowp.
  return static_cast<int32_t>((product + nudge) / (int64_t{1} << 31));
}

inline int32_t RoundingDivideByPOT(int32_t x, int exponent) {
  const int32_t mask = static_cast<int32_t>((int64_t{1} << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

#if defined(TFLITE_SINGLE_ROUNDING) && TFLITE_SINGLE_ROUNDING
constexpr bool kSingleRounding = true;

// Requires multiplier >= 0 and -31 <= shift <= 30 (ValidatePlan checks).
inline int32_t MultiplyByQuantizedMultiplier(int32_t x, int32_t multiplier,
                                             int shift) {
  const int total_shift = 31 - shift;
  const int64_t round = int64_t{1} << (total_shift - 1);
  const int64_t result =
      static_cast<int64_t>(x) * static_cast<int64_t>(multiplier) + round;
  return static_cast<int32_t>(result >> total_shift);
}

inline int32_t MultiplyByQuantizedMultiplierSmallerThanOneExp(
    int32_t x, int32_t multiplier, int shift) {
  return MultiplyByQuantizedMultiplier(x, multiplier, shift);
}
#else
constexpr bool kSingleRounding = false;

// Requires -31 <= shift <= 30 (ValidatePlan checks).
inline int32_t MultiplyByQuantizedMultiplier(int32_t x, int32_t multiplier,
                                             int shift) {
  const int left_shift = shift > 0 ? shift : 0;
  const int right_shift = shift > 0 ? 0 : -shift;
  // x * (1 << left_shift), wrapping like int32.
  const int32_t shifted =
      static_cast<int32_t>(static_cast<uint32_t>(x) << left_shift);
  return RoundingDivideByPOT(
      SaturatingRoundingDoublingHighMul(shifted, multiplier), right_shift);
}

inline int32_t MultiplyByQuantizedMultiplierSmallerThanOneExp(
    int32_t x, int32_t multiplier, int left_shift) {
  return RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, multiplier),
                             -left_shift);
}
#endif  // TFLITE_SINGLE_ROUNDING

inline int32_t Clamp(int32_t value, int32_t low, int32_t high) {
  return value < low ? low : (value > high ? high : value);
}

inline int64_t Max64(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t Min64(int64_t a, int64_t b) { return a < b ? a : b; }

// ---------------------------------------------------------------------------
// Regions.
// ---------------------------------------------------------------------------

constexpr Region kEmptyRegion = {0, 0, 0, 0};

inline bool IsEmpty(const Region& r) { return r.y0 >= r.y1 || r.x0 >= r.x1; }

inline int64_t RegionArea(const Region& r) {
  return IsEmpty(r) ? 0 : static_cast<int64_t>(r.y1 - r.y0) * (r.x1 - r.x0);
}

Region RegionUnion(const Region& a, const Region& b) {
  if (IsEmpty(a)) return b;
  if (IsEmpty(b)) return a;
  return Region{a.y0 < b.y0 ? a.y0 : b.y0, a.y1 > b.y1 ? a.y1 : b.y1,
                a.x0 < b.x0 ? a.x0 : b.x0, a.x1 > b.x1 ? a.x1 : b.x1};
}

bool IsWindowed(LayerOp op) {
  return op == LayerOp::kConv2D || op == LayerOp::kDepthwiseConv2D ||
         op == LayerOp::kMaxPool2D || op == LayerOp::kAveragePool2D;
}

bool HasFilter(LayerOp op) {
  return op == LayerOp::kConv2D || op == LayerOp::kDepthwiseConv2D;
}

ImageShape SourceShape(const StagePlan& plan, int32_t source) {
  return source == kStageInputSource ? plan.input_shape
                                     : plan.layers[source].output_shape;
}

// The input rows [*begin, *end) a window op reads for output rows
// [out_begin, out_end), clipped to the input image [0, in_size).
void WindowInputSpan(int32_t out_begin, int32_t out_end, int32_t stride,
                     int32_t pad, int32_t kernel, int32_t dilation,
                     int32_t in_size, int32_t* begin, int32_t* end) {
  const int64_t first = static_cast<int64_t>(out_begin) * stride - pad;
  const int64_t last = static_cast<int64_t>(out_end - 1) * stride - pad +
                       static_cast<int64_t>(kernel - 1) * dilation + 1;
  *begin = static_cast<int32_t>(Max64(0, Min64(first, in_size)));
  *end = static_cast<int32_t>(Max64(0, Min64(last, in_size)));
}

// What `layer` reads from a source of shape `in_shape` to produce `out`.
Region InputRegion(const LayerPlan& layer, const Region& out,
                   const ImageShape& in_shape) {
  if (IsEmpty(out)) return kEmptyRegion;
  Region in = kEmptyRegion;
  switch (layer.op) {
    case LayerOp::kAdd:
      return out;
    case LayerOp::kPad:
      in.y0 = static_cast<int32_t>(Max64(0, int64_t{out.y0} - layer.pad_top));
      in.y1 = static_cast<int32_t>(
          Min64(in_shape.height, int64_t{out.y1} - layer.pad_top));
      in.x0 = static_cast<int32_t>(Max64(0, int64_t{out.x0} - layer.pad_left));
      in.x1 = static_cast<int32_t>(
          Min64(in_shape.width, int64_t{out.x1} - layer.pad_left));
      break;
    default:
      WindowInputSpan(out.y0, out.y1, layer.stride_height, layer.pad_top,
                      layer.kernel_height, layer.dilation_height,
                      in_shape.height, &in.y0, &in.y1);
      WindowInputSpan(out.x0, out.x1, layer.stride_width, layer.pad_left,
                      layer.kernel_width, layer.dilation_width, in_shape.width,
                      &in.x0, &in.x1);
      break;
  }
  return IsEmpty(in) ? kEmptyRegion : in;
}

// ---------------------------------------------------------------------------
// Options parsing.
// ---------------------------------------------------------------------------

size_t AlignUp(size_t value, size_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

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
      return Error("missing key", key, layer);
    case FlexStatus::kWrongType:
      return Error(wrong_type_message, key, layer);
    case FlexStatus::kOutOfRange:
      return Error("integer out of range", key, layer);
    default:
      return Error("malformed FlexBuffer", key, layer);
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
    return Error("integer does not fit int32", key, layer);
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
    return Error("vector has the wrong length", key, layer);
  }
  for (size_t i = 0; i < length; ++i) {
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadIntElement(vector, i, key, layer, &values[i]));
  }
  return OkStatus();
}

// A vector of any length, copied into plan memory (nothing is copied when
// the memory only counts; the values are checked either way).
Status CopyInts(const FlexMap& map, const char* key, int32_t layer,
                PlanMemory* memory, const int32_t** values, int32_t* count) {
  FlexVector vector;
  TFLM_PATCH_RETURN_IF_ERROR(OpenIntVector(map, key, layer, &vector));
  if (vector.length > static_cast<size_t>(INT32_MAX)) {
    return Error("vector too long", key, layer);
  }
  int32_t* copy = memory->AllocateArray<int32_t>(vector.length);
  for (size_t i = 0; i < vector.length; ++i) {
    int32_t value = 0;
    TFLM_PATCH_RETURN_IF_ERROR(ReadIntElement(vector, i, key, layer, &value));
    if (copy != nullptr) copy[i] = value;
  }
  *values = copy;
  *count = static_cast<int32_t>(vector.length);
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
  LayerPlan layer = {};
  layer.sources[0] = layer.sources[1] = kStageInputSource;
  layer.filter_input = -1;
  layer.bias_input = -1;
  layer.kernel_height = layer.kernel_width = 1;
  layer.stride_height = layer.stride_width = 1;
  layer.dilation_height = layer.dilation_width = 1;
  layer.depth_multiplier = 1;
  layer.activation_min = kInt8Min;
  layer.activation_max = kInt8Max;
  layer.output_multiplier = nullptr;
  layer.output_shift = nullptr;
  return layer;
}

Status ReadPadding(const FlexMap& map, int32_t index, LayerPlan* layer) {
  int32_t padding[4];
  TFLM_PATCH_RETURN_IF_ERROR(ReadFixedInts(map, "padding", index, 4, padding));
  layer->pad_top = padding[0];
  layer->pad_left = padding[1];
  layer->pad_bottom = padding[2];
  layer->pad_right = padding[3];
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
  TFLM_PATCH_RETURN_IF_ERROR(CopyInts(map, "multiplier", index, memory,
                                      &layer->output_multiplier,
                                      &layer->num_channel_params));
  TFLM_PATCH_RETURN_IF_ERROR(
      CopyInts(map, "shift", index, memory, &layer->output_shift, &num_shifts));
  if (num_shifts != layer->num_channel_params) {
    return Error("multiplier and shift have different lengths", "shift", index);
  }
  return OkStatus();
}

Status ParseLayer(const FlexMap& map, int32_t index, bool is_last,
                  PlanMemory* memory, LayerPlan* layer) {
  *layer = DefaultLayer();
  int32_t op = 0;
  TFLM_PATCH_RETURN_IF_ERROR(ReadInt(map, "op", index, &op));
  if (op < static_cast<int32_t>(LayerOp::kConv2D) ||
      op > static_cast<int32_t>(LayerOp::kAveragePool2D)) {
    return Error("unknown layer op", "op", index);
  }
  layer->op = static_cast<LayerOp>(op);
  layer->num_sources = layer->op == LayerOp::kAdd ? 2 : 1;
  TFLM_PATCH_RETURN_IF_ERROR(
      ReadFixedInts(map, "inputs", index, layer->num_sources, layer->sources));
  TFLM_PATCH_RETURN_IF_ERROR(
      ReadShape(map, "out_shape", index, &layer->output_shape));
  if (!is_last) {
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadInt(map, "buffer_offset", index, &layer->buffer_offset));
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadInt(map, "buffer_bytes", index, &layer->buffer_bytes));
  }
  TFLM_PATCH_RETURN_IF_ERROR(ReadFixedInts(
      map, "in_zp", index, layer->num_sources, layer->input_zero_point));
  TFLM_PATCH_RETURN_IF_ERROR(
      ReadInt(map, "out_zp", index, &layer->output_zero_point));
  if (layer->op == LayerOp::kPad) {
    TFLM_PATCH_RETURN_IF_ERROR(ReadPadding(map, index, layer));
    return ReadInt(map, "pad_value", index, &layer->pad_value);
  }
  TFLM_PATCH_RETURN_IF_ERROR(ReadPair(map, "act", index, &layer->activation_min,
                                      &layer->activation_max));
  if (IsWindowed(layer->op)) {
    TFLM_PATCH_RETURN_IF_ERROR(ReadWindowKeys(map, index, layer));
  }
  if (HasFilter(layer->op)) {
    TFLM_PATCH_RETURN_IF_ERROR(ReadFilterKeys(map, index, memory, layer));
  }
  if (layer->op == LayerOp::kDepthwiseConv2D) {
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadInt(map, "depth_multiplier", index, &layer->depth_multiplier));
  }
  if (layer->op == LayerOp::kAdd) {
    int32_t p[kAddParamCount];
    TFLM_PATCH_RETURN_IF_ERROR(
        ReadFixedInts(map, "add_params", index, kAddParamCount, p));
    layer->add = AddParams{p[0], p[1], p[2], p[3], p[4], p[5], p[6]};
  }
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
    return Error("not a vector of maps", "layers");
  }
  if (vector.length == 0) return Error("no layers", "layers");
  if (vector.length > static_cast<size_t>(kMaxLayers)) {
    return Error("too many layers", "layers");
  }
  const int32_t num_layers = static_cast<int32_t>(vector.length);
  LayerPlan* layers = memory->AllocateArray<LayerPlan>(vector.length);
  for (int32_t i = 0; i < num_layers; ++i) {
    FlexRef element;
    FlexMap layer_map;
    if (FlexVectorElement(vector, static_cast<size_t>(i), &element) !=
            FlexStatus::kOk ||
        FlexReadMap(element, &layer_map) != FlexStatus::kOk) {
      return Error("layer is not a map", "layers", i);
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
    return Error("options are not a FlexBuffer map");
  }
  int32_t version = 0;
  TFLM_PATCH_RETURN_IF_ERROR(ReadInt(root_map, "version", -1, &version));
  if (version != 1 && version != kPatchStageFormatVersion) {
    return Error("unsupported options format version", "version");
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
  TFLM_PATCH_RETURN_IF_ERROR(CopyInts(root_map, "grid_rows", -1, memory,
                                      &plan.grid_rows, &plan.num_grid_rows));
  TFLM_PATCH_RETURN_IF_ERROR(CopyInts(root_map, "grid_cols", -1, memory,
                                      &plan.grid_cols, &plan.num_grid_cols));
  TFLM_PATCH_RETURN_IF_ERROR(ParseLayers(root_map, memory, &plan));
  bool halo_too_large = false;
  const size_t halo_bytes = HaloCacheMemoryBytes(plan, &halo_too_large);
  if (halo_too_large) return Error("too many cached tiles", "grid_rows");
  if (halo_bytes > 0) {
    uint8_t* halo = memory->AllocateArray<uint8_t>(halo_bytes);
    if (halo != nullptr) plan.halo = PlaceHaloCache(plan, halo);
  }
  StagePlan* stored = memory->AllocateArray<StagePlan>(1);
  if (memory->failed()) return Error("plan memory too small");
  if (stored != nullptr) {
    new (stored) StagePlan(plan);
    *plan_out = stored;
  }
  return OkStatus();
}

// ---------------------------------------------------------------------------
// Validation.
// ---------------------------------------------------------------------------

bool IsInt8(int32_t value) { return value >= kInt8Min && value <= kInt8Max; }

Status ValidateImageShape(const ImageShape& shape, const char* key,
                          int32_t layer) {
  if (shape.height <= 0 || shape.width <= 0 || shape.channels <= 0) {
    return Error("image dimensions must be positive", key, layer);
  }
  if (shape.height > kMaxImageSide || shape.width > kMaxImageSide) {
    return Error("image too large", key, layer);
  }
  const int64_t elements =
      static_cast<int64_t>(shape.height) * shape.width * shape.channels;
  if (elements > INT32_MAX) return Error("image too large", key, layer);
  return OkStatus();
}

bool SameShape(const ImageShape& a, const ImageShape& b) {
  return a.height == b.height && a.width == b.width && a.channels == b.channels;
}

// An int8 [1, H, W, C] tensor.
bool IsImageTensor(const TensorDesc& tensor, const ImageShape& shape) {
  return tensor.type == ElementType::kInt8 && tensor.num_dims == 4 &&
         tensor.dims[0] == 1 && tensor.dims[1] == shape.height &&
         tensor.dims[2] == shape.width && tensor.dims[3] == shape.channels;
}

// Input 0 against input_shape (before the layers, whose shapes derive from it).
Status ValidateStageInput(const StagePlan& plan, const InputTensors& inputs) {
  TFLM_PATCH_RETURN_IF_ERROR(
      ValidateImageShape(plan.input_shape, "input_shape", -1));
  TensorDesc input = {};
  if (inputs.count() < 1 || !inputs.Describe(0, &input)) {
    return Error("the op has no stage input");
  }
  if (!IsImageTensor(input, plan.input_shape)) {
    return Error(
        "stage input is not an int8 [1, H, W, C] tensor of "
        "input_shape",
        "input_shape");
  }
  if (!input.has_zero_point) return OkStatus();
  for (int32_t i = 0; i < plan.num_layers; ++i) {
    const LayerPlan& layer = plan.layers[i];
    for (int32_t s = 0; s < layer.num_sources; ++s) {
      if (layer.sources[s] == kStageInputSource &&
          layer.input_zero_point[s] != input.zero_point) {
        return Error("stage input zero point differs from in_zp", "in_zp", i);
      }
    }
  }
  return OkStatus();
}

Status ValidateStageOutput(const StagePlan& plan, const TensorDesc& output) {
  const LayerPlan& last = plan.layers[plan.num_layers - 1];
  if (!IsImageTensor(output, last.output_shape)) {
    return Error(
        "stage output is not an int8 [1, H, W, C] tensor of the last "
        "layer's out_shape",
        "out_shape", plan.num_layers - 1);
  }
  if (output.has_zero_point && output.zero_point != last.output_zero_point) {
    return Error(
        "stage output zero point differs from the last layer's "
        "out_zp",
        "out_zp", plan.num_layers - 1);
  }
  return OkStatus();
}

Status ValidateSources(const LayerPlan& layer, int32_t index) {
  for (int32_t s = 0; s < layer.num_sources; ++s) {
    if (layer.sources[s] < kStageInputSource || layer.sources[s] >= index) {
      return Error("a layer source must be -1 or an earlier layer", "inputs",
                   index);
    }
  }
  return OkStatus();
}

Status ValidateQuantization(const LayerPlan& layer, int32_t index) {
  for (int32_t s = 0; s < layer.num_sources; ++s) {
    if (!IsInt8(layer.input_zero_point[s])) {
      return Error("zero point outside int8", "in_zp", index);
    }
  }
  if (!IsInt8(layer.output_zero_point)) {
    return Error("zero point outside int8", "out_zp", index);
  }
  if (layer.op == LayerOp::kPad) {
    return IsInt8(layer.pad_value)
               ? OkStatus()
               : Error("pad value outside int8", "pad_value", index);
  }
  if (!IsInt8(layer.activation_min) || !IsInt8(layer.activation_max) ||
      layer.activation_min > layer.activation_max) {
    return Error("activation range is not an int8 range", "act", index);
  }
  return OkStatus();
}

bool InRange(int32_t value, int32_t low, int32_t high) {
  return value >= low && value <= high;
}

// The output size of a window op along one axis, or -1 if the window
// parameters are invalid. Every window must touch the image (padding smaller
// than the dilated kernel), as TFLite's SAME/VALID paddings always do.
int64_t WindowOutputSize(int32_t in_size, int32_t kernel, int32_t stride,
                         int32_t dilation, int32_t pad_before,
                         int32_t pad_after) {
  if (!InRange(kernel, 1, kMaxWindowParam) ||
      !InRange(stride, 1, kMaxWindowParam) ||
      !InRange(dilation, 1, kMaxWindowParam)) {
    return -1;
  }
  const int64_t effective = static_cast<int64_t>(kernel - 1) * dilation + 1;
  if (pad_before < 0 || pad_after < 0 || pad_before >= effective ||
      pad_after >= effective) {
    return -1;
  }
  const int64_t padded = int64_t{in_size} + pad_before + pad_after;
  if (padded < effective) return -1;
  return (padded - effective) / stride + 1;
}

Status ValidateWindowGeometry(const LayerPlan& layer, int32_t index,
                              const ImageShape& in) {
  const int64_t out_height =
      WindowOutputSize(in.height, layer.kernel_height, layer.stride_height,
                       layer.dilation_height, layer.pad_top, layer.pad_bottom);
  const int64_t out_width =
      WindowOutputSize(in.width, layer.kernel_width, layer.stride_width,
                       layer.dilation_width, layer.pad_left, layer.pad_right);
  if (out_height < 0 || out_width < 0) {
    return Error("invalid kernel, stride, dilation or padding", "padding",
                 index);
  }
  if (out_height != layer.output_shape.height ||
      out_width != layer.output_shape.width) {
    return Error("out_shape is not what the window geometry gives", "out_shape",
                 index);
  }
  return OkStatus();
}

Status ValidatePadGeometry(const LayerPlan& layer, int32_t index,
                           const ImageShape& in) {
  const int32_t pads[4] = {layer.pad_top, layer.pad_left, layer.pad_bottom,
                           layer.pad_right};
  for (int32_t pad : pads) {
    if (!InRange(pad, 0, kMaxWindowParam)) {
      return Error("invalid padding", "padding", index);
    }
  }
  const ImageShape expected = {in.height + layer.pad_top + layer.pad_bottom,
                               in.width + layer.pad_left + layer.pad_right,
                               in.channels};
  if (!SameShape(expected, layer.output_shape)) {
    return Error("out_shape is not the padded input shape", "out_shape", index);
  }
  return OkStatus();
}

Status ValidateChannels(const LayerPlan& layer, int32_t index,
                        const ImageShape& in) {
  const int32_t out_channels = layer.output_shape.channels;
  if (layer.op == LayerOp::kDepthwiseConv2D) {
    if (layer.depth_multiplier < 1 ||
        static_cast<int64_t>(in.channels) * layer.depth_multiplier !=
            out_channels) {
      return Error(
          "output channels are not input channels times "
          "depth_multiplier",
          "depth_multiplier", index);
    }
  } else if (layer.op != LayerOp::kConv2D && in.channels != out_channels) {
    return Error("output channels differ from input channels", "out_shape",
                 index);
  }
  return OkStatus();
}

Status ValidateChannelParams(const LayerPlan& layer, int32_t index) {
  if (layer.num_channel_params != layer.output_shape.channels) {
    return Error("need one multiplier and shift per output channel",
                 "multiplier", index);
  }
  for (int32_t c = 0; c < layer.num_channel_params; ++c) {
    if (layer.output_multiplier[c] < 0) {
      return Error("negative multiplier", "multiplier", index);
    }
    if (!InRange(layer.output_shift[c], -31, 30)) {
      return Error("shift outside [-31, 30]", "shift", index);
    }
  }
  return OkStatus();
}

bool TensorHasDims(const TensorDesc& tensor, int32_t num_dims,
                   const int32_t* dims) {
  if (tensor.num_dims != num_dims) return false;
  for (int32_t i = 0; i < num_dims; ++i) {
    if (tensor.dims[i] != dims[i]) return false;
  }
  return true;
}

// Constant input `tensor_index` of type `type` and shape `dims`.
Status ValidateConstant(const InputTensors& inputs, int32_t tensor_index,
                        ElementType type, int32_t num_dims, const int32_t* dims,
                        const char* key, int32_t layer, TensorDesc* tensor) {
  if (tensor_index < 1 || tensor_index >= inputs.count()) {
    return Error("index is not a constant input of the op", key, layer);
  }
  if (!inputs.Describe(tensor_index, tensor)) {
    return Error("cannot read the input tensor", key, layer);
  }
  if (tensor->type != type) return Error("wrong tensor type", key, layer);
  if (!tensor->is_constant) return Error("tensor is not constant", key, layer);
  if (!TensorHasDims(*tensor, num_dims, dims)) {
    return Error("wrong tensor shape", key, layer);
  }
  return OkStatus();
}

Status ValidateFilterAndBias(const LayerPlan& layer, int32_t index,
                             const ImageShape& in, const InputTensors& inputs) {
  const int32_t out_channels = layer.output_shape.channels;
  int32_t filter_dims[4] = {out_channels, layer.kernel_height,
                            layer.kernel_width, in.channels};
  int32_t quantized_dim = 0;
  if (layer.op == LayerOp::kDepthwiseConv2D) {
    filter_dims[0] = 1;
    filter_dims[3] = out_channels;
    quantized_dim = 3;
  }
  TensorDesc filter = {};
  TFLM_PATCH_RETURN_IF_ERROR(
      ValidateConstant(inputs, layer.filter_input, ElementType::kInt8, 4,
                       filter_dims, "filter", index, &filter));
  if (filter.num_scales != -1 && filter.num_scales != 1 &&
      filter.num_scales != filter_dims[quantized_dim]) {
    return Error("filter scale count is neither 1 nor the channel count",
                 "filter", index);
  }
  if (layer.bias_input == -1) return OkStatus();
  TensorDesc bias = {};
  return ValidateConstant(inputs, layer.bias_input, ElementType::kInt32, 1,
                          &out_channels, "bias", index, &bias);
}

Status ValidateAddParams(const LayerPlan& layer, int32_t index,
                         const StagePlan& plan) {
  for (int32_t s = 0; s < 2; ++s) {
    if (!SameShape(SourceShape(plan, layer.sources[s]), layer.output_shape)) {
      return Error("ADD inputs and output differ in shape", "out_shape", index);
    }
  }
  const AddParams& p = layer.add;
  if (!InRange(p.left_shift, 0, kMaxAddLeftShift)) {
    return Error("left_shift outside [0, 22]", "add_params", index);
  }
  const int32_t multipliers[3] = {p.input1_multiplier, p.input2_multiplier,
                                  p.output_multiplier};
  const int32_t shifts[3] = {p.input1_shift, p.input2_shift, p.output_shift};
  for (int i = 0; i < 3; ++i) {
    if (multipliers[i] < 0 || !InRange(shifts[i], -31, 0)) {
      return Error("multiplier negative or shift outside [-31, 0]",
                   "add_params", index);
    }
  }
  return OkStatus();
}

Status ValidateLayer(const StagePlan& plan, int32_t index,
                     const InputTensors& inputs) {
  const LayerPlan& layer = plan.layers[index];
  TFLM_PATCH_RETURN_IF_ERROR(ValidateSources(layer, index));
  TFLM_PATCH_RETURN_IF_ERROR(
      ValidateImageShape(layer.output_shape, "out_shape", index));
  TFLM_PATCH_RETURN_IF_ERROR(ValidateQuantization(layer, index));
  const ImageShape in = SourceShape(plan, layer.sources[0]);
  switch (layer.op) {
    case LayerOp::kAdd:
      return ValidateAddParams(layer, index, plan);
    case LayerOp::kPad:
      return ValidatePadGeometry(layer, index, in);
    case LayerOp::kMaxPool2D:
    case LayerOp::kAveragePool2D:
      TFLM_PATCH_RETURN_IF_ERROR(ValidateWindowGeometry(layer, index, in));
      return ValidateChannels(layer, index, in);
    case LayerOp::kConv2D:
    case LayerOp::kDepthwiseConv2D:
      TFLM_PATCH_RETURN_IF_ERROR(ValidateWindowGeometry(layer, index, in));
      TFLM_PATCH_RETURN_IF_ERROR(ValidateChannels(layer, index, in));
      TFLM_PATCH_RETURN_IF_ERROR(ValidateChannelParams(layer, index));
      return ValidateFilterAndBias(layer, index, in, inputs);
  }
  return Error("unknown layer op", "op", index);
}

Status ValidateGrid(const int32_t* bounds, int32_t count, int32_t size,
                    const char* key) {
  if (count < 2 || bounds[0] != 0 || bounds[count - 1] != size) {
    return Error("grid must run from 0 to the output size", key);
  }
  for (int32_t i = 1; i < count; ++i) {
    if (bounds[i] <= bounds[i - 1]) {
      return Error("grid boundaries must strictly increase", key);
    }
  }
  return OkStatus();
}

// The last layer that reads layer `index`'s output (itself if none).
int32_t LastUse(const StagePlan& plan, int32_t index) {
  int32_t last = index;
  for (int32_t j = index + 1; j < plan.num_layers; ++j) {
    const LayerPlan& reader = plan.layers[j];
    for (int32_t s = 0; s < reader.num_sources; ++s) {
      if (reader.sources[s] == index) last = j;
    }
  }
  return last;
}

bool BuffersOverlap(const LayerPlan& a, const LayerPlan& b) {
  if (a.buffer_bytes == 0 || b.buffer_bytes == 0) return false;
  const int64_t a_end = int64_t{a.buffer_offset} + a.buffer_bytes;
  const int64_t b_end = int64_t{b.buffer_offset} + b.buffer_bytes;
  return a.buffer_offset < b_end && b.buffer_offset < a_end;
}

// Buffers of every layer but the last: inside the scratch area, and not
// overlapping a buffer that is still live when they are written.
Status ValidateBuffers(const StagePlan& plan) {
  if (plan.scratch_bytes < 0) return Error("negative size", "scratch_bytes");
  if (plan.workspace_bytes < 0 || plan.workspace_bytes > plan.scratch_bytes ||
      (plan.workspace_bytes > 0 &&
       (plan.scratch_bytes - plan.workspace_bytes) %
               static_cast<int32_t>(kCmsisWorkspaceAlignment) !=
           0)) {
    return Error("workspace must be an aligned tail of scratch_bytes",
                 "workspace_bytes");
  }
  const int32_t buffers_end = plan.scratch_bytes - plan.workspace_bytes;
  const int32_t num_buffers = plan.num_layers - 1;
  for (int32_t i = 0; i < num_buffers; ++i) {
    const LayerPlan& layer = plan.layers[i];
    if (layer.buffer_offset < 0 || layer.buffer_bytes < 0 ||
        int64_t{layer.buffer_offset} + layer.buffer_bytes > buffers_end) {
      return Error("layer buffer lies outside scratch_bytes", "buffer_offset",
                   i);
    }
  }
  for (int32_t live = 0; live < num_buffers; ++live) {
    const int32_t last_use = LastUse(plan, live);
    for (int32_t writer = live + 1; writer <= last_use && writer < num_buffers;
         ++writer) {
      if (BuffersOverlap(plan.layers[live], plan.layers[writer])) {
        return Error("layer buffer overlaps a buffer that is still live",
                     "buffer_offset", writer);
      }
    }
  }
  return OkStatus();
}

// A layer's patch buffer in the scratch area, holding `region` densely.
// With no scratch, only the geometry (data is null).
InputView BufferInputView(const uint8_t* scratch, const LayerPlan& layer,
                          const Region& region) {
  const int32_t channels = layer.output_shape.channels;
  return InputView{scratch != nullptr ? reinterpret_cast<const int8_t*>(
                                            scratch + layer.buffer_offset)
                                      : nullptr,
                   region.y0, region.x0, (region.x1 - region.x0) * channels,
                   channels};
}

OutputView BufferOutputView(uint8_t* scratch, const LayerPlan& layer,
                            const Region& region) {
  const int32_t channels = layer.output_shape.channels;
  return OutputView{scratch != nullptr ? reinterpret_cast<int8_t*>(
                                             scratch + layer.buffer_offset)
                                       : nullptr,
                    region.y0, region.x0, (region.x1 - region.x0) * channels,
                    channels};
}

// The whole stage input and output (data null for geometry only).
InputView StageInputView(const StagePlan& plan, const void* data) {
  const ImageShape& in = plan.input_shape;
  return InputView{static_cast<const int8_t*>(data), 0, 0,
                   in.width * in.channels, in.channels};
}

OutputView StageOutputView(const StagePlan& plan, int8_t* data) {
  const ImageShape& out = plan.layers[plan.num_layers - 1].output_shape;
  return OutputView{data, 0, 0, out.width * out.channels, out.channels};
}

// Where the CMSIS-NN workspace starts in a scratch area of `scratch_bytes`
// (the size ValidatePlan returned): the plan's reserved tail when it was
// large enough, else right after the plan's scratch.
size_t AppendedWorkspaceOffset(const StagePlan& plan) {
  return AlignUp(static_cast<size_t>(plan.scratch_bytes),
                 kCmsisWorkspaceAlignment);
}

size_t WorkspaceOffset(const StagePlan& plan, size_t scratch_bytes) {
  return scratch_bytes > static_cast<size_t>(plan.scratch_bytes)
             ? AppendedWorkspaceOffset(plan)
             : static_cast<size_t>(plan.scratch_bytes - plan.workspace_bytes);
}

// Where layer `index`'s sources are read from and its output is written for
// one patch (data null when scratch and the stage tensors are).
void LayerViews(const StagePlan& plan, int32_t index, const Region* regions,
                const InputView& stage_input, const OutputView& stage_output,
                uint8_t* scratch, InputView* sources, OutputView* output) {
  const LayerPlan& layer = plan.layers[index];
  for (int32_t s = 0; s < layer.num_sources; ++s) {
    const int32_t source = layer.sources[s];
    sources[s] =
        source == kStageInputSource
            ? stage_input
            : BufferInputView(scratch, plan.layers[source], regions[source]);
  }
  *output = index == plan.num_layers - 1
                ? stage_output
                : BufferOutputView(scratch, layer, regions[index]);
}

Region TileRegion(const StagePlan& plan, int32_t row, int32_t col) {
  return Region{plan.grid_rows[row], plan.grid_rows[row + 1],
                plan.grid_cols[col], plan.grid_cols[col + 1]};
}

// Every patch's regions fit their layer buffers; `*workspace_bytes` is the
// largest CMSIS-NN workspace a layer call needs (0 without CMSIS-NN).
Status ValidatePatchRegions(const StagePlan& plan, Region* regions,
                            size_t* workspace_bytes) {
  *workspace_bytes = 0;
  const InputView stage_input = StageInputView(plan, nullptr);
  const OutputView stage_output = StageOutputView(plan, nullptr);
  for (int32_t row = 0; row + 1 < plan.num_grid_rows; ++row) {
    for (int32_t col = 0; col + 1 < plan.num_grid_cols; ++col) {
      ComputePatchRegions(plan, TileRegion(plan, row, col), regions);
      for (int32_t i = 0; i + 1 < plan.num_layers; ++i) {
        const LayerPlan& layer = plan.layers[i];
        if (RegionArea(regions[i]) * layer.output_shape.channels >
            layer.buffer_bytes) {
          return Error("a patch region does not fit the layer buffer",
                       "buffer_bytes", i);
        }
      }
      if (!kUsesCmsisNn) continue;
      for (int32_t i = 0; i < plan.num_layers; ++i) {
        const Region box = IsCachedLayer(plan, i)
                               ? CachedLayerBox(plan, i, row, col)
                               : regions[i];
        if (IsEmpty(box)) continue;
        InputView sources[kMaxLayerSources];
        OutputView output;
        LayerViews(plan, i, regions, stage_input, stage_output, nullptr,
                   sources, &output);
        const size_t bytes = CmsisNnWorkspaceBytes(
            plan.layers[i], SourceShape(plan, plan.layers[i].sources[0]),
            sources[0], box, output);
        if (bytes > *workspace_bytes) *workspace_bytes = bytes;
      }
    }
  }
  return OkStatus();
}

// ---------------------------------------------------------------------------
// Per-layer compute over one output region. Each function reads its inputs
// through views (any region of a full image, with a row stride) and writes
// the region through an output view. They are the units a CMSIS-NN or an
// overlap-caching path would replace.
// ---------------------------------------------------------------------------

inline bool Inside(int32_t value, int32_t size) {
  return value >= 0 && value < size;
}

inline int8_t Requantize(int32_t acc, int32_t multiplier, int32_t shift,
                         const LayerPlan& layer) {
  int32_t value = MultiplyByQuantizedMultiplier(acc, multiplier, shift);
  value = WrappingAdd(value, layer.output_zero_point);
  return static_cast<int8_t>(
      Clamp(value, layer.activation_min, layer.activation_max));
}

// reference_integer_ops::ConvPerChannel over `region`.
void ConvRegion(const LayerPlan& layer, const ImageShape& in_shape,
                const InputView& input, const int8_t* filter,
                const int32_t* bias, const Region& region,
                const OutputView& output) {
  const int32_t input_offset = -layer.input_zero_point[0];
  const int32_t in_channels = in_shape.channels;
  const int32_t out_channels = layer.output_shape.channels;
  const int32_t filter_height = layer.kernel_height;
  const int32_t filter_width = layer.kernel_width;
  for (int32_t out_y = region.y0; out_y < region.y1; ++out_y) {
    const int32_t in_y_origin = out_y * layer.stride_height - layer.pad_top;
    for (int32_t out_x = region.x0; out_x < region.x1; ++out_x) {
      const int32_t in_x_origin = out_x * layer.stride_width - layer.pad_left;
      int8_t* out_pixel = output.Pixel(out_y, out_x);
      for (int32_t out_c = 0; out_c < out_channels; ++out_c) {
        int32_t acc = 0;
        for (int32_t ky = 0; ky < filter_height; ++ky) {
          const int32_t in_y = in_y_origin + ky * layer.dilation_height;
          if (!Inside(in_y, in_shape.height)) continue;
          for (int32_t kx = 0; kx < filter_width; ++kx) {
            const int32_t in_x = in_x_origin + kx * layer.dilation_width;
            if (!Inside(in_x, in_shape.width)) continue;
            const int8_t* in_pixel = input.Pixel(in_y, in_x);
            const int8_t* taps =
                filter + ((static_cast<ptrdiff_t>(out_c) * filter_height + ky) *
                              filter_width +
                          kx) *
                             in_channels;
            for (int32_t in_c = 0; in_c < in_channels; ++in_c) {
              acc = WrappingAdd(acc,
                                taps[in_c] * (in_pixel[in_c] + input_offset));
            }
          }
        }
        if (bias != nullptr) acc = WrappingAdd(acc, bias[out_c]);
        out_pixel[out_c] = Requantize(acc, layer.output_multiplier[out_c],
                                      layer.output_shift[out_c], layer);
      }
    }
  }
}

// reference_integer_ops::DepthwiseConvPerChannel over `region`.
void DepthwiseConvRegion(const LayerPlan& layer, const ImageShape& in_shape,
                         const InputView& input, const int8_t* filter,
                         const int32_t* bias, const Region& region,
                         const OutputView& output) {
  const int32_t input_offset = -layer.input_zero_point[0];
  const int32_t in_channels = in_shape.channels;
  const int32_t out_channels = layer.output_shape.channels;
  const int32_t depth_multiplier = layer.depth_multiplier;
  for (int32_t out_y = region.y0; out_y < region.y1; ++out_y) {
    const int32_t in_y_origin = out_y * layer.stride_height - layer.pad_top;
    for (int32_t out_x = region.x0; out_x < region.x1; ++out_x) {
      const int32_t in_x_origin = out_x * layer.stride_width - layer.pad_left;
      int8_t* out_pixel = output.Pixel(out_y, out_x);
      for (int32_t in_c = 0; in_c < in_channels; ++in_c) {
        for (int32_t m = 0; m < depth_multiplier; ++m) {
          const int32_t out_c = in_c * depth_multiplier + m;
          int32_t acc = 0;
          for (int32_t ky = 0; ky < layer.kernel_height; ++ky) {
            const int32_t in_y = in_y_origin + ky * layer.dilation_height;
            if (!Inside(in_y, in_shape.height)) continue;
            for (int32_t kx = 0; kx < layer.kernel_width; ++kx) {
              const int32_t in_x = in_x_origin + kx * layer.dilation_width;
              if (!Inside(in_x, in_shape.width)) continue;
              const int32_t input_value = input.Pixel(in_y, in_x)[in_c];
              const int32_t filter_value =
                  filter[(static_cast<ptrdiff_t>(ky) * layer.kernel_width +
                          kx) *
                             out_channels +
                         out_c];
              acc =
                  WrappingAdd(acc, filter_value * (input_value + input_offset));
            }
          }
          if (bias != nullptr) acc = WrappingAdd(acc, bias[out_c]);
          out_pixel[out_c] = Requantize(acc, layer.output_multiplier[out_c],
                                        layer.output_shift[out_c], layer);
        }
      }
    }
  }
}

// The window taps of output pixel (out_y, out_x) that lie inside the input.
struct WindowTaps {
  int32_t in_y_origin;
  int32_t in_x_origin;
  int32_t y_begin;
  int32_t y_end;
  int32_t x_begin;
  int32_t x_end;
};

WindowTaps PoolWindow(const LayerPlan& layer, const ImageShape& in_shape,
                      int32_t out_y, int32_t out_x) {
  WindowTaps taps;
  taps.in_y_origin = out_y * layer.stride_height - layer.pad_top;
  taps.in_x_origin = out_x * layer.stride_width - layer.pad_left;
  taps.y_begin = taps.in_y_origin < 0 ? -taps.in_y_origin : 0;
  taps.x_begin = taps.in_x_origin < 0 ? -taps.in_x_origin : 0;
  const int32_t y_limit = in_shape.height - taps.in_y_origin;
  const int32_t x_limit = in_shape.width - taps.in_x_origin;
  taps.y_end = layer.kernel_height < y_limit ? layer.kernel_height : y_limit;
  taps.x_end = layer.kernel_width < x_limit ? layer.kernel_width : x_limit;
  return taps;
}

// reference_integer_ops::MaxPool over `region`.
void MaxPoolRegion(const LayerPlan& layer, const ImageShape& in_shape,
                   const InputView& input, const Region& region,
                   const OutputView& output) {
  const int32_t channels = layer.output_shape.channels;
  for (int32_t out_y = region.y0; out_y < region.y1; ++out_y) {
    for (int32_t out_x = region.x0; out_x < region.x1; ++out_x) {
      const WindowTaps taps = PoolWindow(layer, in_shape, out_y, out_x);
      int8_t* out_pixel = output.Pixel(out_y, out_x);
      for (int32_t c = 0; c < channels; ++c) {
        int32_t max = kInt8Min;
        for (int32_t ky = taps.y_begin; ky < taps.y_end; ++ky) {
          for (int32_t kx = taps.x_begin; kx < taps.x_end; ++kx) {
            const int32_t value =
                input.Pixel(taps.in_y_origin + ky, taps.in_x_origin + kx)[c];
            if (value > max) max = value;
          }
        }
        out_pixel[c] = static_cast<int8_t>(
            Clamp(max, layer.activation_min, layer.activation_max));
      }
    }
  }
}

// reference_integer_ops::AveragePool over `region`. ValidatePlan guarantees
// every window has at least one tap inside the input.
void AveragePoolRegion(const LayerPlan& layer, const ImageShape& in_shape,
                       const InputView& input, const Region& region,
                       const OutputView& output) {
  const int32_t channels = layer.output_shape.channels;
  for (int32_t out_y = region.y0; out_y < region.y1; ++out_y) {
    for (int32_t out_x = region.x0; out_x < region.x1; ++out_x) {
      const WindowTaps taps = PoolWindow(layer, in_shape, out_y, out_x);
      const int32_t count =
          (taps.y_end - taps.y_begin) * (taps.x_end - taps.x_begin);
      int8_t* out_pixel = output.Pixel(out_y, out_x);
      for (int32_t c = 0; c < channels; ++c) {
        int32_t acc = 0;
        for (int32_t ky = taps.y_begin; ky < taps.y_end; ++ky) {
          for (int32_t kx = taps.x_begin; kx < taps.x_end; ++kx) {
            acc = WrappingAdd(acc, input.Pixel(taps.in_y_origin + ky,
                                               taps.in_x_origin + kx)[c]);
          }
        }
        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
        out_pixel[c] = static_cast<int8_t>(
            Clamp(acc, layer.activation_min, layer.activation_max));
      }
    }
  }
}

// reference_integer_ops::AddFunc for one element.
inline int8_t AddElement(int8_t a, int8_t b, const LayerPlan& layer) {
  const AddParams& p = layer.add;
  const int32_t shifted_a =
      (a - layer.input_zero_point[0]) * (1 << p.left_shift);
  const int32_t shifted_b =
      (b - layer.input_zero_point[1]) * (1 << p.left_shift);
  const int32_t scaled_a = MultiplyByQuantizedMultiplierSmallerThanOneExp(
      shifted_a, p.input1_multiplier, p.input1_shift);
  const int32_t scaled_b = MultiplyByQuantizedMultiplierSmallerThanOneExp(
      shifted_b, p.input2_multiplier, p.input2_shift);
  const int32_t raw_output = MultiplyByQuantizedMultiplierSmallerThanOneExp(
      scaled_a + scaled_b, p.output_multiplier, p.output_shift);
  return static_cast<int8_t>(
      Clamp(WrappingAdd(raw_output, layer.output_zero_point),
            layer.activation_min, layer.activation_max));
}

void AddRegion(const LayerPlan& layer, const InputView& input1,
               const InputView& input2, const Region& region,
               const OutputView& output) {
  const int32_t channels = layer.output_shape.channels;
  for (int32_t y = region.y0; y < region.y1; ++y) {
    for (int32_t x = region.x0; x < region.x1; ++x) {
      const int8_t* a = input1.Pixel(y, x);
      const int8_t* b = input2.Pixel(y, x);
      int8_t* out = output.Pixel(y, x);
      for (int32_t c = 0; c < channels; ++c) {
        out[c] = AddElement(a[c], b[c], layer);
      }
    }
  }
}

void PadRegion(const LayerPlan& layer, const ImageShape& in_shape,
               const InputView& input, const Region& region,
               const OutputView& output) {
  const int32_t channels = layer.output_shape.channels;
  const int8_t pad_value = static_cast<int8_t>(layer.pad_value);
  for (int32_t y = region.y0; y < region.y1; ++y) {
    const int32_t in_y = y - layer.pad_top;
    for (int32_t x = region.x0; x < region.x1; ++x) {
      const int32_t in_x = x - layer.pad_left;
      int8_t* out = output.Pixel(y, x);
      const bool inside =
          Inside(in_y, in_shape.height) && Inside(in_x, in_shape.width);
      const int8_t* in = inside ? input.Pixel(in_y, in_x) : nullptr;
      for (int32_t c = 0; c < channels; ++c) {
        out[c] = inside ? in[c] : pad_value;
      }
    }
  }
}

// ---------------------------------------------------------------------------
// The schedule.
// ---------------------------------------------------------------------------

Status RunLayer(const StagePlan& plan, int32_t index,
                const void* const* input_data, const InputView* sources,
                const Region& region, const OutputView& output,
                uint8_t* workspace) {
  const LayerPlan& layer = plan.layers[index];
  const ImageShape in_shape = SourceShape(plan, layer.sources[0]);
  const int8_t* filter =
      HasFilter(layer.op)
          ? static_cast<const int8_t*>(input_data[layer.filter_input])
          : nullptr;
  const int32_t* bias =
      layer.bias_input >= 0
          ? static_cast<const int32_t*>(input_data[layer.bias_input])
          : nullptr;
  if (kUsesCmsisNn) {
    switch (RunLayerWithCmsisNn(layer, in_shape, sources, filter, bias, region,
                                output, workspace)) {
      case CmsisNnResult::kDone:
        return OkStatus();
      case CmsisNnResult::kFailed:
        return Error("CMSIS-NN rejected a layer call", nullptr, index);
      case CmsisNnResult::kNotTaken:
        break;
    }
  }
  switch (layer.op) {
    case LayerOp::kConv2D:
      ConvRegion(layer, in_shape, sources[0], filter, bias, region, output);
      break;
    case LayerOp::kDepthwiseConv2D:
      DepthwiseConvRegion(layer, in_shape, sources[0], filter, bias, region,
                          output);
      break;
    case LayerOp::kAdd:
      AddRegion(layer, sources[0], sources[1], region, output);
      break;
    case LayerOp::kPad:
      PadRegion(layer, in_shape, sources[0], region, output);
      break;
    case LayerOp::kMaxPool2D:
      MaxPoolRegion(layer, in_shape, sources[0], region, output);
      break;
    case LayerOp::kAveragePool2D:
      AveragePoolRegion(layer, in_shape, sources[0], region, output);
      break;
  }
  return OkStatus();
}

// Patch (row, col). A cached layer computes only its box of the region;
// the rest of its buffer comes from the caches (docs "Cached halos").
Status RunPatch(const StagePlan& plan, const void* const* input_data,
                const InputView& stage_input, const OutputView& stage_output,
                uint8_t* scratch, uint8_t* workspace, const Region* regions,
                int32_t row, int32_t col) {
  for (int32_t i = 0; i < plan.num_layers; ++i) {
    if (IsEmpty(regions[i])) continue;
    InputView sources[kMaxLayerSources];
    OutputView output;
    LayerViews(plan, i, regions, stage_input, stage_output, scratch, sources,
               &output);
    const bool cached = IsCachedLayer(plan, i);
    if (cached) RestoreHalo(plan, i, row, col, scratch);
    const Region box = cached ? CachedLayerBox(plan, i, row, col) : regions[i];
    if (!IsEmpty(box)) {
      TFLM_PATCH_RETURN_IF_ERROR(
          RunLayer(plan, i, input_data, sources, box, output, workspace));
    }
    if (cached) SaveHalo(plan, i, row, col, scratch);
  }
  return OkStatus();
}

Status CheckRunArguments(const StagePlan& plan, const void* const* input_data,
                         int32_t num_inputs, const int8_t* output,
                         const uint8_t* scratch, size_t scratch_bytes,
                         const Region* regions, int32_t num_regions) {
  if (plan.num_layers < 1 || regions == nullptr ||
      num_regions < plan.num_layers) {
    return Error("region workspace too small");
  }
  if (plan.halo != nullptr && !plan.halo->validated) {
    return Error("cached plan not validated", "cache_rows");
  }
  if (scratch_bytes < static_cast<size_t>(plan.scratch_bytes) ||
      (scratch == nullptr && plan.scratch_bytes > 0)) {
    return Error("scratch buffer too small", "scratch_bytes");
  }
  if (input_data == nullptr || num_inputs < 1 || input_data[0] == nullptr ||
      output == nullptr) {
    return Error("missing stage input or output data");
  }
  for (int32_t i = 0; i < plan.num_layers; ++i) {
    const LayerPlan& layer = plan.layers[i];
    if (!HasFilter(layer.op)) continue;
    if (layer.filter_input < 1 || layer.filter_input >= num_inputs ||
        input_data[layer.filter_input] == nullptr) {
      return Error("missing filter data", "filter", i);
    }
    if (layer.bias_input != -1 &&
        (layer.bias_input < 1 || layer.bias_input >= num_inputs ||
         input_data[layer.bias_input] == nullptr)) {
      return Error("missing bias data", "bias", i);
    }
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
    return Error("plan memory missing or misaligned");
  }
  PlanMemory memory(static_cast<uint8_t*>(plan_memory), plan_memory_bytes);
  return ParseOptions(options, options_bytes, &memory, plan);
}

Region LayerInputRegion(const LayerPlan& layer, const Region& out,
                        const ImageShape& in_shape) {
  return InputRegion(layer, out, in_shape);
}

void ComputePatchRegions(const StagePlan& plan, const Region& tile,
                         Region* regions) {
  const int32_t last = plan.num_layers - 1;
  for (int32_t i = 0; i < last; ++i) regions[i] = kEmptyRegion;
  regions[last] = tile;
  for (int32_t i = last; i >= 0; --i) {
    const LayerPlan& layer = plan.layers[i];
    for (int32_t s = 0; s < layer.num_sources; ++s) {
      const int32_t source = layer.sources[s];
      if (source == kStageInputSource) continue;
      const Region needed =
          InputRegion(layer, regions[i], SourceShape(plan, source));
      regions[source] = RegionUnion(regions[source], needed);
    }
  }
}

Status ValidatePlan(const StagePlan& plan, const InputTensors& inputs,
                    const TensorDesc& output, Region* regions,
                    int32_t num_regions, size_t* scratch_bytes) {
  if (plan.num_layers < 1 || plan.layers == nullptr) {
    return Error("no layers", "layers");
  }
  if (regions == nullptr || num_regions < plan.num_layers) {
    return Error("region workspace too small");
  }
  TFLM_PATCH_RETURN_IF_ERROR(ValidateStageInput(plan, inputs));
  for (int32_t i = 0; i < plan.num_layers; ++i) {
    TFLM_PATCH_RETURN_IF_ERROR(ValidateLayer(plan, i, inputs));
  }
  TFLM_PATCH_RETURN_IF_ERROR(ValidateStageOutput(plan, output));
  const ImageShape& out_shape = plan.layers[plan.num_layers - 1].output_shape;
  TFLM_PATCH_RETURN_IF_ERROR(ValidateGrid(plan.grid_rows, plan.num_grid_rows,
                                          out_shape.height, "grid_rows"));
  TFLM_PATCH_RETURN_IF_ERROR(ValidateGrid(plan.grid_cols, plan.num_grid_cols,
                                          out_shape.width, "grid_cols"));
  TFLM_PATCH_RETURN_IF_ERROR(ValidateBuffers(plan));
  TFLM_PATCH_RETURN_IF_ERROR(ValidateHaloCache(plan, regions));
  size_t workspace_bytes = 0;
  TFLM_PATCH_RETURN_IF_ERROR(
      ValidatePatchRegions(plan, regions, &workspace_bytes));
  *scratch_bytes =
      workspace_bytes > static_cast<size_t>(plan.workspace_bytes)
          ? AppendedWorkspaceOffset(plan) + workspace_bytes
          : static_cast<size_t>(plan.scratch_bytes);
  return OkStatus();
}

Status RunStage(const StagePlan& plan, const void* const* input_data,
                int32_t num_inputs, int8_t* output, uint8_t* scratch,
                size_t scratch_bytes, Region* regions, int32_t num_regions) {
  TFLM_PATCH_RETURN_IF_ERROR(CheckRunArguments(plan, input_data, num_inputs,
                                               output, scratch, scratch_bytes,
                                               regions, num_regions));
  const InputView stage_input = StageInputView(plan, input_data[0]);
  const OutputView stage_output = StageOutputView(plan, output);
  uint8_t* workspace =
      scratch != nullptr ? scratch + WorkspaceOffset(plan, scratch_bytes)
                         : nullptr;
  for (int32_t row = 0; row + 1 < plan.num_grid_rows; ++row) {
    for (int32_t col = 0; col + 1 < plan.num_grid_cols; ++col) {
      ComputePatchRegions(plan, TileRegion(plan, row, col), regions);
      TFLM_PATCH_RETURN_IF_ERROR(RunPatch(plan, input_data, stage_input,
                                          stage_output, scratch, workspace,
                                          regions, row, col));
    }
  }
  return OkStatus();
}

bool UsesSingleRounding() { return kSingleRounding; }

}  // namespace tflm_patch

"""Encode and decode the PATCH_STAGE custom options (a FlexBuffer map, version 1 or 2).

The field list is the contract in docs/patch_stage_format.md.
"""
from __future__ import annotations

import array
from dataclasses import dataclass

from flatbuffers import flexbuffers

from . import flexbuffer_reader as fb
from .errors import ModelError
from .layers import (ACT_PARAM_COUNT, ADD, ADD_CONST, AVG_POOL, CONCAT, CONV, DEPTHWISE, INPUT_FLOAT32,
                     INPUT_INT8, INPUT_UINT8, KIND_NAMES, MAX_CONCAT_SOURCES, MAX_POOL, MUL, MUL_CONST, PAD,
                     POINTWISE_OPS, QUANTIZE, RELU6, RESIZE_NEAREST, STAGE_INPUT, SUB_CONST, Layer)

TWO_SOURCES = (ADD, MUL)
WITH_CONSTANT = (ADD_CONST, MUL_CONST, SUB_CONST)
ADD_PARAMS = (ADD, ADD_CONST, SUB_CONST)
MUL_PARAMS = (MUL, MUL_CONST)

FORMAT_VERSION = 1           # plans without cached halos
CACHED_FORMAT_VERSION = 2    # plans with cache_rows or cache_cols
CUSTOM_CODE = "PATCH_STAGE"
# The vectors the kernel reads in place (no copy in the arena) when stored as
# aligned int32: the per-channel ones, the grid and each layer's per-source
# inputs / in_zp (docs/patch_stage_format.md).
IN_PLACE_INT32_KEYS = ("grid_rows", "grid_cols", "multiplier", "shift", "inputs", "in_zp")
INT32_BYTES = 4


@dataclass
class StagePlan:
    """What the options describe: the kernel's whole input besides tensors."""
    layers: list
    grid_rows: list
    grid_cols: list
    input_shape: tuple
    scratch_bytes: int
    workspace_bytes: int = 0   # tail of scratch_bytes reserved for CMSIS-NN (optional key)
    cache_rows: bool = False   # version 2: keep the rows shared with the tile row below
    cache_cols: bool = False   # version 2: keep the columns shared with the tile to the right

    @property
    def input_type(self) -> int:
        """The stage input's element type: int8, or what a first-layer QUANTIZE reads."""
        first = self.layers[0]
        return first.input_type if first.op == QUANTIZE else INPUT_INT8

    @property
    def version(self) -> int:
        return CACHED_FORMAT_VERSION if self.cache_rows or self.cache_cols else FORMAT_VERSION


def _has_geometry(op: int) -> bool:
    return op in (CONV, DEPTHWISE, MAX_POOL, AVG_POOL)


def _has_act(op: int) -> bool:
    return op not in (PAD, CONCAT, RESIZE_NEAREST)


def _int32_array(values) -> array.array:
    for code in ("i", "l"):
        if array.array(code).itemsize == INT32_BYTES:
            return array.array(code, [int(v) for v in values])
    raise RuntimeError("no 4-byte array type on this platform")


def in_place_vectors(data: bytes) -> dict:
    """Which vectors the kernel reads where they are stored (FlexInPlace in
    micro_ops/flexbuffer_reader.h): {(layer or -1 for the root, key): bool}
    for every IN_PLACE_INT32_KEYS vector present. True when it is a typed INT
    vector of 4-byte elements at a 4-aligned offset of the options; the
    options themselves start 4-aligned in the model (every flatbuffer vector
    does), which is loaded at an aligned address."""
    root = flexbuffers.GetRoot(bytes(data)).AsMap
    result = {}

    def check(where, m):
        for key in IN_PLACE_INT32_KEYS:
            if key not in m.Keys.Value:
                continue
            ref = m[key]
            ok = ref.IsTypedVector and not ref.IsFixedTypedVector
            if ok:
                vector = ref.AsTypedVector
                ok = (vector.ElementType == flexbuffers.Type.INT and vector._byte_width == INT32_BYTES
                      and vector._buf._offset % INT32_BYTES == 0)
            result[(where, key)] = ok

    check(-1, root)
    for i, layer in enumerate(root["layers"].AsVector):
        check(i, layer.AsMap)
    return result


def encode(plan: StagePlan) -> bytes:
    b = flexbuffers.Builder()
    ints = flexbuffers.Type.INT

    def vec(key, values):
        b.Key(key)
        if key in IN_PLACE_INT32_KEYS:  # 4-byte elements, 4-aligned in the FlexBuffer
            b.TypedVectorFromElements(_int32_array(values))
        else:
            b.TypedVectorFromElements([int(v) for v in values], ints)

    with b.Map():
        b.Int("version", plan.version)
        if plan.cache_rows:
            b.Int("cache_rows", 1)
        if plan.cache_cols:
            b.Int("cache_cols", 1)
        vec("grid_rows", plan.grid_rows)
        vec("grid_cols", plan.grid_cols)
        vec("input_shape", plan.input_shape)
        b.Int("scratch_bytes", int(plan.scratch_bytes))
        if plan.workspace_bytes:
            b.Int("workspace_bytes", int(plan.workspace_bytes))
        with b.Vector("layers"):
            for i, layer in enumerate(plan.layers):
                with b.Map():
                    b.Int("op", layer.op)
                    vec("inputs", layer.inputs)
                    vec("out_shape", layer.out_shape)
                    if i < len(plan.layers) - 1:
                        b.Int("buffer_offset", int(layer.buffer_offset))
                        b.Int("buffer_bytes", int(layer.buffer_bytes))
                        if plan.cache_rows:
                            b.Int("row_cache_offset", int(layer.row_cache_offset))
                            b.Int("row_cache_bytes", int(layer.row_cache_bytes))
                        if plan.cache_cols:
                            b.Int("col_cache_offset", int(layer.col_cache_offset))
                            b.Int("col_cache_bytes", int(layer.col_cache_bytes))
                    vec("in_zp", layer.in_zp)
                    b.Int("out_zp", int(layer.out_zp))
                    if _has_act(layer.op):
                        vec("act", layer.act)
                    if _has_geometry(layer.op):
                        vec("kernel", layer.kernel)
                        vec("stride", layer.stride)
                    if layer.op in (CONV, DEPTHWISE):
                        vec("dilation", layer.dilation)
                        b.Int("filter", int(layer.filter))
                        b.Int("bias", int(layer.bias))
                        vec("multiplier", layer.multiplier)
                        vec("shift", layer.shift)
                    if layer.op == DEPTHWISE:
                        b.Int("depth_multiplier", int(layer.depth_multiplier))
                    if _has_geometry(layer.op) or layer.op == PAD:
                        vec("padding", layer.padding)
                    if layer.op in ADD_PARAMS:
                        vec("add_params", layer.add_params)
                    if layer.op in MUL_PARAMS:
                        vec("mul_params", layer.mul_params)
                    if layer.op in WITH_CONSTANT:
                        b.Int("constant", int(layer.constant))
                        b.Int("const_zp", int(layer.const_zp))
                        b.Int("const_count", int(layer.const_count))
                    if layer.op == PAD:
                        b.Int("pad_value", int(layer.pad_value))
                    if layer.op == RESIZE_NEAREST:
                        b.Int("align_corners", int(layer.align_corners))
                        b.Int("half_pixel_centers", int(layer.half_pixel_centers))
                    if layer.op == QUANTIZE:
                        b.Int("input_type", int(layer.input_type))
                    if layer.op in POINTWISE_OPS and layer.op != RELU6:
                        vec("act_params", layer.act_params)
    return bytes(b.Finish())


def act_param_count(layer: Layer) -> int:
    """How many act_params a pointwise layer has (plan.h ActParamCount)."""
    if layer.op == QUANTIZE:
        return 1 if layer.input_type == INPUT_FLOAT32 else 2
    return ACT_PARAM_COUNT[layer.op]


INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
MAX_LAYERS = 1024  # plan_parser.cc kMaxLayers
ADD_PARAM_COUNT = 7
MAX_HALO_TABLE_BYTES = 1 << 28  # halo_cache.cc kMaxHaloCacheMemoryBytes


def status_text(message: str, key: str | None = None, layer: int = -1) -> str:
    """An error as the kernel words it (micro_ops/host/engine_capi.cc Reject): "layer 2: msg ('key')"."""
    return (f"layer {layer}: " if layer >= 0 else "") + message + (f" ('{key}')" if key else "")


def fail(message: str, key: str | None = None, layer: int = -1):
    raise ModelError("PATCH_STAGE options: " + status_text(message, key, layer))


# The readers below mirror micro_ops/plan_parser.cc over flexbuffer_reader (the kernel's reader, in Python):
# the same keys in the same order, read as lazily, failing with the same messages.
def _flex_error(status: int, wrong_type: str, key: str, layer: int):
    if status == fb.NOT_FOUND:
        fail("missing key", key, layer)
    if status == fb.WRONG_TYPE:
        fail(wrong_type, key, layer)
    if status == fb.OUT_OF_RANGE:
        fail("integer out of range", key, layer)
    fail("malformed FlexBuffer", key, layer)


def _find(m, key: str, layer: int):
    status, ref = fb.map_lookup(m, key)
    if status != fb.OK:
        _flex_error(status, "malformed FlexBuffer", key, layer)
    return ref


def _to_int32(ref, wrong_type: str, key: str, layer: int) -> int:
    status, value = fb.read_int64(ref)
    if status != fb.OK:
        _flex_error(status, wrong_type, key, layer)
    if not INT32_MIN <= value <= INT32_MAX:
        fail("integer does not fit int32", key, layer)
    return value


def _read_int(m, key: str, layer: int = -1) -> int:
    return _to_int32(_find(m, key, layer), "not an integer", key, layer)


def _read_optional_int(m, key: str, default: int = 0, layer: int = -1) -> int:
    status, ref = fb.map_lookup(m, key)
    if status == fb.NOT_FOUND:
        return default
    if status != fb.OK:
        _flex_error(status, "malformed FlexBuffer", key, layer)
    return _to_int32(ref, "not an integer", key, layer)


def _read_ints(m, key: str, layer: int = -1, length: int | None = None) -> list:
    """A vector of ints of any length (ReadArray<int32_t>), or of exactly `length` ints (ReadFixedInts)."""
    status, vector = fb.read_vector(_find(m, key, layer))
    if status != fb.OK:
        _flex_error(status, "not a vector of integers", key, layer)
    if length is not None and vector.length != length:
        fail("vector has the wrong length", key, layer)
    values = []
    for i in range(vector.length):
        status, element = fb.vector_element(vector, i)
        if status != fb.OK:
            _flex_error(status, "not a vector of integers", key, layer)
        if length is not None:
            values.append(_to_int32(element, "not a vector of integers", key, layer))
            continue
        status, value = fb.read_int64(element)  # ReadArray<int32_t>: the vectors of any length
        if status != fb.OK:
            _flex_error(status, "not a vector of integers", key, layer)
        if not INT32_MIN <= value <= INT32_MAX:
            fail("vector element out of range", key, layer)
        values.append(value)
    return values


def _vector_length(m, key: str, layer: int) -> int:
    """OpenIntVector: the length of a vector."""
    status, vector = fb.read_vector(_find(m, key, layer))
    if status != fb.OK:
        _flex_error(status, "not a vector of integers", key, layer)
    return vector.length


def _read_source_array(m, key: str, layer: int, count: int) -> list:
    """ReadSourceArray: exactly `count` int32 (one per source), read as ReadArray<int32_t> reads."""
    if _vector_length(m, key, layer) != count:
        fail("vector has the wrong length", key, layer)
    return _read_ints(m, key, layer)


def _read_layer(d, i: int, is_last: bool, input_shape: tuple, layers: list) -> Layer:
    """ParseLayer: the keys of one layer record."""
    op = _read_int(d, "op", i)
    if op not in KIND_NAMES:
        fail("unknown layer op", "op", i)
    num_sources = 2 if op in TWO_SOURCES else 1
    if op == CONCAT:  # ReadSources: 2 to kMaxLayerSources
        num_sources = _vector_length(d, "inputs", i)
        if not 2 <= num_sources <= MAX_CONCAT_SOURCES:
            fail(f"CONCATENATION needs 2 to {MAX_CONCAT_SOURCES} inputs", "inputs", i)
    sources = _read_source_array(d, "inputs", i, num_sources)
    out_shape = tuple(_read_ints(d, "out_shape", i, 3))
    # Shapes of sources that are not an earlier layer are checked by plan_validation; a placeholder here.
    in_shapes = [input_shape if s == STAGE_INPUT else layers[s].out_shape if 0 <= s < i else (0, 0, 0)
                 for s in sources]
    layer = Layer(op, sources, in_shapes, out_shape)
    if not is_last:
        layer.buffer_offset = _read_int(d, "buffer_offset", i)
        layer.buffer_bytes = _read_int(d, "buffer_bytes", i)
    layer.in_zp = _read_source_array(d, "in_zp", i, num_sources)
    layer.out_zp = _read_int(d, "out_zp", i)
    if op == PAD:
        layer.padding = tuple(_read_ints(d, "padding", i, 4))
        layer.pad_value = _read_int(d, "pad_value", i)
        return layer
    if op == CONCAT:
        return layer
    if op == RESIZE_NEAREST:
        layer.align_corners = _read_int(d, "align_corners", i)
        layer.half_pixel_centers = _read_int(d, "half_pixel_centers", i)
        return layer
    layer.act = tuple(_read_ints(d, "act", i, 2))
    if _has_geometry(op):
        layer.kernel = tuple(_read_ints(d, "kernel", i, 2))
        layer.stride = tuple(_read_ints(d, "stride", i, 2))
        layer.padding = tuple(_read_ints(d, "padding", i, 4))
    if op in (CONV, DEPTHWISE):
        layer.dilation = tuple(_read_ints(d, "dilation", i, 2))
        layer.filter = _read_int(d, "filter", i)
        layer.bias = _read_int(d, "bias", i)
        layer.multiplier = _read_ints(d, "multiplier", i)
        layer.shift = _read_ints(d, "shift", i)
        if len(layer.shift) != len(layer.multiplier):
            fail("multiplier and shift have different lengths", "shift", i)
    if op == DEPTHWISE:
        layer.depth_multiplier = _read_int(d, "depth_multiplier", i)
    if op in ADD_PARAMS:
        layer.add_params = _read_ints(d, "add_params", i, ADD_PARAM_COUNT)
    if op in POINTWISE_OPS:  # ReadPointwiseKeys
        if op == QUANTIZE:
            layer.input_type = _read_int(d, "input_type", i)
            if layer.input_type not in (INPUT_FLOAT32, INPUT_UINT8):
                fail("QUANTIZE input_type is neither float32 nor uint8", "input_type", i)
        if op != RELU6:
            layer.act_params = _read_ints(d, "act_params", i, act_param_count(layer))
    if op in MUL_PARAMS:
        layer.mul_params = _read_ints(d, "mul_params", i, 2)
    if op in WITH_CONSTANT:
        layer.constant = _read_int(d, "constant", i)
        layer.const_zp = _read_int(d, "const_zp", i)
        layer.const_count = _read_int(d, "const_count", i)
    return layer


def _read_cache_keys(d, i: int, layer: Layer, cache_rows: int, cache_cols: int) -> None:
    if cache_rows:
        layer.row_cache_offset = _read_int(d, "row_cache_offset", i)
        layer.row_cache_bytes = _read_int(d, "row_cache_bytes", i)
    if cache_cols:
        layer.col_cache_offset = _read_int(d, "col_cache_offset", i)
        layer.col_cache_bytes = _read_int(d, "col_cache_bytes", i)


def decode(data: bytes) -> StagePlan:
    """Parse options into a StagePlan as the kernel's parser does (ParseOptions); ModelError on anything
    malformed, worded as the kernel words it. Consistency (shapes, buffers, tensors) is plan_validation's."""
    data = bytes(data)
    status, ref = fb.get_root(data)
    if status == fb.OK:
        status, root = fb.read_map(ref)
    if status != fb.OK:
        fail("options are not a FlexBuffer map")
    version = _read_int(root, "version")
    if version not in (FORMAT_VERSION, CACHED_FORMAT_VERSION):
        fail("unsupported options format version", "version")
    cache_rows = cache_cols = 0
    if version >= CACHED_FORMAT_VERSION:
        cache_rows = _read_optional_int(root, "cache_rows")
        cache_cols = _read_optional_int(root, "cache_cols")
    input_shape = tuple(_read_ints(root, "input_shape", length=3))
    scratch_bytes = _read_int(root, "scratch_bytes")
    workspace = _read_optional_int(root, "workspace_bytes")
    grid_rows = _read_ints(root, "grid_rows")
    grid_cols = _read_ints(root, "grid_cols")
    status, vector = fb.read_vector(_find(root, "layers", -1))
    if status != fb.OK or not vector.has_type_table:
        fail("not a vector of maps", "layers")
    if vector.length == 0:
        fail("no layers", "layers")
    if vector.length > MAX_LAYERS:
        fail("too many layers", "layers")
    layers = []
    for i in range(vector.length):
        status, element = fb.vector_element(vector, i)
        if status == fb.OK:
            status, m = fb.read_map(element)
        if status != fb.OK:
            fail("layer is not a map", "layers", i)
        layer = _read_layer(m, i, i == vector.length - 1, input_shape, layers)
        if i < vector.length - 1:
            _read_cache_keys(m, i, layer, cache_rows, cache_cols)
        layers.append(layer)
    if cache_rows or cache_cols:  # HaloCacheMemoryBytes: the cache tables' size (host layout) is bounded
        n, rows, cols = len(layers) - 1, max(len(grid_rows) - 1, 0), max(len(grid_cols) - 1, 0)
        if 48 + n * (8 + rows * 8 + cols * 12) > MAX_HALO_TABLE_BYTES:
            fail("too many cached tiles", "grid_rows")
    plan = StagePlan(layers, grid_rows, grid_cols, input_shape, scratch_bytes, workspace)
    plan.cache_rows, plan.cache_cols = cache_rows, cache_cols  # 0/1 checked by plan_validation, as in Prepare
    return plan

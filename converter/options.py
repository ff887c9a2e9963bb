"""Encode and decode the PATCH_STAGE custom options (a FlexBuffer map, version 1 or 2).

The field list is the contract in docs/patch_stage_format.md.
"""
from __future__ import annotations

from dataclasses import dataclass

from flatbuffers import flexbuffers

from .errors import ModelError
from .layers import (ADD, ADD_CONST, AVG_POOL, CONV, DEPTHWISE, MAX_POOL, MUL, MUL_CONST, PAD, STAGE_INPUT,
                     SUB_CONST, Layer)

KNOWN_OPS = (CONV, DEPTHWISE, ADD, PAD, MAX_POOL, AVG_POOL, ADD_CONST, MUL_CONST, MUL, SUB_CONST)
TWO_SOURCES = (ADD, MUL)
WITH_CONSTANT = (ADD_CONST, MUL_CONST, SUB_CONST)
ADD_PARAMS = (ADD, ADD_CONST, SUB_CONST)

FORMAT_VERSION = 1           # plans without cached halos
CACHED_FORMAT_VERSION = 2    # plans with cache_rows or cache_cols
CUSTOM_CODE = "PATCH_STAGE"


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
    def version(self) -> int:
        return CACHED_FORMAT_VERSION if self.cache_rows or self.cache_cols else FORMAT_VERSION


def _has_geometry(op: int) -> bool:
    return op in (CONV, DEPTHWISE, MAX_POOL, AVG_POOL)


def encode(plan: StagePlan) -> bytes:
    b = flexbuffers.Builder()
    ints = flexbuffers.Type.INT

    def vec(key, values):
        b.Key(key)
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
                    if layer.op != PAD:
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
                    if layer.op in (MUL, MUL_CONST):
                        vec("mul_params", layer.mul_params)
                    if layer.op in WITH_CONSTANT:
                        b.Int("constant", int(layer.constant))
                        b.Int("const_zp", int(layer.const_zp))
                        b.Int("const_count", int(layer.const_count))
                    if layer.op == PAD:
                        b.Int("pad_value", int(layer.pad_value))
    return bytes(b.Finish())


def _get(d: dict, key: str, kind, where: str):
    if key not in d:
        raise ModelError(f"PATCH_STAGE options: {where} lacks '{key}'")
    value = d[key]
    if kind is int and not isinstance(value, int):
        raise ModelError(f"PATCH_STAGE options: {where} '{key}' is not an int")
    if kind is list and not (isinstance(value, list) and all(isinstance(v, int) for v in value)):
        raise ModelError(f"PATCH_STAGE options: {where} '{key}' is not a vector of ints")
    return value


def decode(data: bytes) -> StagePlan:
    """Parse options into a StagePlan; ModelError on anything malformed."""
    try:
        root = flexbuffers.Loads(bytes(data))
    except Exception:
        raise ModelError("PATCH_STAGE options: not a FlexBuffer") from None
    if not isinstance(root, dict):
        raise ModelError("PATCH_STAGE options: root is not a map")
    version = _get(root, "version", int, "root")
    if version not in (FORMAT_VERSION, CACHED_FORMAT_VERSION):
        raise ModelError(f"PATCH_STAGE options: format version {version}, this tool reads "
                         f"{FORMAT_VERSION} and {CACHED_FORMAT_VERSION}")
    flags = {}
    for key in ("cache_rows", "cache_cols"):
        value = _get(root, key, int, "root") if key in root and version >= CACHED_FORMAT_VERSION else 0
        if value not in (0, 1):
            raise ModelError(f"PATCH_STAGE options: root '{key}' is {value}, not 0 or 1")
        flags[key] = bool(value)
    input_shape = tuple(_get(root, "input_shape", list, "root"))
    raw_layers = root.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers or not all(isinstance(x, dict) for x in raw_layers):
        raise ModelError("PATCH_STAGE options: 'layers' is not a non-empty vector of maps")
    layers = []
    for i, d in enumerate(raw_layers):
        where = f"layer {i}"
        op = _get(d, "op", int, where)
        if op not in KNOWN_OPS:
            raise ModelError(f"PATCH_STAGE options: {where} has unknown op {op}")
        sources = _get(d, "inputs", list, where)
        if len(sources) != (2 if op in TWO_SOURCES else 1) or any(s < STAGE_INPUT or s >= i for s in sources):
            raise ModelError(f"PATCH_STAGE options: {where} has bad inputs {sources}")
        in_shapes = [input_shape if s == STAGE_INPUT else layers[s].out_shape for s in sources]
        layer = Layer(op, sources, in_shapes, tuple(_get(d, "out_shape", list, where)),
                      in_zp=_get(d, "in_zp", list, where), out_zp=_get(d, "out_zp", int, where))
        if i < len(raw_layers) - 1:
            layer.buffer_offset = _get(d, "buffer_offset", int, where)
            layer.buffer_bytes = _get(d, "buffer_bytes", int, where)
            if flags["cache_rows"]:
                layer.row_cache_offset = _get(d, "row_cache_offset", int, where)
                layer.row_cache_bytes = _get(d, "row_cache_bytes", int, where)
            if flags["cache_cols"]:
                layer.col_cache_offset = _get(d, "col_cache_offset", int, where)
                layer.col_cache_bytes = _get(d, "col_cache_bytes", int, where)
        if op != PAD:
            layer.act = tuple(_get(d, "act", list, where))
        if _has_geometry(op):
            layer.kernel = tuple(_get(d, "kernel", list, where))
            layer.stride = tuple(_get(d, "stride", list, where))
        if op in (CONV, DEPTHWISE):
            layer.dilation = tuple(_get(d, "dilation", list, where))
            layer.filter = _get(d, "filter", int, where)
            layer.bias = _get(d, "bias", int, where)
            layer.multiplier = _get(d, "multiplier", list, where)
            layer.shift = _get(d, "shift", list, where)
        if op == DEPTHWISE:
            layer.depth_multiplier = _get(d, "depth_multiplier", int, where)
        if _has_geometry(op) or op == PAD:
            layer.padding = tuple(_get(d, "padding", list, where))
        if op in ADD_PARAMS:
            layer.add_params = _get(d, "add_params", list, where)
        if op in (MUL, MUL_CONST):
            layer.mul_params = _get(d, "mul_params", list, where)
        if op in WITH_CONSTANT:
            layer.constant = _get(d, "constant", int, where)
            layer.const_zp = _get(d, "const_zp", int, where)
            layer.const_count = _get(d, "const_count", int, where)
        if op == PAD:
            layer.pad_value = _get(d, "pad_value", int, where)
        layers.append(layer)
    workspace = _get(root, "workspace_bytes", int, "root") if "workspace_bytes" in root else 0
    return StagePlan(layers, _get(root, "grid_rows", list, "root"), _get(root, "grid_cols", list, "root"),
                     input_shape, _get(root, "scratch_bytes", int, "root"), workspace, **flags)

"""The kernel's Prepare checks, in Python: a plan against the op's tensors.

This mirrors micro_ops/plan_validation.cc (ValidatePlan) and the halo-cache
checks of micro_ops/halo_cache.cc (ValidateHaloCache): the same rules, in the
same order, with the same messages. `analyze`, `verify` and the reference
executor run it, so options the device would reject in Prepare are rejected
here too, with the kernel's words, as bad input (exit 2), never as an
IndexError or a false "not bit-identical". tests/test_plan_validation.py holds
the two to the same verdict and message on every malformed plan the engine
tests use.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ModelError
from .halo_validation import tiles, validate_halo_cache
from .layers import (ADD, ADD_CONST, AVG_POOL, CONCAT, CONV, DEPTHWISE, HARD_SWISH, INPUT_FLOAT32, INPUT_INT8,
                     INPUT_UINT8, LEAKY_RELU, LOGISTIC, MAX_POOL, MUL, MUL_CONST, PAD, POINTWISE_OPS, QUANTIZE, RELU,
                     RESIZE_NEAREST, STAGE_INPUT, SUB_CONST)
from .layers_pointwise import bits_float
from .layout_validation import validate_layout_layer
from .options import CUSTOM_CODE, INT32_MAX, StagePlan, decode, fail
from .regions import area, patch_regions
from .schema import BuiltinOperator

MAX_WINDOW_PARAM = 1 << 16
MAX_ADD_LEFT_SHIFT = 22
MAX_IMAGE_SIDE = 1 << 20
MAX_TENSOR_DIMS = 6
WORKSPACE_ALIGNMENT = 16


@dataclass
class TensorDesc:
    """What Prepare knows of one tensor of the op (micro_ops/plan_validation.h TensorDesc)."""
    type: str                 # "INT8", "INT32", "FLOAT32", "UINT8" or anything else
    dims: tuple
    is_constant: bool
    zero_point: int | None = None   # per-tensor zero point, None when the tensor has no quantization
    num_scales: int = -1            # quantization scale count, -1 if unknown


def descs_from_arrays(inputs: list) -> list:
    """The op's inputs as the host engine describes numpy arrays: input 0 the stage input, the rest constants;
    no quantization known."""
    names = {"int8": "INT8", "int32": "INT32", "float32": "FLOAT32", "uint8": "UINT8"}
    return [TensorDesc(names.get(np.asarray(x).dtype.name, "OTHER"), tuple(np.asarray(x).shape), i > 0)
            for i, x in enumerate(inputs)]


def desc_from_tensor(tensor) -> TensorDesc:
    """A graph tensor as TFLM describes it in the op's Prepare (patch_stage_common.cc DescribeTensor)."""
    quantized = len(tensor.scales) > 0 and len(tensor.zero_points) > 0
    return TensorDesc(tensor.type_name, tuple(int(d) for d in tensor.shape), bool(tensor.is_constant),
                      tensor.zero_point if quantized else None, len(tensor.scales) if quantized else 0)


def _int8(v: int) -> bool:
    return -128 <= v <= 127


def _source_shape(plan: StagePlan, source: int) -> tuple:
    return tuple(plan.input_shape) if source == STAGE_INPUT else tuple(plan.layers[source].out_shape)


def _image_shape(shape: tuple, key: str, layer: int = -1) -> None:
    if any(d <= 0 for d in shape):
        fail("image dimensions must be positive", key, layer)
    if shape[0] > MAX_IMAGE_SIDE or shape[1] > MAX_IMAGE_SIDE or shape[0] * shape[1] * shape[2] > INT32_MAX:
        fail("image too large", key, layer)


def _is_image(t: TensorDesc, shape: tuple, type_name: str = "INT8") -> bool:
    return t.type == type_name and tuple(t.dims) == (1,) + tuple(shape)


def _stage_input(plan: StagePlan, inputs: list) -> None:
    _image_shape(plan.input_shape, "input_shape")
    if not inputs:
        fail("the op has no stage input")
    if plan.input_type != INPUT_INT8:  # a layer-0 QUANTIZE reads the model's float32 / uint8 input
        type_name = {INPUT_FLOAT32: "FLOAT32", INPUT_UINT8: "UINT8"}[plan.input_type]
        if not _is_image(inputs[0], plan.input_shape, type_name):
            fail("stage input is not the [1, H, W, C] tensor of input_shape and input_type that layer 0 "
                 "(QUANTIZE) reads", "input_type", 0)
        if plan.input_type == INPUT_UINT8 and inputs[0].zero_point is not None \
                and inputs[0].zero_point != plan.layers[0].in_zp[0]:
            fail("stage input zero point differs from in_zp", "in_zp", 0)
        return
    if not _is_image(inputs[0], plan.input_shape):
        fail("stage input is not an int8 [1, H, W, C] tensor of input_shape", "input_shape")
    if inputs[0].zero_point is None:
        return
    for i, layer in enumerate(plan.layers):
        for s, zp in zip(layer.inputs, layer.in_zp):
            if s == STAGE_INPUT and zp != inputs[0].zero_point:
                fail("stage input zero point differs from in_zp", "in_zp", i)


def _stage_output(plan: StagePlan, output: TensorDesc) -> None:
    last = len(plan.layers) - 1
    if not _is_image(output, plan.layers[last].out_shape):
        fail("stage output is not an int8 [1, H, W, C] tensor of the last layer's out_shape", "out_shape", last)
    if output.zero_point is not None and output.zero_point != plan.layers[last].out_zp:
        fail("stage output zero point differs from the last layer's out_zp", "out_zp", last)


def _quantization(layer, i: int) -> None:
    if layer.op == QUANTIZE:  # the zero point of the float32 (unused, 0) or uint8 input
        zp = layer.in_zp[0]
        if (zp != 0) if layer.input_type == INPUT_FLOAT32 else not 0 <= zp <= 255:
            fail("zero point outside the input type", "in_zp", i)
    elif any(not _int8(zp) for zp in layer.in_zp):
        fail("zero point outside int8", "in_zp", i)
    if not _int8(layer.out_zp):
        fail("zero point outside int8", "out_zp", i)
    if layer.op == PAD:
        if not _int8(layer.pad_value):
            fail("pad value outside int8", "pad_value", i)
        return
    lo, hi = layer.act
    if not (_int8(lo) and _int8(hi) and lo <= hi):
        fail("activation range is not an int8 range", "act", i)


def _in_range(v: int, lo: int, hi: int) -> bool:
    return lo <= v <= hi


def _window_output_size(size, kernel, stride, dilation, before, after) -> int:
    if not all(_in_range(v, 1, MAX_WINDOW_PARAM) for v in (kernel, stride, dilation)):
        return -1
    effective = (kernel - 1) * dilation + 1
    if before < 0 or after < 0 or before >= effective or after >= effective:
        return -1
    padded = size + before + after
    return -1 if padded < effective else (padded - effective) // stride + 1


def _window_geometry(layer, i: int, in_shape: tuple) -> None:
    top, left, bottom, right = layer.padding
    dilation = layer.dilation if layer.op in (CONV, DEPTHWISE) else (1, 1)
    h = _window_output_size(in_shape[0], layer.kernel[0], layer.stride[0], dilation[0], top, bottom)
    w = _window_output_size(in_shape[1], layer.kernel[1], layer.stride[1], dilation[1], left, right)
    if h < 0 or w < 0:
        fail("invalid kernel, stride, dilation or padding", "padding", i)
    if (h, w) != tuple(layer.out_shape[:2]):
        fail("out_shape is not what the window geometry gives", "out_shape", i)


def _pad_geometry(layer, i: int, in_shape: tuple) -> None:
    if any(not _in_range(p, 0, MAX_WINDOW_PARAM) for p in layer.padding):
        fail("invalid padding", "padding", i)
    top, left, bottom, right = layer.padding
    if (in_shape[0] + top + bottom, in_shape[1] + left + right, in_shape[2]) != tuple(layer.out_shape):
        fail("out_shape is not the padded input shape", "out_shape", i)


def _channels(layer, i: int, in_shape: tuple) -> None:
    out_c = layer.out_shape[2]
    if layer.op == DEPTHWISE:
        if layer.depth_multiplier < 1 or in_shape[2] * layer.depth_multiplier != out_c:
            fail("output channels are not input channels times depth_multiplier", "depth_multiplier", i)
    elif layer.op != CONV and in_shape[2] != out_c:
        fail("output channels differ from input channels", "out_shape", i)


def _channel_params(layer, i: int) -> None:
    if len(layer.multiplier) != layer.out_shape[2]:
        fail("need one multiplier and shift per output channel", "multiplier", i)
    for m, s in zip(layer.multiplier, layer.shift):
        if m < 0:
            fail("negative multiplier", "multiplier", i)
        if not _in_range(s, -31, 30):
            fail("shift outside [-31, 30]", "shift", i)


def _constant(inputs: list, index: int, type_name: str, dims: tuple, key: str, i: int) -> TensorDesc:
    if index < 1 or index >= len(inputs):
        fail("index is not a constant input of the op", key, i)
    t = inputs[index]
    if len(t.dims) > MAX_TENSOR_DIMS:
        fail("cannot read the input tensor", key, i)
    if t.type != type_name:
        fail("wrong tensor type", key, i)
    if not t.is_constant:
        fail("tensor is not constant", key, i)
    if tuple(t.dims) != tuple(dims):
        fail("wrong tensor shape", key, i)
    return t


def _filter_and_bias(layer, i: int, in_shape: tuple, inputs: list) -> None:
    out_c = layer.out_shape[2]
    kh, kw = layer.kernel
    dims, quantized_dim = (out_c, kh, kw, in_shape[2]), 0
    if layer.op == DEPTHWISE:
        dims, quantized_dim = (1, kh, kw, out_c), 3
    f = _constant(inputs, layer.filter, "INT8", dims, "filter", i)
    if f.num_scales not in (-1, 1, dims[quantized_dim]):
        fail("filter scale count is neither 1 nor the channel count", "filter", i)
    if layer.bias != -1:
        _constant(inputs, layer.bias, "INT32", (out_c,), "bias", i)


def _add_params(plan: StagePlan, layer, i: int) -> None:
    for s in layer.inputs:
        if _source_shape(plan, s) != tuple(layer.out_shape):
            fail("ADD inputs and output differ in shape", "out_shape", i)
    _add_param_ranges(layer.add_params, i)


def _add_param_ranges(add_params: list, i: int) -> None:
    left_shift, m1, s1, m2, s2, mo, so = add_params
    if not _in_range(left_shift, 0, MAX_ADD_LEFT_SHIFT):
        fail("left_shift outside [0, 22]", "add_params", i)
    for m, s in ((m1, s1), (m2, s2), (mo, so)):
        if m < 0 or not _in_range(s, -31, 0):
            fail("multiplier negative or shift outside [-31, 0]", "add_params", i)


def _act_params(layer, i: int) -> None:
    """ValidateActParams (micro_ops/pointwise_validation.cc): values first, then shifts, in order."""
    p = layer.act_params
    value_ok, shifts = True, ()
    if layer.op == RELU:
        value_ok, shifts = p[0] >= 0, ((p[1], -31, 30),)
    elif layer.op == LEAKY_RELU:  # identity, then alpha (may be negative)
        value_ok, shifts = p[0] >= 0 and p[2] != -(1 << 31), ((p[1], -31, 30), (p[3], -31, 30))
    elif layer.op == HARD_SWISH:  # int16 multipliers, exponents
        value_ok, shifts = 0 <= p[0] <= 32767 and 0 <= p[2] <= 32767, ((p[1], -15, 0), (p[3], -15, 15))
    elif layer.op == LOGISTIC:  # multiplier, left shift, input radius
        value_ok, shifts = p[0] >= 0 and p[2] >= 0, ((p[1], 0, 30),)
    elif layer.op == QUANTIZE and layer.input_type == INPUT_FLOAT32:
        value_ok = 0.0 < float(bits_float(p[0])) <= 3.4e38  # also rejects NaN
    elif layer.op == QUANTIZE:
        value_ok, shifts = p[0] >= 0, ((p[1], -31, 30),)
    if not value_ok:
        fail("act_params value out of range", "act_params", i)
    for v, lo, hi in shifts:
        if not _in_range(v, lo, hi):
            fail("act_params shift out of range", "act_params", i)


def _pointwise(plan: StagePlan, layer, i: int, in_shape: tuple) -> None:
    """ValidatePointwiseLayer."""
    if tuple(in_shape) != tuple(layer.out_shape):
        fail("out_shape differs from the input shape", "out_shape", i)
    if layer.op == QUANTIZE and (i != 0 or layer.inputs[0] != STAGE_INPUT):
        fail("QUANTIZE must be layer 0, reading the stage input", "op", i)
    _act_params(layer, i)


def _stage_input_readers(plan: StagePlan) -> None:
    """ValidateStageInputReaders: only layer 0 (its QUANTIZE) may read a float32 / uint8 stage input."""
    if plan.input_type == INPUT_INT8:
        return
    for i, layer in enumerate(plan.layers[1:], start=1):
        if STAGE_INPUT in layer.inputs:
            fail("only the QUANTIZE may read a non-int8 stage input", "inputs", i)
def _constant_operand(layer, i: int, inputs: list) -> None:
    """ValidateConstantOperand (micro_ops/arith_validation.cc)."""
    if layer.const_count not in (1, layer.out_shape[2]):
        fail("const_count is neither 1 nor the channel count", "const_count", i)
    if not _int8(layer.const_zp):
        fail("zero point outside int8", "const_zp", i)
    if layer.constant < 1 or layer.constant >= len(inputs):
        fail("index is not a constant input of the op", "constant", i)
    t = inputs[layer.constant]
    if len(t.dims) > MAX_TENSOR_DIMS:
        fail("cannot read the input tensor", "constant", i)
    if t.type != "INT8":
        fail("wrong tensor type", "constant", i)
    if not t.is_constant:
        fail("tensor is not constant", "constant", i)
    dims = tuple(t.dims)
    if len(dims) > 4 or any(d != 1 for d in dims[:-1]) or int(np.prod(dims, dtype=np.int64)) != layer.const_count:
        fail("constant is not a scalar or [C] of const_count values", "constant", i)
    if t.zero_point is not None and t.zero_point != layer.const_zp:
        fail("constant zero point differs from const_zp", "const_zp", i)


def _arith(plan: StagePlan, layer, i: int, inputs: list) -> None:
    """ValidateArithLayer (micro_ops/arith_validation.cc)."""
    for s in layer.inputs:
        if _source_shape(plan, s) != tuple(layer.out_shape):
            fail("arithmetic inputs and output differ in shape", "out_shape", i)
    if layer.op in (MUL, MUL_CONST):
        multiplier, shift = layer.mul_params
        if multiplier < 0 or not _in_range(shift, -31, 30):
            fail("multiplier negative or shift outside [-31, 30]", "mul_params", i)
    else:
        _add_param_ranges(layer.add_params, i)
    if layer.op in (ADD_CONST, MUL_CONST, SUB_CONST):
        _constant_operand(layer, i, inputs)


def _layer(plan: StagePlan, i: int, inputs: list) -> None:
    layer = plan.layers[i]
    if any(s < STAGE_INPUT or s >= i for s in layer.inputs):
        fail("a layer source must be -1 or an earlier layer", "inputs", i)
    _image_shape(layer.out_shape, "out_shape", i)
    _quantization(layer, i)
    in_shape = _source_shape(plan, layer.inputs[0])
    if layer.op == ADD:
        _add_params(plan, layer, i)
    elif layer.op in (CONCAT, RESIZE_NEAREST):
        validate_layout_layer(plan, i)
    elif layer.op == PAD:
        _pad_geometry(layer, i, in_shape)
    elif layer.op in (MAX_POOL, AVG_POOL):
        _window_geometry(layer, i, in_shape)
        _channels(layer, i, in_shape)
    elif layer.op in (CONV, DEPTHWISE):
        _window_geometry(layer, i, in_shape)
        _channels(layer, i, in_shape)
        _channel_params(layer, i)
        _filter_and_bias(layer, i, in_shape, inputs)
    elif layer.op in POINTWISE_OPS:
        _pointwise(plan, layer, i, in_shape)
    elif layer.op in (ADD_CONST, MUL_CONST, MUL, SUB_CONST):
        _arith(plan, layer, i, inputs)
    else:
        fail("unknown layer op", "op", i)


def _grid(bounds: list, size: int, key: str) -> None:
    if len(bounds) < 2 or bounds[0] != 0 or bounds[-1] != size:
        fail("grid must run from 0 to the output size", key)
    if any(b <= a for a, b in zip(bounds, bounds[1:])):
        fail("grid boundaries must strictly increase", key)


def last_use(plan: StagePlan, index: int) -> int:
    """The last layer that reads layer `index`'s output (itself if none)."""
    return max([j for j in range(index + 1, len(plan.layers)) if index in plan.layers[j].inputs], default=index)


def _overlap(a, b) -> bool:
    if a.buffer_bytes == 0 or b.buffer_bytes == 0:
        return False
    return a.buffer_offset < b.buffer_offset + b.buffer_bytes and b.buffer_offset < a.buffer_offset + a.buffer_bytes


def _buffers(plan: StagePlan) -> None:
    if plan.scratch_bytes < 0:
        fail("negative size", "scratch_bytes")
    ws = plan.workspace_bytes
    if ws < 0 or ws > plan.scratch_bytes or (ws > 0 and (plan.scratch_bytes - ws) % WORKSPACE_ALIGNMENT):
        fail("workspace must be an aligned tail of scratch_bytes", "workspace_bytes")
    end = plan.scratch_bytes - ws
    buffers = plan.layers[:-1]
    for i, layer in enumerate(buffers):
        if layer.buffer_offset < 0 or layer.buffer_bytes < 0 or layer.buffer_offset + layer.buffer_bytes > end:
            fail("layer buffer lies outside scratch_bytes", "buffer_offset", i)
    for live in range(len(buffers)):
        for writer in range(live + 1, min(last_use(plan, live), len(buffers) - 1) + 1):
            if _overlap(buffers[live], buffers[writer]):
                fail("layer buffer overlaps a buffer that is still live", "buffer_offset", writer)


def _patch_regions(plan: StagePlan) -> None:
    for _, _, tile in tiles(plan):
        regions, _ = patch_regions(plan.layers, tile)
        for i, layer in enumerate(plan.layers[:-1]):
            if area(regions[i]) * layer.out_shape[2] > layer.buffer_bytes:
                fail("a patch region does not fit the layer buffer", "buffer_bytes", i)


def validate_plan(plan: StagePlan, inputs: list, output: TensorDesc) -> None:
    """ValidatePlan: ModelError with the kernel's message at the first rule the plan breaks."""
    _stage_input(plan, inputs)
    _stage_input_readers(plan)
    for i in range(len(plan.layers)):
        _layer(plan, i, inputs)
    _stage_output(plan, output)
    out_h, out_w, _ = plan.layers[-1].out_shape
    _grid(plan.grid_rows, out_h, "grid_rows")
    _grid(plan.grid_cols, out_w, "grid_cols")
    _buffers(plan)
    validate_halo_cache(plan)
    _patch_regions(plan)



def validated_plan(op, graph) -> StagePlan:
    """A PATCH_STAGE op's plan, parsed and checked against its tensors as the kernel does in Init/Prepare."""
    if not op.custom_options:
        fail(f"the PATCH_STAGE at op {op.index} has no options")
    try:
        plan = decode(op.custom_options)
        inputs = [desc_from_tensor(graph.tensors[t]) if t >= 0 else TensorDesc("OTHER", (), False)
                  for t in op.inputs]
        validate_plan(plan, inputs, desc_from_tensor(graph.tensors[op.outputs[0]]))
    except ModelError as exc:
        raise ModelError(f"PATCH_STAGE at op {op.index}: {str(exc).replace('PATCH_STAGE options: ', '')}") \
            from None
    return plan


def stage_plans(graph) -> dict:
    """op index -> validated plan, for every PATCH_STAGE of a graph."""
    return {op.index: validated_plan(op, graph) for op in graph.ops
            if op.opcode == BuiltinOperator.CUSTOM and op.custom_code == CUSTOM_CODE}

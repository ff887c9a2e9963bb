"""Lower the graph's stage ops into layer records: geometry and integer parameters.

A `Layer` holds exactly what the PATCH_STAGE options hold for one layer (see
docs/patch_stage_format.md), plus, when it comes from the converter, the graph
op it replaces. Lowering refuses (with `Unsupported`) anything the kernel
cannot reproduce bit for bit; such an op ends the stage.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import quant
from .graph import Graph, Op
from .schema import BuiltinOperator, Padding, TensorType

CONV, DEPTHWISE, ADD, PAD, MAX_POOL, AVG_POOL = range(6)
# Pointwise ops (layers_pointwise.py): one element in, one out, no halo.
RELU, RELU6, LEAKY_RELU, HARD_SWISH, LOGISTIC, QUANTIZE = range(10, 16)
ADD_CONST, MUL_CONST, MUL, SUB_CONST = 20, 21, 22, 23   # with a broadcast constant; MUL of two images
CONCAT, RESIZE_NEAREST = 30, 31   # layout ops: they move bytes, no arithmetic
KIND_NAMES = {CONV: "CONV_2D", DEPTHWISE: "DEPTHWISE_CONV_2D", ADD: "ADD", PAD: "PAD",
              MAX_POOL: "MAX_POOL_2D", AVG_POOL: "AVERAGE_POOL_2D", RELU: "RELU", RELU6: "RELU6",
              LEAKY_RELU: "LEAKY_RELU", HARD_SWISH: "HARD_SWISH", LOGISTIC: "LOGISTIC", QUANTIZE: "QUANTIZE",
              ADD_CONST: "ADD", MUL_CONST: "MUL", MUL: "MUL", SUB_CONST: "SUB",
              CONCAT: "CONCATENATION", RESIZE_NEAREST: "RESIZE_NEAREST_NEIGHBOR"}
POINTWISE_OPS = frozenset((RELU, RELU6, LEAKY_RELU, HARD_SWISH, LOGISTIC, QUANTIZE))
ACT_PARAM_COUNT = {RELU: 2, RELU6: 0, LEAKY_RELU: 4, HARD_SWISH: 4, LOGISTIC: 3}  # QUANTIZE: by input type
# Stage input element types (values as TfLiteType): int8, or float32/uint8 into a first-layer QUANTIZE.
INPUT_FLOAT32, INPUT_UINT8, INPUT_INT8 = 1, 3, 9
# Ops whose output pixel reads only the same pixel of each input: no halo.
POINTWISE = (ADD, ADD_CONST, MUL_CONST, MUL, SUB_CONST) + tuple(sorted(POINTWISE_OPS))
STAGE_INPUT = -1
MAX_CONCAT_SOURCES = 10           # TFLM's concatenation.cc kMaxInputNum


class Unsupported(Exception):
    """This op cannot be part of a PATCH_STAGE; the message says why."""


@dataclass
class Layer:
    op: int
    inputs: list                      # sources: STAGE_INPUT or an earlier layer index
    in_shapes: list                   # [(H, W, C)] per source
    out_shape: tuple                  # (H, W, C)
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    dilation: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)     # top, left, bottom, right
    depth_multiplier: int = 1
    in_zp: list = field(default_factory=list)
    out_zp: int = 0
    act: tuple = (quant.INT8_MIN, quant.INT8_MAX)
    multiplier: list = field(default_factory=list)
    shift: list = field(default_factory=list)
    add_params: list = field(default_factory=list)
    mul_params: list = field(default_factory=list)   # MUL, MUL_CONST: [output_multiplier, output_shift]
    constant: int = -1                # ADD_CONST, MUL_CONST: index into PATCH_STAGE inputs
    const_zp: int = 0                 # the constant's zero point
    const_count: int = 0              # its value count: 1, or one per channel
    pad_value: int = 0
    align_corners: int = 0            # RESIZE_NEAREST_NEIGHBOR
    half_pixel_centers: int = 0
    filter: int = -1                  # index into PATCH_STAGE inputs
    bias: int = -1
    buffer_offset: int = 0
    buffer_bytes: int = 0
    act_params: list = field(default_factory=list)  # pointwise ops (layers_pointwise.py)
    input_type: int = INPUT_INT8      # QUANTIZE: the stage input's element type
    row_cache_offset: int = 0         # format version 2 (cached halos)
    row_cache_bytes: int = 0
    col_cache_offset: int = 0
    col_cache_bytes: int = 0
    # converter-side only
    op_index: int = -1
    filter_tensor: int = -1           # graph tensor indices
    bias_tensor: int = -1
    constant_tensor: int = -1

    @property
    def name(self) -> str:
        return KIND_NAMES[self.op]

    def macs_per_output_pixel(self) -> int:
        kh, kw = self.kernel
        if self.op == CONV:
            return kh * kw * self.in_shapes[0][2] * self.out_shape[2]
        if self.op == DEPTHWISE:
            return kh * kw * self.out_shape[2]
        return 0


def same_or_valid_padding(padding: int, in_hw: tuple, kernel: tuple, stride: tuple, dilation: tuple):
    """TFLite's output size and (top, left, bottom, right) padding.

    ComputePaddingHeightWidth: the total padding is split with the odd extra
    row/column at the bottom/right.
    """
    out, pads = [], []
    for size, k, s, d in zip(in_hw, kernel, stride, dilation):
        effective = (k - 1) * d + 1
        if padding == Padding.SAME:
            o = (size + s - 1) // s
        else:
            o = (size + s - effective) // s
        if o <= 0:
            raise Unsupported(f"kernel {k} (dilation {d}) larger than the input ({size})")
        total = max(0, (o - 1) * s + effective - size)
        out.append(o)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return tuple(out), (top, left, bottom, right)


def image_shape(graph: Graph, t: int, what: str, batch: int = 1) -> tuple:
    tensor = graph.tensors[t]
    if tensor.type != TensorType.INT8:
        raise Unsupported(f"{what} is {tensor.type_name}, not INT8")
    if len(tensor.shape) != 4 or tensor.shape[0] != batch:
        raise Unsupported(f"{what} has shape {list(tensor.shape)}, not [1, H, W, C]")
    if len(tensor.scales) != 1:
        raise Unsupported(f"{what} is not per-tensor quantized")
    return tuple(tensor.shape[1:])


def _conv_like(graph: Graph, op: Op, kind: int, sources: list, batch: int = 1) -> Layer:
    """The layer of a CONV_2D / DEPTHWISE_CONV_2D; `batch` > 1 only for the inner conv of a lowered dilation."""
    o = op.options
    in_shape = image_shape(graph, op.inputs[0], "input", batch)
    out_shape = image_shape(graph, op.outputs[0], "output", batch)
    filt = graph.tensors[op.inputs[1]]
    if not filt.is_constant or filt.type != TensorType.INT8 or len(filt.shape) != 4:
        raise Unsupported("filter is not a constant int8 4-D tensor")
    if np.any(filt.zero_points != 0):
        raise Unsupported("filter zero points are not 0")
    bias_t = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] >= 0 else -1
    if bias_t >= 0:
        b = graph.tensors[bias_t]
        if not b.is_constant or b.type != TensorType.INT32:
            raise Unsupported("bias is not a constant int32 tensor")
    kernel = (filt.shape[1], filt.shape[2])
    stride = (o.strideH, o.strideW)
    dilation = (o.dilationHFactor or 1, o.dilationWFactor or 1)
    out_hw, padding = same_or_valid_padding(o.padding, in_shape[:2], kernel, stride, dilation)
    out_c = out_shape[2]
    if kind == CONV:
        if filt.shape[0] != out_c or filt.shape[3] != in_shape[2]:
            raise Unsupported("filter shape does not match input/output channels (grouped conv?)")
        depth_multiplier = 1
    else:
        if filt.shape[0] != 1 or filt.shape[3] != out_c or out_c % in_shape[2]:
            raise Unsupported("depthwise filter shape does not match channels")
        depth_multiplier = out_c // in_shape[2]
    if tuple(out_hw) != tuple(out_shape[:2]):
        raise Unsupported(f"output size {list(out_shape[:2])} is not what the padding rule gives ({list(out_hw)})")
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    scales = filt.scales if len(filt.scales) > 1 else np.repeat(filt.scales[:1], out_c)
    if len(scales) != out_c:
        raise Unsupported("per-channel filter scales do not match the output channels")
    mults, shifts = [], []
    for s in scales:
        m, sh = quant.quantize_multiplier(float(inp.scale) * float(s) / float(out.scale))
        mults.append(m)
        shifts.append(sh)
    return Layer(kind, sources, [in_shape], out_shape, kernel=kernel, stride=stride, dilation=dilation,
                 padding=padding, depth_multiplier=depth_multiplier, in_zp=[inp.zero_point],
                 out_zp=out.zero_point, act=quant.activation_range(o.fusedActivationFunction, out.scale, out.zero_point),
                 multiplier=mults, shift=shifts, op_index=op.index, filter_tensor=op.inputs[1], bias_tensor=bias_t)


def _pool(graph: Graph, op: Op, kind: int, sources: list) -> Layer:
    o = op.options
    in_shape = image_shape(graph, op.inputs[0], "input")
    out_shape = image_shape(graph, op.outputs[0], "output")
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if inp.zero_point != out.zero_point or inp.scale != out.scale:
        raise Unsupported("pooling input and output quantization differ")
    kernel, stride = (o.filterHeight, o.filterWidth), (o.strideH, o.strideW)
    out_hw, padding = same_or_valid_padding(o.padding, in_shape[:2], kernel, stride, (1, 1))
    if tuple(out_hw) != tuple(out_shape[:2]) or out_shape[2] != in_shape[2]:
        raise Unsupported("pooling output shape is not what the padding rule gives")
    return Layer(kind, sources, [in_shape], out_shape, kernel=kernel, stride=stride, padding=padding,
                 in_zp=[inp.zero_point], out_zp=out.zero_point,
                 act=quant.activation_range(o.fusedActivationFunction, out.scale, out.zero_point), op_index=op.index)


def _add(graph: Graph, op: Op, sources: list) -> Layer:
    shapes = [image_shape(graph, t, "ADD input") for t in op.inputs[:2]]
    out_shape = image_shape(graph, op.outputs[0], "output")
    if shapes[0] != shapes[1] or shapes[0] != out_shape:
        raise Unsupported("ADD with broadcasting")
    a, b, out = (graph.tensors[t] for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
    left_shift = 20
    twice_max = 2 * max(float(a.scale), float(b.scale))
    m1, s1 = quant.quantize_multiplier_smaller_than_one(float(a.scale) / twice_max)
    m2, s2 = quant.quantize_multiplier_smaller_than_one(float(b.scale) / twice_max)
    mo, so = quant.quantize_multiplier_smaller_than_one(twice_max / ((1 << left_shift) * float(out.scale)))
    act = op.options.fusedActivationFunction if op.options is not None else 0
    return Layer(ADD, sources, shapes, out_shape, in_zp=[a.zero_point, b.zero_point], out_zp=out.zero_point,
                 act=quant.activation_range(act, out.scale, out.zero_point),
                 add_params=[left_shift, m1, s1, m2, s2, mo, so], op_index=op.index)


def _pad(graph: Graph, op: Op, sources: list) -> Layer:
    in_shape = image_shape(graph, op.inputs[0], "input")
    out_shape = image_shape(graph, op.outputs[0], "output")
    paddings = graph.tensors[op.inputs[1]]
    if not paddings.is_constant or paddings.data.shape != (4, 2):
        raise Unsupported("PAD paddings are not a constant [4, 2] tensor")
    p = paddings.data.astype(np.int64)
    if p[0].any() or p[3].any() or (p < 0).any():
        raise Unsupported("PAD on batch or channels, or negative padding")
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if inp.zero_point != out.zero_point or inp.scale != out.scale:
        raise Unsupported("PAD input and output quantization differ")
    pad_value = out.zero_point
    if op.opcode == BuiltinOperator.PADV2 and len(op.inputs) > 2 and op.inputs[2] >= 0:
        cv = graph.tensors[op.inputs[2]]
        if not cv.is_constant or cv.num_elements != 1:
            raise Unsupported("PADV2 constant value is not a constant scalar")
        pad_value = int(cv.data.reshape(-1)[0])
    padding = (int(p[1, 0]), int(p[2, 0]), int(p[1, 1]), int(p[2, 1]))
    expect = (in_shape[0] + padding[0] + padding[2], in_shape[1] + padding[1] + padding[3], in_shape[2])
    if expect != out_shape:
        raise Unsupported("PAD output shape does not match its paddings")
    return Layer(PAD, sources, [in_shape], out_shape, padding=padding, in_zp=[inp.zero_point],
                 out_zp=out.zero_point, pad_value=pad_value, op_index=op.index)


def _concat(graph: Graph, op: Op, sources: list) -> Layer:
    """CONCATENATION along channels. TFLM's int8 kernel requires every input's scale and zero point to equal
    the output's (it never requantizes), so the layer is a copy of each source into its channel slice."""
    if len(op.inputs) < 2 or len(op.inputs) > MAX_CONCAT_SOURCES:
        raise Unsupported(f"CONCATENATION of {len(op.inputs)} inputs (2 to {MAX_CONCAT_SOURCES} supported)")
    if len(sources) != len(op.inputs):
        raise Unsupported("CONCATENATION of a constant tensor")
    shapes = [image_shape(graph, t, "CONCATENATION input") for t in op.inputs]
    out_shape = image_shape(graph, op.outputs[0], "output")
    axis = getattr(op.options, "axis", 0)
    if axis not in (3, -1):
        raise Unsupported(f"CONCATENATION along axis {axis}, not channels")
    if getattr(op.options, "fusedActivationFunction", 0):
        raise Unsupported("CONCATENATION with a fused activation (TFLM rejects it)")
    if any(s[:2] != out_shape[:2] for s in shapes) or sum(s[2] for s in shapes) != out_shape[2]:
        raise Unsupported("CONCATENATION input shapes do not stack to the output shape")
    out = graph.tensors[op.outputs[0]]
    for t in op.inputs:
        x = graph.tensors[t]
        if float(x.scale) != float(out.scale) or x.zero_point != out.zero_point:
            raise Unsupported("CONCATENATION input quantization differs from the output's (TFLM's int8 "
                              "kernel does not requantize)")
    return Layer(CONCAT, sources, shapes, out_shape, in_zp=[graph.tensors[t].zero_point for t in op.inputs],
                 out_zp=out.zero_point, op_index=op.index)


def _resize_nearest(graph: Graph, op: Op, sources: list) -> Layer:
    """RESIZE_NEAREST_NEIGHBOR: a copy of the input pixel nearest.source_index picks, any sizes."""
    in_shape = image_shape(graph, op.inputs[0], "input")
    out_shape = image_shape(graph, op.outputs[0], "output")
    if len(op.inputs) < 2 or op.inputs[1] < 0:
        raise Unsupported("RESIZE_NEAREST_NEIGHBOR without a size tensor")
    size = graph.tensors[op.inputs[1]]
    if not size.is_constant or size.type != TensorType.INT32 or size.num_elements != 2:
        raise Unsupported("RESIZE_NEAREST_NEIGHBOR size is not a constant int32 [2] tensor")
    if [int(v) for v in size.data.reshape(-1)] != list(out_shape[:2]) or out_shape[2] != in_shape[2]:
        raise Unsupported("RESIZE_NEAREST_NEIGHBOR output shape does not match its size tensor")
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if inp.zero_point != out.zero_point or float(inp.scale) != float(out.scale):
        raise Unsupported("RESIZE_NEAREST_NEIGHBOR input and output quantization differ")
    return Layer(RESIZE_NEAREST, sources, [in_shape], out_shape, in_zp=[inp.zero_point], out_zp=out.zero_point,
                 align_corners=int(bool(getattr(op.options, "alignCorners", False))),
                 half_pixel_centers=int(bool(getattr(op.options, "halfPixelCenters", False))), op_index=op.index)


def lower_op(graph: Graph, op: Op, sources: list) -> Layer:
    """The layer record for a graph op, or Unsupported with the reason."""
    if len(op.outputs) != 1:
        raise Unsupported("op has several outputs")
    code = op.opcode
    if code == BuiltinOperator.CONV_2D:
        return _conv_like(graph, op, CONV, sources)
    if code == BuiltinOperator.DEPTHWISE_CONV_2D:
        return _conv_like(graph, op, DEPTHWISE, sources)
    if code == BuiltinOperator.ADD:
        if any(t >= 0 and graph.tensors[t].is_constant for t in op.inputs[:2]):
            from .layers_arith import lower_add_const
            return lower_add_const(graph, op, sources)
        return _add(graph, op, sources)
    if code == BuiltinOperator.MUL:
        from .layers_arith import lower_mul
        return lower_mul(graph, op, sources)
    if code == BuiltinOperator.SUB:
        from .layers_arith import lower_sub_const
        return lower_sub_const(graph, op, sources)
    if code in (BuiltinOperator.PAD, BuiltinOperator.PADV2):
        return _pad(graph, op, sources)
    if code == BuiltinOperator.MAX_POOL_2D:
        return _pool(graph, op, MAX_POOL, sources)
    if code == BuiltinOperator.AVERAGE_POOL_2D:
        return _pool(graph, op, AVG_POOL, sources)
    if code == BuiltinOperator.CONCATENATION:
        return _concat(graph, op, sources)
    if code == BuiltinOperator.RESIZE_NEAREST_NEIGHBOR:
        return _resize_nearest(graph, op, sources)
    from .layers_pointwise import LOWERINGS
    if code in LOWERINGS:
        return LOWERINGS[code](graph, op, sources)
    raise Unsupported(f"{op.name} is not a stage op")

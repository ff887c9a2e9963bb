"""Dilated convolutions as TFLite lowers them: SPACE_TO_BATCH_ND -> CONV -> BATCH_TO_SPACE_ND.

When TFLiteConverter cannot fold a dilated Conv2D / DepthwiseConv2D (a Keras
model with a dynamic batch dimension), it emits

    X [1,H,W,C] --SPACE_TO_BATCH_ND(block [d,d], paddings [[pt,pb],[pl,pr]])--> [d*d, Hs, Ws, C]
      --CONV_2D / DEPTHWISE_CONV_2D (VALID, stride 1, dilation 1)-->              [d*d, oh, ow, OC]
      --BATCH_TO_SPACE_ND(block [d,d], crops [[ct,cb],[cl,cr]])-->                [1, Ho, Wo, OC]

Writing P for X padded with pt/pb rows and pl/pr columns of the value V that
TFLM's SPACE_TO_BATCH_ND writes, batch (by, bx) holds P[d*i + by, d*j + bx],
its VALID conv reads P[d*(i + ky) + by, ...], and BATCH_TO_SPACE_ND puts that
result at (d*i + by - ct, ...). So output pixel (y, x) is

    sum_k f[k] * (P[y + ct + d*ky, x + cl + d*kx] - zp)

-- a convolution with dilation d of P, started ct rows / cl columns in. Its
taps stay inside P (the VALID conv never reads outside its batch image), so
it equals a dilated VALID convolution of X padded with top = pt - ct, left =
pl - cl and bottom/right just as far as the last output needs (<= pb, pr).
That needs pt >= ct and pl >= cl; otherwise the group is refused.

The pad value: TFLM's reference SpaceToBatchND pads with
`SpaceToBatchParams::output_offset`, which TFLM's kernel never sets (its
Prepare only checks types; the struct lives in persistent arena memory, so
the value is 0 on the zero-filled arenas TFLM runs on) -- NOT the zero
point, unlike TFLite. The padding byte is therefore 0. When 0 is the conv's
input zero point, the padding is the conv layer's own (taps outside the image
count as the zero point); otherwise a PAD layer writes the zeros, then a
VALID dilated conv follows. Either is bit-exact with TFLM's three ops.
"""
from __future__ import annotations

import numpy as np

from .graph import Graph
from .layers import CONV, DEPTHWISE, PAD, Layer, Unsupported, _conv_like, image_shape
from .schema import BuiltinOperator, Padding, TensorType

# The byte TFLM's SPACE_TO_BATCH_ND writes in its padding (see the module docstring).
TFLM_SPACE_TO_BATCH_PAD_VALUE = 0


def _const_ints(graph: Graph, t: int, shape: tuple, what: str) -> np.ndarray:
    tensor = graph.tensors[t]
    if not tensor.is_constant or tensor.type != TensorType.INT32 or tuple(tensor.data.shape) != shape:
        raise Unsupported(f"{what} is not a constant int32 {list(shape)} tensor")
    return tensor.data.astype(np.int64)


def _only_consumer(graph: Graph, t: int, op_index: int, what: str) -> None:
    if graph.consumers.get(t, []) != [op_index] or t in graph.outputs:
        raise Unsupported(f"{what} is read by more than the next op of the dilation pattern")


def _same_quantization(graph: Graph, a: int, b: int, what: str) -> None:
    ta, tb = graph.tensors[a], graph.tensors[b]
    if ta.scale != tb.scale or ta.zero_point != tb.zero_point:
        raise Unsupported(f"{what} input and output quantization differ")


def lower_dilated(graph: Graph, index: int, sources: list, first_layer: int) -> tuple:
    """Ops index..index+2 as layers: ([PAD,] dilated conv), the internal tensors; or Unsupported.

    `first_layer` is the stage layer index the first returned layer gets.
    """
    if index + 2 >= len(graph.ops):
        raise Unsupported("SPACE_TO_BATCH_ND is not followed by a conv and BATCH_TO_SPACE_ND")
    s2b, conv, b2s = graph.ops[index:index + 3]
    if conv.opcode not in (BuiltinOperator.CONV_2D, BuiltinOperator.DEPTHWISE_CONV_2D) \
            or b2s.opcode != BuiltinOperator.BATCH_TO_SPACE_ND or len(s2b.inputs) < 3 or len(b2s.inputs) < 3 \
            or conv.inputs[0] != s2b.outputs[0] or b2s.inputs[0] != conv.outputs[0] \
            or len(conv.outputs) != 1 or len(b2s.outputs) != 1:
        raise Unsupported("SPACE_TO_BATCH_ND is not followed by a conv and BATCH_TO_SPACE_ND it feeds")
    _only_consumer(graph, s2b.outputs[0], conv.index, "the SPACE_TO_BATCH_ND output")
    _only_consumer(graph, conv.outputs[0], b2s.index, "the dilated conv's output")
    block = _const_ints(graph, s2b.inputs[1], (2,), "SPACE_TO_BATCH_ND block shape")
    if not np.array_equal(block, _const_ints(graph, b2s.inputs[1], (2,), "BATCH_TO_SPACE_ND block shape")):
        raise Unsupported("SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND block shapes differ")
    pads = _const_ints(graph, s2b.inputs[2], (2, 2), "SPACE_TO_BATCH_ND paddings")
    crops = _const_ints(graph, b2s.inputs[2], (2, 2), "BATCH_TO_SPACE_ND crops")
    if (block < 1).any() or (pads < 0).any() or (crops < 0).any():
        raise Unsupported("negative paddings or crops, or a block shape below 1")
    bh, bw = int(block[0]), int(block[1])
    for t, what in ((s2b.outputs[0], "SPACE_TO_BATCH_ND output"), (conv.outputs[0], "dilated conv output")):
        batch = graph.tensors[t].shape[0] if len(graph.tensors[t].shape) == 4 else -1
        if batch != bh * bw:
            raise Unsupported(f"the {what} has batch {batch}, not {bh * bw} (a model converted with a dynamic "
                              f"batch size?): TFLM computes only {batch} of the {bh * bw} phases of this "
                              "dilated conv and leaves the rest of its output unwritten")
    in_shape = image_shape(graph, s2b.inputs[0], "input")
    out_shape = image_shape(graph, b2s.outputs[0], "output")
    _same_quantization(graph, s2b.inputs[0], s2b.outputs[0], "SPACE_TO_BATCH_ND")
    _same_quantization(graph, b2s.inputs[0], b2s.outputs[0], "BATCH_TO_SPACE_ND")
    o = conv.options
    if o.padding != Padding.VALID or (o.strideH, o.strideW) != (1, 1) \
            or (o.dilationHFactor or 1, o.dilationWFactor or 1) != (1, 1):
        raise Unsupported("the conv between SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND is not VALID, stride 1, "
                          "dilation 1")
    kind = CONV if conv.opcode == BuiltinOperator.CONV_2D else DEPTHWISE
    layer = _conv_like(graph, conv, kind, sources, batch=bh * bw)
    hs, ws = (in_shape[0] + pads[0].sum()) // bh, (in_shape[1] + pads[1].sum()) // bw
    oh, ow = layer.out_shape[0], layer.out_shape[1]
    if layer.in_shapes[0][:2] != (hs, ws) or out_shape != (oh * bh - crops[0].sum(), ow * bw - crops[1].sum(),
                                                          layer.out_shape[2]):
        raise Unsupported("SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND shapes do not match their block, paddings, crops")
    kh, kw = layer.kernel
    top, left = int(pads[0, 0] - crops[0, 0]), int(pads[1, 0] - crops[1, 0])
    bottom = out_shape[0] - 1 + (kh - 1) * bh + 1 - in_shape[0] - top
    right = out_shape[1] - 1 + (kw - 1) * bw + 1 - in_shape[1] - left
    if min(top, left, bottom, right) < 0:
        raise Unsupported("BATCH_TO_SPACE_ND crops more than SPACE_TO_BATCH_ND pads: not a padded dilated conv")
    padding = (top, left, bottom, right)
    layer.in_shapes = [in_shape]
    layer.out_shape = out_shape
    layer.dilation = (bh, bw)
    layer.op_index = b2s.index
    internal = [s2b.outputs[0], conv.outputs[0]]
    effective = ((kh - 1) * bh + 1, (kw - 1) * bw + 1)
    fits = max(top, bottom) < effective[0] and max(left, right) < effective[1]
    if layer.in_zp[0] == TFLM_SPACE_TO_BATCH_PAD_VALUE and fits:
        layer.padding = padding
        return [layer], internal
    padded = (in_shape[0] + top + bottom, in_shape[1] + left + right, in_shape[2])
    pad = Layer(PAD, sources, [in_shape], padded, padding=padding, in_zp=[layer.in_zp[0]], out_zp=layer.in_zp[0],
                pad_value=TFLM_SPACE_TO_BATCH_PAD_VALUE, op_index=s2b.index)
    layer.inputs = [first_layer]
    layer.in_shapes = [padded]
    layer.padding = (0, 0, 0, 0)
    return [pad, layer], internal

"""Build small int8 TFLite models directly with the flatbuffer schema.

The property-based tests draw random stages (kernels, strides, dilations,
padding, activations, residual ADDs, PADs, pools, odd and non-square sizes)
and need many models fast, without TensorFlow: this writes them op by op.
Every model ends with a MEAN (not a stage op) so that the stage has a tail.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tflm_patch.converter import model_io
from tflm_patch.converter.schema import ActivationFunctionType, BuiltinOperator, BuiltinOptions, Padding, TensorType, schema


@dataclass
class Act:
    """An activation tensor of the model being built."""
    index: int
    shape: tuple     # (H, W, C)
    scale: float
    zp: int


@dataclass
class ModelBuilder:
    rng: np.random.Generator
    tensors: list = field(default_factory=list)
    buffers: list = field(default_factory=list)
    ops: list = field(default_factory=list)
    opcodes: list = field(default_factory=list)

    def __post_init__(self):
        self.buffers.append(schema.BufferT())

    def tensor(self, shape, ttype, scales=None, zps=None, data=None, name=None) -> int:
        t = schema.TensorT()
        t.shape = list(shape)
        t.type = ttype
        t.name = name or f"t{len(self.tensors)}"
        if scales is not None:
            q = schema.QuantizationParametersT()
            q.scale = [float(s) for s in np.atleast_1d(scales)]
            q.zeroPoint = [int(z) for z in np.atleast_1d(zps)]
            q.quantizedDimension = 0 if len(q.scale) > 1 else 0
            t.quantization = q
        if data is not None:
            b = schema.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8).copy()
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        else:
            t.buffer = 0
        self.tensors.append(t)
        return len(self.tensors) - 1

    def activation(self, shape, scale, zp) -> Act:
        idx = self.tensor((1,) + tuple(shape), TensorType.INT8, [scale], [zp])
        return Act(idx, tuple(shape), scale, zp)

    def op(self, code, inputs, outputs, options_type=0, options=None):
        if code not in self.opcodes:
            self.opcodes.append(code)
        o = schema.OperatorT()
        o.opcodeIndex = self.opcodes.index(code)
        o.inputs, o.outputs = list(inputs), list(outputs)
        o.builtinOptionsType, o.builtinOptions = options_type, options
        self.ops.append(o)

    def finish(self, inputs, outputs) -> bytes:
        m = schema.ModelT()
        m.version = 3
        codes = []
        for c in self.opcodes:
            oc = schema.OperatorCodeT()
            oc.builtinCode = c
            oc.deprecatedBuiltinCode = min(c, 127)
            oc.version = 1
            codes.append(oc)
        m.operatorCodes = codes
        sg = schema.SubGraphT()
        sg.tensors, sg.operators, sg.inputs, sg.outputs = self.tensors, self.ops, list(inputs), list(outputs)
        m.subgraphs = [sg]
        m.buffers = self.buffers
        m.description = "tflm-patch test model"
        return model_io.serialize_model(m)

    # ---- layers ----
    def _out_scale(self, x: Act, fan_in: int) -> float:
        # int8 inputs times int8 weights of scale ~0.015: keep outputs spread over int8
        return float(x.scale * np.sqrt(fan_in) * self.rng.uniform(0.05, 0.3))

    def conv(self, x: Act, out_c, k, stride=1, dilation=1, padding=Padding.SAME, act=ActivationFunctionType.NONE,
             depthwise=False, depth_multiplier=1, out_q=None) -> Act:
        kh, kw = (k, k) if isinstance(k, int) else k
        h, w, c = x.shape
        if depthwise:
            out_c = c * depth_multiplier
            filt = self.rng.integers(-127, 128, size=(1, kh, kw, out_c), dtype=np.int8)
            fan_in = kh * kw
        else:
            filt = self.rng.integers(-127, 128, size=(out_c, kh, kw, c), dtype=np.int8)
            fan_in = kh * kw * c
        w_scales = self.rng.uniform(0.005, 0.03, size=out_c).astype(np.float32)
        bias = self.rng.integers(-2000, 2000, size=out_c, dtype=np.int32)
        eff = ((kh - 1) * dilation + 1, (kw - 1) * dilation + 1)
        if padding == Padding.SAME:
            oh, ow = -(-h // stride), -(-w // stride)
        else:
            oh, ow = (h - eff[0]) // stride + 1, (w - eff[1]) // stride + 1
        out_scale, out_zp = out_q or (self._out_scale(x, fan_in), int(self.rng.integers(-20, 20)))
        y = self.activation((oh, ow, out_c), out_scale, out_zp)
        fi = self.tensor(filt.shape, TensorType.INT8, w_scales, np.zeros(out_c, np.int64), filt)
        if depthwise:
            self.tensors[fi].quantization.quantizedDimension = 3
        bi = self.tensor(bias.shape, TensorType.INT32, w_scales * x.scale, np.zeros(out_c, np.int64), bias)
        if depthwise:
            o = schema.DepthwiseConv2DOptionsT()
            o.depthMultiplier = depth_multiplier
            code, otype = BuiltinOperator.DEPTHWISE_CONV_2D, BuiltinOptions.DepthwiseConv2DOptions
        else:
            o = schema.Conv2DOptionsT()
            code, otype = BuiltinOperator.CONV_2D, BuiltinOptions.Conv2DOptions
        o.padding, o.strideH, o.strideW = padding, stride, stride
        o.dilationHFactor = o.dilationWFactor = dilation
        o.fusedActivationFunction = act
        self.op(code, [x.index, fi, bi], [y.index], otype, o)
        return y

    def add(self, a: Act, b: Act, act=ActivationFunctionType.NONE) -> Act:
        y = self.activation(a.shape, max(a.scale, b.scale) * self.rng.uniform(1.0, 2.0), int(self.rng.integers(-10, 10)))
        o = schema.AddOptionsT()
        o.fusedActivationFunction = act
        self.op(BuiltinOperator.ADD, [a.index, b.index], [y.index], BuiltinOptions.AddOptions, o)
        return y

    def pad(self, x: Act, top, bottom, left, right) -> Act:
        h, w, c = x.shape
        p = np.array([[0, 0], [top, bottom], [left, right], [0, 0]], dtype=np.int32)
        pi = self.tensor((4, 2), TensorType.INT32, data=p)
        y = self.activation((h + top + bottom, w + left + right, c), x.scale, x.zp)
        self.op(BuiltinOperator.PAD, [x.index, pi], [y.index], BuiltinOptions.PadOptions, schema.PadOptionsT())
        return y

    def pool(self, x: Act, k, stride, padding=Padding.SAME, average=False, act=ActivationFunctionType.NONE) -> Act:
        h, w, c = x.shape
        if padding == Padding.SAME:
            oh, ow = -(-h // stride), -(-w // stride)
        else:
            oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
        y = self.activation((oh, ow, c), x.scale, x.zp)
        o = schema.Pool2DOptionsT()
        o.padding, o.strideH, o.strideW, o.filterHeight, o.filterWidth = padding, stride, stride, k, k
        o.fusedActivationFunction = act
        code = BuiltinOperator.AVERAGE_POOL_2D if average else BuiltinOperator.MAX_POOL_2D
        self.op(code, [x.index], [y.index], BuiltinOptions.Pool2DOptions, o)
        return y

    def concat(self, xs: list, axis: int = 3) -> Act:
        """CONCATENATION along channels; the output takes the first input's quantization (TFLM's int8
        kernel requires every input to share it)."""
        h, w = xs[0].shape[:2]
        y = self.activation((h, w, sum(x.shape[2] for x in xs)), xs[0].scale, xs[0].zp)
        o = schema.ConcatenationOptionsT()
        o.axis, o.fusedActivationFunction = axis, ActivationFunctionType.NONE
        self.op(BuiltinOperator.CONCATENATION, [x.index for x in xs], [y.index], BuiltinOptions.ConcatenationOptions, o)
        return y

    def resize_nearest(self, x: Act, h: int, w: int, align_corners=False, half_pixel_centers=False) -> Act:
        size = self.tensor((2,), TensorType.INT32, data=np.array([h, w], dtype=np.int32))
        y = self.activation((h, w, x.shape[2]), x.scale, x.zp)
        o = schema.ResizeNearestNeighborOptionsT()
        o.alignCorners, o.halfPixelCenters = bool(align_corners), bool(half_pixel_centers)
        self.op(BuiltinOperator.RESIZE_NEAREST_NEIGHBOR, [x.index, size], [y.index],
                BuiltinOptions.ResizeNearestNeighborOptions, o)
        return y

    def mean_tail(self, x: Act) -> Act:
        axis = self.tensor((2,), TensorType.INT32, data=np.array([1, 2], dtype=np.int32))
        y_idx = self.tensor((1, x.shape[2]), TensorType.INT8, [x.scale], [x.zp])
        o = schema.ReducerOptionsT()
        o.keepDims = False
        self.op(BuiltinOperator.MEAN, [x.index, axis], [y_idx], BuiltinOptions.ReducerOptions, o)
        return Act(y_idx, (x.shape[2],), x.scale, x.zp)

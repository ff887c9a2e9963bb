"""Check a parsed model before anything reads it: one clear ModelError per fault.

Everything later (graph, analysis, planning, rewrite, verify) reads names,
indices, buffers, shapes and quantization as if the model were sound. A
corrupt or hostile file must be refused here, as bad input, with the reason:
never a crash later, and never a "NOT bit-identical" that is the model's fault
(NaN or absurd scales, zero points outside the type, emptied weights, a tensor
that is read but never written, whose bytes TFLM would take from uninitialised
arena).
"""
from __future__ import annotations

import math

import numpy as np

from .errors import ModelError
from .schema import ActivationFunctionType, BuiltinOperator, Padding, TensorType, TENSOR_TYPE_NAMES, schema

ITEM_SIZE = {
    TensorType.FLOAT32: 4, TensorType.FLOAT16: 2, TensorType.INT32: 4, TensorType.UINT8: 1,
    TensorType.INT64: 8, TensorType.BOOL: 1, TensorType.INT16: 2, TensorType.INT8: 1,
    TensorType.FLOAT64: 8, TensorType.UINT32: 4, TensorType.UINT16: 2,
}
INT_RANGE = {
    TensorType.INT8: (-128, 127), TensorType.UINT8: (0, 255), TensorType.INT16: (-32768, 32767),
    TensorType.UINT16: (0, 65535), TensorType.INT32: (-(1 << 31), (1 << 31) - 1),
}
MAX_TENSOR_BYTES = 1 << 31          # TFLM sizes are 32-bit
# Activation scales outside this range make TFLM's activation clamps (zero point + f / scale, cast to
# int32) overflow: no real int8 model comes near either end.
MIN_ACTIVATION_SCALE, MAX_ACTIVATION_SCALE = 1e-8, 1e8
MAX_REAL_MULTIPLIER = float(1 << 30)
MAX_GEOMETRY = 1 << 16              # strides, dilations, windows: TFLM's padding arithmetic is 32-bit  # a requantization left shift beyond 30 overflows int32 in TFLM
ACTIVATIONS = (ActivationFunctionType.NONE, ActivationFunctionType.RELU, ActivationFunctionType.RELU6,
               ActivationFunctionType.RELU_N1_TO_1)
PADDINGS = (Padding.SAME, Padding.VALID)

# op code -> (min inputs, options class or None, "conv" / "pool" / None)
_OP_RULES = {
    BuiltinOperator.CONV_2D: (2, schema.Conv2DOptionsT, "conv"),
    BuiltinOperator.DEPTHWISE_CONV_2D: (2, schema.DepthwiseConv2DOptionsT, "conv"),
    BuiltinOperator.MAX_POOL_2D: (1, schema.Pool2DOptionsT, "pool"),
    BuiltinOperator.AVERAGE_POOL_2D: (1, schema.Pool2DOptionsT, "pool"),
    BuiltinOperator.ADD: (2, None, None),
    BuiltinOperator.PAD: (2, None, None),
    BuiltinOperator.PADV2: (2, None, None),
    BuiltinOperator.FULLY_CONNECTED: (2, None, None),
    BuiltinOperator.MEAN: (2, None, None),
    BuiltinOperator.SUM: (2, None, None),
    BuiltinOperator.REDUCE_MAX: (2, None, None),
    BuiltinOperator.REDUCE_MIN: (2, None, None),
    BuiltinOperator.REDUCE_PROD: (2, None, None),
    BuiltinOperator.CONCATENATION: (1, None, None),
    BuiltinOperator.RESIZE_NEAREST_NEIGHBOR: (2, None, None),
}


def _text(value, what: str, name: str) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{name}: {what} is not UTF-8 text") from None


def _ints(values) -> list:
    return [int(v) for v in (values if values is not None else [])]


def _builtin_code(opcode) -> int:
    return max(int(opcode.builtinCode), int(opcode.deprecatedBuiltinCode))


class _Checker:
    def __init__(self, model, name: str, data_size: int):
        self.m, self.name, self.data_size = model, name, data_size

    def fail(self, what: str):
        raise ModelError(f"{self.name}: {what}")

    # -------------------------------------------------------------- model level
    def run(self) -> None:
        m = self.m
        if not m.subgraphs:
            self.fail("model has no subgraph")
        _text(m.description, "the model description", self.name)
        n_buffers = len(m.buffers or [])
        for i, b in enumerate(m.buffers or []):
            if int(b.offset) > 1 or int(b.size) > 0:
                end = int(b.offset) + int(b.size)
                if int(b.offset) <= 1 or end > self.data_size:
                    self.fail(f"corrupt model (buffer {i} points outside the file: offset {b.offset}, size {b.size})")
                self.fail(f"buffer {i} is stored outside the flatbuffer (a model over 2 GB): not supported")
        for i, md in enumerate(m.metadata or []):
            _text(md.name, f"metadata {i} name", self.name)
            if not 0 <= int(md.buffer) < n_buffers:
                self.fail(f"corrupt model (metadata {i} refers to buffer {md.buffer} of {n_buffers})")
        for b in _ints(m.metadataBuffer):
            if not 0 <= b < n_buffers:
                self.fail(f"corrupt model (metadata buffer {b} of {n_buffers})")
        for i, oc in enumerate(m.operatorCodes or []):
            _text(oc.customCode, f"operator code {i}'s custom name", self.name)
        for k, sg in enumerate(m.subgraphs):
            self.subgraph_indices(k, sg, n_buffers)
        for i, sig in enumerate(m.signatureDefs or []):
            _text(sig.signatureKey, f"signature {i} key", self.name)
            if not 0 <= int(sig.subgraphIndex) < len(m.subgraphs):
                self.fail(f"corrupt model (signature {i} refers to subgraph {sig.subgraphIndex})")
            sg = m.subgraphs[sig.subgraphIndex]
            for what, maps, ends in (("input", sig.inputs, sg.inputs), ("output", sig.outputs, sg.outputs)):
                for tm in maps or []:
                    _text(tm.name, f"signature {i} tensor name", self.name)
                    if int(tm.tensorIndex) not in _ints(ends):
                        self.fail(f"corrupt model (signature {i} {what} is tensor {tm.tensorIndex}, "
                                  f"not a subgraph {what})")
        self.main_subgraph(m.subgraphs[0])

    def subgraph_indices(self, k: int, sg, n_buffers: int) -> None:
        """Indices every subgraph must get right (the rewrite walks all of them)."""
        n_tensors = len(sg.tensors or [])
        n_codes = len(self.m.operatorCodes or [])
        _text(sg.name, f"subgraph {k} name", self.name)
        for i, t in enumerate(sg.tensors or []):
            if not 0 <= int(t.buffer) < n_buffers:
                self.fail(f"corrupt model (tensor {i} refers to buffer {t.buffer} of {n_buffers})")
            _text(t.name, f"tensor {i} name", self.name)
        for j, op in enumerate(sg.operators or []):
            if not 0 <= int(op.opcodeIndex) < n_codes:
                self.fail(f"corrupt model (op {j} has operator code index {op.opcodeIndex} of {n_codes})")
            for t in _ints(op.inputs) + _ints(op.intermediates):
                if not -1 <= t < n_tensors:
                    self.fail(f"corrupt model (op {j} refers to tensor {t} of {n_tensors})")
            for t in _ints(op.outputs):
                if not 0 <= t < n_tensors:
                    self.fail(f"corrupt model (op {j} writes tensor {t} of {n_tensors})")
        for what, ts in (("input", sg.inputs), ("output", sg.outputs)):
            for t in _ints(ts):
                if not 0 <= t < n_tensors:
                    self.fail(f"corrupt model (subgraph {k} {what} is tensor {t} of {n_tensors})")

    # -------------------------------------------------------------- the subgraph we read
    def main_subgraph(self, sg) -> None:
        tensors = sg.tensors or []
        if not sg.operators:
            self.fail("the main subgraph has no operators")
        if not _ints(sg.inputs) or not _ints(sg.outputs):
            self.fail("the main subgraph has no inputs or no outputs")
        constant = [self.tensor(i, t) for i, t in enumerate(tensors)]
        inputs = set(_ints(sg.inputs))
        written = set(inputs)
        for i in inputs:
            if constant[i]:
                self.fail(f"model input {self.label(i)} is a constant")
        for j, op in enumerate(sg.operators):
            code = _builtin_code(self.m.operatorCodes[op.opcodeIndex])
            self.op_rules(j, op, code)
            for t in _ints(op.inputs):
                if t < 0 or t in written or constant[t] or tensors[t].isVariable:
                    continue
                self.fail(f"tensor {self.label(t)} is read by op {j} but never written (not an input, "
                          "a constant or a variable: empty weights?)")
            for t in _ints(op.outputs):
                if constant[t] or t in written:
                    self.fail(f"op {j} writes tensor {self.label(t)}, which is "
                              + ("a constant" if constant[t] else "already written"))
                written.add(t)
        for t in _ints(sg.outputs):
            if t not in written and not constant[t]:
                self.fail(f"model output {self.label(t)} is never written")

    def label(self, i: int) -> str:
        t = self.m.subgraphs[0].tensors[i]
        return f"{i} ({_text(t.name, 'a tensor name', self.name)!r})"

    def tensor(self, i: int, t) -> bool:
        """Check one tensor; True if it holds constant data."""
        if int(t.type) not in TENSOR_TYPE_NAMES:
            self.fail(f"tensor {self.label(i)} has unknown type {t.type}")
        shape = _ints(t.shape)
        if any(d < 1 for d in shape):
            self.fail(f"tensor {self.label(i)} has shape {shape}: dimensions must be positive")
        elements = math.prod(shape)
        item = ITEM_SIZE.get(int(t.type))
        if item is not None and elements * item >= MAX_TENSOR_BYTES:
            self.fail(f"tensor {self.label(i)} of shape {shape} is larger than 2 GB")
        buf = self.m.buffers[t.buffer]
        data = buf.data
        has_data = data is not None and len(data) > 0
        if has_data and item is not None and len(data) != elements * item:
            self.fail(f"tensor {self.label(i)}: its buffer holds {len(data)} bytes, its shape {shape} "
                      f"needs {elements * item}")
        if has_data and t.isVariable:
            self.fail(f"tensor {self.label(i)} holds constant data but is marked variable")
        self.quantization(i, t, shape, has_data)
        return has_data

    def quantization(self, i: int, t, shape: list, constant: bool) -> None:
        q = t.quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            if q is not None and q.zeroPoint is not None and len(q.zeroPoint):
                self.fail(f"tensor {self.label(i)} has zero points but no scales")
            return
        scales = np.array([float(s) for s in q.scale], dtype=np.float64)
        zps = _ints(q.zeroPoint)
        if len(zps) != len(scales):
            self.fail(f"tensor {self.label(i)} has {len(scales)} quantization scales but {len(zps)} zero points")
        if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
            bad = next(float(s) for s in scales if not (math.isfinite(s) and s > 0))
            self.fail(f"tensor {self.label(i)} has quantization scale {bad}: scales must be finite and positive")
        if not constant and int(t.type) in INT_RANGE and int(t.type) != TensorType.INT32:
            if np.any(scales < MIN_ACTIVATION_SCALE) or np.any(scales > MAX_ACTIVATION_SCALE):
                self.fail(f"tensor {self.label(i)} has quantization scale {float(scales[0]):g}, outside "
                          f"[{MIN_ACTIVATION_SCALE:g}, {MAX_ACTIVATION_SCALE:g}]")
        lo, hi = INT_RANGE.get(int(t.type), (-(1 << 63), (1 << 63) - 1))
        for z in zps:
            if not lo <= z <= hi:
                self.fail(f"tensor {self.label(i)} has zero point {z}, outside its type's range [{lo}, {hi}]")
        if len(scales) > 1:
            dim = int(q.quantizedDimension)
            if len(shape) == 1 and shape[0] == len(scales):
                return  # a per-channel bias: old converters (TFLM's person_detect) name any dimension here
            if not 0 <= dim < len(shape) or shape[dim] != len(scales):
                self.fail(f"tensor {self.label(i)} has {len(scales)} per-channel scales on dimension {dim} "
                          f"of shape {shape}")

    # -------------------------------------------------------------- ops the converter reads
    def op_rules(self, j: int, op, code: int) -> None:
        rule = _OP_RULES.get(code)
        if rule is None:
            return
        min_inputs, options_class, kind = rule
        ins, outs = _ints(op.inputs), _ints(op.outputs)
        if len(ins) < min_inputs or any(t < 0 for t in ins[:min_inputs]) or len(outs) != 1:
            self.fail(f"op {j} has {len(ins)} inputs and {len(outs)} outputs, wrong for its kind")
        tensors = self.m.subgraphs[0].tensors
        x, y = tensors[ins[0]], tensors[outs[0]]
        if int(x.type) == TensorType.INT8 and int(y.type) != TensorType.INT8:
            self.fail(f"op {j} reads INT8 but writes {TENSOR_TYPE_NAMES.get(int(y.type))} tensor {self.label(outs[0])}")
        o = op.builtinOptions
        if options_class is not None and not isinstance(o, options_class):
            self.fail(f"op {j} has no {options_class.__name__[:-1]} (corrupt options)")
        act = getattr(o, "fusedActivationFunction", ActivationFunctionType.NONE) if o is not None else 0
        if act not in ACTIVATIONS:
            self.fail(f"op {j} has fused activation {act}, which int8 kernels do not support")
        if kind == "conv":
            if o.padding not in PADDINGS or o.strideH < 1 or o.strideW < 1 \
                    or o.dilationHFactor < 1 or o.dilationWFactor < 1:
                self.fail(f"op {j} has padding {o.padding}, strides {o.strideH}x{o.strideW}, dilation "
                          f"{o.dilationHFactor}x{o.dilationWFactor}: not a valid convolution")
            if max(o.strideH, o.strideW, o.dilationHFactor, o.dilationWFactor) > MAX_GEOMETRY:
                self.fail(f"op {j} has strides {o.strideH}x{o.strideW}, dilation {o.dilationHFactor}x"
                          f"{o.dilationWFactor}: beyond TFLite's integer geometry")
            if code == BuiltinOperator.DEPTHWISE_CONV_2D:
                self.depth_multiplier(j, ins[0], outs[0], o.depthMultiplier)
            if len(ins) > 2 and ins[2] >= 0 and int(x.type) == TensorType.INT8 \
                    and int(tensors[ins[2]].type) != TensorType.INT32:
                self.fail(f"op {j}'s bias {self.label(ins[2])} is "
                          f"{TENSOR_TYPE_NAMES.get(int(tensors[ins[2]].type))}, not INT32")
            w = _ints(tensors[ins[1]].shape)
            if len(w) == 4:
                self.window_output(j, x, y, (w[1], w[2]), (o.strideH, o.strideW),
                                   (o.dilationHFactor, o.dilationWFactor), o.padding)
            self.requantization(j, ins[0], ins[1], outs[0])
        elif kind == "pool":
            if o.padding not in PADDINGS or min(o.strideH, o.strideW, o.filterHeight, o.filterWidth) < 1 \
                    or max(o.strideH, o.strideW, o.filterHeight, o.filterWidth) > MAX_GEOMETRY:
                self.fail(f"op {j} has padding {o.padding}, strides {o.strideH}x{o.strideW}, filter "
                          f"{o.filterHeight}x{o.filterWidth}: not a valid pooling")
            self.window_output(j, x, y, (o.filterHeight, o.filterWidth), (o.strideH, o.strideW), (1, 1),
                               o.padding)
        elif code == BuiltinOperator.ADD:
            self.add_scales(j, ins[0], ins[1], outs[0])
        elif code == BuiltinOperator.FULLY_CONNECTED:
            w = _ints(tensors[ins[1]].shape)
            n_in, n_out = math.prod(_ints(x.shape)), math.prod(_ints(y.shape))
            if len(w) != 2 or n_in % w[1] or n_in // w[1] * w[0] != n_out:
                self.fail(f"op {j} (FULLY_CONNECTED): weights {w} do not take input {_ints(x.shape)} to output "
                          f"{_ints(y.shape)}")
        elif code in (BuiltinOperator.MEAN, BuiltinOperator.SUM, BuiltinOperator.REDUCE_MAX,
                      BuiltinOperator.REDUCE_MIN, BuiltinOperator.REDUCE_PROD):
            self.reduction_output(j, x, tensors[ins[1]], y)

    def window_output(self, j, x, y, kernel, stride, dilation, padding) -> None:
        """A windowed op (conv, depthwise, pool) must write exactly the output TFLite's padding rule gives:
        TFLM loops over the output tensor's shape, so a larger one is left partly uninitialised."""
        sx, sy = _ints(x.shape), _ints(y.shape)
        if len(sx) != 4 or len(sy) != 4:
            self.fail(f"op {j} has input {sx} and output {sy}: not [N, H, W, C] images")
        for size, out, k, s, d in zip(sx[1:3], sy[1:3], kernel, stride, dilation):
            effective = (k - 1) * d + 1
            expect = (size + s - 1) // s if padding == Padding.SAME else (size - effective + s) // s
            if out != expect or effective > MAX_GEOMETRY:
                self.fail(f"op {j}: output {sy} is not what input {sx}, kernel {list(kernel)}, strides "
                          f"{list(stride)} and dilation {list(dilation)} give")
        if sx[0] != sy[0]:
            self.fail(f"op {j}: output {sy} does not keep the batch of input {sx}")

    def reduction_output(self, j, x, axis, y) -> None:
        buf = self.m.buffers[axis.buffer].data
        if buf is None or len(buf) == 0 or int(axis.type) != TensorType.INT32:
            return  # TFLM's own checks refuse a non-constant axis
        rank = len(_ints(x.shape))
        dims = {int(a) % rank if rank else 0 for a in np.frombuffer(bytes(bytearray(buf)), dtype=np.int32)}
        if any(not -rank <= int(a) < rank for a in np.frombuffer(bytes(bytearray(buf)), dtype=np.int32)):
            self.fail(f"op {j} reduces over axes outside its input's rank {rank}")
        expect = math.prod(d for k, d in enumerate(_ints(x.shape)) if k not in dims)
        if math.prod(_ints(y.shape)) != expect:
            self.fail(f"op {j}: output {_ints(y.shape)} does not hold the reduction of {_ints(x.shape)}")

    def depth_multiplier(self, j: int, x: int, y: int, dm: int) -> None:
        """TFLM's depthwise kernel loops over the options' multiplier, trusting it to match the shapes."""
        tensors = self.m.subgraphs[0].tensors
        sx, sy = _ints(tensors[x].shape), _ints(tensors[y].shape)
        if dm < 1 or (len(sx) == 4 and len(sy) == 4 and sy[3] != sx[3] * dm):
            self.fail(f"op {j} (DEPTHWISE_CONV_2D) has depth multiplier {dm}, but {sx[-1:]} input and "
                      f"{sy[-1:]} output channels")

    def _scales(self, t: int) -> list:
        q = self.m.subgraphs[0].tensors[t].quantization
        return [float(s) for s in q.scale] if q is not None and q.scale is not None else []

    def requantization(self, j: int, x: int, w: int, y: int) -> None:
        sx, sw, sy = self._scales(x), self._scales(w), self._scales(y)
        if sx and sw and sy:
            real = sx[0] * max(sw) / sy[0]
            if real >= MAX_REAL_MULTIPLIER:
                self.fail(f"op {j}'s scales give a requantization multiplier of {real:g}, beyond what TFLite's "
                          "integer arithmetic represents")

    def add_scales(self, j: int, a: int, b: int, y: int) -> None:
        sa, sb, sy = self._scales(a), self._scales(b), self._scales(y)
        if sa and sb and sy and 2 * max(sa[0], sb[0]) / ((1 << 20) * sy[0]) >= 1.0:
            self.fail(f"ADD op {j}: its output scale {sy[0]:g} is too small for its input scales "
                      "(TFLite requires an output multiplier below 1)")


def validate_model(model: "schema.ModelT", name: str = "model", data_size: int | None = None) -> None:
    """Raise ModelError, naming the fault, unless the model is sound to read."""
    _Checker(model, name, data_size if data_size is not None else 1 << 62).run()

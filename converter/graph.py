"""A read-only view of a model's main subgraph: tensors, ops, producers, consumers."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ModelError
from .schema import BUILTIN_NAMES, TENSOR_TYPE_NAMES, BuiltinOperator, TensorType, schema

_ITEM_SIZE = {
    TensorType.FLOAT32: 4, TensorType.FLOAT16: 2, TensorType.INT32: 4, TensorType.UINT8: 1,
    TensorType.INT64: 8, TensorType.BOOL: 1, TensorType.INT16: 2, TensorType.INT8: 1,
    TensorType.FLOAT64: 8, TensorType.UINT32: 4, TensorType.UINT16: 2,
}
_NUMPY_DTYPE = {TensorType.INT8: np.int8, TensorType.INT32: np.int32, TensorType.UINT8: np.uint8,
                TensorType.INT16: np.int16, TensorType.FLOAT32: np.float32, TensorType.INT64: np.int64}


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple
    type: int
    buffer: int
    data: np.ndarray | None  # constant data (already typed), None for activations
    scales: np.ndarray       # float32 quantization scales (empty if none)
    zero_points: np.ndarray  # int64 zero points (empty if none)
    is_variable: bool

    @property
    def type_name(self) -> str:
        return TENSOR_TYPE_NAMES.get(self.type, str(self.type))

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def num_elements(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.num_elements * _ITEM_SIZE.get(self.type, 4)

    @property
    def scale(self) -> float:
        return float(self.scales[0]) if len(self.scales) else 0.0

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0]) if len(self.zero_points) else 0


@dataclass
class Op:
    index: int
    opcode: int                 # builtin code (CUSTOM for custom ops)
    custom_code: str | None
    inputs: list
    outputs: list
    options: object             # the schema's *OptionsT object, or None
    custom_options: bytes | None = None

    @property
    def name(self) -> str:
        if self.opcode == BuiltinOperator.CUSTOM:
            return self.custom_code or "CUSTOM"
        return BUILTIN_NAMES.get(self.opcode, f"OP_{self.opcode}")


@dataclass
class Graph:
    tensors: list
    ops: list
    inputs: list
    outputs: list
    producer: dict = field(default_factory=dict)   # tensor -> op index
    consumers: dict = field(default_factory=dict)  # tensor -> [op index]
    offline_offsets: dict | None = None  # tensor -> offset, from OfflineMemoryAllocation metadata
    offline_error: str | None = None     # why that metadata is unusable (TFLM would refuse the model)


def builtin_code(opcode: "schema.OperatorCodeT") -> int:
    return max(opcode.builtinCode, opcode.deprecatedBuiltinCode)


def _tensor_data(model, t: "schema.TensorT"):
    buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
    if buf is None or buf.data is None or len(buf.data) == 0:
        return None
    dtype = _NUMPY_DTYPE.get(t.type)
    raw = np.asarray(buf.data, dtype=np.uint8).tobytes()
    if dtype is None:
        return np.frombuffer(raw, dtype=np.uint8)
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
    arr = np.frombuffer(raw, dtype=dtype)
    expected = int(np.prod(shape)) if shape else 1
    if arr.size != expected:
        raise ModelError(f"corrupt model: tensor {t.name!r} data does not match its shape")
    return arr.reshape(shape)


def build_graph(model: "schema.ModelT") -> Graph:
    sg = model.subgraphs[0]
    tensors = []
    for i, t in enumerate(sg.tensors or []):
        q = t.quantization
        scales = np.asarray(q.scale if q is not None and q.scale is not None else [], dtype=np.float32)
        zps = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], dtype=np.int64)
        name = t.name.decode() if isinstance(t.name, bytes) else (t.name or f"tensor_{i}")
        tensors.append(Tensor(i, name, tuple(int(d) for d in (t.shape if t.shape is not None else [])),
                              t.type, t.buffer, _tensor_data(model, t), scales, zps, bool(t.isVariable)))
    ops = []
    for i, op in enumerate(sg.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        ops.append(Op(i, builtin_code(code), custom,
                      [int(x) for x in (op.inputs if op.inputs is not None else [])],
                      [int(x) for x in (op.outputs if op.outputs is not None else [])],
                      op.builtinOptions,
                      bytes(np.asarray(op.customOptions, dtype=np.uint8)) if op.customOptions is not None else None))
    g = Graph(tensors, ops, [int(x) for x in sg.inputs], [int(x) for x in sg.outputs])
    try:
        g.offline_offsets = _offline_offsets(model, len(tensors))
    except ModelError as exc:
        g.offline_error = str(exc)
    return index_graph(g)


def index_graph(g: Graph) -> Graph:
    """Fill the graph's producer and consumer maps from its ops."""
    for op in g.ops:
        for t in op.outputs:
            g.producer[t] = op.index
        for t in op.inputs:
            if t >= 0:
                g.consumers.setdefault(t, []).append(op.index)
    return g


def _offline_offsets(model, num_tensors: int) -> dict | None:
    """The OfflineMemoryAllocation metadata TFLM honours: int32 [1, 0, n, offset per tensor]."""
    for m in model.metadata or []:
        name = m.name.decode() if isinstance(m.name, bytes) else m.name
        if name != "OfflineMemoryAllocation" or m.buffer >= len(model.buffers or []):
            continue
        raw = model.buffers[m.buffer].data
        raw = bytes(np.asarray(raw if raw is not None else [], np.uint8))
        words = np.frombuffer(raw[:len(raw) // 4 * 4], dtype="<i4")
        if len(words) < 3 or int(words[2]) != num_tensors or len(words) < 3 + num_tensors:
            raise ModelError("its OfflineMemoryAllocation metadata does not match its tensors (TFLM refuses it)")
        return {i: int(v) for i, v in enumerate(words[3:3 + num_tensors]) if v >= 0}
    return None

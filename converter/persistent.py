"""Predict TFLM's persistent ("tail") arena and `arena_used_bytes()`, to the byte.

TFLM's SingleArenaBufferAllocator hands out persistent memory from the end of
the arena downwards: each request of `size` bytes with alignment `a` moves the
tail to AlignPointerDown(tail - size, a). The tail used therefore depends on
every request's size, its alignment and their order, and this module replays
that sequence exactly as TFLM makes it (micro_allocator.cc,
micro_interpreter.cc, micro_interpreter_graph.cc and the kernels' Init and
Prepare), for the reference kernels:

1. the allocator objects (SingleArenaBufferAllocator, GreedyMemoryPlanner,
   MicroAllocator; the Recording* variants in the tflite-micro wheel);
2. StartModelAllocation: MicroBuiltinDataAllocator, SubgraphAllocations,
   one TfLiteEvalTensor per tensor, one NodeAndRegistration per op;
3. each op's builtin params (the flatbuffer parser's TfLite*Params, own
   alignment), in op order;
4. each op's Init (OpData, 16-byte aligned via AllocatePersistentBuffer);
5. each op's Prepare (conv/depthwise per-channel multipliers and shifts,
   per-channel fully connected, int16 softmax LUTs, reshape's writable dims);
6. FinishModelAllocation: the scratch buffer handles, variable tensors;
7. MicroInterpreter::AllocateTensors: the input and output TfLiteTensor
   pointer arrays (16-byte aligned) and a persistent TfLiteTensor (with its
   TfLiteAffineQuantization and zero-point array) per input and output.

Temporary TfLiteTensors (Prepare's AllocateTemp*) are freed and cost nothing.
`arena_used_bytes()` = the planned (head) arena + this tail, given an arena
whose end is 16-byte aligned (`alignas(16) uint8_t arena[N]` with N a
multiple of 16).

Struct sizes depend on the ABI: HOST64 is x86-64/AArch64 with TFLM's
TF_LITE_STATIC_MEMORY (the wheel, a host build), CORTEX_M is 32-bit Arm EABI
(arm-none-eabi-g++, short enums). Both tables were read from the compiler
(sizeof/alignof against TFLM's headers at the pinned commit).

CMSIS-NN builds (OPTIMIZED_KERNEL_DIR=cmsis_nn) use other OpData structs and
request scratch buffers sized by CMSIS-NN's *_get_buffer_size, which changes
the head too: `predict_arena_used(graph, abi="cortex_m", kernels="cmsis_nn")`
models both for Cortex-M cores with the DSP extension (GCC); other CMSIS-NN
builds raise Unpredictable.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from .graph import Graph
from .layers import CONV, DEPTHWISE
from .options import CUSTOM_CODE, in_place_vectors
from .options import decode as _decode
from .schema import BuiltinOperator, Padding, TensorType
from .arena import ARENA_ALIGNMENT, builtin_scratch_requests


def decode(options) -> object:
    """options.decode, once per distinct options (the planner predicts many plans that share stages)."""
    return _decoded(bytes(options))


@functools.lru_cache(maxsize=256)
def _decoded(options: bytes):
    return _decode(options)


# sizeof, alignof per struct. "PatchStage*" are ours (micro_ops/plan.h, halo_cache.h, patch_stage_common.cc).
HOST64 = {
    "TfLiteEvalTensor": (24, 8), "TfLiteTensor": (64, 8), "TfLiteAffineQuantization": (24, 8),
    "TfLiteIntArray": (4, 4), "NodeAndRegistration": (64, 8), "SubgraphAllocations": (16, 8),
    "ScratchBufferHandle": (8, 8), "SingleArenaBufferAllocator": (72, 8),
    "RecordingSingleArenaBufferAllocator": (104, 8), "GreedyMemoryPlanner": (72, 8),
    "MicroAllocator": (72, 8), "RecordingMicroAllocator": (248, 8), "pointer": (8, 8),
    "MicroBuiltinDataAllocator": (16, 8),  # vtable pointer + IPersistentBufferAllocator*
    "TfLiteConvParams": (28, 4), "TfLiteDepthwiseConvParams": (28, 4), "TfLiteAddParams": (8, 4),
    "TfLitePoolParams": (40, 4), "TfLiteReducerParams": (1, 1), "TfLiteFullyConnectedParams": (16, 4),
    "TfLiteSoftmaxParams": (4, 4), "TfLiteReshapeParams": (36, 4), "TfLiteMulParams": (4, 4),
    "OpDataConv": (72, 8), "OpDataFullyConnected": (64, 8), "OpDataAdd": (60, 4), "OpDataPooling": (32, 4),
    "OpDataReduce": (44, 4), "OpDataPad": (56, 4), "OpDataQuantizeReference": (32, 8),
    "DequantizeOpData": (32, 8), "OpDataLogistic": (16, 4), "OpDataMul": (36, 4), "SoftmaxParams": (80, 8),
    "ReluOpData": (28, 4), "Relu6OpData": (8, 4), "LeakyReluOpData": (24, 4), "HardSwishParams": (20, 4),
    "TfLiteLeakyReluParams": (4, 4),
    "TfLiteConcatenationParams": (8, 4), "TfLiteResizeNearestNeighborParams": (2, 1), "OpDataConcatenation": (40, 8),
    "PatchStageLayerPlan": (184, 8), "PatchStageStagePlan": (88, 8), "PatchStageRegion": (16, 4),
    "PatchStageOpData": (72, 8), "PatchStageHaloCache": (48, 8), "SpaceToBatchParams": (4, 4),
    "TfLiteSubParams": (8, 4), "OpDataSub": (56, 4),
}
CORTEX_M = {
    "TfLiteEvalTensor": (12, 4), "TfLiteTensor": (32, 4), "TfLiteAffineQuantization": (12, 4),
    "TfLiteIntArray": (4, 4), "NodeAndRegistration": (32, 4), "SubgraphAllocations": (8, 4),
    "ScratchBufferHandle": (4, 4), "SingleArenaBufferAllocator": (36, 4),
    "RecordingSingleArenaBufferAllocator": (52, 4), "GreedyMemoryPlanner": (44, 4),
    "MicroAllocator": (36, 4), "RecordingMicroAllocator": (124, 4), "pointer": (4, 4),
    "MicroBuiltinDataAllocator": (8, 4),
    "TfLiteConvParams": (28, 4), "TfLiteDepthwiseConvParams": (28, 4), "TfLiteAddParams": (2, 1),
    "TfLitePoolParams": (40, 4), "TfLiteReducerParams": (1, 1), "TfLiteFullyConnectedParams": (5, 1),
    "TfLiteSoftmaxParams": (4, 4), "TfLiteReshapeParams": (36, 4), "TfLiteMulParams": (1, 1),
    "OpDataConv": (56, 4), "OpDataFullyConnected": (48, 4), "OpDataAdd": (60, 4), "OpDataPooling": (32, 4),
    "OpDataReduce": (44, 4), "OpDataPad": (56, 4), "OpDataQuantizeReference": (32, 8),
    "DequantizeOpData": (32, 8), "OpDataLogistic": (16, 4), "OpDataMul": (36, 4), "SoftmaxParams": (56, 8),
    "ReluOpData": (28, 4), "Relu6OpData": (8, 4), "LeakyReluOpData": (24, 4), "HardSwishParams": (20, 4),
    "TfLiteLeakyReluParams": (4, 4),
    "TfLiteConcatenationParams": (8, 4), "TfLiteResizeNearestNeighborParams": (2, 1), "OpDataConcatenation": (24, 4),
    "PatchStageLayerPlan": (168, 4), "PatchStageStagePlan": (56, 4), "PatchStageRegion": (16, 4),
    "PatchStageOpData": (48, 8), "PatchStageHaloCache": (32, 4), "SpaceToBatchParams": (4, 4),
    "TfLiteSubParams": (2, 1), "OpDataSub": (56, 4),
}
# The tflite-micro wheel: TFLM built with USE_TFLM_COMPRESSION (SubgraphAllocations,
# RecordingMicroAllocator, OpDataConv and OpDataFullyConnected grow), from a later commit whose
# OpDataFullyConnected is 16 bytes larger again (measured: each FULLY_CONNECTED costs 16 bytes
# more in the wheel than the pinned headers give, whatever the model).
WHEEL = dict(HOST64, SubgraphAllocations=(24, 8), RecordingMicroAllocator=(272, 8),
             OpDataConv=(80, 8), OpDataFullyConnected=(88, 8),
             OpDataConcatenation=(80, 8))  # + int scratch_indices[kMaxInputNum = 10]
ABIS = {"host64": HOST64, "cortex_m": CORTEX_M, "wheel": WHEEL}
# TFLM's CMSIS-NN kernels (kernels/cmsis_nn/*.cc) wrap the reference OpData in their own. Modelled
# for Cortex-M with the DSP extension (M4, M7, M33), where it is tested against measurements; a host
# build of CMSIS-NN (portable C; OpData 80, 96, 60, 36, 88 bytes) is not, until measured.
CMSIS_NN_OP_DATA = {
    "cortex_m": {"CmsisConvOpData": (60, 4), "CmsisFullyConnectedOpData": (72, 4), "CmsisAddOpData": (60, 4),
                 "CmsisPoolingOpData": (36, 4), "CmsisSoftmaxParams": (64, 8)},
}

B = BuiltinOperator
# The parser's builtin params (flatbuffer_conversions.cc); ops whose parser allocates nothing map to None.
_BUILTIN_PARAMS = {
    B.CONV_2D: "TfLiteConvParams", B.DEPTHWISE_CONV_2D: "TfLiteDepthwiseConvParams", B.ADD: "TfLiteAddParams",
    B.AVERAGE_POOL_2D: "TfLitePoolParams", B.MAX_POOL_2D: "TfLitePoolParams", B.MEAN: "TfLiteReducerParams",
    B.SUM: "TfLiteReducerParams", B.FULLY_CONNECTED: "TfLiteFullyConnectedParams",
    B.SOFTMAX: "TfLiteSoftmaxParams", B.RESHAPE: "TfLiteReshapeParams", B.MUL: "TfLiteMulParams",
    B.PAD: None, B.PADV2: None, B.QUANTIZE: None, B.DEQUANTIZE: None, B.LOGISTIC: None,
    B.RELU: None, B.RELU6: None, B.HARD_SWISH: None, B.LEAKY_RELU: "TfLiteLeakyReluParams",
    B.SPACE_TO_BATCH_ND: None, B.BATCH_TO_SPACE_ND: None, B.SUB: "TfLiteSubParams",
    B.CONCATENATION: "TfLiteConcatenationParams", B.RESIZE_NEAREST_NEIGHBOR: "TfLiteResizeNearestNeighborParams",
}
# The reference kernel's Init: AllocatePersistentBuffer(sizeof(OpData)); None = no Init (reshape).
_OP_DATA = {
    B.CONV_2D: "OpDataConv", B.DEPTHWISE_CONV_2D: "OpDataConv", B.ADD: "OpDataAdd",
    B.AVERAGE_POOL_2D: "OpDataPooling", B.MAX_POOL_2D: "OpDataPooling", B.MEAN: "OpDataReduce",
    B.SUM: "OpDataReduce", B.FULLY_CONNECTED: "OpDataFullyConnected", B.SOFTMAX: "SoftmaxParams",
    B.RESHAPE: None, B.MUL: "OpDataMul", B.PAD: "OpDataPad", B.PADV2: "OpDataPad",
    B.QUANTIZE: "OpDataQuantizeReference", B.DEQUANTIZE: "DequantizeOpData", B.LOGISTIC: "OpDataLogistic",
    B.RELU: "ReluOpData", B.RELU6: "Relu6OpData", B.LEAKY_RELU: "LeakyReluOpData", B.HARD_SWISH: "HardSwishParams",
    B.SPACE_TO_BATCH_ND: "SpaceToBatchParams", B.BATCH_TO_SPACE_ND: None, B.SUB: "OpDataSub",
    B.CONCATENATION: "OpDataConcatenation", B.RESIZE_NEAREST_NEIGHBOR: None,
}
_OP_DATA_CMSIS_NN = {**_OP_DATA, **{
    B.CONV_2D: "CmsisConvOpData", B.DEPTHWISE_CONV_2D: "CmsisConvOpData", B.ADD: "CmsisAddOpData",
    B.AVERAGE_POOL_2D: "CmsisPoolingOpData", B.MAX_POOL_2D: "CmsisPoolingOpData",
    B.FULLY_CONNECTED: "CmsisFullyConnectedOpData", B.SOFTMAX: "CmsisSoftmaxParams",
}}
_INT16_LUT_BYTES = 2 * 513  # softmax_common.cc: sizeof(int16_t) * LUTSize<int16_t>()
PLAN_MEMORY_ALIGNMENT = 8   # micro_ops/plan_parser.h kPlanMemoryAlignment


class Unpredictable(Exception):
    """The model uses something this module does not model (op, subgraphs, kernels)."""


def _align_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


@dataclass
class Tail:
    """TFLM's persistent allocator, replayed: bytes used from the (16-aligned) arena end."""
    abi: dict
    used: int = 0
    by_kind: dict = field(default_factory=dict)

    def allocate(self, kind: str, size: int, alignment: int) -> None:
        before = self.used
        self.used = _align_up(self.used + size, alignment)  # AlignPointerDown(tail - size, alignment)
        self.by_kind[kind] = self.by_kind.get(kind, 0) + self.used - before

    def struct(self, kind: str, name: str, count: int = 1) -> None:
        size, alignment = self.abi[name]
        self.allocate(kind, size * count, alignment)

    def buffer(self, kind: str, size: int) -> None:
        """context->AllocatePersistentBuffer: MicroArenaBufferAlignment()."""
        self.allocate(kind, size, ARENA_ALIGNMENT)


def _int_array_bytes(n: int) -> int:
    return 4 + 4 * n  # TfLiteIntArrayGetSizeInBytes


def patch_stage_plan_memory_bytes(options: bytes, abi: dict = HOST64) -> int:
    """ComputePlanMemoryBytes (micro_ops/plan_parser.cc) for these options: the
    one place to change when the kernel's plan memory changes."""
    plan = decode(options)
    in_place = in_place_vectors(options)  # read where stored: no plan memory
    used = 0

    def array(count: int, item: int) -> None:
        nonlocal used
        used = _align_up(used, PLAN_MEMORY_ALIGNMENT) + count * item

    def int_vector(where: int, key: str, count: int) -> None:
        if not in_place[(where, key)]:
            array(count, 4)

    int_vector(-1, "grid_rows", len(plan.grid_rows))
    int_vector(-1, "grid_cols", len(plan.grid_cols))
    array(len(plan.layers), abi["PatchStageLayerPlan"][0])
    for i, layer in enumerate(plan.layers):
        int_vector(i, "inputs", len(layer.inputs))  # ReadSources, then in_zp
        int_vector(i, "in_zp", len(layer.in_zp))
        if layer.op in (CONV, DEPTHWISE):  # ReadFilterKeys: multiplier, then shift
            int_vector(i, "multiplier", len(layer.multiplier))
            int_vector(i, "shift", len(layer.shift))
    if plan.cache_rows or plan.cache_cols:  # the HaloCache tables (micro_ops/halo_cache.cc)
        n, rows, cols = len(plan.layers) - 1, len(plan.grid_rows) - 1, len(plan.grid_cols) - 1
        tables = 0
        for part in (abi["PatchStageHaloCache"][0], n * 8, n * rows * 8, n * cols * 8, n * cols * 4):
            tables = _align_up(tables + part, PLAN_MEMORY_ALIGNMENT)
        array(1, tables)
    array(1, abi["PatchStageStagePlan"][0])
    return _align_up(used, PLAN_MEMORY_ALIGNMENT)


def patch_stage_persistent(tail: Tail, options: bytes, num_inputs: int, phase: str) -> None:
    """PATCH_STAGE's persistent allocations (micro_ops/patch_stage_common.cc), Init or Prepare."""
    if phase == "init":
        tail.buffer("op data", tail.abi["PatchStageOpData"][0])
        tail.buffer("op data", patch_stage_plan_memory_bytes(options, tail.abi))
        tail.buffer("op data", tail.abi["PatchStageRegion"][0] * len(decode(options).layers))
    else:
        tail.buffer("op data", tail.abi["pointer"][0] * num_inputs)


def _quantized(t) -> bool:
    return len(t.scales) > 0 and len(t.zero_points) > 0


def _persistent_tensor(tail: Tail, t) -> None:
    tail.struct("tensors", "TfLiteTensor")
    if _quantized(t):
        tail.struct("tensors", "TfLiteAffineQuantization")
        tail.allocate("tensors", _int_array_bytes(len(t.scales)), tail.abi["TfLiteIntArray"][1])


def _prepare(tail: Tail, graph: Graph, op) -> None:
    code = op.opcode
    if code in (B.CONV_2D, B.DEPTHWISE_CONV_2D):
        f = graph.tensors[op.inputs[1]]
        channels = f.shape[0] if code == B.CONV_2D else f.shape[3]
        if f.type == TensorType.INT4:
            raise Unpredictable("int4 filters")
        tail.buffer("op data", 4 * channels)
        tail.buffer("op data", 4 * channels)
    elif code == B.FULLY_CONNECTED:
        f = graph.tensors[op.inputs[1]]
        if graph.tensors[op.inputs[0]].type != TensorType.FLOAT32 and len(f.scales) > 1:
            tail.buffer("op data", 4 * len(f.scales))
            tail.buffer("op data", 4 * len(f.scales))
    elif code == B.SOFTMAX:
        if graph.tensors[op.inputs[0]].type == TensorType.INT16:
            tail.buffer("op data", _INT16_LUT_BYTES)
            tail.buffer("op data", _INT16_LUT_BYTES)
    elif code == B.RESHAPE:
        out = graph.tensors[op.outputs[0]]
        if -1 in out.shape:
            tail.buffer("op data", _int_array_bytes(len(out.shape)))


def _same_padding(size: int, out: int, kernel: int, stride: int, dilation: int) -> int:
    """TFLM's ComputePaddingHeightWidth for SAME: the leading (top/left) padding."""
    return max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0) // 2


def _cmsis_nn_request(graph: Graph, op, dsp: bool) -> list:
    """Scratch requests of TFLM's CMSIS-NN kernel's Prepare (int8), from CMSIS-NN's
    *_get_buffer_size at TFLM's pinned CMSIS-NN, built with GCC: ARM_MATH_DSP on
    Cortex-M4/M7/M33 (dsp=True), portable C on a host; MVE cores are not modelled."""
    code = op.opcode
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if code in (B.CONV_2D, B.DEPTHWISE_CONV_2D):
        f, o = graph.tensors[op.inputs[1]], op.options
        if inp.type != TensorType.INT8 or f.type != TensorType.INT8:
            raise Unpredictable("CMSIS-NN convolutions of other than int8")
        kh, kw = f.shape[1], f.shape[2]
        dh, dw = o.dilationHFactor, o.dilationWFactor
        same = o.padding == Padding.SAME
        ph = _same_padding(inp.shape[1], out.shape[1], kh, o.strideH, dh) if same else 0
        pw = _same_padding(inp.shape[2], out.shape[2], kw, o.strideW, dw) if same else 0
        cin = inp.shape[3]
        if code == B.CONV_2D:
            if ph == 0 and pw == 0 and kh == 1 and kw == 1 and dh == 1 and dw == 1:
                return []  # arm_convolve_1x1_s8(_fast): no buffer with GCC
            return [2 * _align_up(kh * kw * cin, 4) * 2]  # arm_convolve_s8 (and 1 x n)
        if cin == out.shape[3] and dh == 1 and dw == 1 and not (kh == kw == 3 and ph <= 1 and pw <= 1):
            return [cin * kh * kw * 2] if dsp else []  # arm_depthwise_conv_s8_opt
        return []
    if code == B.AVERAGE_POOL_2D:
        return [out.shape[3] * 4] if dsp else []
    if code == B.FULLY_CONNECTED:
        f = graph.tensors[op.inputs[1]]
        if len(out.shape) > 2 and f.shape[-1] % 4 == 0 and len(f.scales) <= 1:
            return [out.shape[-1] * 8]  # per-tensor quantization faked per channel for conv 1x1
        return []
    return []


def kernel_scratch_requests(graph: Graph, kernels: str = "reference", abi: str = "host64") -> dict:
    """Scratch buffer requests of the builtin ops in a TFLM build with these kernels."""
    requests = builtin_scratch_requests(graph)
    if kernels == "cmsis_nn":
        for op in graph.ops:
            sizes = _cmsis_nn_request(graph, op, dsp=abi == "cortex_m")
            if sizes:
                requests[op.index] = sizes
    return requests


@dataclass
class Persistent:
    tail_bytes: int
    by_kind: dict
    scratch_requests: int


def predict_tail(graph: Graph, num_subgraphs: int = 1, abi: str = "host64", recording: bool = False,
                 kernels: str = "reference") -> Persistent:
    """TFLM's persistent bytes after AllocateTensors. recording=True: the tflite-micro
    wheel's RecordingMicroAllocator (what its print_allocations reports as tail)."""
    if kernels not in ("reference", "cmsis_nn") or (kernels == "cmsis_nn" and abi not in CMSIS_NN_OP_DATA):
        raise Unpredictable(f"persistent memory of {kernels} kernels is not modelled for {abi}")
    if num_subgraphs != 1:
        raise Unpredictable("models with more than one subgraph")
    tail = Tail(dict(ABIS[abi], **CMSIS_NN_OP_DATA.get(abi, {})) if kernels == "cmsis_nn" else ABIS[abi])
    op_data = _OP_DATA_CMSIS_NN if kernels == "cmsis_nn" else _OP_DATA
    prefix = "Recording" if recording else ""
    tail.struct("allocator", f"{prefix}SingleArenaBufferAllocator")
    tail.struct("allocator", "GreedyMemoryPlanner")
    tail.struct("allocator", f"{prefix}MicroAllocator")
    tail.struct("allocator", "MicroBuiltinDataAllocator")
    tail.struct("allocator", "SubgraphAllocations", num_subgraphs)
    tail.struct("tensors", "TfLiteEvalTensor", len(graph.tensors))
    tail.struct("nodes", "NodeAndRegistration", len(graph.ops))
    for op in graph.ops:
        if op.opcode == B.CUSTOM:
            if op.custom_code != CUSTOM_CODE:
                raise Unpredictable(f"custom op {op.custom_code}")
            continue
        if op.opcode not in _BUILTIN_PARAMS:
            raise Unpredictable(f"op {op.name}")
        if _BUILTIN_PARAMS[op.opcode]:
            tail.struct("builtin params", _BUILTIN_PARAMS[op.opcode])
    for op in graph.ops:
        if op.opcode == B.CUSTOM:
            patch_stage_persistent(tail, op.custom_options or b"", len(op.inputs), "init")
        elif op_data[op.opcode]:
            tail.buffer("op data", tail.abi[op_data[op.opcode]][0])
    scratch = kernel_scratch_requests(graph, kernels, abi)
    requests = sum(len(v) for v in scratch.values())
    for op in graph.ops:
        if op.opcode == B.CUSTOM:
            patch_stage_persistent(tail, op.custom_options or b"", len(op.inputs), "prepare")
            requests += 1 if decode(op.custom_options).scratch_bytes > 0 else 0
        else:
            if kernels == "cmsis_nn" and op.opcode == B.SOFTMAX and graph.tensors[op.inputs[0]].type != TensorType.INT8:
                raise Unpredictable("CMSIS-NN softmax of other than int8")
            _prepare(tail, graph, op)
    if requests:
        tail.struct("scratch handles", "ScratchBufferHandle", requests)
    for t in graph.tensors:
        if t.is_variable:
            tail.buffer("variables", t.nbytes)
    for ids in (graph.inputs, graph.outputs):
        tail.buffer("tensors", tail.abi["pointer"][0] * len(ids))
        for t in ids:
            _persistent_tensor(tail, graph.tensors[t])
    return Persistent(tail.used, tail.by_kind, requests)


@dataclass
class Total:
    head_bytes: int        # the memory plan (non-persistent)
    tail_bytes: int        # persistent
    by_kind: dict

    @property
    def total_bytes(self) -> int:
        """MicroInterpreter::arena_used_bytes(): the kTensorArenaSize this model needs."""
        return self.head_bytes + self.tail_bytes


def predict_total(graph: Graph, head_bytes: int, num_subgraphs: int = 1, abi: str = "host64",
                  recording: bool = False, kernels: str = "reference") -> Total:
    """arena_used_bytes() = the planned head (arena.py / offline_plan.py) + the persistent tail."""
    p = predict_tail(graph, num_subgraphs, abi, recording, kernels)
    return Total(head_bytes, p.tail_bytes, p.by_kind)


def try_predict_total(graph: Graph, head_bytes: int, **kw) -> Total | None:
    """predict_total, or None where TFLM's allocations are not modelled (ops, kernels)."""
    try:
        return predict_total(graph, head_bytes, **kw)
    except Unpredictable:
        return None


def predict_arena_used(graph: Graph, abi: str = "host64", kernels: str = "reference",
                       recording: bool = False) -> Total:
    """arena_used_bytes() of this model in a TFLM build: the head planned with the scratch
    requests of the build's kernels (and PATCH_STAGE's), plus the persistent tail."""
    from . import arena as arena_mod
    from .analysis import patch_stage_scratch
    extra = {**kernel_scratch_requests(graph, kernels, abi), **patch_stage_scratch(graph)}
    head = arena_mod.plan_arena(graph, extra).head_bytes
    return predict_total(graph, head, abi=abi, recording=recording, kernels=kernels)

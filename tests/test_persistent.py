"""arena_used_bytes() predicted to the byte: the persistent tail replayed, held to TFLM's measurement."""
import glob
import os

import pytest
from hypothesis import given, settings

from tflm_patch.converter import analysis, arena, model_io, oracle, persistent, pipeline, planner, verify
from tflm_patch.converter.graph import build_graph

from .conftest import MODELS_DIR
from .random_stages import build, stage_specs

MODELS = sorted(glob.glob(os.path.join(MODELS_DIR, "*.tflite")))


def _check_against_wheel(data: bytes) -> None:
    graph = build_graph(model_io.parse_model(data))
    measured = oracle.measure_arena(data, verify.random_inputs(graph, 1)[0])
    head = arena.plan_arena(graph).head_bytes
    total = persistent.predict_total(graph, head, abi="wheel", recording=True)
    assert (total.head_bytes, total.tail_bytes, total.total_bytes) == (measured.head, measured.tail, measured.total)


@pytest.mark.parametrize("path", MODELS, ids=[os.path.basename(m) for m in MODELS])
def test_total_equals_the_wheels_measurement(path):
    _check_against_wheel(open(path, "rb").read())


def test_total_on_the_session_models(small_model_bytes, mean_first_model_bytes):
    _check_against_wheel(small_model_bytes)
    _check_against_wheel(mean_first_model_bytes)


@settings(max_examples=15, deadline=None)
@given(spec=stage_specs())
def test_total_equals_the_wheel_on_random_models(spec):
    data = build(spec)
    if data is not None:
        _check_against_wheel(data)


# arena_used_bytes() measured in real TFLM builds (host: reference kernels at the pinned TFLM commit,
# x86-64, benchmarks/bench_tflm.py; Cortex-M4: QEMU mps2-an386), stock and patched with the default plan
# (--max-mac-overhead 1.05, README tables). The Cortex-M4 reference build was measured stock only for
# today's plans (None: not measured).
HOST_MEASURED = {
    "residual_add": (49_408, 21_264, 48_548, None),
    "mobilenetv2_035_96": (210_000, 53_664, 204_708, None),
    "mobilenetv2_035_144": (382_800, 89_856, 377_508, None),
    "pooling_pad": (21_568, 10_880, None, None),
    "mobilenetv1_025_96_gray": (84_752, 28_896, None, None),
}


@pytest.mark.parametrize("name", sorted(HOST_MEASURED))
def test_total_equals_real_tflm_builds_stock_and_patched(name):
    model = model_io.load_model(os.path.join(MODELS_DIR, f"{name}.tflite"))
    graph = build_graph(model)
    plan = planner.make_plan(graph, max_mac_overhead=1.05)
    patched = pipeline.write_patched(model, plan).graph
    got = []
    for abi in ("host64", "cortex_m"):
        for g in (graph, patched):
            got.append(persistent.predict_total(g, analysis.analyze(g).arena.head_bytes, abi=abi).total_bytes)
    host_stock, host_patched, m4_stock, m4_patched = HOST_MEASURED[name]
    assert got[:2] == [host_stock, host_patched]
    if m4_stock is not None:
        assert got[2] == m4_stock
    if m4_patched is not None:
        assert got[3] == m4_patched


# arena_used_bytes() measured on the Cortex-M4 (QEMU mps2-an386) with TFLM's CMSIS-NN kernels (DSP code
# paths), stock and patched with plans made for that build (--kernels cmsis_nn, whose search counts the
# CMSIS-NN calls' cost: full-width bands), README table. Re-measure: TFLM_ROOT=... python
# benchmarks/bench_cortexm.py --kernels cmsis_nn tests/models/NAME.tflite (columns "arena stock/patched").
CMSIS_NN_M4_MEASURED = {
    "residual_add": (48_596, 31_828),
    "mobilenetv2_035_96": (204_756, 112_772),
    "mobilenetv2_035_144": (377_556, 160_484),
    "pooling_pad": (20_948, 14_868),
}


@pytest.mark.parametrize("name", sorted(CMSIS_NN_M4_MEASURED))
def test_total_equals_the_cortex_m4_cmsis_nn_build(name):
    model = model_io.load_model(os.path.join(MODELS_DIR, f"{name}.tflite"))
    graph = build_graph(model)
    plan = planner.make_plan(graph, max_mac_overhead=1.05, kernels="cmsis_nn")
    patched = pipeline.write_patched(model, plan).graph
    got = tuple(persistent.predict_arena_used(g, abi="cortex_m", kernels="cmsis_nn").total_bytes
                for g in (graph, patched))
    assert got == CMSIS_NN_M4_MEASURED[name]


def test_cmsis_nn_requests_scratch_where_its_kernels_do():
    # pooling_pad's AVERAGE_POOL_2Ds ask CMSIS-NN for 4 bytes per channel: the head grows.
    graph = build_graph(model_io.load_model(os.path.join(MODELS_DIR, "pooling_pad.tflite")))
    requests = persistent.kernel_scratch_requests(graph, "cmsis_nn", "cortex_m")
    pools = [op.index for op in graph.ops if op.name == "AVERAGE_POOL_2D"]
    assert all(requests[i] == [4 * graph.tensors[graph.ops[i].outputs[0]].shape[3]] for i in pools)
    assert persistent.predict_arena_used(graph, abi="cortex_m", kernels="cmsis_nn").head_bytes > \
        arena.plan_arena(graph).head_bytes
    with pytest.raises(persistent.Unpredictable):
        persistent.predict_arena_used(graph, abi="host64", kernels="cmsis_nn")


def test_patch_stage_plan_memory_mirrors_the_kernel():
    # ComputePlanMemoryBytes: LayerPlans, StagePlan (and the halo tables), 8-aligned; the grid and the
    # per-conv multiplier and shift vectors are read in place (aligned int32 in the options): O(layers).
    model = model_io.load_model(os.path.join(MODELS_DIR, "residual_add.tflite"))
    plan = planner.make_plan(build_graph(model), patches=(2, 2))
    from tflm_patch.converter import options
    raw = options.encode(plan.stage_plan)
    assert all(options.in_place_vectors(raw).values())
    layers = plan.stage_plan.layers
    expected = 184 * len(layers) + 88
    if plan.stage_plan.cache_rows or plan.stage_plan.cache_cols:  # HaloCache + 4 tables, 2 tiles per axis
        n = len(layers) - 1
        expected += 48 + 8 * n + 2 * (8 * n * 2) + 8 * ((4 * n * 2 + 7) // 8)
    assert persistent.patch_stage_plan_memory_bytes(raw) == expected
    # and the kernel itself, on the host
    import ctypes

    import numpy as np

    from tflm_patch import native
    g = pipeline.write_patched(model, plan).graph
    op = verify.patch_ops(g)[0]
    x = np.zeros(g.tensors[op.inputs[0]].shape, np.int8)
    native.run_stage(op.custom_options, [x] + [g.tensors[t].data for t in op.inputs[1:]],
                     g.tensors[op.outputs[0]].shape)
    lib = native.engine_library()
    lib.tflm_patch_last_plan_memory_bytes.restype = ctypes.c_size_t
    assert lib.tflm_patch_last_plan_memory_bytes() == expected


def test_unmodelled_ops_are_refused_not_guessed(small_model_bytes):
    graph = build_graph(model_io.parse_model(small_model_bytes))
    graph.ops[0].opcode = 999
    assert persistent.try_predict_total(graph, 0) is None
    with pytest.raises(persistent.Unpredictable):
        persistent.predict_total(graph, 0, kernels="cmsis_nn", abi="host64")


def test_cli_prints_the_total_before_and_after(tmp_path):
    from .conftest import run_cli
    path = os.path.join(MODELS_DIR, "residual_add.tflite")
    code, out, err = run_cli("analyze", path)
    assert code == 0, err
    assert "arena_used_bytes() (kTensorArenaSize): 49,408 bytes on a 64-bit host, 48,548 on 32-bit Cortex-M" in out
    assert "total 49,680 bytes (matches the prediction)" in out
    code, out, err = run_cli("convert", path, "-o", tmp_path / "p.tflite", "--verify-inputs", "0")
    assert code == 0, err
    assert "arena_used_bytes() host             49,408          21,264" in out


def test_report_gives_the_total_before_and_after(tmp_path):
    from .conftest import run_cli
    src = os.path.join(MODELS_DIR, "residual_add.tflite")
    patched = tmp_path / "p.tflite"
    assert run_cli("convert", src, "-o", patched, "--verify-inputs", "0")[0] == 0
    code, out, err = run_cli("report", src, patched, "-o", tmp_path / "r")
    assert code == 0, err
    assert "arena_used_bytes() 49,408 -> 21,264 bytes" in out
    md = (tmp_path / "r" / "report.md").read_text()
    assert "\ntotal: arena_used_bytes() | 49,408 | 21,264\n" in md and "\npersistent | 3,328 | 3,936\n" in md


def _other_op_models():
    """One small model per other op the prediction covers (tail ops of real models)."""
    import numpy as np

    from tflm_patch.converter.schema import BuiltinOperator as B
    from tflm_patch.converter.schema import BuiltinOptions as BO
    from tflm_patch.converter.schema import TensorType as T
    from tflm_patch.converter.schema import schema

    from .modelgen import ModelBuilder

    def new():
        return ModelBuilder(np.random.default_rng(0))

    mb = new()
    x = mb.activation((4, 4, 3), 0.02, 0)
    shape = mb.tensor((2,), T.INT32, data=np.array([1, 48], np.int32))
    y = mb.tensor((1, 48), T.INT8, [0.02], [0])
    o = schema.ReshapeOptionsT()
    o.newShape = [1, 48]
    mb.op(B.RESHAPE, [x.index, shape], [y], BO.ReshapeOptions, o)
    yield "reshape", mb.finish([x.index], [y])

    for code in (B.SOFTMAX, B.LOGISTIC):
        mb = new()
        x = mb.tensor((1, 10), T.INT8, [0.1], [0])
        y = mb.tensor((1, 10), T.INT8, [1 / 256], [-128])
        if code == B.SOFTMAX:
            o = schema.SoftmaxOptionsT()
            o.beta = 1.0
            mb.op(code, [x], [y], BO.SoftmaxOptions, o)
        else:
            mb.op(code, [x], [y])
        yield ("softmax" if code == B.SOFTMAX else "logistic"), mb.finish([x], [y])

    mb = new()
    x = mb.tensor((1, 10), T.INT8, [0.1], [0])
    f = mb.tensor((1, 10), T.FLOAT32)
    y = mb.tensor((1, 10), T.INT8, [0.05], [3])
    mb.op(B.DEQUANTIZE, [x], [f])
    mb.op(B.QUANTIZE, [f], [y])
    yield "dequantize_quantize", mb.finish([x], [y])

    mb = new()
    x = mb.tensor((1, 10), T.INT8, [0.1], [0])
    y = mb.tensor((1, 10), T.INT8, [0.1], [0])
    mb.op(B.MUL, [x, x], [y], BO.MulOptions, schema.MulOptionsT())
    yield "mul", mb.finish([x], [y])

    mb = new()
    x = mb.activation((4, 4, 3), 0.02, 0)
    axis = mb.tensor((2,), T.INT32, data=np.array([1, 2], np.int32))
    y = mb.tensor((1, 3), T.INT8, [0.2], [0])
    mb.op(B.SUM, [x.index, axis], [y], BO.ReducerOptions, schema.ReducerOptionsT())
    yield "sum", mb.finish([x.index], [y])

    mb = new()
    x = mb.activation((4, 4, 3), 0.02, 0)
    pads = mb.tensor((4, 2), T.INT32, data=np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))
    value = mb.tensor((), T.INT8, [0.02], [0], data=np.array(0, np.int8))
    y = mb.tensor((1, 6, 6, 3), T.INT8, [0.02], [0])
    mb.op(B.PADV2, [x.index, pads, value], [y], BO.PadV2Options, schema.PadV2OptionsT())
    yield "padv2", mb.finish([x.index], [y])

OTHER_OPS = list(_other_op_models())


@pytest.mark.parametrize("name,data", OTHER_OPS, ids=[n for n, _ in OTHER_OPS])
def test_total_of_other_ops_equals_the_wheel(name, data):
    _check_against_wheel(data)


def _allocates(data: bytes, size: int) -> bool:
    from tflite_micro.python.tflite_micro import runtime as rt
    try:
        rt.Interpreter.from_bytes(data, arena_size=size, intrepreter_config=rt.InterpreterConfig.kAllocationRecording)
        return True
    except Exception:
        return False


@pytest.mark.parametrize("name", ["residual_add", "mobilenetv2_035_96", "kernels_5x5_7x7"])
def test_the_predicted_total_is_the_arena_size_to_give(name):
    """kTensorArenaSize = the predicted arena_used_bytes() is enough for AllocateTensors, 16 bytes less is not."""
    data = open(os.path.join(MODELS_DIR, f"{name}.tflite"), "rb").read()
    graph = build_graph(model_io.parse_model(data))
    total = persistent.predict_total(graph, arena.plan_arena(graph).head_bytes, abi="wheel", recording=True)
    assert total.total_bytes % 16 == 0
    assert oracle._call(_allocates, data, total.total_bytes)
    assert not oracle._call(_allocates, data, total.total_bytes - 16)


def _narrow_options(plan) -> bytes:
    """The options as converters before the in-place rule wrote them: every vector at its smallest width."""
    from tflm_patch.converter import options
    real = options._int32_array
    try:  # grid boundaries and shifts fit one byte (multipliers need four): 1-byte vectors
        options._int32_array = lambda values: [int(v) for v in values]
        return options.encode(plan)
    finally:
        options._int32_array = real


class _OptionsAt:
    """Options bytes placed `shift` bytes past a 16-byte boundary, passed to the engine by address."""

    def __init__(self, data: bytes, shift: int):
        import ctypes
        self._keep = ctypes.create_string_buffer(len(data) + 32)
        address = (ctypes.addressof(self._keep) + 15) // 16 * 16 + shift
        ctypes.memmove(address, data, len(data))
        self._as_parameter_ = ctypes.cast(address, ctypes.c_char_p)
        self._len = len(data)

    def __len__(self):
        return self._len


def test_older_or_unaligned_options_still_run_and_copy_their_vectors():
    # What a TFLM maintainer keeps: options written before the in-place rule (narrow vectors), or
    # a model at an address that is not 4-aligned, run with the same outputs; the kernel copies
    # what it cannot read in place into plan memory, and the converter predicts that memory.
    import ctypes

    import numpy as np

    from tflm_patch import native
    from tflm_patch.converter import options
    model = model_io.load_model(os.path.join(MODELS_DIR, "residual_add.tflite"))
    plan = planner.make_plan(build_graph(model), patches=(2, 2))
    g = pipeline.write_patched(model, plan).graph
    op = verify.patch_ops(g)[0]
    x = np.random.default_rng(3).integers(-128, 128, g.tensors[op.inputs[0]].shape, dtype=np.int8)
    inputs = [x] + [g.tensors[t].data for t in op.inputs[1:]]
    shape = g.tensors[op.outputs[0]].shape
    lib = native.engine_library()
    lib.tflm_patch_last_plan_memory_bytes.restype = ctypes.c_size_t

    aligned = options.encode(plan.stage_plan)
    want = native.run_stage(aligned, inputs, shape)
    in_place_bytes = lib.tflm_patch_last_plan_memory_bytes()
    assert in_place_bytes == persistent.patch_stage_plan_memory_bytes(aligned)

    narrow = _narrow_options(plan.stage_plan)
    copied = [k for k, v in options.in_place_vectors(narrow).items() if not v]
    # multipliers need 4 bytes; sources and zero points fit one
    assert {key for _, key in copied} == {"grid_rows", "grid_cols", "shift", "inputs", "in_zp"}
    assert np.array_equal(native.run_stage(narrow, inputs, shape), want)
    assert lib.tflm_patch_last_plan_memory_bytes() == persistent.patch_stage_plan_memory_bytes(narrow) > \
        in_place_bytes

    convs = [l for l in plan.stage_plan.layers if l.op in (0, 1)]
    every_vector = sum(2 * 8 * ((4 * len(l.multiplier) + 7) // 8) for l in convs) + 2 * 8 * ((4 * 3 + 7) // 8)
    every_vector += sum(2 * 8 * ((4 * len(l.inputs) + 7) // 8) for l in plan.stage_plan.layers)

    def run_at(shift):  # the engine's C entry point, given the options' address
        out = native._run_in_process(_OptionsAt(aligned, shift), native._prepare_inputs(inputs), tuple(shape),
                                     False, None)
        assert not isinstance(out, native.EngineError), out
        return out

    for shift in (1, 2):  # nothing can be read in place: everything is copied, same outputs
        assert np.array_equal(run_at(shift), want)
        assert lib.tflm_patch_last_plan_memory_bytes() == in_place_bytes + every_vector
    assert np.array_equal(run_at(0), want)
    assert lib.tflm_patch_last_plan_memory_bytes() == in_place_bytes

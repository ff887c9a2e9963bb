"""ADD / SUB / MUL with a broadcast constant and MUL of two images: arithmetic against the
tflite-micro wheel (both engines), edge quantization, what the converter refuses, and what
Prepare rejects."""
import copy
import os

import numpy as np
import pytest
from flatbuffers import flexbuffers

from tflm_patch import native
from tflm_patch.converter import model_io, options, planner, rewrite, verify
from tflm_patch.converter.graph import build_graph
from tflm_patch.converter.layers import ADD_CONST, MUL, MUL_CONST, SUB_CONST
from tflm_patch.converter.schema import ActivationFunctionType, BuiltinOperator, BuiltinOptions, TensorType, schema
from tflm_patch.converter.stage import candidate_stages

from .conftest import MODELS_DIR
from .modelgen import ModelBuilder
from .test_engine_unit import encode

OPS = {"ADD": (BuiltinOperator.ADD, BuiltinOptions.AddOptions, schema.AddOptionsT),
       "SUB": (BuiltinOperator.SUB, BuiltinOptions.SubOptions, schema.SubOptionsT),
       "MUL": (BuiltinOperator.MUL, BuiltinOptions.MulOptions, schema.MulOptionsT)}


def arith_model(kind, *, seed=0, shape=(7, 9, 5), in_q=(0.05, -3), const_q=(0.02, 4), out_q=(0.08, 1),
                const_shape=None, const_first=False, act=ActivationFunctionType.NONE, const_values=None,
                two_images=False, tail=True):
    """input -> [conv 1x1 ->] ADD/SUB/MUL (constant or two images) -> MEAN: one stage op and a tail."""
    rng = np.random.default_rng(seed)
    mb = ModelBuilder(rng)
    x = mb.activation(shape, *in_q)
    code, otype, ocls = OPS[kind]
    if two_images:
        other = mb.conv(x, shape[2], 1)
        operands = [x.index, other.index]
    else:
        cshape = (shape[2],) if const_shape is None else const_shape
        values = rng.integers(-128, 128, size=cshape, dtype=np.int8) if const_values is None \
            else np.asarray(const_values, np.int8).reshape(cshape)
        c = mb.tensor(cshape, TensorType.INT8, [const_q[0]], [const_q[1]], values)
        operands = [c, x.index] if const_first else [x.index, c]
    y = mb.activation(shape, *out_q)
    o = ocls()
    o.fusedActivationFunction = act
    mb.op(code, operands, [y.index], otype, o)
    if not tail:
        return mb.finish([x.index], [y.index])
    mb.mean_tail(y)
    return mb.finish([x.index], [len(mb.tensors) - 1])


def check_bit_identical(data, patches=(2, 3), inputs=3, seed=1):
    model = model_io.parse_model(data)
    graph = build_graph(model)
    split = len(graph.ops) - 1
    plan = planner.make_plan(graph, patches=patches, split=split, require_gain=False)
    patched = model_io.serialize_model(rewrite.rewrite_model(model, plan, "test"))
    report = verify.verify(data, patched, verify.random_inputs(graph, inputs, seed=seed), engines=("python", "cpp"))
    assert report.identical, report.first_difference
    return plan


EDGE_QUANT = {
    "plain": dict(),
    "zero points at -128": dict(in_q=(0.05, -128), const_q=(0.02, -128), out_q=(0.08, -128)),
    "zero points at 127": dict(in_q=(0.05, 127), const_q=(0.02, 127), out_q=(0.08, 127)),
    "tiny output scale": dict(in_q=(0.5, 0), const_q=(0.7, 3), out_q=(1e-4, -5)),
    "huge output scale": dict(in_q=(1e-3, 10), const_q=(2e-3, -7), out_q=(50.0, 0)),
    "constant scale far below the input's": dict(in_q=(1.0, 0), const_q=(1e-6, 0), out_q=(1.0, 2)),
    "constant scale far above the input's": dict(in_q=(1e-6, 0), const_q=(1.0, 0), out_q=(1.0, -2)),
}


def pow2(quant: dict) -> dict:
    """The same quantization with power-of-two scales: SUB's float32 and double Prepare agree there."""
    full = {**dict(in_q=(0.05, -3), const_q=(0.02, 4), out_q=(0.08, 1)), **quant}  # arith_model's defaults
    return {k: (float(2.0 ** round(np.log2(s))), zp) for k, (s, zp) in full.items()}


def quant_for(kind: str, quant: dict) -> dict:
    return pow2(quant) if kind == "SUB" else quant


@pytest.mark.parametrize("quant", list(EDGE_QUANT))
@pytest.mark.parametrize("kind", ["ADD", "SUB", "MUL"])
def test_constant_arithmetic_equals_tflm(kind, quant):
    plan = check_bit_identical(arith_model(kind, **quant_for(kind, EDGE_QUANT[quant])))
    assert plan.stage_plan.layers[0].op == {"ADD": ADD_CONST, "SUB": SUB_CONST, "MUL": MUL_CONST}[kind]


@pytest.mark.parametrize("kind", ["ADD", "SUB", "MUL"])
@pytest.mark.parametrize("const_shape", [(), (1,), (5,), (1, 1, 1, 5), (1, 5), (1, 1, 1, 1)])
def test_scalar_and_per_channel_constants_broadcast_like_tflm(kind, const_shape):
    check_bit_identical(arith_model(kind, const_shape=const_shape, seed=3, **quant_for(kind, {})))


@pytest.mark.parametrize("kind", ["ADD", "MUL"])
def test_constant_first_is_the_same_arithmetic(kind):
    plan = check_bit_identical(arith_model(kind, const_first=True, in_q=(0.03, 7), const_q=(0.09, -20)))
    assert plan.stage_plan.layers[0].const_zp == -20 and plan.stage_plan.layers[0].in_zp == [7]


@pytest.mark.parametrize("act", [ActivationFunctionType.RELU, ActivationFunctionType.RELU6])
@pytest.mark.parametrize("kind", ["ADD", "SUB", "MUL"])
def test_fused_activations(kind, act):
    check_bit_identical(arith_model(kind, act=act, **quant_for(kind, dict(out_q=(0.03, -40)))))


@pytest.mark.parametrize("values", [[-128] * 5, [127] * 5, [0, -128, 127, 1, -1]])
@pytest.mark.parametrize("kind", ["ADD", "SUB", "MUL"])
def test_extreme_constant_values(kind, values):
    check_bit_identical(arith_model(kind, const_values=values, **quant_for(kind, dict(const_q=(0.04, -128)))))


@pytest.mark.parametrize("quant", ["plain", "zero points at -128", "zero points at 127", "tiny output scale"])
def test_mul_of_two_images_equals_tflm(quant):
    plan = check_bit_identical(arith_model("MUL", two_images=True, **EDGE_QUANT[quant]))
    assert [layer.op for layer in plan.stage_plan.layers][-1] == MUL


@pytest.mark.parametrize("seed", range(6))
def test_random_quantization(seed):
    rng = np.random.default_rng(100 + seed)

    def q():
        return float(10 ** rng.uniform(-4, 0.5)), int(rng.integers(-128, 128))
    for kind in ("ADD", "SUB", "MUL"):
        quant = quant_for(kind, dict(in_q=q(), const_q=q(), out_q=q()))
        check_bit_identical(arith_model(kind, seed=seed, **quant,
                                        shape=(int(rng.integers(2, 9)), int(rng.integers(3, 9)), 3),
                                        const_shape=[(), (3,), (1, 1, 1, 3)][seed % 3]), seed=seed)


def _stop_reason(data):
    stages, reason = candidate_stages(build_graph(model_io.parse_model(data)))
    return stages, reason


@pytest.mark.parametrize("kind,kw,needle", [
    ("SUB", dict(const_first=True, **pow2({})), "SUB of an image from a constant"),
    # 0.02 / (2 * 0.05) in float32 is not the double quotient: TFLM's float32 Prepare and the wheel differ
    ("SUB", dict(), "differs between TFLM's float32 Prepare arithmetic and the tflite-micro wheel's"),
    ("ADD", dict(const_shape=(1, 7, 9, 5)), "is not a scalar or per-channel"),
    ("MUL", dict(const_shape=(1, 1, 9, 1)), "is not a scalar or per-channel"),
    ("ADD", dict(shape=(1, 1, 5)), "as large as its 1x1 image"),
])
def test_what_the_converter_refuses(kind, kw, needle):
    stages, reason = _stop_reason(arith_model(kind, **kw))
    assert not stages and needle in reason


def test_keras_rescaling_and_normalization_patch_with_a_gain_and_bit_identical():
    """The TensorFlow-made model: the default plan lowers the arena; stages over Rescaling's scalar
    MUL and ADD, and over Normalization's per-channel MUL with the convs and the gated MUL, verify
    with both engines. (Normalization's SUB: float32 and double Prepare differ for its scales.)"""
    from tflm_patch.converter import stage_cost
    from tflm_patch.converter.planner import Plan
    from tflm_patch.converter.regions import even_boundaries
    from tflm_patch.converter.stage import all_stages
    path = os.path.join(MODELS_DIR, "rescaling_normalization.tflite")
    data = open(path, "rb").read()
    model = model_io.parse_model(data)
    graph = build_graph(model)
    best = planner.make_plan(graph)
    assert best.arena_after < best.arena_before
    stages = {(st.start, st.end): st for st in all_stages(graph)}
    assert (0, 3) not in stages  # the SUB (op 2) ends the stage from op 0
    picked = [stages[(0, 2)], stages[(3, 9)]]
    assert [layer.op for layer in picked[0].layers] == [MUL_CONST, ADD_CONST]
    assert [layer.const_count for layer in picked[0].layers] == [1, 1]
    assert picked[1].layers[0].op == MUL_CONST and picked[1].layers[0].const_count == 3
    assert MUL in [layer.op for layer in picked[1].layers]
    patches = []
    for st in picked:
        h, w = st.layers[-1].out_shape[:2]
        shape = graph.tensors[st.input_tensor].shape[1:]
        patches.append(stage_cost.materialize(stage_cost.option(st, shape, even_boundaries(h, 3),
                                                                 even_boundaries(w, 4))))
    plan = Plan(patches, best.arena_before, best.arena_before)
    patched = model_io.serialize_model(rewrite.rewrite_model(model, plan, "test"))
    report = verify.verify(data, patched, verify.random_inputs(graph, 2, seed=4), engines=("python", "cpp"))
    assert report.identical, report.first_difference


# ---- Prepare rejects malformed options of the arithmetic ops ----

@pytest.fixture(scope="module")
def const_stage():
    """A real plan with ADD_CONST (layer 0), MUL (layer 2) and its op inputs."""
    rng = np.random.default_rng(5)
    mb = ModelBuilder(rng)
    x = mb.activation((6, 6, 4), 0.05, 3)
    c = mb.tensor((4,), TensorType.INT8, [0.03], [-2], rng.integers(-128, 128, size=4, dtype=np.int8))
    y = mb.activation((6, 6, 4), 0.07, 1)
    mb.op(BuiltinOperator.ADD, [x.index, c], [y.index], BuiltinOptions.AddOptions, schema.AddOptionsT())
    z = mb.conv(y, 4, 1)
    w = mb.activation((6, 6, 4), 0.2, 0)
    mb.op(BuiltinOperator.MUL, [y.index, z.index], [w.index], BuiltinOptions.MulOptions, schema.MulOptionsT())
    mb.mean_tail(w)
    data = mb.finish([x.index], [len(mb.tensors) - 1])
    graph = build_graph(model_io.parse_model(data))
    plan = planner.make_plan(graph, patches=(2, 2), split=3, require_gain=False)
    assert [layer.op for layer in plan.stage_plan.layers] == [ADD_CONST, 0, MUL]
    doc = flexbuffers.Loads(options.encode(plan.stage_plan))
    x_data = rng.integers(-128, 128, size=(1, 6, 6, 4), dtype=np.int8)
    inputs = [x_data] + [graph.tensors[t].data for t in plan.stages[0].stage.constants]
    return doc, inputs


def _run(doc, inputs):
    return native.run_stage(encode(doc), inputs, (1, 6, 6, 4))


def test_the_valid_arith_plan_runs(const_stage):
    doc, inputs = const_stage
    assert _run(doc, inputs).shape == (1, 6, 6, 4)


ARITH_REJECTIONS = {
    "constant index out of range": (0, dict(constant=9), "('constant')"),
    "constant is the stage input": (0, dict(constant=0), "('constant')"),
    "constant names the int32 bias": (0, dict(constant=3), "wrong tensor type ('constant')"),
    "const_count not 1 or C": (0, dict(const_count=3), "const_count is neither 1 nor the channel count"),
    "const_count not the tensor's": (0, dict(const_count=1), "not a scalar or [C] of const_count values"),
    "const_zp outside int8": (0, dict(const_zp=300), "zero point outside int8 ('const_zp')"),
    "missing constant key": (0, "constant", "missing key ('constant')"),
    "missing const_count": (0, "const_count", "missing key ('const_count')"),
    "add left shift too large": (0, dict(add_params=[23, 1 << 30, -1, 1 << 30, -1, 1 << 30, -20]),
                                 "left_shift outside [0, 22]"),
    "add shift positive": (0, dict(add_params=[20, 1 << 30, 1, 1 << 30, -1, 1 << 30, -20]),
                           "shift outside [-31, 0]"),
    "mul shift too large": (2, dict(mul_params=[1 << 30, 31]), "shift outside [-31, 30] ('mul_params')"),
    "mul negative multiplier": (2, dict(mul_params=[-1, 0]), "multiplier negative"),
    "mul params wrong length": (2, dict(mul_params=[1 << 30]), "wrong length ('mul_params')"),
    "missing mul_params": (2, "mul_params", "missing key ('mul_params')"),
    "mul with one source": (2, dict(inputs=[1], in_zp=[0]), "wrong length ('inputs')"),
    "add output of another shape": (0, dict(out_shape=[6, 6, 3]), "arithmetic inputs and output differ in shape"),
    "unknown op between the ranges": (2, dict(op=24), "unknown layer op"),
}


@pytest.mark.parametrize("name", list(ARITH_REJECTIONS))
def test_prepare_rejects_malformed_arith_options(const_stage, name):
    doc, inputs = const_stage
    doc = copy.deepcopy(doc)
    layer, change, needle = ARITH_REJECTIONS[name]
    if isinstance(change, str):
        doc["layers"][layer].pop(change)
    else:
        doc["layers"][layer].update(change)
    with pytest.raises(native.EngineError) as info:
        _run(doc, inputs)
    assert needle in str(info.value), str(info.value)


# ---- real TFLM builds (TFLM_ROOT): the stage output equals the stock ops' output ----

REAL_TFLM_CASES = {
    "ADD per channel": dict(kind="ADD"),
    "ADD scalar, zero points -128": dict(kind="ADD", const_shape=(), **EDGE_QUANT["zero points at -128"]),
    "SUB power-of-two scales": dict(kind="SUB", **pow2({})),
    "MUL per channel, relu": dict(kind="MUL", act=ActivationFunctionType.RELU),
    "MUL tiny output scale": dict(kind="MUL", **EDGE_QUANT["tiny output scale"]),
    "MUL of two images": dict(kind="MUL", two_images=True),
}


@pytest.mark.parametrize("kernels", ["reference", "cmsis_nn"])
@pytest.mark.parametrize("case", list(REAL_TFLM_CASES))
def test_arith_stage_in_real_tflm_equals_the_stock_op(tmp_path, kernels, case):
    from tflm_patch import tflm_host
    tree, why = tflm_host.find_tflm(kernels)
    if tree is None:
        pytest.skip(f"real-TFLM test skipped: {why}")
    runner = tflm_host.build_runner(tree)
    data = arith_model(tail=False, **REAL_TFLM_CASES[case])  # the stage output is the model output
    model = model_io.parse_model(data)
    graph = build_graph(model)
    plan = planner.make_plan(graph, patches=(2, 3), split=len(graph.ops), require_gain=False,
                             kernels=kernels)
    stock, ours = tmp_path / "stock.tflite", tmp_path / "patched.tflite"
    stock.write_bytes(data)
    ours.write_bytes(model_io.serialize_model(rewrite.rewrite_model(model, plan, "test")))
    rng = np.random.default_rng(3)
    for _ in range(3):
        x = rng.integers(-128, 128, graph.tensors[graph.inputs[0]].shape, dtype=np.int8)
        assert tflm_host.run_model(runner, str(ours), x).outputs == tflm_host.run_model(runner, str(stock), x).outputs


def test_the_python_mirror_of_prepare_gives_the_kernels_verdicts(const_stage):
    """converter/plan_validation refuses the same malformed arith plans with the engine's words."""
    from .test_plan_validation import engine_verdicts, python_verdict
    doc, inputs = const_stage
    cases = {}
    for name, (layer, change, _) in ARITH_REJECTIONS.items():
        d = copy.deepcopy(doc)
        if isinstance(change, str):
            d["layers"][layer].pop(change)
        else:
            d["layers"][layer].update(change)
        cases[name] = encode(d)
    engine = engine_verdicts(list(cases.values()), inputs, (1, 6, 6, 4))
    for (name, options), expected in zip(cases.items(), engine):
        assert expected is not None, f"{name}: the engine accepts it"
        assert python_verdict(options, inputs, (1, 6, 6, 4)) == expected, name
    assert python_verdict(encode(doc), inputs, (1, 6, 6, 4)) is None


def test_an_op_starting_a_stage_may_not_read_two_outside_tensors():
    """ADD(conv(x), conv(x)) from op 2: both operands come from outside; no stage may start there."""
    from tflm_patch.converter.stage import stages_from
    mb = ModelBuilder(np.random.default_rng(9))
    x = mb.activation((8, 8, 4), 0.05, 0)
    y = mb.add(mb.conv(x, 4, 1), mb.conv(x, 4, 3))
    mb.mean_tail(y)
    graph = build_graph(model_io.parse_model(mb.finish([x.index], [len(mb.tensors) - 1])))
    stages, reason = stages_from(graph, 2)
    assert stages == [] and "op 2 (ADD) reads a second tensor from outside the stage" in reason
    assert max(st.end for st in stages_from(graph, 0)[0]) == 3  # from op 0 the ADD joins the stage

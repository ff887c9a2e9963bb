"""CONCATENATION and RESIZE_NEAREST_NEIGHBOR as stage layers (op codes 30, 31).

TFLM's index rule and copies (against the tflite-micro wheel), stages mixing them with convs and skip
connections patched on uneven grids and with halo caches (both engines against the wheel), and Prepare's
checks of malformed layers (the C++ engine, also under ASan/UBSan, and the Python decoder).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from flatbuffers import flexbuffers

from tflm_patch import native
from tflm_patch.converter import model_io, nearest, oracle, options, planner, reference, rewrite, stage, verify
from tflm_patch.converter.errors import ModelError
from tflm_patch.converter.graph import build_graph
from tflm_patch.converter.layers import CONCAT, RESIZE_NEAREST
from tflm_patch.converter.schema import ActivationFunctionType as A

from . import cached_plans
from .modelgen import ModelBuilder

FLAGS = [(False, False), (True, False), (False, True), (True, True)]
FLAG_IDS = ["plain", "align_corners", "half_pixel_centers", "both"]


# --------------------------------------------------------------------------
# The index rule: an image whose pixels hold their own coordinates, resized by the wheel.
# --------------------------------------------------------------------------

def _index_model(ih, iw, oh, ow, align, half) -> bytes:
    mb = ModelBuilder(np.random.default_rng(0))
    x = mb.activation((ih, iw, 2), 1.0, 0)
    y = mb.resize_nearest(x, oh, ow, align, half)
    return mb.finish([x.index], [y.index])


def _double_rule(o, in_size, out_size, align, half):
    """The same formula in double precision: what the float32 mirror must NOT be."""
    scale = (in_size - 1) / (out_size - 1) if align and out_size > 1 else in_size / out_size
    v = (o + (0.5 if half else 0.0)) * scale
    i = min(math.floor(v + 0.5) if align else math.floor(v), in_size - 1)
    return max(i, 0) if half else i


# (in, out) rows x (in, out) columns: up, down, 1 <-> n, non-integer ratios, and sizes where float32 and
# double disagree (2 -> 41, 82, 83, 42, 98).
INDEX_CASES = [((1, 7), (7, 1)), ((4, 8), (5, 15)), ((3, 7), (7, 3)), ((16, 5), (9, 13)), ((2, 41), (2, 82)),
               ((2, 83), (2, 42)), ((2, 98), (31, 97)), ((127, 64), (64, 127)), ((5, 5), (3, 2))]


@pytest.mark.parametrize("align,half", FLAGS, ids=FLAG_IDS)
def test_nearest_index_rule_equals_tflm(align, half):
    float32_matters = False
    for (ih, oh), (iw, ow) in INDEX_CASES:
        coords = np.zeros((1, ih, iw, 2), dtype=np.int8)
        coords[0, :, :, 0] = np.arange(ih)[:, None]
        coords[0, :, :, 1] = np.arange(iw)[None, :]
        got = oracle.run(_index_model(ih, iw, oh, ow, align, half), [coords], 1).outputs[0].reshape(oh, ow, 2)
        rows = nearest.source_index(np.arange(oh), ih, oh, align, half)
        cols = nearest.source_index(np.arange(ow), iw, ow, align, half)
        assert got[:, :, 0].tolist() == [[r] * ow for r in rows], f"rows {ih}->{oh}"
        assert got[:, :, 1].tolist() == [list(cols)] * oh, f"cols {iw}->{ow}"
        for i, o, found in ((ih, oh, rows), (iw, ow, cols)):
            float32_matters |= list(found) != [_double_rule(k, i, o, align, half) for k in range(o)]
    assert float32_matters, "the cases must tell float32 from double arithmetic"


# --------------------------------------------------------------------------
# Stages: encoder conv, upsampling, skip connections into a concatenation, conv.
# --------------------------------------------------------------------------

def _skip_model(flags, zp, seed=0) -> bytes:
    """11x13 input; a stride-2 conv upsampled back to 11x13 (non-integer factor) concatenated with a conv
    of the input and the stage input itself; a stride-2 conv; MEAN tail."""
    rng = np.random.default_rng(seed)
    mb = ModelBuilder(rng)
    q = (0.02, zp)
    x = mb.activation((11, 13, 3), *q)
    a = mb.conv(x, 4, 3, stride=2, act=A.RELU, out_q=q)
    up = mb.resize_nearest(a, 11, 13, *flags)
    b = mb.conv(x, 5, 3, out_q=q)
    c = mb.concat([up, b, x])
    d = mb.conv(c, 6, 3, stride=2)
    return mb.finish([x.index], [mb.mean_tail(d).index])


def _down_model(flags, zp, seed=1) -> bytes:
    """16x15 input; two resizes down to 7x6 (of a conv and of the input) concatenated, then a conv."""
    rng = np.random.default_rng(seed)
    mb = ModelBuilder(rng)
    q = (0.03, zp)
    x = mb.activation((16, 15, 2), *q)
    a = mb.conv(x, 3, 3, out_q=q)
    c = mb.concat([mb.resize_nearest(a, 7, 6, *flags), mb.resize_nearest(x, 7, 6, *flags)], axis=-1)
    d = mb.conv(c, 4, 3)
    return mb.finish([x.index], [mb.mean_tail(d).index])


def _deepest_stage_split(graph) -> int:
    return max(s.split for s in planner.select_stage(graph))


def _check_model(data: bytes, grids) -> None:
    m = model_io.parse_model(data)
    graph = build_graph(m)
    split = _deepest_stage_split(graph)
    kinds = {layer.op for s in planner.select_stage(graph) if s.split == split for layer in s.layers}
    assert {CONCAT, RESIZE_NEAREST} <= kinds
    inputs = verify.random_inputs(graph, 2, seed=4)
    for grid in grids:
        plan = planner.make_plan(graph, patches=grid, split=split, require_gain=False)
        patched = model_io.serialize_model(rewrite.rewrite_model(m, plan, "test"))
        report = verify.verify(data, patched, inputs, engines=("python", "cpp"))
        assert report.identical, f"grid {grid}: {report.first_difference}"
        # the same plan with halo caches (rows, columns, both) gives the same bytes in both engines
        new = build_graph(model_io.parse_model(patched))
        op = verify.patch_ops(new)[0]
        x = inputs[0][0] if isinstance(inputs[0], list) else inputs[0]
        op_inputs = [x.reshape(new.tensors[op.inputs[0]].shape)] + [new.tensors[t].data for t in op.inputs[1:]]
        v1 = options.decode(op.custom_options)
        if v1.cache_rows or v1.cache_cols:
            continue
        expected = reference.run_stage(op.custom_options, op_inputs)
        for rows, cols in ((True, False), (False, True), (True, True)):
            try:
                cached = cached_plans.with_caches(op.custom_options, rows=rows, cols=cols)
            except cached_plans.NotCacheable:
                continue
            assert np.array_equal(reference.run_stage(cached, op_inputs), expected)
            got = native.run_stage(cached, op_inputs, expected.shape)
            assert np.array_equal(got, expected), f"grid {grid} cached rows={rows} cols={cols}"


@pytest.mark.parametrize("zp", [-128, 127, 5])
@pytest.mark.parametrize("flags", FLAGS, ids=FLAG_IDS)
def test_upsampling_with_skip_connections_is_bit_identical(flags, zp):
    _check_model(_skip_model(flags, zp), [(2, 2), (3, 4), (5, 1), (1, 6)])


@pytest.mark.parametrize("zp", [-128, 127])
@pytest.mark.parametrize("flags", FLAGS, ids=FLAG_IDS)
def test_downsampling_resizes_concatenated_are_bit_identical(flags, zp):
    _check_model(_down_model(flags, zp), [(2, 2), (3, 5), (7, 1)])


def test_concatenation_that_would_requantize_ends_the_stage():
    """TFLM's int8 CONCATENATION refuses inputs quantized unlike its output: so does lowering."""
    mb = ModelBuilder(np.random.default_rng(2))
    x = mb.activation((8, 8, 3), 0.02, 0)
    a = mb.conv(x, 4, 3, out_q=(0.05, 3))
    b = mb.conv(x, 4, 3, out_q=(0.02, 0))
    c = mb.concat([a, b])
    data = mb.finish([x.index], [mb.mean_tail(mb.conv(c, 4, 1)).index])
    stages, reason = stage.candidate_stages(build_graph(model_io.parse_model(data)))
    assert max(s.split for s in stages) == 1  # conv a alone; a and b both escape until the concatenation
    assert "does not requantize" in reason


def test_hostile_layout_ops_are_bad_input_or_end_the_stage(tmp_path):
    """A RESIZE_NEAREST_NEIGHBOR without its size tensor is a corrupt model (exit 2, one line); a
    CONCATENATION without options (axis 0) is no stage op: the stage ends before it, no traceback."""
    from .conftest import run_cli
    mb = ModelBuilder(np.random.default_rng(3))
    x = mb.activation((8, 8, 3), 0.02, 0)
    a = mb.conv(x, 4, 3, out_q=(0.02, 0))
    y = mb.resize_nearest(a, 16, 16)
    mb.ops[-1].inputs = mb.ops[-1].inputs[:1]
    path = tmp_path / "resize.tflite"
    path.write_bytes(mb.finish([x.index], [mb.mean_tail(y).index]))
    code, out, err = run_cli("convert", path, "-o", tmp_path / "p.tflite")
    assert code == 2 and "wrong for its kind" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1

    mb = ModelBuilder(np.random.default_rng(4))
    x = mb.activation((8, 8, 3), 0.02, 0)
    c = mb.concat([mb.conv(x, 4, 3, stride=2, out_q=(0.02, 0)), mb.conv(x, 4, 3, stride=2, out_q=(0.02, 0))])
    mb.ops[-1].builtinOptionsType, mb.ops[-1].builtinOptions = 0, None
    graph = build_graph(model_io.parse_model(mb.finish([x.index], [mb.mean_tail(c).index])))
    stages, reason = stage.candidate_stages(graph)
    assert max(s.split for s in stages) == 1 and "axis 0, not channels" in reason


# --------------------------------------------------------------------------
# Prepare's checks (and the Python decoder's) on malformed layout layers.
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def skip_stage():
    """A valid plan of the skip model (options as a document) and its op inputs."""
    data = _skip_model((False, True), -5)
    m = model_io.parse_model(data)
    graph = build_graph(m)
    plan = planner.make_plan(graph, patches=(2, 2), split=_deepest_stage_split(graph), require_gain=False)
    new = build_graph(model_io.parse_model(model_io.serialize_model(rewrite.rewrite_model(m, plan, "t"))))
    op = verify.patch_ops(new)[0]
    x = verify.random_inputs(graph, 1, seed=9)[0]
    x = (x[0] if isinstance(x, list) else x).reshape(new.tensors[op.inputs[0]].shape)
    inputs = [x] + [new.tensors[t].data for t in op.inputs[1:]]
    expected = reference.run_stage(op.custom_options, inputs)
    return flexbuffers.Loads(bytes(op.custom_options)), inputs, expected


def _index_of(doc, op):
    return next(i for i, layer in enumerate(doc["layers"]) if layer["op"] == op)


def _edit(fn):
    def apply(doc):
        doc = flexbuffers.Loads(bytes(cached_plans.encode_document(doc)))  # a deep copy
        fn(doc, _index_of(doc, CONCAT), _index_of(doc, RESIZE_NEAREST))
        return doc
    return apply


def _set(layer_of, **fields):
    return _edit(lambda d, c, r: d["layers"][c if layer_of == "concat" else r].update(fields))


def _one_input(d, c, r):
    d["layers"][c]["inputs"] = d["layers"][c]["inputs"][:1]
    d["layers"][c]["in_zp"] = d["layers"][c]["in_zp"][:1]


def _eleven_inputs(d, c, r):
    d["layers"][c]["inputs"] = [d["layers"][c]["inputs"][0]] * 11
    d["layers"][c]["in_zp"] = [d["layers"][c]["in_zp"][0]] * 11


def _layer_zp(d, c, r):  # a source that is a layer, not the stage input (whose zero point is checked first)
    s = next(k for k, src in enumerate(d["layers"][c]["inputs"]) if src >= 0)
    d["layers"][c]["in_zp"][s] = d["layers"][c]["out_zp"] + 1


def _grow(key, axis, by):
    def fn(d, c, r):
        d["layers"][c if key == "concat" else r]["out_shape"][axis] += by
    return fn


def _drop(key):
    return _edit(lambda d, c, r: d["layers"][r].pop(key))


REJECTIONS = {
    "concat of one input": (_edit(_one_input), "CONCATENATION needs 2 to 10 inputs ('inputs')"),
    "concat of eleven inputs": (_edit(_eleven_inputs), "CONCATENATION needs 2 to 10 inputs ('inputs')"),
    "concat in_zp too short": (_edit(lambda d, c, r: d["layers"][c].update(in_zp=d["layers"][c]["in_zp"][:2])),
                               "wrong length ('in_zp')"),
    "concat in_zp not out_zp": (_edit(_layer_zp), "CONCATENATION in_zp differs from out_zp ('in_zp')"),
    "concat channels": (_edit(_grow("concat", 2, 1)), "not the sum of its inputs'"),
    "concat size": (_edit(_grow("concat", 0, 1)), "CONCATENATION inputs and output differ in size"),
    "resize channels": (_edit(_grow("resize", 2, 1)), "output channels differ from input channels"),
    "resize align_corners 2": (_set("resize", align_corners=2), "not 0 or 1 ('align_corners')"),
    "resize flag missing": (_drop("half_pixel_centers"), "missing key ('half_pixel_centers')"),
    "unknown op 32": (_set("resize", op=32), "unknown layer op"),
}


@pytest.mark.parametrize("name", list(REJECTIONS))
def test_prepare_rejects_malformed_layout_layers(skip_stage, name):
    doc, inputs, expected = skip_stage
    fn, needle = REJECTIONS[name]
    with pytest.raises(native.EngineError) as info:
        native.run_stage(cached_plans.encode_document(fn(doc)), inputs, expected.shape)
    assert needle in str(info.value), str(info.value)


def test_the_unmodified_plan_runs_and_the_python_decoder_rejects_bad_source_counts(skip_stage):
    doc, inputs, expected = skip_stage
    assert np.array_equal(native.run_stage(cached_plans.encode_document(doc), inputs, expected.shape), expected)
    for name in ("concat of one input", "concat of eleven inputs"):
        with pytest.raises(ModelError, match=r"CONCATENATION needs 2 to 10 inputs \('inputs'\)"):
            options.decode(cached_plans.encode_document(REJECTIONS[name][0](doc)))


def test_the_python_mirror_of_prepare_gives_the_kernels_verdict_and_message(skip_stage):
    from .test_plan_validation import engine_verdicts, python_verdict
    doc, inputs, expected = skip_stage
    cases = {name: cached_plans.encode_document(fn(doc)) for name, (fn, _) in REJECTIONS.items()}
    engine = engine_verdicts(list(cases.values()), inputs, expected.shape)
    for (name, opts), verdict in zip(cases.items(), engine):
        assert verdict is not None, name
        assert python_verdict(opts, inputs, expected.shape) == verdict, name
    valid = cached_plans.encode_document(doc)
    assert python_verdict(valid, inputs, expected.shape) is None


def test_sanitized_engine_on_valid_and_malformed_layout_layers(skip_stage):
    doc, inputs, expected = skip_stage
    cases = [cached_plans.encode_document(fn(doc)) for fn, _ in REJECTIONS.values()]
    results = native.run_many([cached_plans.encode_document(doc)] + cases, inputs, expected.shape, sanitize=True)
    assert np.array_equal(results[0], expected)
    for (name, (_, needle)), result in zip(REJECTIONS.items(), results[1:]):
        assert isinstance(result, native.EngineError), name
        assert needle in str(result), f"{name}: {result}"

"""Offline memory plans: never worse than TFLM's greedy plan, honoured by TFLM exactly, outputs identical."""
import glob
import os

import numpy as np
import pytest
from hypothesis import given, settings

from tflm_patch.converter import analysis, arena, model_io, offline_plan, oracle, persistent, pipeline, planner, verify
from tflm_patch.converter.graph import build_graph

from .conftest import MODELS_DIR, run_cli
from .random_stages import build, stage_specs

MODELS = sorted(glob.glob(os.path.join(MODELS_DIR, "*.tflite")))
IMPROVED = ["kernels_5x5_7x7.tflite", "nonsquare.tflite", "dilation_space_to_batch.tflite"]  # greedy leaves gaps


def test_greedy_replay_places_offline_buffers_first_and_online_ones_around_them():
    bufs = [arena.PlannedBuffer("a", 32, 0, 1, offline=16), arena.PlannedBuffer("b", 16, 0, 1),
            arena.PlannedBuffer("c", 16, 1, 2)]
    assert arena.greedy_plan(bufs) == 64
    # a sits at 16 (offline). Online, equal sizes: c (higher id) first, fits the gap below a at 0;
    # b overlaps a and c -> after a, at 48.
    assert [b.offset for b in bufs] == [16, 48, 0]


def _check(graph, requests):
    buffers = arena.allocation_lifetimes(graph, requests)
    greedy = arena.greedy_plan(arena.allocation_lifetimes(graph, requests))
    offsets, head = offline_plan.improve(graph, requests)
    assert offline_plan.lower_bound(buffers) <= head <= greedy
    if offsets is None:
        assert head == greedy
    else:
        assert head < greedy
        assert arena.plan_arena(graph, {k: v for k, v in requests.items()}, offline_offsets=offsets).head_bytes == head
        assert all(off % 16 == 0 for off in offsets.values())
    return offsets, head


@pytest.mark.parametrize("path", MODELS, ids=[os.path.basename(m) for m in MODELS])
def test_offline_plan_is_never_worse_than_greedy(path):
    graph = build_graph(model_io.load_model(path))
    offsets, _ = _check(graph, arena.scratch_requests(graph))
    assert (offsets is not None) == (os.path.basename(path) in IMPROVED)


@pytest.mark.parametrize("path", MODELS[:6], ids=[os.path.basename(m) for m in MODELS[:6]])
def test_offline_plan_of_patched_models_is_never_worse(path):
    model = model_io.load_model(path)
    graph = build_graph(model)
    try:
        plan = planner.make_plan(graph, max_mac_overhead=1.3)
    except Exception:
        pytest.skip("no patch plan")
    patched = pipeline.write_patched(model, plan).graph
    _check(patched, arena.scratch_requests(patched, analysis.patch_stage_scratch(patched)))


def _verify_in_wheel(data: bytes):
    model = model_io.parse_model(data)
    graph = build_graph(model)
    offsets, head = offline_plan.improve(graph)
    if offsets is None:
        return None
    planned = model_io.serialize_model(offline_plan.with_offline_plan(model, graph, offsets))
    planned_graph = build_graph(model_io.parse_model(planned))
    assert planned_graph.offline_offsets == offsets
    x = verify.random_inputs(graph, 1, seed=3)[0]
    measured = oracle.measure_arena(planned, x)
    predicted = persistent.predict_total(planned_graph, analysis.analyze(planned_graph).arena.head_bytes,
                                         abi="wheel", recording=True)
    assert (measured.head, measured.total) == (head, predicted.total_bytes)
    ref, ours = oracle.run(data, x, len(graph.outputs)).outputs, oracle.run(planned, x, len(graph.outputs)).outputs
    assert all(np.array_equal(a, b) for a, b in zip(ref, ours))
    return head


@pytest.mark.parametrize("name", IMPROVED)
def test_tflm_honours_the_offline_plan_with_identical_outputs(name):
    graph = build_graph(model_io.load_model(os.path.join(MODELS_DIR, name)))
    head = _verify_in_wheel(open(os.path.join(MODELS_DIR, name), "rb").read())
    assert head is not None and head < arena.plan_arena(graph).head_bytes


@settings(max_examples=12, deadline=None)
@given(spec=stage_specs())
def test_offline_plans_of_random_models_hold_in_tflm(spec):
    data = build(spec)
    if data is not None:
        graph = build_graph(model_io.parse_model(data))
        _check(graph, arena.scratch_requests(graph))
        _verify_in_wheel(data)


def test_replacing_a_plan_keeps_one_metadata_entry():
    model = model_io.load_model(os.path.join(MODELS_DIR, IMPROVED[0]))
    graph = build_graph(model)
    offsets, _ = offline_plan.improve(graph)
    twice = offline_plan.with_offline_plan(offline_plan.with_offline_plan(model, graph, offsets), graph, offsets)
    names = [m.name.decode() if isinstance(m.name, bytes) else m.name for m in twice.metadata]
    assert names.count(offline_plan.METADATA_NAME) == 1
    assert len(twice.buffers) == len(model.buffers) + 1


def test_cli_plan_only(tmp_path):
    src = os.path.join(MODELS_DIR, IMPROVED[0])
    out = tmp_path / "planned.tflite"
    code, stdout, err = run_cli("convert", src, "-o", out, "--plan-only")
    assert code == 0, err
    assert "identical outputs" in stdout
    planned = model_io.load_model(str(out))
    original = model_io.load_model(src)
    assert len(planned.subgraphs[0].operators) == len(original.subgraphs[0].operators)
    code, stdout, _ = run_cli("analyze", out)
    assert code == 0 and "(matches the prediction)" in stdout
    # Greedy already optimal: exit 3, nothing written.
    none = tmp_path / "none.tflite"
    code, _, err = run_cli("convert", os.path.join(MODELS_DIR, "residual_add.tflite"), "-o", none, "--plan-only")
    assert code == 3 and "already the best" in err and not none.exists()
    # A patched model (custom op): refused with exit 2.
    patched = tmp_path / "patched.tflite"
    assert run_cli("convert", os.path.join(MODELS_DIR, "residual_add.tflite"), "-o", patched, "--verify-inputs", "0")[0] == 0
    code, _, err = run_cli("convert", patched, "-o", tmp_path / "x.tflite", "--plan-only")
    assert code == 2 and "custom ops" in err


def _mobilenetv1_chain(channels_in: int) -> bytes:
    """A MobileNetV1-0.25 body at 96x96 (the visual-wake-words shape for 3 channels)."""
    from .modelgen import ModelBuilder
    mb = ModelBuilder(np.random.default_rng(0))
    x = mb.activation((96, 96, channels_in), 0.02, 0)
    y = mb.conv(x, 8, 3, stride=2)
    for out, stride in [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1), (256, 2), (256, 1)]:
        y = mb.conv(mb.conv(y, 0, 3, stride=stride, depthwise=True), out, 1)
    return mb.finish([x.index], [mb.mean_tail(y).index])


def test_offline_plan_closes_the_greedy_gap_of_a_mobilenetv1():
    # TFLM's greedy planner leaves gaps here (73,728 bytes; the visual-wake-words case);
    # the largest live set is 55,296 and the offline plan reaches it, in TFLM itself.
    data = _mobilenetv1_chain(3)
    graph = build_graph(model_io.parse_model(data))
    assert arena.plan_arena(graph).head_bytes == 73_728
    assert _verify_in_wheel(data) == 55_296 == offline_plan.lower_bound(
        arena.allocation_lifetimes(graph, arena.scratch_requests(graph)))


def test_analyze_warns_about_an_offline_plan_tflm_would_refuse(tmp_path, small_model_bytes):
    from tflm_patch.converter.schema import schema
    model = model_io.parse_model(small_model_bytes)
    buf = schema.BufferT()
    buf.data = np.array([1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0], dtype=np.uint8)  # 3 tensors, ragged
    model.buffers.append(buf)
    meta = schema.MetadataT()
    meta.name, meta.buffer = offline_plan.METADATA_NAME, len(model.buffers) - 1
    model.metadata = [meta]
    path = tmp_path / "bad_plan.tflite"
    path.write_bytes(model_io.serialize_model(model))
    code, out, _ = run_cli("analyze", path, "--no-measure")
    assert code == 0 and "warning: its OfflineMemoryAllocation metadata does not match its tensors" in out


def test_patched_models_get_an_offline_plan_only_where_it_beats_greedy():
    # Both: the offline plan beats TFLM's greedy placement of the patched graph. residual_add: greedy already meets the largest live set of separate tensors, so only laying the
    # stage output over its consumed input (a fused pair) beats it; without that no plan is written.
    for name in ("pooling_pad", "residual_add"):
        model = model_io.load_model(os.path.join(MODELS_DIR, f"{name}.tflite"))
        graph = build_graph(model)
        plan = planner.make_plan(graph, max_mac_overhead=1.05)
        written = pipeline.write_patched(model, plan)
        data, patched = written.data, written.graph
        scratch = analysis.patch_stage_scratch(patched)
        greedy = arena.plan_arena(patched, scratch, offline_offsets={}).head_bytes
        assert plan.offline_offsets and patched.offline_offsets is not None, name
        assert analysis.analyze(patched).arena.head_bytes == plan.arena_after  # what TFLM will plan
        assert {t: o for t, o in patched.offline_offsets.items() if o >= 0} == plan.offline_offsets
        assert plan.arena_after < greedy
        assert plan.total_after == persistent.predict_total(patched, plan.arena_after).total_bytes
        requests = arena.scratch_requests(patched, scratch)
        unfused, head = offline_plan.improve(patched, requests, fusions=())
        assert head >= plan.arena_after
        if name == "residual_add":
            assert unfused is None and head == greedy
        inputs = verify.random_inputs(graph, 2, seed=4)
        verify.require_identical(verify.verify(model_io.serialize_model(model), data, inputs))


def test_a_fused_group_is_placed_whole_and_its_bound_counts_its_span():
    """Output o (32 B) laid 16 B before its input i (48 B): o at x, i at x + 16, overlapping only each
    other; a third buffer alive with both goes around the pair's 64-byte span."""
    from tflm_patch.converter.stage_overlap import Fusion
    bufs = [arena.PlannedBuffer("t0", 48, 0, 1), arena.PlannedBuffer("t1", 32, 1, 2),
            arena.PlannedBuffer("t2", 16, 0, 2)]
    groups = offline_plan.groups_of(bufs, [Fusion(output=1, input=0, lead=16)])
    assert groups[0] == groups[1] and sorted(groups[0]) == [(0, 16), (1, 0)]
    assert offline_plan.lower_bound(bufs, groups) == 64 + 16 < offline_plan.lower_bound(bufs) == 96
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        offsets = offline_plan._place(bufs, order, False, groups)
        assert offsets[0] - offsets[1] == 16
        assert offsets[2] >= offsets[1] + 64 or offsets[2] + 16 <= offsets[1]
        assert max(offsets[i] + bufs[i].size for i in offsets) == 80
    exact = offline_plan._exact(bufs, 0, 10**9, groups)
    assert exact[0] - exact[1] == 16 and max(exact[i] + bufs[i].size for i in exact) == 80


@pytest.mark.parametrize("path", MODELS, ids=[os.path.basename(m) for m in MODELS])
def test_in_the_planned_arena_only_fused_pairs_share_bytes(path):
    """TFLM's placement of every default-planned model, replayed with its offline plan: no two buffers
    alive at the same time share a byte, except a stage output and the input it is laid over."""
    from tflm_patch.converter import stage_overlap
    from tflm_patch.converter.errors import NoGainError
    model = model_io.load_model(path)
    try:
        plan = planner.make_plan(build_graph(model), max_mac_overhead=1.05)
    except NoGainError:
        pytest.skip("no plan")
    g = pipeline.write_patched(model, plan).graph
    placed = arena.plan_arena(g, analysis.patch_stage_scratch(g))
    assert placed.head_bytes == plan.arena_after
    fused = {frozenset((f"t{f.input}", f"t{f.output}")) for f in stage_overlap.fusions(g)}
    shared = set()
    for k, a in enumerate(placed.buffers):
        for b in placed.buffers[k + 1:]:
            if a.first <= b.last and b.first <= a.last and a.offset < b.offset + b.size \
                    and b.offset < a.offset + a.size:
                shared.add(frozenset((a.label, b.label)))
    assert shared <= fused
    assert shared == fused or not g.offline_offsets


@pytest.mark.parametrize("name", ["unet_small", "mobilenetv2_035_144", "mobilenetv2_035_96"])
def test_ops_outside_the_stages_keep_their_footprint(name):
    """Among the offline plans of the least arena, the one keeping the ops outside stages at or below
    the extent (highest byte in use) they had before patching: here all of them (the U-Net's MEAN
    reached 57 KB without that rule, for an arena of 62 KB)."""
    from tflm_patch.converter import pairing
    model = model_io.load_model(os.path.join(MODELS_DIR, f"{name}.tflite"))
    graph = build_graph(model)
    plan = planner.make_plan(graph, max_mac_overhead=1.05)
    written = pipeline.write_patched(model, plan)
    before, after = analysis.analyze(graph).arena, analysis.analyze(written.graph).arena
    mapping = pairing.op_map(graph, written.graph, pairing.plan_record(written.model))
    outside = [(k, ops[0]) for k, ops in enumerate(mapping) if written.graph.ops[k].custom_code != "PATCH_STAGE"]
    assert outside
    assert all(after.extent_at(k + 1) <= before.extent_at(i + 1) for k, i in outside)

"""A stage output laid over its consumed input (docs/patch_stage_format.md, "Output over the input").

The contract (the lead), computed the same by the kernel's Prepare and the Python mirror; the fused layout
gives the same bytes as separate tensors in both engines (and under ASan); a lead below the contract is
refused with the kernel's message; the converter writes fused pairs only where the input dies, and the
verification runs every stage in the layout the offline plan gives it.
"""
import glob
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tflm_patch import native
from tflm_patch.converter import model_io, offline_plan, pipeline, planner, reference, stage_overlap, verify
from tflm_patch.converter.errors import ModelError
from tflm_patch.converter.graph import build_graph
from tflm_patch.converter.options import decode, encode

from .conftest import MODELS_DIR
from .random_stages import stage_specs
from .test_property import patched_pair

MODELS = sorted(glob.glob(os.path.join(MODELS_DIR, "*.tflite")))
NAMES = [os.path.basename(m)[:-len(".tflite")] for m in MODELS]
MESSAGE = "stage output overlaps input bytes still to be read ('output')"


def _stage_inputs(graph, stage_patch, seed=0):
    plan = stage_patch.stage_plan
    rng = np.random.default_rng(seed)
    kind = graph.tensors[stage_patch.stage.input_tensor].type_name
    shape = (1,) + tuple(plan.input_shape)
    if kind == "FLOAT32":
        x = rng.uniform(-3, 3, size=shape).astype(np.float32)
    elif kind == "UINT8":
        x = rng.integers(0, 256, size=shape, dtype=np.uint8)
    else:
        x = rng.integers(-128, 128, size=shape, dtype=np.int8)
    return [x] + [graph.tensors[t].data for t in stage_patch.stage.constants]


def _default_plan(name):
    model = model_io.load_model(os.path.join(MODELS_DIR, f"{name}.tflite"))
    graph = build_graph(model)
    return model, graph, planner.make_plan(graph, max_mac_overhead=1.05)


def test_the_lead_from_the_bytes_each_patch_reads_and_writes():
    """The lead is the least L such that no output byte a patch writes (at input - L + w) lands on an
    input byte the same or a later patch still reads: computed here from explicit byte sets."""
    from tflm_patch.converter.regions import grid_tiles, patch_regions
    _, graph, _ = _default_plan("residual_add")
    for grid in ((2, 1), (3, 2), (1, 4)):
        plan = planner.make_plan(graph, patches=grid, require_gain=False).stage_plan
        _, in_w, in_c = plan.input_shape
        _, out_w, out_c = plan.layers[-1].out_shape
        writes, reads = [], []
        for tile in grid_tiles(plan.grid_rows, plan.grid_cols):
            _, need = patch_regions(plan.layers, tile)
            writes.append({(y * out_w + x) * out_c + c for y in range(tile[0], tile[1])
                           for x in range(tile[2], tile[3]) for c in range(out_c)})
            reads.append({(y * in_w + x) * in_c + c for y in range(need[0], need[1])
                          for x in range(need[2], need[3]) for c in range(in_c)})
        least = max(max(writes[p]) + 1 - min(min(reads[q]) for q in range(p, len(reads)))
                    for p in range(len(writes)))
        assert stage_overlap.plan_lead(plan) == least, grid


@pytest.mark.parametrize("name", NAMES)
def test_kernel_and_mirror_agree_and_the_fused_layout_is_exact(name):
    _, graph, plan = _default_plan(name)
    for k, sp in enumerate(plan.stages):
        options = encode(sp.stage_plan)
        inputs = _stage_inputs(graph, sp, seed=k)
        shape = (1,) + tuple(sp.stage_plan.layers[-1].out_shape)
        apart = reference.run_stage(options, inputs)
        lead = stage_overlap.plan_lead(decode(options))
        assert native.run_stage(options, inputs, shape).tobytes() == apart.tobytes()
        assert native.last_min_output_lead() == lead
        planned = stage_overlap.planned_lead(sp.stage.layers, sp.stage_plan.grid_rows, sp.stage_plan.grid_cols,
                                             sp.stage_plan.input_shape, sp.stage_plan.input_type)
        for at in sorted({lead, planned}):
            assert reference.run_stage(options, inputs, output_lead=at).tobytes() == apart.tobytes()
            assert native.run_stage(options, inputs, shape, output_lead=at).tobytes() == apart.tobytes()
        with pytest.raises(ModelError, match=MESSAGE.replace("(", r"\(").replace(")", r"\)")):
            reference.run_stage(options, inputs, output_lead=lead - 1)
        with pytest.raises(native.EngineError) as refused:
            native.run_stage(options, inputs, shape, output_lead=lead - 1)
        assert str(refused.value) == MESSAGE


def test_the_fused_layout_runs_clean_under_asan():
    _, graph, plan = _default_plan("mobilenetv2_035_96")
    for k, sp in enumerate(plan.stages):
        options = encode(sp.stage_plan)
        inputs = _stage_inputs(graph, sp, seed=k)
        shape = (1,) + tuple(sp.stage_plan.layers[-1].out_shape)
        lead = stage_overlap.plan_lead(sp.stage_plan)
        got = native.run_many([options], inputs, shape, sanitize=True, output_lead=lead)[0]
        assert got.tobytes() == reference.run_stage(options, inputs).tobytes()
        refused = native.run_many([options], inputs, shape, sanitize=True, output_lead=lead - 1)[0]
        assert isinstance(refused, native.EngineError) and str(refused) == MESSAGE


def test_the_reference_really_shares_the_bytes(monkeypatch):
    """With the check switched off, an output laid on input still to be read gives wrong bytes: the
    reference runs a fused stage in one buffer, as the device does, so a wrong lead cannot pass."""
    _, graph, plan = _default_plan("residual_add")
    sp = plan.stages[0]
    options, inputs = encode(sp.stage_plan), _stage_inputs(graph, sp)
    apart = reference.run_stage(options, inputs)
    monkeypatch.setattr(stage_overlap, "check", lambda *args: None)
    assert reference.run_stage(options, inputs, output_lead=0).tobytes() != apart.tobytes()


@settings(max_examples=40, deadline=None)
@given(spec=stage_specs(), data=st.data())
def test_random_stages_agree_on_the_lead_and_run_fused(spec, data):
    _, _, graph, plan = patched_pair(spec, data.draw)
    sp = plan.stages[0]
    options = encode(sp.stage_plan)
    inputs = _stage_inputs(graph, sp, seed=spec["seed"] % 1000)
    shape = (1,) + tuple(sp.stage_plan.layers[-1].out_shape)
    apart = native.run_stage(options, inputs, shape)
    lead = native.last_min_output_lead()
    assert lead == stage_overlap.plan_lead(decode(options))
    if lead == stage_overlap.NO_LIMIT:
        return
    assert native.run_stage(options, inputs, shape, output_lead=lead).tobytes() == apart.tobytes()
    assert reference.run_stage(options, inputs, output_lead=lead).tobytes() == apart.tobytes()


def test_an_input_read_after_the_stage_is_never_overwritten():
    """fusions() takes only inputs no later op reads and that are not model outputs."""
    _, graph, plan = _default_plan("mobilenetv2_035_96")
    g, _ = planner.patched_graph(graph, plan.stages)
    found = stage_overlap.fusions(g)
    assert found and all(f.lead % 16 == 0 and f.lead >= 0 for f in found)
    for f in found:
        assert f.input not in g.outputs
        assert not [op for op in g.ops if f.input in op.inputs and op.outputs != [f.output]]
    # make the first stage's input a model output too: it must then stay apart
    first = found[0]
    g.outputs = list(g.outputs) + [first.input]
    assert first.input not in {f.input for f in stage_overlap.fusions(g)}


def test_the_offline_plan_lays_each_fused_output_lead_bytes_before_its_input():
    model, graph, plan = _default_plan("mobilenetv2_035_144")
    written = pipeline.write_patched(model, plan)
    g = written.graph
    leads = [stage_overlap.planned_output_lead(g, op) for op in verify.patch_ops(g)]
    assert leads == plan.output_leads(graph)
    # the four patched stages over ops 0-23 lie over their inputs; the single-patch ones after cannot
    # (a single patch reads all its input before it writes its last byte: its lead is its output's size)
    patched = [sp.grid != (1, 1) for sp in plan.stages]
    assert patched[:4] == [True] * 4
    assert [lead is not None for lead in leads] == patched
    fusions = stage_overlap.fusions(g)
    assert len(fusions) == sum(patched)
    for f in fusions:
        assert g.offline_offsets[f.input] - g.offline_offsets[f.output] == f.lead
    # the bound counts a fused pair's span, and TFLM's head meets it here
    from tflm_patch.converter import analysis, arena
    requests = arena.scratch_requests(g, analysis.patch_stage_scratch(g))
    buffers = arena.allocation_lifetimes(g, requests)
    groups = offline_plan.groups_of(buffers, stage_overlap.fusions(g))
    assert offline_plan.lower_bound(buffers, groups) <= plan.arena_after < offline_plan.lower_bound(buffers)


def test_verify_runs_each_stage_in_the_planned_layout_and_refuses_a_bad_one():
    model, graph, plan = _default_plan("residual_add")
    written = pipeline.write_patched(model, plan)
    original = model_io.serialize_model(model)
    inputs = verify.random_inputs(graph, 1, seed=2)
    assert verify.verify(original, written.data, inputs, engines=("python", "cpp")).identical
    # move the stage output 1 byte closer to its input than the contract allows
    g = written.graph
    (f,) = stage_overlap.fusions(g)
    offsets = dict(g.offline_offsets)
    offsets[f.output] = offsets[f.input] - stage_overlap.plan_lead(decode(verify.patch_ops(g)[0].custom_options)) + 1
    bad = model_io.serialize_model(offline_plan.with_offline_plan(written.model, g, offsets))
    for engine in ("python", "cpp"):
        with pytest.raises(ModelError, match="overlaps input bytes still to be read"):
            verify.verify(original, bad, inputs, engines=(engine,))

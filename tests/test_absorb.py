"""Single-patch stages over the ops after the peak, kept only where they lower arena_used_bytes()
(TFLM's per-channel persistent data) without raising the planned arena (converter/absorb.py)."""
import os

import pytest

from tflm_patch.converter import absorb, model_io, pipeline, planner, verify
from tflm_patch.converter.errors import NoGainError
from tflm_patch.converter.graph import build_graph

from .conftest import MODELS_DIR

def _searched_only(graph, stages, head, used, memo):
    """absorb switched off: the search's stages alone."""
    return stages, head, None, used


NAMES = ["mobilenetv1_025_96_gray", "mobilenetv2_035_96", "residual_add", "stride2_even", "unet_small"]


def _plans(name, monkeypatch):
    model = model_io.load_model(os.path.join(MODELS_DIR, f"{name}.tflite"))
    graph = build_graph(model)
    plan = planner.make_plan(graph, max_mac_overhead=1.05)
    with monkeypatch.context() as m:
        m.setattr(absorb, "absorb", _searched_only)
        searched = planner.make_plan(graph, max_mac_overhead=1.05)
    return model, graph, plan, searched


@pytest.mark.parametrize("name", NAMES)
def test_added_stages_lower_the_total_and_never_the_planned_arena(name, monkeypatch):
    try:
        model, graph, plan, searched = _plans(name, monkeypatch)
    except NoGainError:
        pytest.skip("no plan")
    added = [sp for sp in plan.stages if sp.stage.start not in {s.stage.start for s in searched.stages}]
    assert plan.arena_after <= searched.arena_after
    assert plan.macs_patched - plan.macs_original == searched.macs_patched - searched.macs_original
    if not added:
        assert plan.total_after == searched.total_after
        return
    assert plan.total_after < searched.total_after
    # each added stage pays for itself: without it the total is higher
    for sp in added:
        rest = [s for s in plan.stages if s is not sp]
        head = planner._real_heads(graph, [(planner.predict(graph, rest).head_bytes, rest)])[0][0][0]
        assert planner.predict_used(graph, rest, head) > plan.total_after


def test_mobilenet_v1_reaches_2x_on_arena_used_bytes(monkeypatch):
    """The wide 6x6 and 3x3 layers keep ~18 KB of TFLM's per-channel data; one single-patch stage over
    them reads it from the model instead. Bit-identical in the wheel, both engines."""
    model, graph, plan, searched = _plans("mobilenetv1_025_96_gray", monkeypatch)
    assert plan.total_before / searched.total_after < 2 <= plan.total_before / plan.total_after
    single = [sp for sp in plan.stages if sp.grid == (1, 1)]
    assert single and all(sp.macs_patched == sp.macs_original for sp in single)
    patched = pipeline.write_patched(model, plan).data
    report = verify.verify(model_io.serialize_model(model), patched, verify.random_inputs(graph, 2, seed=6),
                           engines=("python", "cpp"))
    assert report.identical, report.first_difference


def test_no_stage_is_added_for_other_kernels_or_a_chosen_grid(monkeypatch):
    graph = build_graph(model_io.load_model(os.path.join(MODELS_DIR, "mobilenetv1_025_96_gray.tflite")))
    for kw in (dict(kernels="cmsis_nn"), dict(patches=(4, 4))):
        plan = planner.make_plan(graph, max_mac_overhead=1.05, **kw)
        with monkeypatch.context() as m:
            m.setattr(absorb, "absorb", _searched_only)
            searched = planner.make_plan(graph, max_mac_overhead=1.05, **kw)
        assert [(s.stage.start, s.stage.end) for s in plan.stages] == \
            [(s.stage.start, s.stage.end) for s in searched.stages], kw


@pytest.mark.parametrize("limit", [1.5, None])
def test_added_stages_add_no_mac_under_any_limit(limit, monkeypatch):
    """A plan chosen for its MACs keeps them: the stages added compute each output once."""
    graph = build_graph(model_io.load_model(os.path.join(MODELS_DIR, "mobilenetv1_025_96_gray.tflite")))
    plan = planner.make_plan(graph, max_mac_overhead=limit)
    with monkeypatch.context() as m:
        m.setattr(absorb, "absorb", _searched_only)
        searched = planner.make_plan(graph, max_mac_overhead=limit)
    assert plan.macs_patched - plan.macs_original == searched.macs_patched - searched.macs_original
    assert plan.total_after <= searched.total_after and plan.arena_after <= searched.arena_after
    added = [sp for sp in plan.stages if (sp.stage.start, sp.stage.end) not in
             {(s.stage.start, s.stage.end) for s in searched.stages}]
    assert all(sp.macs_patched == sp.macs_original for sp in added)

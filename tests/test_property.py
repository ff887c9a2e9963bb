"""Random small stages, random grids: the patched stage equals TFLM's, byte for byte."""
import numpy as np
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from tflm_patch.converter import model_io, pipeline, planner, verify
from tflm_patch.converter.graph import build_graph

from .random_stages import build, stage_specs

SETTINGS = dict(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def patched_pair(spec, grid_draw):
    data = build(spec)
    assume(data is not None)
    model = model_io.parse_model(data)
    graph = build_graph(model)
    out_h, out_w = graph.tensors[graph.ops[-1].inputs[0]].shape[1:3]
    rows = grid_draw(st.integers(1, min(4, out_h)))
    cols = grid_draw(st.integers(1, min(4, out_w)))
    plan = planner.make_plan(graph, patches=(rows, cols), split=len(graph.ops) - 1, require_gain=False)
    patched = pipeline.write_patched(model, plan).data
    return data, patched, graph, plan


@settings(**SETTINGS)
@given(spec=stage_specs(), data=st.data())
def test_random_stage_is_bit_identical_to_tflm(spec, data):
    original, patched, graph, plan = patched_pair(spec, data.draw)
    report = verify.verify(original, patched, verify.random_inputs(graph, 2, seed=spec["seed"] % 1000),
                           engines=("python", "cpp"))
    assert report.identical, report.first_difference


@settings(max_examples=25, deadline=None)
@given(spec=stage_specs(), data=st.data())
def test_options_round_trip(spec, data):
    from tflm_patch.converter import options
    _, _, _, plan = patched_pair(spec, data.draw)
    encoded = options.encode(plan.stage_plan)
    decoded = options.decode(encoded)
    assert options.encode(decoded) == encoded
    assert [l.op for l in decoded.layers] == [l.op for l in plan.stage_plan.layers]
    assert np.all([d.multiplier == l.multiplier for d, l in zip(decoded.layers, plan.stage_plan.layers)])


# ---- several stages, uneven grids, every caching mode ----

# Caching modes drawn per stage: none, rows, columns, both (the format allows each; the planner's
# search uses none, rows and both).
DRAWN_MODES = [(False, False), (True, False), (False, True), (True, True)]


def _cuts(draw, size: int) -> list:
    """Strictly increasing boundaries [0, ..., size], often uneven: 1 to 4 bands."""
    inner = draw(st.lists(st.integers(1, size - 1), max_size=min(3, size - 1), unique=True)) if size > 1 else []
    return [0] + sorted(inner) + [size]


def several_stage_plan(graph, draw):
    """A plan of up to three non-overlapping stages (drawn from every valid stage), each with its own
    drawn uneven grid and caching mode; None when no stage was drawn."""
    from tflm_patch.converter import stage_cost
    from tflm_patch.converter.stage import all_stages
    by_start = {}
    for stage in all_stages(graph):
        by_start.setdefault(stage.start, []).append(stage)
    chosen, k = [], 0
    while k < len(graph.ops) and len(chosen) < 3:
        options = by_start.get(k, [])
        pick = draw(st.integers(-1, len(options) - 1)) if options else -1
        if pick < 0:
            k += 1
            continue
        stage = options[pick]
        h, w = stage.layers[-1].out_shape[:2]
        rows, cols = _cuts(draw, h), _cuts(draw, w)
        cache_rows, cache_cols = draw(st.sampled_from(DRAWN_MODES))
        cache_rows, cache_cols = cache_rows and len(rows) > 2, cache_cols and len(cols) > 2
        shape = tuple(graph.tensors[stage.input_tensor].shape[1:])
        opt = stage_cost.option(stage, shape, rows, cols, cache_rows, cache_cols) or \
            stage_cost.option(stage, shape, rows, cols)  # regions not separable: no caching
        chosen.append(stage_cost.materialize(opt))
        k = stage.end
    if not chosen:
        return None
    before = planner.predict(graph, []).head_bytes
    return planner.Plan(chosen, before, planner.predict(graph, chosen).head_bytes)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=stage_specs(max_layers=6), data=st.data())
def test_several_stages_uneven_grids_and_caches_are_bit_identical_to_tflm(spec, data):
    """Any stages of a model, each with any grid and caching mode, leave it bit-identical to the
    unpatched model run by TFLM's reference kernels (the tflite-micro wheel), in the Python
    reference executor and the C++ engine, stage by stage and at the model's outputs."""
    original = build(spec)
    assume(original is not None)
    model = model_io.parse_model(original)
    graph = build_graph(model)
    plan = several_stage_plan(graph, data.draw)
    assume(plan is not None)
    event(f"{len(plan.stages)} stage(s)")
    for sp in plan.stages:
        event(f"caching {sp.caching}")
        event("uneven grid" if len({b - a for cuts in (sp.stage_plan.grid_rows, sp.stage_plan.grid_cols)
                                     for a, b in zip(cuts, cuts[1:])}) > 1 else "even grid")
    patched = pipeline.write_patched(model, plan).data
    report = verify.verify(original, patched, verify.random_inputs(graph, 2, seed=spec["seed"] % 1000),
                           engines=("python", "cpp"))
    assert report.identical, report.first_difference
    assert report.inputs == 2


def test_a_stage_never_starts_at_an_op_reading_two_tensors_from_outside():
    """An ADD whose two inputs both come from before it cannot start a stage: a PATCH_STAGE has one
    input tensor (found by the several-stage property test: such a stage once passed as valid and
    computed x + x)."""
    from tflm_patch.converter.stage import all_stages
    conv = {"kind": "conv", "act": 0, "k": 1, "stride": 1, "dilation": 1, "padding": 0, "out_c": 1, "dm": 1}
    spec = {"input": (5, 5, 1), "layers": [conv, dict(conv, stride=2), {"kind": "residual", "act": 0}], "seed": 0}
    graph = build_graph(model_io.parse_model(build(spec)))
    add = next(op.index for op in graph.ops if op.opcode == 0)  # ADD(conv1 output, residual conv output)
    assert len({t for t in graph.ops[add].inputs}) == 2
    stages = all_stages(graph)
    assert not [s for s in stages if s.start == add]
    assert [s for s in stages if s.start < add < s.end]  # it can still be inside a stage

"""Random small stages, random grids: the patched stage equals TFLM's, byte for byte."""
import numpy as np
from hypothesis import HealthCheck, assume, given, settings
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

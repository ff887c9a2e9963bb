"""Real int8 models made by TensorFlow (tests/models/make_models.py): patched, verified, measured."""
import glob
import os

import pytest

from tflm_patch.converter import analysis, arena, model_io, oracle, pipeline, planner, stage_overlap, verify
from tflm_patch.converter.errors import NoGainError
from tflm_patch.converter.graph import build_graph

from .conftest import MODELS_DIR, run_cli

MODELS = sorted(glob.glob(os.path.join(MODELS_DIR, "*.tflite")))
NAMES = [os.path.basename(m) for m in MODELS]


def test_the_model_set_is_complete():
    expected = {"mobilenetv2_035_96", "mobilenetv2_035_144", "kernels_5x5_7x7", "stride2_odd", "stride2_even",
                "dilation2", "valid_padding", "residual_add", "nonsquare", "pooling_pad", "depth_multiplier",
                "dilation_space_to_batch", "rescaling_normalization", "unet_small"}
    assert expected <= {n[:-len(".tflite")] for n in NAMES}


@pytest.fixture(scope="module", params=MODELS, ids=NAMES)
def model(request):
    data = open(request.param, "rb").read()
    m = model_io.parse_model(data, request.param)
    return request.param, data, m, build_graph(m)


def test_arena_prediction_equals_tflm(model):
    _, data, _, graph = model
    measured = oracle.measure_arena(data, verify.random_inputs(graph, 1)[0])
    assert arena.plan_arena(graph).head_bytes == measured.head


# Stride-1 nets whose stage output is as large as every intermediate: only a stage output laid over its
# consumed input (stage_overlap) lowers their peak.
FUSION_ONLY = {"dilation2.tflite", "valid_padding.tflite"}


def test_default_plan_lowers_the_peak_and_is_bit_identical(model):
    path, data, m, graph = model
    plan = planner.make_plan(graph, max_mac_overhead=1.3)
    if os.path.basename(path) in FUSION_ONLY:
        g, _ = planner.patched_graph(graph, plan.stages)
        fused = {f.output for f in stage_overlap.fusions(g)}
        assert plan.offline_offsets and fused
        assert all(plan.offline_offsets[f.output] < plan.offline_offsets[f.input]
                   < plan.offline_offsets[f.output] + g.tensors[f.output].nbytes for f in stage_overlap.fusions(g))
    assert plan.arena_after < plan.arena_before
    assert plan.mac_overhead <= 1.3
    if plan.total_before is not None:  # never worse in what the firmware sizes either
        assert plan.total_after < plan.total_before
    patched = pipeline.write_patched(m, plan).data
    assert analysis.analyze(build_graph(model_io.parse_model(patched))).arena.head_bytes == plan.arena_after
    report = verify.verify(data, patched, verify.random_inputs(graph, 2, seed=3), engines=("python", "cpp"))
    assert report.identical, report.first_difference


@pytest.mark.parametrize("grid", [(3, 2), (4, 5)])
def test_uneven_grids_over_the_whole_stage_are_bit_identical(model, grid):
    _, data, m, graph = model
    stages = planner.select_stage(graph)
    # the deepest stage that still has a feature map worth tiling
    deepest = max((s for s in stages if min(s.layers[-1].out_shape[:2]) >= 6), key=lambda s: s.split,
                  default=stages[-1])
    h, w = deepest.layers[-1].out_shape[:2]
    rows, cols = min(grid[0], h), min(grid[1], w)
    plan = planner.make_plan(graph, patches=(rows, cols), split=deepest.split, require_gain=False)
    assert plan.grid == (rows, cols)
    patched = pipeline.write_patched(m, plan).data
    report = verify.verify(data, patched, verify.random_inputs(graph, 1, seed=5), engines=("python", "cpp"))
    assert report.identical, report.first_difference


def test_the_unet_is_one_stage_from_input_to_the_strided_conv_and_gains():
    """The U-Net's skip connections live inside one stage that spans encoder and decoder: ops 0-9 (six convs,
    two RESIZE_NEAREST_NEIGHBOR, two CONCATENATION) in a stage from the 64x64x3 input to the 32x32x8 output."""
    src = os.path.join(MODELS_DIR, "unet_small.tflite")
    m = model_io.load_model(src)
    graph = build_graph(m)
    plan = planner.make_plan(graph, max_mac_overhead=1.05)
    (stage,) = [sp.stage for sp in plan.stages]
    assert stage.op_indices == list(range(10))
    names = [layer.name for layer in stage.layers]
    assert names.count("CONCATENATION") == 2 and names.count("RESIZE_NEAREST_NEIGHBOR") == 2
    assert plan.arena_before == 196_608 and plan.arena_after <= 70_000
    assert plan.total_after < plan.total_before
    patched = pipeline.write_patched(m, plan).data
    report = verify.verify(open(src, "rb").read(), patched, verify.random_inputs(graph, 2, seed=8),
                           engines=("python", "cpp"))
    assert report.identical, report.first_difference


def test_a_budget_never_buys_a_worse_model(tmp_path):
    src = os.path.join(MODELS_DIR, "mobilenetv2_035_96.tflite")
    graph = build_graph(model_io.load_model(src))
    with pytest.raises(NoGainError, match="already fits"):
        planner.make_plan(graph, sram_budget=1 << 20)
    plan = planner.make_plan(graph, sram_budget=120 * 1024)
    assert plan.arena_after <= 120 * 1024 < plan.arena_before
    # the least MACs added among the plans that fit (single-patch stages added after add none)
    assert plan.macs_patched - plan.macs_original == min(added for head, added in plan.candidates
                                                         if head <= 120 * 1024)
    with pytest.raises(NoGainError, match=r"no plan fits --sram-budget 10,240 bytes: the smallest arena reachable is "
                                          r"[0-9,]+ bytes"):
        planner.make_plan(graph, sram_budget=10 * 1024, max_mac_overhead=1.3)


def test_mobilenet_cli_numbers(tmp_path):
    src = os.path.join(MODELS_DIR, "mobilenetv2_035_96.tflite")
    code, out, err = run_cli("analyze", src)
    assert code == 0 and "matches the prediction" in out, out + err
    code, out, err = run_cli("convert", src, "-o", tmp_path / "p.tflite", "--sram-budget", "100KiB")
    assert code == 0, err
    p = build_graph(model_io.load_model(str(tmp_path / "p.tflite")))
    assert analysis.analyze(p).arena.head_bytes <= 100 * 1024


def test_signatures_and_metadata_survive_the_rewrite(tmp_path):
    src = os.path.join(MODELS_DIR, "mobilenetv2_035_96.tflite")
    m = model_io.load_model(src)
    assert m.signatureDefs, "the Keras model carries a serving signature"
    plan = planner.make_plan(build_graph(m))
    new = pipeline.write_patched(m, plan).model

    def names(model):
        sg = model.subgraphs[0]
        return [(s.signatureKey, [(t.name, sg.tensors[t.tensorIndex].name) for t in s.inputs + s.outputs])
                for s in model.signatureDefs]

    assert names(new) == names(m)
    old_meta = {x.name for x in m.metadata}
    assert old_meta < {x.name for x in new.metadata}


def test_verify_takes_inputs_from_npy(tmp_path):
    import numpy as np
    src = os.path.join(MODELS_DIR, "residual_add.tflite")
    out = tmp_path / "p.tflite"
    assert run_cli("convert", src, "-o", out, "--verify-inputs", "0")[0] == 0
    x = np.random.default_rng(0).integers(-128, 128, (3, 1, 48, 48, 3), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    code, stdout, err = run_cli("verify", src, out, "--input-npy", tmp_path / "x.npy", "--engine", "both")
    assert code == 0 and "on 3 input(s)" in stdout, err
    np.save(tmp_path / "stack.npy", x[:, 0])  # [N, H, W, C] works too
    code, stdout, err = run_cli("verify", src, out, "--input-npy", tmp_path / "stack.npy")
    assert code == 0 and "on 3 input(s)" in stdout, err
    np.save(tmp_path / "bad.npy", x.astype(np.float32))
    code, stdout, err = run_cli("verify", src, out, "--input-npy", tmp_path / "bad.npy")
    assert code == 2 and "dtype float32" in err


@pytest.mark.parametrize("name", ["residual_add", "pooling_pad", "depth_multiplier", "mobilenetv2_035_96"])
def test_engine_under_address_and_ub_sanitizers_on_real_models(name):
    """The C++ engine built with -fsanitize=address,undefined runs real plans cleanly and exactly."""
    import numpy as np
    from tflm_patch import native
    from tflm_patch.converter import reference
    src = os.path.join(MODELS_DIR, f"{name}.tflite")
    m = model_io.load_model(src)
    plan = planner.make_plan(build_graph(m), patches=(3, 2))
    new = pipeline.write_patched(m, plan).graph
    for op in verify.patch_ops(new):
        x = np.random.default_rng(1).integers(-128, 128, new.tensors[op.inputs[0]].shape, dtype=np.int8)
        inputs = [x] + [new.tensors[t].data for t in op.inputs[1:]]
        expected = reference.run_stage(op.custom_options, inputs)
        got = native.run_stage(op.custom_options, inputs, expected.shape, sanitize=True)
        assert got.tobytes() == expected.tobytes()


def test_the_path_search_keeps_to_the_stage_cap():
    """Five ops, each coverable by a one-op stage (cheapest) or the whole run by one stage (dearer):
    with a cap of 4 stages the search must return the best plan of at most 4 stages, not a 5-stage one
    (that the caller would drop, leaving "no plan" at a looser MAC limit)."""
    from types import SimpleNamespace
    n, plain = 5, [100] * 5
    single = SimpleNamespace(cost=10, macs_original=10)   # adds no MACs
    whole = SimpleNamespace(cost=60, macs_original=50)    # adds 10
    pair = SimpleNamespace(cost=25, macs_original=20)     # adds 5
    edges = {k: [(k + 1, 8, single)] for k in range(n)}
    edges[0].append((5, 8, whole))
    edges[3].append((5, 8, pair))
    path = planner._cheapest_path(n, plain, edges, bound=8, max_stages=4)
    assert path == [single, single, single, pair]
    assert planner._cheapest_path(n, plain, edges, bound=8, max_stages=5) == [single] * 5
    assert planner._cheapest_path(n, plain, edges, bound=8, max_stages=1) == [whole]

"""Level 2: original and patched models in a real host build of TFLM (needs TFLM_ROOT).

The runner is built from our sources only (micro_ops/) and linked to the
user's libtensorflow-microlite.a; TFLM's MicroInterpreter runs both models.
Each host library found is tested: reference kernels, and CMSIS-NN kernels
(OPTIMIZED_KERNEL_DIR=cmsis_nn), where PATCH_STAGE itself calls CMSIS-NN.
"""
import glob
import os

import numpy as np
import pytest

from tflm_patch import tflm_host
from tflm_patch.converter import model_io, pipeline, planner, verify
from tflm_patch.converter.errors import NoGainError
from tflm_patch.converter.graph import build_graph

from .conftest import MODELS_DIR

BUILDS, WHY = tflm_host.find_tflm_builds()
pytestmark = pytest.mark.skipif(not BUILDS, reason=f"real-TFLM tests skipped: {WHY}")
MODELS = sorted(glob.glob(os.path.join(MODELS_DIR, "*.tflite")))


arena_fill = tflm_host.arena_fill_for


# Every host library found (reference kernels, CMSIS-NN kernels), each tested.
KERNELS = [tflm_host.REFERENCE, tflm_host.CMSIS_NN]


@pytest.fixture(scope="module", params=KERNELS)
def tflm(request):
    """(kernels of the library, runner linked to it)."""
    tree, why = tflm_host.find_tflm(request.param)
    if tree is None:
        pytest.skip(f"real-TFLM tests with {request.param} kernels skipped: {why}")
    return tree.kernels, tflm_host.build_runner(tree)


def _patched(path, tmp_path, **kw):
    model = model_io.load_model(path)
    graph = build_graph(model)
    plan = planner.make_plan(graph, **kw)
    out = tmp_path / "patched.tflite"
    out.write_bytes(pipeline.write_patched(model, plan).data)
    return graph, plan, str(out)


@pytest.mark.parametrize("path", MODELS, ids=[os.path.basename(m) for m in MODELS])
def test_patched_model_in_tflm_gives_the_same_outputs_in_less_arena(tflm, tmp_path, path):
    kernels, runner = tflm
    try:
        graph, plan, patched = _patched(path, tmp_path, max_mac_overhead=1.3, kernels=kernels)
    except NoGainError:
        pytest.skip("no plan lowers this model's peak")
    for (x,) in verify.random_inputs(graph, 3, seed=11):  # the input's own type: int8, uint8 or float32
        stock = tflm_host.run_model(runner, path, x, arena_fill=arena_fill(graph))
        ours = tflm_host.run_model(runner, patched, x, arena_fill=arena_fill(graph))
        assert ours.outputs == stock.outputs
    print(f"{os.path.basename(path)} ({kernels}): arena_used_bytes stock {stock.arena_used_bytes}, "
          f"patched {ours.arena_used_bytes}; planned head stock {stock.arena_head_bytes}, "
          f"patched {ours.arena_head_bytes}, predicted {plan.arena_before} -> {plan.arena_after}")
    # arena_used_bytes is TFLM's planned head (tensors and scratch buffers) plus its
    # persistent tail. The converter predicts the head, before and after, by replaying
    # TFLM's planner with the scratch buffers TFLM's reference kernels request.
    if kernels == tflm_host.REFERENCE:
        assert stock.arena_head_bytes == plan.arena_before
        assert ours.arena_head_bytes == plan.arena_after
    else:
        # Not predicted to the byte: TFLM's CMSIS-NN kernels request scratch buffers of
        # their own in Prepare (im2col and context buffers, arm_*_get_buffer_size, sized
        # by the CMSIS-NN version and the target's DSP/MVE features), for the ops outside
        # the stage too, and the converter replays only the reference kernels' requests.
        # (PATCH_STAGE's own request in such a build is tested exactly in test_cmsis_nn.py.)
        assert ours.arena_head_bytes < stock.arena_head_bytes
    assert ours.arena_used_bytes < stock.arena_used_bytes


def test_tflm_rejects_a_plan_that_does_not_match_its_tensors(tflm, tmp_path):
    _, runner = tflm
    from tflm_patch.converter import options
    path = os.path.join(MODELS_DIR, "residual_add.tflite")
    graph, plan, patched = _patched(path, tmp_path, patches=(2, 2))
    model = model_io.load_model(patched)
    stage_plan = options.decode(bytes(model.subgraphs[0].operators[0].customOptions))
    stage_plan.layers[0].buffer_bytes = 16  # far too small for a patch
    model.subgraphs[0].operators[0].customOptions = list(options.encode(stage_plan))
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(model_io.serialize_model(model))
    x = np.zeros(graph.tensors[graph.inputs[0]].shape, dtype=np.int8)
    with pytest.raises(RuntimeError, match="AllocateTensors failed"):
        tflm_host.run_model(runner, str(broken), x)


def test_tflms_own_person_detection_model(tmp_path):
    """TFLM's person_detect.tflite (MobileNetV1-0.25, 96x96x1, from the user's tree): the default plan
    gives TFLM's outputs in the reference build, in an arena_used_bytes() predicted to the byte and
    more than 2x smaller (85,024 bytes stock)."""
    from tflm_patch.converter import persistent
    tree, why = tflm_host.find_tflm(tflm_host.REFERENCE)
    if tree is None:
        pytest.skip(why)
    path = os.path.join(tree.root, "tensorflow/lite/micro/models/person_detect.tflite")
    if not os.path.exists(path):
        pytest.skip(f"no {path} in this TFLM tree")
    runner = tflm_host.build_runner(tree)
    graph, plan, patched = _patched(path, tmp_path, max_mac_overhead=1.05)
    for (x,) in verify.random_inputs(graph, 2, seed=4):
        stock = tflm_host.run_model(runner, path, x)
        ours = tflm_host.run_model(runner, patched, x)
        assert ours.outputs == stock.outputs
    g = build_graph(model_io.load_model(patched))
    assert ours.arena_used_bytes == plan.total_after == persistent.predict_arena_used(g).total_bytes
    assert stock.arena_used_bytes == plan.total_before
    assert stock.arena_used_bytes >= 2 * ours.arena_used_bytes


def test_tflm_eval_refuses_an_output_laid_on_input_still_to_be_read(tflm, tmp_path):
    """The default residual_add plan lays the stage output over its input; moved 16 bytes closer than
    the lead allows, the kernel's Eval refuses it (TFLM places tensors only after Prepare)."""
    from tflm_patch.converter import offline_plan, options, stage_overlap
    _, runner = tflm
    path = os.path.join(MODELS_DIR, "residual_add.tflite")
    graph, plan, patched = _patched(path, tmp_path, max_mac_overhead=1.05)
    model = model_io.load_model(patched)
    g = build_graph(model)
    (fusion,) = stage_overlap.fusions(g)
    op = verify.patch_ops(g)[0]
    lead = stage_overlap.plan_lead(options.decode(op.custom_options))
    offsets = dict(g.offline_offsets)
    assert offsets[fusion.input] - offsets[fusion.output] == fusion.lead >= lead
    x = verify.random_inputs(graph, 1, seed=3)[0][0]
    stock = tflm_host.run_model(runner, path, x)
    assert tflm_host.run_model(runner, patched, x).outputs == stock.outputs
    offsets[fusion.output] = offsets[fusion.input] - (lead - 1) // 16 * 16
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(model_io.serialize_model(offline_plan.with_offline_plan(model, g, offsets)))
    with pytest.raises(RuntimeError, match="stage output overlaps input bytes still to be read"):
        tflm_host.run_model(runner, str(bad), x)


@pytest.mark.parametrize("path", MODELS, ids=[os.path.basename(m) for m in MODELS])
def test_predicted_arena_used_bytes_equals_tflm_stock_patched_and_offline_planned(tflm, tmp_path, path):
    """arena_used_bytes() to the byte: the stock model, the patched one, and the stock model with an
    offline memory plan (when one beats greedy), each run in the host TFLM build."""
    from tflm_patch.converter import analysis, offline_plan, persistent
    kernels, runner = tflm
    model = model_io.load_model(path)
    graph = build_graph(model)
    candidates = [(path, graph)]
    try:
        _, _, patched = _patched(path, tmp_path, max_mac_overhead=1.3, kernels=kernels)
        candidates.append((patched, build_graph(model_io.load_model(patched))))
    except NoGainError:
        pass
    offsets, _ = offline_plan.improve(graph)
    if offsets is not None:
        planned = tmp_path / "planned.tflite"
        planned.write_bytes(model_io.serialize_model(offline_plan.with_offline_plan(model, graph, offsets)))
        candidates.append((str(planned), build_graph(model_io.load_model(str(planned)))))
    x = verify.random_inputs(graph, 1, seed=5)[0][0]
    stock_outputs = None
    for model_path, g in candidates:
        head = analysis.analyze(g).arena.head_bytes
        predicted = persistent.try_predict_total(g, head, abi="host64", kernels=kernels)
        run = tflm_host.run_model(runner, model_path, x, arena_fill=arena_fill(graph))
        stock_outputs = stock_outputs or run.outputs
        assert run.outputs == stock_outputs
        if predicted is None:
            pytest.skip(f"arena_used_bytes() is not predicted for {kernels} kernels")
        assert run.arena_used_bytes == predicted.total_bytes, model_path

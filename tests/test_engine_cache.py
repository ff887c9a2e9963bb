"""Cached halos (options format version 2) in the C++ engine, reference and CMSIS-NN paths.

A version-2 plan keeps the halo rows and/or columns a layer shares with the
next patches in caches in the scratch area and computes only the rest of each
region. Caching must not change a byte: the engine runs version-2 options made
from version-1 ones (tests/cached_plans.py) and must give the whole-image
reference (hand-built stages), the version-1 output and TFLM's stage output
(real models), in the reference build, with the CMSIS-NN test double and under
ASan/UBSan. Malformed version-2 options are refused in Prepare with a message.
"""
from __future__ import annotations

import copy
import ctypes
import glob
import os

import numpy as np
import pytest

from tflm_patch import native
from tflm_patch.converter import model_io, pipeline, planner, reference, verify
from tflm_patch.converter.errors import NoGainError
from tflm_patch.converter.graph import build_graph

from .cached_plans import axis_spans, computed_pixels, encode_document, v1_document, with_caches
from .conftest import MODELS_DIR
from .test_engine_unit import ROUNDINGS, Stage, encode, grids_for

DOUBLE = os.path.join(os.path.dirname(__file__), "cmsis_nn_double")
MODES = [pytest.param((True, False), id="rows"), pytest.param((False, True), id="cols"),
         pytest.param((True, True), id="both")]
ENGINES = [pytest.param(None, id="reference"), pytest.param(DOUBLE, id="cmsis-double")]
MODELS = sorted(glob.glob(os.path.join(MODELS_DIR, "*.tflite")))
NAMES = [os.path.basename(m)[:-len(".tflite")] for m in MODELS]

# --------------------------------------------------------------------------
# Hand-built stages against the whole-image reference.
# --------------------------------------------------------------------------


def chain_stage(rng):
    stage = Stage(rng, (20, 18, 3))
    a = stage.conv(-1, 8, k=3, stride=2)
    b = stage.conv(a, k=3, depthwise=True)
    c = stage.conv(b, k=5, depthwise=True, dilation=2)
    stage.conv(c, 6, k=1)
    return stage


def residual_stage(rng):
    stage = Stage(rng, (11, 13, 4))
    a = stage.conv(-1, 4, k=3)
    b = stage.conv(a, 4, k=3)
    c = stage.add(a, b)
    d = stage.conv(c, 4, k=3, depthwise=True, dm=2)
    stage.pool(d, k=3, stride=2, padding="VALID", average=True)
    return stage


def pool_pad_stage(rng):
    stage = Stage(rng, (15, 14, 2))
    p = stage.pad(-1, 1, 2, 0, 1)
    c = stage.conv(p, 4, k=3, stride=2, padding="VALID")
    m = stage.pool(c, k=2, stride=1, padding="SAME")
    stage.conv(m, 3, k=7, stride=1)
    return stage


def pointwise_stage(rng):
    """1x1 layers share nothing: every cache is 0 bytes."""
    stage = Stage(rng, (9, 8, 3))
    stage.conv(stage.conv(-1, 5, k=1), 4, k=1)
    return stage


STAGES = {"chain": chain_stage, "residual": residual_stage, "pool_pad": pool_pad_stage,
          "pointwise": pointwise_stage}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(STAGES))
def test_cached_stages_equal_the_whole_image_reference(name, mode, engine):
    rng = np.random.default_rng(sorted(STAGES).index(name) + 40)
    stage = STAGES[name](rng)
    x = stage.random_input()
    expected = stage.reference(x)
    for rows, cols in grids_for(stage, (1, 1), (2, 2), (3, 3), (4, 3), (1, 5), (5, 1), (99, 99)):
        options = with_caches(encode(stage.document(rows, cols)), *mode)
        got = native.run_stage(options, stage.inputs(x), stage.output_shape, cmsis_nn=engine)
        mismatches = int(np.count_nonzero(got != expected))
        assert mismatches == 0, f"grid {rows}x{cols}: {mismatches} bytes differ"


@pytest.mark.parametrize("single", ROUNDINGS)
def test_cached_chain_in_both_roundings_and_with_spare_cache_bytes(single):
    stage = chain_stage(np.random.default_rng(3))
    x = stage.random_input()
    expected = stage.reference(x, single)
    for rows, cols in grids_for(stage, (3, 2), (2, 4)):
        options = with_caches(encode(stage.document(rows, cols, tight=False)), slack=24)
        got = native.run_stage(options, stage.inputs(x), stage.output_shape, single_rounding=single)
        assert np.array_equal(got, expected)


def test_caching_computes_each_pixel_once():
    """The cache geometry is what makes the saving: with both caches every cached layer
    computes its whole needed area once, with one of them more, without caches most."""
    stage = chain_stage(np.random.default_rng(5))
    rows, cols = grids_for(stage, (3, 3))[0]
    doc = stage.document(rows, cols)
    ys, xs = axis_spans(_plan_layers(doc), rows, cols)
    for i, (y, x) in enumerate(zip(ys, xs)):
        area = (y[-1][1] - y[0][0]) * (x[-1][1] - x[0][0])
        both, row_only, none = (computed_pixels([y], [x], r, c)[0] for r, c in ((1, 1), (1, 0), (0, 0)))
        assert both == area <= row_only <= none, i
    assert computed_pixels(ys, xs, 1, 1) < computed_pixels(ys, xs, 0, 0)


def _plan_layers(doc):
    from tflm_patch.converter import options as options_mod
    return options_mod.decode(encode(doc)).layers


def test_version_2_without_flags_and_version_1_with_cache_keys_run_as_version_1():
    stage = chain_stage(np.random.default_rng(6))
    x = stage.random_input()
    rows, cols = grids_for(stage, (3, 3))[0]
    doc = stage.document(rows, cols)
    cached = v1_document(with_caches(encode(doc)))
    plain_v2 = dict(copy.deepcopy(doc), version=2, cache_rows=0, cache_cols=0)
    v1_with_keys = dict(cached, version=1)  # cache keys mean nothing in version 1
    for d in (plain_v2, v1_with_keys):
        got = native.run_stage(encode_document(d), stage.inputs(x), stage.output_shape)
        assert np.array_equal(got, stage.reference(x))


# --------------------------------------------------------------------------
# Malformed version-2 options: refused in Prepare, with a message.
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cached_chain():
    """conv/2 -> dw -> dw (dilated) -> conv 1x1, 3x3 grid: layers 0-2 keep rows and columns."""
    stage = chain_stage(np.random.default_rng(21))
    rows, cols = grids_for(stage, (3, 3))[0]
    return stage, encode(stage.document(rows, cols)), stage.random_input()


def layer_set(i, **fields):
    def edit(doc, needs):
        doc["layers"][i].update(fields)
    return edit


def root_set(**fields):
    def edit(doc, needs):
        doc.update(fields)
    return edit


def shrink(i, kind):
    def edit(doc, needs):
        assert needs[i][kind == "col"] > 0
        doc["layers"][i][f"{kind}_cache_bytes"] = needs[i][kind == "col"] - 1
    return edit


def drop(i, key):
    def edit(doc, needs):
        doc["layers"][i].pop(key)
    return edit


def same_offset(a, b):
    """Cache `b` (layer, kind) placed where cache `a` is."""
    def edit(doc, needs):
        doc["layers"][b[0]][f"{b[1]}_cache_offset"] = doc["layers"][a[0]][f"{a[1]}_cache_offset"]
    return edit


def onto_buffer(cache_layer, buffer_layer):
    def edit(doc, needs):
        doc["layers"][cache_layer]["row_cache_offset"] = doc["layers"][buffer_layer]["buffer_offset"]
    return edit


def cut_scratch(doc, needs):
    doc["scratch_bytes"] -= 1  # the last cache now ends past it


def workspace_over_caches(doc, needs):
    caches_end = max(layer[f"{k}_cache_offset"] + layer[f"{k}_cache_bytes"]
                     for layer in doc["layers"][:-1] for k in ("row", "col"))
    buffers_end = max(layer["buffer_offset"] + layer["buffer_bytes"] for layer in doc["layers"][:-1])
    tail_start = (caches_end - 1) // 16 * 16
    assert buffers_end <= tail_start < caches_end
    doc.update(scratch_bytes=tail_start + 32, workspace_bytes=32)


CACHE_REJECTIONS = {
    "version 3": (root_set(version=3), "unsupported options format version"),
    "row flag 2": (root_set(cache_rows=2), "cache flag must be 0 or 1 ('cache_rows')"),
    "negative column flag": (root_set(cache_cols=-1), "cache flag must be 0 or 1 ('cache_cols')"),
    "flag not an integer": (root_set(cache_rows=[1]), "not an integer ('cache_rows')"),
    "row cache offset missing": (drop(1, "row_cache_offset"), "layer 1: missing key ('row_cache_offset')"),
    "column cache bytes missing": (drop(0, "col_cache_bytes"), "layer 0: missing key ('col_cache_bytes')"),
    "row cache too small": (shrink(1, "row"), "layer 1: row cache smaller than needed"),
    "column cache too small": (shrink(0, "col"), "layer 0: column cache smaller than needed"),
    "cache beyond scratch": (cut_scratch, "outside scratch_bytes"),
    "negative cache offset": (layer_set(0, col_cache_offset=-8), "layer 0: cache lies outside scratch_bytes"),
    "negative cache size": (layer_set(2, row_cache_bytes=-1), "cache"),
    "cache in the workspace": (workspace_over_caches, "cache lies outside scratch_bytes"),
    "two row caches overlap": (same_offset((0, "row"), (1, "row")), "caches overlap"),
    "row and column cache overlap": (same_offset((1, "row"), (1, "col")), "caches overlap"),
    "cache on a live buffer": (onto_buffer(1, 1), "layer 1: cache overlaps a layer buffer"),
    "cache on a dead buffer": (onto_buffer(0, 2), "layer 0: cache overlaps a layer buffer"),
}


@pytest.mark.parametrize("name", list(CACHE_REJECTIONS))
def test_malformed_cached_options_rejected(cached_chain, name):
    stage, options, x = cached_chain
    edit, needle = CACHE_REJECTIONS[name]
    with pytest.raises(native.EngineError) as info:
        native.run_stage(with_caches(options, edit=edit), stage.inputs(x), stage.output_shape)
    assert needle in str(info.value), str(info.value)


def test_the_cached_chain_itself_runs(cached_chain):
    stage, options, x = cached_chain
    got = native.run_stage(with_caches(options), stage.inputs(x), stage.output_shape)
    assert np.array_equal(got, stage.reference(x))


def non_separable_stage():
    """Layer 0 feeds a 5x5 VALID conv that PAD surrounds and a 1x1 conv: in tiles of the
    padding only the 1x1 conv needs it, so its rows there differ from elsewhere."""
    stage = Stage(np.random.default_rng(8), (8, 12, 2))
    x = stage.conv(-1, 3, k=1)
    k = stage.conv(x, 3, k=5, padding="VALID")
    p = stage.pad(k, 2, 0, 2, 4)
    stage.add(p, stage.conv(x, 3, k=1))
    return stage


def empty_region_stage():
    """The last layer pads: tiles wholly in its padding need nothing from the others."""
    stage = Stage(np.random.default_rng(7), (9, 10, 2))
    c = stage.conv(-1, 4, k=3, stride=2, padding="VALID")
    stage.pad(c, 2, 0, 1, 3)
    return stage


@pytest.mark.parametrize("make,grid,needle", [
    (non_separable_stage, (2, 3), "layer 0: cached plan: layer regions are not separable"),
    (empty_region_stage, (3, 5), "region is empty"),
])
def test_plans_that_cannot_be_cached_are_rejected(make, grid, needle):
    stage = make()
    x = stage.random_input()
    options = encode(stage.document(*grids_for(stage, grid)[0]))
    assert np.array_equal(native.run_stage(options, stage.inputs(x), stage.output_shape), stage.reference(x))
    for mode in ((True, False), (False, True), (True, True)):
        with pytest.raises(native.EngineError) as info:
            native.run_stage(with_caches(options, *mode, edit=lambda d, n: None), stage.inputs(x),
                             stage.output_shape)
        assert needle in str(info.value), str(info.value)


@pytest.mark.parametrize("single", ROUNDINGS)
def test_sanitized_engine_on_cached_and_malformed_cached_options(cached_chain, single):
    stage, options, x = cached_chain
    cases = [with_caches(options, *m.values[0]) for m in MODES]
    cases += [with_caches(options, edit=edit) for edit, _ in CACHE_REJECTIONS.values()]
    for cmsis_nn in (None, DOUBLE):
        results = native.run_many(cases, stage.inputs(x), stage.output_shape, sanitize=True,
                                  single_rounding=single, cmsis_nn=cmsis_nn)
        for result in results[:len(MODES)]:
            assert np.array_equal(result, stage.reference(x, single))
        for (name, (_, needle)), result in zip(CACHE_REJECTIONS.items(), results[len(MODES):]):
            assert isinstance(result, native.EngineError) and needle in str(result), f"{name}: {result}"


# --------------------------------------------------------------------------
# Real models: cached plans give the version-1 bytes, which are TFLM's.
# --------------------------------------------------------------------------


def model_plans(path, kernels="reference"):
    """(options, op inputs, output shape) of every PATCH_STAGE of the default plan and of an uneven
    3x2 grid, with a random stage input of its type."""
    model = model_io.load_model(path)
    graph = build_graph(model)
    rng = np.random.default_rng(11)
    for kw in (dict(max_mac_overhead=1.3), dict(patches=(3, 2), require_gain=False)):
        try:
            plan = planner.make_plan(graph, kernels=kernels, **kw)
        except NoGainError:
            continue
        g = pipeline.write_patched(model, plan).graph
        for op in verify.patch_ops(g):
            stage_in = g.tensors[op.inputs[0]]  # int8, or the float32 / uint8 input a first-layer QUANTIZE reads
            if stage_in.type_name == "FLOAT32":
                x = rng.uniform(-1.5, 2.5, stage_in.shape).astype(np.float32)
            elif stage_in.type_name == "UINT8":
                x = rng.integers(0, 256, stage_in.shape, dtype=np.uint8)
            else:
                x = rng.integers(-128, 128, stage_in.shape, dtype=np.int8)
            yield bytes(op.custom_options), [x] + [g.tensors[t].data for t in op.inputs[1:]], \
                g.tensors[op.outputs[0]].shape


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", MODELS, ids=NAMES)
def test_every_model_cached_gives_the_version_1_bytes(path, engine):
    for options, inputs, shape in model_plans(path):
        expected = reference.run_stage(options, inputs).tobytes()
        assert native.run_stage(options, inputs, shape, cmsis_nn=engine).tobytes() == expected
        for rows, cols in ((False, False), (True, False), (False, True), (True, True)):
            got = native.run_stage(with_caches(options, rows, cols), inputs, shape, cmsis_nn=engine)
            assert got.tobytes() == expected, f"cache_rows={rows} cache_cols={cols}"


@pytest.mark.parametrize("name", ["mobilenetv2_035_96", "residual_add", "pooling_pad", "kernels_5x5_7x7"])
def test_cached_models_equal_tflm(name):
    """The oracle itself: the cached C++ stage output equals TFLM's tensor and the model's outputs."""
    path = os.path.join(MODELS_DIR, f"{name}.tflite")
    data = open(path, "rb").read()
    model = model_io.load_model(path)
    graph = build_graph(model)
    plan = planner.make_plan(graph, patches=(3, 3), require_gain=False)
    patched_bytes = pipeline.write_patched(model, plan).data
    engines = [lambda o, i, s, m=m, e=e, **lead: native.run_stage(with_caches(o, *m), i, s, cmsis_nn=e, **lead)
               for m in ((True, True), (True, False)) for e in (None, DOUBLE)]
    report = verify.verify(data, patched_bytes, verify.random_inputs(graph, 2, seed=4), engines=engines)
    assert report.identical, report.first_difference


@pytest.mark.parametrize("name", ["residual_add", "pooling_pad", "depth_multiplier", "mobilenetv2_035_96"])
def test_cached_models_under_address_and_ub_sanitizers(name):
    path = os.path.join(MODELS_DIR, f"{name}.tflite")
    for options, inputs, shape in model_plans(path):
        expected = reference.run_stage(options, inputs).tobytes()
        cases = [with_caches(options, r, c) for r, c in ((True, False), (False, True), (True, True))]
        for cmsis_nn in (None, DOUBLE):
            for got in native.run_many(cases, inputs, shape, sanitize=True, cmsis_nn=cmsis_nn):
                assert got.tobytes() == expected


@pytest.mark.parametrize("name", ["residual_add", "kernels_5x5_7x7", "mobilenetv2_035_96"])
def test_cached_cmsis_nn_plans_keep_the_workspace_tail(name):
    """A --kernels cmsis_nn plan with caches placed before its reserved workspace tail."""
    reserved = []
    for options, inputs, shape in model_plans(os.path.join(MODELS_DIR, f"{name}.tflite"), kernels="cmsis_nn"):
        reserved.append(v1_document(options).get("workspace_bytes", 0))
        expected = reference.run_stage(options, inputs).tobytes()
        got = native.run_stage(with_caches(options), inputs, shape, cmsis_nn=DOUBLE)
        assert got.tobytes() == expected
    assert max(reserved) > 0


@pytest.mark.parametrize("name", ["mobilenetv2_035_96", "kernels_5x5_7x7", "pooling_pad", "residual_add"])
def test_cached_layers_compute_only_their_boxes(name):
    """The output pixels the CMSIS-NN double is asked for (conv, depthwise, pools) are exactly the
    boxes N x M of docs "Cached halos" (every pixel of a layer once, with both caches) plus the
    last layer's tiles: fewer than version 1's regions."""
    import ctypes

    from tflm_patch.converter import options as options_mod
    from tflm_patch.converter.layers import AVG_POOL, CONV, DEPTHWISE, MAX_POOL
    from tflm_patch.converter.regions import area, grid_tiles, patch_regions
    lib = native.engine_library(False, DOUBLE)
    lib.tflm_patch_cmsis_double_window_pixels.restype = ctypes.c_int64
    fewer = 0
    for options, inputs, shape in model_plans(os.path.join(MODELS_DIR, f"{name}.tflite")):
        plan = options_mod.decode(options)
        windowed = [layer.op in (CONV, DEPTHWISE, MAX_POOL, AVG_POOL) for layer in plan.layers]
        tiles = list(grid_tiles(plan.grid_rows, plan.grid_cols))
        v1_pixels = sum(area(reg) for tile in tiles for reg, w in zip(patch_regions(plan.layers, tile)[0], windowed)
                        if w)
        last = shape[1] * shape[2] if windowed[-1] else 0
        ys, xs = axis_spans(plan.layers, plan.grid_rows, plan.grid_cols)
        expected = {(0, 0): v1_pixels}
        for mode in ((1, 0), (0, 1), (1, 1)):
            expected[mode] = last + sum(p for p, w in zip(computed_pixels(ys, xs, *mode), windowed) if w)
        # A stage with halos computes fewer pixels cached; one without (a single layer, as the offline
        # memory plan can make the best choice) computes the same. At least one plan has halos.
        assert expected[(1, 1)] <= expected[(0, 0)]
        fewer += expected[(1, 1)] < expected[(0, 0)]
        for mode, pixels in expected.items():
            lib.tflm_patch_cmsis_double_reset()
            cached = with_caches(options, *map(bool, mode))  # (0, 0): version 2 without caches
            native.run_stage(cached, inputs, shape, cmsis_nn=DOUBLE)
            assert lib.tflm_patch_cmsis_double_window_pixels() == pixels, mode
    assert fewer > 0


def test_the_planners_cached_cmsis_nn_plans_reserve_the_workspace_the_kernel_uses():
    """Converter and kernel size the CMSIS-NN workspace of cached layers over the same boxes: for
    every cached stage of a --kernels cmsis_nn plan the op asks TFLM for exactly the planned scratch."""
    from flatbuffers import flexbuffers
    lib = native.engine_library(False, DOUBLE)
    cached = 0
    for name in ("mobilenetv2_035_96", "mobilenetv2_035_144", "kernels_5x5_7x7", "stride2_odd"):
        for options, inputs, shape in model_plans(os.path.join(MODELS_DIR, f"{name}.tflite"), kernels="cmsis_nn"):
            doc = flexbuffers.Loads(options)
            got = native.run_stage(options, inputs, shape, cmsis_nn=DOUBLE)
            assert got.tobytes() == reference.run_stage(options, inputs).tobytes()
            if doc.get("cache_rows") or doc.get("cache_cols"):
                cached += 1
                assert lib.tflm_patch_last_scratch_bytes() == doc["scratch_bytes"], name
    assert cached > 0


def test_plan_memory_prediction_equals_the_kernels_with_and_without_caches():
    """converter/persistent.py predicts the kernel's plan memory (its persistent share) to the byte,
    cache tables included."""
    from tflm_patch.converter import persistent
    lib = native.engine_library()
    lib.tflm_patch_last_plan_memory_bytes.restype = ctypes.c_size_t
    seen = set()
    for name in ("mobilenetv2_035_96", "residual_add", "pooling_pad"):
        for options, inputs, shape in model_plans(os.path.join(MODELS_DIR, f"{name}.tflite")):
            for mode in (None, (False, False), (True, False), (False, True), (True, True)):
                o = options if mode is None else with_caches(options, *mode)
                native.run_stage(o, inputs, shape)
                predicted = persistent.patch_stage_plan_memory_bytes(o, persistent.HOST64)
                assert lib.tflm_patch_last_plan_memory_bytes() == predicted, (name, mode)
                seen.add(mode)
    assert len(seen) == 5

"""Every test model, stock and patched, in a host TFLM built with AddressSanitizer and UBSan.

Needs TFLM_SANITIZER_LIB: a host libtensorflow-microlite.a compiled with
-fsanitize=address,undefined (the make command is in the README's Reliability
section). Our kernel and the runner are compiled with the same flags
(tflm_patch.tflm_host.build_runner), and every case runs in one runner
process (`tflm_runner --batch`). Each model (tests/models, the session models
of conftest.py, random wide stages of tests/random_stages.py) runs stock and
patched with the default plan (several stages and cached halos where the
search picks them) and a forced 2x2 grid, on two random inputs: no sanitizer
finding, no write to the arena's unused middle, and outputs bit-identical to
the stock model.
"""
import glob
import os
from collections import Counter

import numpy as np
import pytest

from tflm_patch import tflm_host
from tflm_patch.converter import model_io, planner, rewrite, verify
from tflm_patch.converter.errors import TflmPatchError
from tflm_patch.converter.graph import build_graph

from .conftest import MODELS_DIR
from .random_stages import build as build_stage_model
from .random_stages import wide_stage_spec
from .test_tflm_host import arena_fill

TREE, WHY = tflm_host.find_tflm_sanitized()
pytestmark = pytest.mark.skipif(TREE is None, reason=f"sanitizer TFLM tests skipped: {WHY}")

FILE_MODELS = sorted(glob.glob(os.path.join(MODELS_DIR, "*.tflite")))
SESSION_MODELS = ["small_model_bytes", "mean_first_model_bytes"]
WIDE_SEEDS = range(6)
NAMES = ([os.path.basename(p)[:-len(".tflite")] for p in FILE_MODELS] + SESSION_MODELS
         + [f"wide_stage_{s}" for s in WIDE_SEEDS])
VARIANTS = {"default": dict(), "grid2x2": dict(patches=(2, 2), require_gain=False)}
INPUTS = 2


def _wide_stage(seed):
    rng = np.random.default_rng(1000 + seed)
    while True:
        data = build_stage_model(wide_stage_spec(rng))
        if data is not None:
            return data


def _patched_variants(model):
    """{variant: (patched ModelT, plan)} for the plans that exist."""
    graph = build_graph(model)
    out = {}
    for name, kw in VARIANTS.items():
        try:
            plan = planner.make_plan(graph, **kw)
        except TflmPatchError:
            if name != "default":
                continue
            try:  # no gain: the best plan still has to run clean
                plan = planner.make_plan(graph, require_gain=False)
            except TflmPatchError:
                continue
        out[name] = (rewrite.rewrite_model(model, plan, "test"), plan)
    return out


@pytest.fixture(scope="module")
def sanitized_runs(request, tmp_path_factory):
    """{model name: [(variant, input index, BatchResult, outputs, stock outputs)]}, plus figures."""
    d = tmp_path_factory.mktemp("sanitized")
    runner = tflm_host.build_runner(TREE)
    sources = {name: open(p, "rb").read() for name, p in zip(NAMES, FILE_MODELS)}
    for name in SESSION_MODELS:
        sources[name] = request.getfixturevalue(name)
    for s in WIDE_SEEDS:
        sources[f"wide_stage_{s}"] = _wide_stage(s)
    cases, meta, figures = [], [], Counter()
    for name, data in sources.items():
        model = model_io.parse_model(data, name)
        stock_path = d / f"{name}.tflite"
        stock_path.write_bytes(data)
        graph = build_graph(model)
        paths = {"stock": str(stock_path)}
        for variant, (patched, plan) in _patched_variants(model).items():
            path = d / f"{name}.{variant}.tflite"
            path.write_bytes(model_io.serialize_model(patched))
            paths[variant] = str(path)
            figures["patched models"] += 1
            figures["stages"] += len(plan.stages)
            figures["models with several stages"] += len(plan.stages) > 1
            figures["cached-halo stages"] += sum(s.stage_plan.version == 2 for s in plan.stages)
        zeroed = arena_fill(graph) == 0
        for i, (x,) in enumerate(verify.random_inputs(graph, INPUTS, seed=sum(map(ord, name)))):
            inp = d / f"{name}.in{i}"
            np.ascontiguousarray(x).tofile(inp)  # the input's own type: int8, uint8 or float32
            for variant, path in paths.items():
                cases.append(tflm_host.BatchCase(path, str(inp), str(d / f"{name}.{variant}.out{i}")))
                meta.append((name, variant, i, zeroed))
    # Models whose stock output depends on the arena's bytes (tests/test_tflm_host.arena_fill) run zeroed.
    results = [None] * len(cases)
    for zeroed in (False, True):
        picked = [k for k, m in enumerate(meta) if m[3] == zeroed]
        done = tflm_host.run_batch(runner, [cases[k] for k in picked], case_timeout=300,
                                   arena_fill=0 if zeroed else None)
        for k, result in zip(picked, done):
            results[k] = result
    meta = [m[:3] for m in meta]
    runs = {}
    for (name, variant, i), case, result in zip(meta, cases, results):
        outputs = open(case.output, "rb").read() if result.status == "ok" else None
        runs.setdefault(name, []).append((variant, i, result, outputs))
        figures[f"runs {variant}"] += 1
        figures["findings"] += bool(result.status in ("crash", "timeout")
                                    or tflm_host.sanitizer_findings(result.messages))
    print("sanitizer TFLM runs:", dict(figures))
    return runs, figures


@pytest.mark.parametrize("name", NAMES)
def test_model_runs_clean_under_asan_and_ubsan(sanitized_runs, name):
    runs, _ = sanitized_runs
    stock = {i: out for variant, i, _, out in runs[name] if variant == "stock"}
    for variant, i, result, outputs in runs[name]:
        what = f"{name} {variant} input {i}"
        assert result.status == "ok", f"{what}: {result.status}\n{result.finding}\n" + "\n".join(result.messages)
        assert not tflm_host.sanitizer_findings(result.messages), what
        assert result.arena_intact, f"{what}: Invoke wrote to the arena's unused middle"
        assert outputs == stock[i], f"{what}: outputs differ from the stock model's"
    assert {v for v, *_ in runs[name]} >= {"stock"}


def test_the_suite_covers_several_stages_and_cached_halos(sanitized_runs):
    _, figures = sanitized_runs
    assert figures["runs stock"] == len(NAMES) * INPUTS
    assert figures["patched models"] >= len(NAMES)  # every model has a patched form but the MEAN-first one
    assert figures["models with several stages"] >= 1
    assert figures["cached-halo stages"] >= 1
    assert figures["findings"] == 0


def test_a_sanitizer_finding_is_reported_not_missed(tmp_path):
    """The harness sees a real finding: a model whose PATCH_STAGE options are cut
    would be refused cleanly, so instead the runner is handed a model file cut in
    half, which TFLM reads past (TFLM does not verify flatbuffers)."""
    runner = tflm_host.build_runner(TREE)
    data = open(os.path.join(MODELS_DIR, "residual_add.tflite"), "rb").read()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[:64])
    inp = tmp_path / "in"
    np.zeros(16, np.int8).tofile(inp)
    ok = tmp_path / "ok.tflite"
    ok.write_bytes(data)
    cases = [tflm_host.BatchCase(str(cut), str(inp), str(tmp_path / "o1")),
             tflm_host.BatchCase(str(ok), str(inp), str(tmp_path / "o2"))]
    first, second = tflm_host.run_batch(runner, cases, case_timeout=60)
    assert first.status == "crash" and "AddressSanitizer" in first.finding, first
    assert second.status in ("ok", "bad_input")  # the run went on with the next case

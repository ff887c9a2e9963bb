"""The Keras path: training helpers and the main job (examples/train_and_patch.py --quick).

The quick main job trains a truncated MobileNetV2 on real Fashion-MNIST images
(Debian's dataset-fashion-mnist package), converts it to int8, patches it and
writes the report; the tests check that the patched model gives the original's
int8 logits on every test image, and that the report is real. Tests that need
TensorFlow are skipped, with the reason, only when it is not installed.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tflm_patch import training
from tflm_patch.converter import model_io, planner
from tflm_patch.converter.errors import NoGainError
from tflm_patch.converter.graph import build_graph
from tflm_patch.converter.options import CUSTOM_CODE

from .conftest import MODELS_DIR

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "examples", "train_and_patch.py")
HAVE_TF = importlib.util.find_spec("tensorflow") is not None
needs_tf = pytest.mark.skipif(not HAVE_TF, reason="TensorFlow is not installed (pip install 'tflm-patch[train]'): "
                                                   "the Keras training path cannot run")


def _graph(data: bytes):
    return build_graph(model_io.parse_model(data))


def _load_example():
    spec = importlib.util.spec_from_file_location("train_and_patch", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------
# the main job, quick path
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("main_job") / "out"
    env = dict(os.environ, TFLM_PATCH_QUICK="1")          # the environment variable CI smoke tests use
    proc = subprocess.run([sys.executable, EXAMPLE, "--out", str(out)], capture_output=True, text=True,
                          env=env, timeout=900, cwd=str(out.parent))
    assert proc.returncode == 0, f"main job failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out, proc.stdout


@needs_tf
def test_main_job_prints_the_memory_summary(quick_run):
    out, stdout = quick_run
    assert "QUICK" in stdout and "== Summary" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "quick"
    assert re.search(rf"TFLM arena \(planned, bytes\)\s+{summary['arena_before']:,}\s+{summary['arena_after']:,}",
                     stdout)
    assert summary["arena_after"] < summary["arena_before"], "patching must lower the peak, even in quick mode"
    for f in ("model.keras", "model_int8.tflite", "model_patched.tflite", "model_data.cc", "model_data.h"):
        assert (out / f).stat().st_size > 0, f


@needs_tf
def test_patched_model_predicts_exactly_like_the_original_on_the_test_split(quick_run):
    out, _ = quick_run
    summary = json.loads((out / "summary.json").read_text())
    pred = np.load(out / "predictions.npz")
    labels, x, a, b = pred["labels"], pred["inputs_int8"], pred["logits_int8"], pred["logits_patched"]
    assert len(labels) == summary["test_images"] >= 50
    assert a.dtype == b.dtype == np.int8 and a.shape == b.shape == (len(labels), 10)
    assert np.array_equal(a, b), "patched logits differ from the original's"
    acc_original = float(np.mean(a.argmax(1) == labels))
    acc_patched = float(np.mean(b.argmax(1) == labels))
    assert acc_original == acc_patched == summary["int8_accuracy"] == summary["patched_accuracy"]
    assert summary["identical_logits"] == len(labels)
    assert len({row.tobytes() for row in a}) > 1, "the int8 model must not be constant"
    # The stored logits are real: recompute some in TFLM / PATCH_STAGE + TFLM.
    original = (out / "model_int8.tflite").read_bytes()
    patched = (out / "model_patched.tflite").read_bytes()
    assert np.array_equal(training.predict_int8(original, x[:12]), a[:12])
    assert np.array_equal(training.predict_patched(patched, x[:12]), a[:12])
    ops = [op.name for op in _graph(patched).ops]
    assert ops[0] == CUSTOM_CODE and CUSTOM_CODE not in [op.name for op in _graph(original).ops]


@needs_tf
def test_report_files_are_real(quick_run):
    out, _ = quick_run
    report = out / "report"
    png = report / "memory.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    img = matplotlib.image.imread(str(png))
    assert img.ndim == 3 and img.shape[0] >= 300 and img.shape[1] >= 600
    assert len(np.unique(img.reshape(-1, img.shape[2])[::7], axis=0)) > 20, "the plot looks empty"

    n_ops = len(_graph((out / "model_int8.tflite").read_bytes()).ops)
    md = (report / "report.md").read_text()
    rows = [line for line in md.splitlines() if re.match(r"\|\s*\d+\s*\|", line)]
    assert len(rows) == n_ops, "the table must have one row per op of the original model"
    assert [int(r.split("|")[1]) for r in rows] == list(range(n_ops))
    assert "PATCH_STAGE" in md and "memory.png" in md
    page = (report / "report.html").read_text()
    assert page.count("<tr") == n_ops + 1 and "memory.png" in page

    cc = (out / "model_data.cc").read_text()
    size = (out / "model_patched.tflite").stat().st_size
    assert f"g_model_len = {size};" in cc and "alignas(16)" in cc


def test_quick_mode_is_chosen_by_flag_or_environment(monkeypatch):
    example = _load_example()
    monkeypatch.delenv("TFLM_PATCH_QUICK", raising=False)
    assert example.config(example.build_parser().parse_args([]))[1] is False
    assert example.config(example.build_parser().parse_args(["--quick"]))[1] is True
    monkeypatch.setenv("TFLM_PATCH_QUICK", "1")
    cfg, quick = example.config(example.build_parser().parse_args(["--epochs", "2"]))
    assert quick and cfg["epochs"] == 2 and cfg["size"] == example.QUICK["size"]


def test_missing_dataset_says_how_to_get_it(tmp_path, capsys):
    example = _load_example()
    rc = example.main(["--quick", "--data", str(tmp_path), "--out", str(tmp_path / "out")])
    assert rc != 0
    err = capsys.readouterr().err
    assert "apt-get install -y dataset-fashion-mnist" in err and "\n" == err[-1] and err.count("\n") == 1


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _tiny_keras_model(bias: float):
    import tensorflow as tf
    keras = tf.keras
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(10, bias_initializer=keras.initializers.Constant(bias))(x)
    return keras.Model(inp, out)


@needs_tf
def test_check_not_constant_catches_a_model_that_ignores_its_input():
    images = np.random.default_rng(0).uniform(-1, 1, (16, 16, 16, 1)).astype(np.float32)
    model = _tiny_keras_model(bias=1e4)       # untrained, logits = huge bias + tiny input-dependent part
    with pytest.raises(training.ConstantOutputError, match="BatchNorm"):
        training.to_int8_tflite(model, images)                      # the check is on by default
    data = training.to_int8_tflite(model, images, check=False)
    with pytest.raises(training.ConstantOutputError, match="recalibrate_batchnorm"):
        training.check_not_constant(data, images[:6])
    with pytest.raises(training.TflmPatchError, match="two different inputs"):
        training.check_not_constant(data, np.repeat(images[:1], 3, axis=0))


@needs_tf
def test_batchnorm_recalibration_sets_the_data_statistics():
    import tensorflow as tf
    keras = tf.keras
    inp = keras.Input((8, 8, 2))
    bn = keras.layers.BatchNormalization(momentum=0.999)
    model = keras.Model(inp, bn(inp))
    images = np.random.default_rng(1).normal(3.0, 2.0, (256, 8, 8, 2)).astype(np.float32)
    assert training.recalibrate_batchnorm(model, images, batch_size=64) == 1
    np.testing.assert_allclose(bn.moving_mean.numpy(), images.mean(axis=(0, 1, 2)), rtol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), images.var(axis=(0, 1, 2)), rtol=0.02)
    assert bn.momentum == 0.999


def test_missing_tensorflow_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)     # import tensorflow now raises ImportError
    with pytest.raises(training.TrainingDependencyError, match=r"pip install 'tflm-patch\[train\]'"):
        training.to_int8_tflite(object(), np.zeros((2, 4, 4, 1), np.float32))


@pytest.mark.parametrize("name", ["residual_add.tflite", "kernels_5x5_7x7.tflite", "pooling_pad.tflite"])
def test_pareto_plans_are_sorted_and_non_dominated(name):
    data = open(os.path.join(MODELS_DIR, name), "rb").read()
    front = training.pareto_plans(data)
    assert front, "patching lowers these models' peak"
    arenas = [p.arena_after for p in front]
    macs = [p.macs_patched for p in front]
    assert arenas == sorted(set(arenas)), "strictly increasing arena"
    assert macs == sorted(set(macs), reverse=True), "strictly decreasing MACs"
    graph = _graph(data)
    for p in front:
        assert p.arena_after < p.arena_before and 1.0 <= p.mac_overhead <= p.max_mac_overhead
        # the plan the CLI makes under that limit is this one
        again = planner.make_plan(graph, max_mac_overhead=p.max_mac_overhead)
        assert (again.arena_after, again.macs_patched) == (p.arena_after, p.macs_patched)
    # every limit's best plan is matched or beaten by one on the front
    for limit in planner.PARETO_LIMITS:
        q = planner.make_plan(graph, max_mac_overhead=limit)
        assert any(p.arena_after <= q.arena_after and p.macs_patched <= q.macs_patched for p in front)


def test_choose_and_apply_a_plan_from_the_front(small_model_bytes):
    front = training.pareto_plans(small_model_bytes)
    assert front
    smallest = training.choose_plan(front, max_mac_overhead=None)
    assert smallest == front[0]
    budget = front[len(front) // 2].arena_after
    cheap = training.choose_plan(front, sram_budget=budget, max_mac_overhead=None)
    assert cheap.arena_after <= budget
    assert cheap.macs_patched == min(p.macs_patched for p in front if p.arena_after <= budget)
    assert training.choose_plan(front, max_mac_overhead=0.5) is None
    # convert's budget rules: a model that already fits is left alone; a budget nothing meets is refused
    with pytest.raises(NoGainError, match="already fits"):
        training.choose_plan(front, sram_budget=front[0].arena_before, max_mac_overhead=None)
    with pytest.raises(NoGainError, match=f"smallest arena reachable is {front[0].arena_after:,} bytes"):
        training.choose_plan(front, sram_budget=front[0].arena_after - 1, max_mac_overhead=None)
    patched = training.patch_tflite(small_model_bytes, cheap)        # verified against TFLM inside
    record = [op for op in _graph(patched).ops if op.name == CUSTOM_CODE]
    assert len(record) == len(cheap.plan.stages) >= 1
    x = np.random.default_rng(5).integers(-128, 128, (3, 32, 32, 3), dtype=np.int8)
    assert np.array_equal(training.predict_patched(patched, x), training.predict_int8(small_model_bytes, x))
    assert cheap.cli_args() == ["--max-mac-overhead", f"{cheap.max_mac_overhead:g}"]


@needs_tf
def test_a_looser_mac_limit_never_gives_a_bigger_arena(quick_run):
    """The trained model has four residual blocks: more stages than the planner allows fit at a loose
    limit. (A planner whose path search ignored the stage cap once found no plan at 1.5 and said
    "does not lower the peak" while 1.25 cut the arena 5x.)"""
    out, _ = quick_run
    graph = _graph((out / "model_int8.tflite").read_bytes())
    arenas = [planner.make_plan(graph, max_mac_overhead=limit).arena_after for limit in (1.05, 1.25, 1.5, None)]
    assert all(b <= a for a, b in zip(arenas, arenas[1:])), arenas

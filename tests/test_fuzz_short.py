"""Short runs of the fuzzing campaigns (tools/fuzz/): the long runs and their figures are in the README."""
import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "tools", "fuzz", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_converter_fuzz_short_run(tmp_path):
    """300 mutated real models through analyze, convert and verify: every run ends cleanly."""
    fuzz = _tool("fuzz_converter")
    summary = fuzz.main_summary(["--cases", "300", "--seed", "12", "--fast", "--timeout", "60",
                                 "--save-dir", str(tmp_path / "failures")])
    failing = [(r.case, r.seed_name, r.mutation, r.command, r.problems, r.message)
               for r in summary["results"] if r.problems]
    assert not failing, failing
    assert summary["mismatches"] == 0
    # the campaign really exercised every command and outcome
    assert set(summary["by_command"]) == {"analyze", "convert", "verify"}
    assert summary["by_exit"].get(0, 0) > 20 and summary["by_exit"].get(2, 0) > 100


def test_options_fuzz_short_run(tmp_path):
    """libFuzzer over the kernel's options parser, validation and RunStage (ASan+UBSan), from real plans."""
    fuzz = _tool("fuzz_options")
    reason = fuzz.why_unavailable()
    if reason:
        pytest.skip(f"libFuzzer unavailable: {reason}")
    extract = _tool("extract_plans")
    small = [os.path.join(ROOT, "tests", "models", f) for f in
             ("residual_add.tflite", "pooling_pad.tflite", "depth_multiplier.tflite", "dilation2.tflite",
              "kernels_5x5_7x7.tflite", "nonsquare.tflite", "stride2_odd.tflite", "valid_padding.tflite")]
    corpus = tmp_path / "corpus"
    seeds = extract.extract(str(corpus), small, [dict(), dict(patches=(2, 2)), dict(kernels="cmsis_nn")])
    assert len(seeds) >= 8
    result = fuzz.run(fuzz.build(), corpus, runs=20000, seed=5, artifacts=tmp_path / "artifacts")
    assert result["exit"] == 0 and not result["findings"], result["log"][-4000:]
    assert result["execs"] >= 20000
    assert result["coverage"] > 300  # it reaches parsing, validation and the layers


def test_wide_random_stages_short_run(tmp_path):
    """Wide random stages on random uneven grids: both engines bit-identical to TFLM."""
    fuzz = _tool("fuzz_stages")
    summary = fuzz.campaign(30, seed=3, save_dir=str(tmp_path))
    assert not summary["failures"], summary["failures"][:3]
    assert summary["counts"].get("identical", 0) >= 15
    assert summary["features"]["uneven_grids"] >= 5


def test_random_tensorflow_models_short_run(tmp_path):
    """Random Keras CNNs converted by TensorFlow, patched by the default search, verified with both engines."""
    pytest.importorskip("tensorflow")
    fuzz = _tool("fuzz_models")
    results = [fuzz.run_case(i, 1, str(tmp_path)) for i in (1, 2)]
    for r in results:
        assert r["convert"] in (0, 3), r
        assert r.get("verify", 0) == 0, r
    assert any(r["convert"] == 0 for r in results)  # at least one really patched


def test_prepare_fuzz_in_tflm_short_run(tmp_path):
    """Mutated PATCH_STAGE options in real TFLM (the sanitizer build if TFLM_SANITIZER_LIB is set):
    Prepare refuses with a message or the model runs right; never a crash, finding or hang; and the
    Python mirror of Prepare reaches the kernel's verdict with the kernel's message."""
    from tflm_patch import tflm_host
    if tflm_host.find_tflm_sanitized()[0] is None and tflm_host.find_tflm(tflm_host.REFERENCE)[0] is None:
        pytest.skip(f"Prepare fuzz in TFLM skipped: {tflm_host.find_tflm(tflm_host.REFERENCE)[1]}")
    fuzz = _tool("fuzz_prepare")
    summary = fuzz.campaign(300, seed=2, workdir=str(tmp_path), batch=300,
                            seeds_models=("residual_add", "pooling_pad", "dilation2", "nonsquare"), log=lambda s: None)
    assert not summary["problems"], [(o.case, o.seed, o.mutation, o.problem) for o in summary["problems"][:5]]
    counts = summary["counts"]
    # both ways out were taken, and accepted plans equal to the original were checked byte for byte
    assert counts.get("refused", 0) > 100 and counts.get("ok", 0) > 30, counts
    assert counts.get("same_plan_checked", 0) > 10, counts
    assert counts.get("same_refusal_as_mirror", 0) > 100, counts

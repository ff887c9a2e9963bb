"""Bad input: one clear line on stderr, a non-zero exit, no output file, input untouched."""
import hashlib
import os

import pytest

from .conftest import run_cli


def _assert_clean_failure(code, out, err, output_path, expect_code=2, mention=None):
    assert code == expect_code, (code, out, err)
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("tflm-patch: error: "), err
    assert "Traceback" not in err + out
    if mention:
        assert mention in lines[0], lines[0]
    assert not os.path.exists(output_path)
    # no stray temporary files either
    assert not [f for f in os.listdir(os.path.dirname(output_path)) if f.startswith(".tflm-patch-")]


@pytest.mark.parametrize("make,mention", [
    (lambda d: str(d / "missing.tflite"), "no such file"),
    (lambda d: str(d), "not a file"),
    (lambda d: _write(d / "empty.tflite", b""), "empty file"),
    (lambda d: _write(d / "random.tflite", os.urandom(3000)), "not a TFLite model"),
    (lambda d: _write(d / "text.tflite", b"hello world, not a model at all"), "not a TFLite model"),
])
def test_unreadable_inputs(tmp_path, make, mention):
    src = make(tmp_path)
    out = tmp_path / "out.tflite"
    _assert_clean_failure(*run_cli("convert", src, "-o", out), str(out), mention=mention)


def _write(path, data):
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9])
def test_truncated_model(tmp_path, small_model_bytes, cut):
    src = _write(tmp_path / "trunc.tflite", small_model_bytes[: int(len(small_model_bytes) * cut)])
    out = tmp_path / "out.tflite"
    _assert_clean_failure(*run_cli("convert", src, "-o", out), str(out))


def test_float_model(tmp_path, float_model_bytes):
    src = _write(tmp_path / "float.tflite", float_model_bytes)
    out = tmp_path / "out.tflite"
    _assert_clean_failure(*run_cli("convert", src, "-o", out), str(out), mention="FLOAT32")


def test_first_op_unsupported(tmp_path, mean_first_model_bytes):
    # A valid int8 model with nothing to patch is left unchanged: exit 3, not "bad input" (issue 14).
    src = _write(tmp_path / "mean.tflite", mean_first_model_bytes)
    out = tmp_path / "out.tflite"
    _assert_clean_failure(*run_cli("convert", src, "-o", out), str(out), expect_code=3, mention="MEAN")


@pytest.mark.parametrize("args,mention", [
    (["--patches", "100x100"], "--patches 100x100 is impossible"),
    (["--split", "99"], "--split 99 is impossible"),
    (["--split", "5"], "--split 5 is impossible"),
    (["--split", "0"], "--split 0 is impossible"),
])
def test_impossible_requests(tmp_path, small_model_bytes, args, mention):
    src = _write(tmp_path / "m.tflite", small_model_bytes)
    digest = hashlib.sha256(small_model_bytes).hexdigest()
    out = tmp_path / "out.tflite"
    _assert_clean_failure(*run_cli("convert", src, "-o", out, *args), str(out), mention=mention)
    assert hashlib.sha256(open(src, "rb").read()).hexdigest() == digest


@pytest.mark.parametrize("args", [["--patches", "3by3"], ["--patches", "0x2"], ["--sram-budget", "lots"],
                                  ["--max-mac-overhead", "0.5"]])
def test_malformed_arguments(tmp_path, small_model_bytes, args):
    src = _write(tmp_path / "m.tflite", small_model_bytes)
    code, out, err = run_cli("convert", src, "-o", tmp_path / "out.tflite", *args)
    assert code == 2 and "Traceback" not in err and not (tmp_path / "out.tflite").exists()


def test_no_gain_leaves_model_unchanged(tmp_path, small_model_bytes):
    src = _write(tmp_path / "m.tflite", small_model_bytes)
    out = tmp_path / "out.tflite"
    # A 1x1 "grid" over the first op only keeps every tensor whole: it cannot lower the peak.
    code, o, err = run_cli("convert", src, "-o", out, "--patches", "1x1", "--split", "1")
    _assert_clean_failure(code, o, err, str(out), expect_code=3, mention="model left unchanged")


def test_verify_rejects_unrelated_models(tmp_path, small_model_bytes, mean_first_model_bytes):
    a = _write(tmp_path / "a.tflite", small_model_bytes)
    b = _write(tmp_path / "b.tflite", mean_first_model_bytes)
    code, out, err = run_cli("verify", a, b)
    assert code == 2 and "PATCH_STAGE" in err and "Traceback" not in err

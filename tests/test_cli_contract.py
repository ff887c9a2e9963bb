"""The CLI keeps its word (issue 14): every refusal is one line with the documented exit
code, checked before any work, and every number a user reads is unambiguous."""
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from tflm_patch.converter import model_io
from tflm_patch.converter.schema import BuiltinOperator, TensorType, schema
from tflm_patch.units import parse_size

from .conftest import MODELS_DIR, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESIDUAL = os.path.join(MODELS_DIR, "residual_add.tflite")      # 48x48x3 input, stage ops 0-4
POOLING = os.path.join(MODELS_DIR, "pooling_pad.tflite")


def _one_line_error(code, out, err, expect_code, *mentions):
    assert code == expect_code, (code, out, err)
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("tflm-patch: error: "), err
    assert "Traceback" not in out + err
    for m in mentions:
        assert m in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def patched(tmp_path_factory):
    """residual_add.tflite and its patched model (default plan, verified)."""
    d = tmp_path_factory.mktemp("patched")
    out = d / "residual_patched.tflite"
    code, stdout, err = run_cli("convert", RESIDUAL, "-o", out)
    assert code == 0, err
    return str(out), stdout


# 1. verify/convert input counts and .npy inputs ------------------------------------------------

@pytest.mark.parametrize("args,mention", [
    (["--inputs", "0"], "argument --inputs: must be a whole number >= 1 (got '0')"),
    (["--inputs", "-1"], "argument --inputs: must be a whole number >= 1 (got '-1')"),
    (["--inputs", "two"], "argument --inputs: must be a whole number >= 1 (got 'two')"),
])
def test_verify_refuses_input_counts_below_one(patched, args, mention):
    _one_line_error(*run_cli("verify", RESIDUAL, patched[0], *args), 2, mention)


@pytest.mark.parametrize("array,mention", [
    (np.zeros((0, 1, 48, 48, 3), np.int8), "empty array (shape [0, 1, 48, 48, 3]), no input to verify on"),
    (np.zeros((0,), np.int8), "empty array (shape [0]), no input to verify on"),
    (np.zeros((1, 32, 32, 3), np.int8), "shape [1, 32, 32, 3], the model takes [1, 48, 48, 3]"),
    (np.zeros((1, 48, 48, 3), np.uint8), "dtype uint8, the model takes int8"),
    (np.zeros((1, 48, 48, 3), np.float32), "dtype float32, the model takes int8"),
])
def test_verify_refuses_bad_npy_inputs(tmp_path, patched, array, mention):
    np.save(tmp_path / "x.npy", array)
    _one_line_error(*run_cli("verify", RESIDUAL, patched[0], "--input-npy", tmp_path / "x.npy"), 2, mention)


def test_verify_refuses_a_file_that_is_not_npy(tmp_path, patched):
    (tmp_path / "x.npy").write_bytes(b"not numpy")
    _one_line_error(*run_cli("verify", RESIDUAL, patched[0], "--input-npy", tmp_path / "x.npy"), 2,
                    "cannot read as .npy")


def test_convert_refuses_negative_verify_inputs_and_writes_nothing(tmp_path):
    out = tmp_path / "p.tflite"
    code, stdout, err = run_cli("convert", RESIDUAL, "-o", out, "--verify-inputs", "-1")
    _one_line_error(code, stdout, err, 2, "argument --verify-inputs: must be a whole number >= 0 (got '-1')")
    assert stdout == "" and not out.exists()


def test_convert_says_loudly_that_verify_inputs_0_did_not_verify(tmp_path):
    out = tmp_path / "p.tflite"
    code, stdout, err = run_cli("convert", RESIDUAL, "-o", out, "--verify-inputs", "0")
    assert code == 0 and out.exists(), err
    assert "Verified" not in stdout
    assert "warning: --verify-inputs 0: the patched model was NOT verified" in err
    assert "0 skips the proof" in run_cli("convert", "--help")[1]


# 2. report refuses models that do not belong together ------------------------------------------

def test_report_refuses_the_models_in_the_wrong_order(tmp_path, patched):
    line = _one_line_error(*run_cli("report", patched[0], RESIDUAL, "-o", tmp_path / "r"), 2,
                           "is itself a patched model (it has a PATCH_STAGE op)")
    assert "give the original model first" in line
    assert not (tmp_path / "r").exists()


def test_report_refuses_a_second_model_that_is_not_patched(tmp_path):
    _one_line_error(*run_cli("report", RESIDUAL, RESIDUAL, "-o", tmp_path / "r"), 2,
                    "is not a model patched by tflm-patch")
    assert not (tmp_path / "r").exists()


def test_report_refuses_the_patched_model_of_another_model(tmp_path):
    other = tmp_path / "pooling_patched.tflite"
    assert run_cli("convert", POOLING, "-o", other, "--verify-inputs", "0")[0] == 0
    _one_line_error(*run_cli("report", RESIDUAL, other, "-o", tmp_path / "r"), 2,
                    "the two models do not belong together: model inputs differ")
    assert not (tmp_path / "r").exists()


def test_report_refuses_an_original_with_other_weights(tmp_path, patched):
    """Same graph and shapes, one weight of an op after the stage changed: not the original."""
    model = model_io.load_model(RESIDUAL)
    sg = model.subgraphs[0]
    dense = max(i for i, op in enumerate(sg.operators)
                if model.operatorCodes[op.opcodeIndex].builtinCode == BuiltinOperator.FULLY_CONNECTED)
    assert dense == 7  # after the stage (ops 1-5)
    weights = sg.tensors[sg.operators[dense].inputs[1]]
    data = np.asarray(model.buffers[weights.buffer].data, dtype=np.uint8).copy()
    data[0] ^= 1
    model.buffers[weights.buffer].data = data
    retrained = tmp_path / "retrained.tflite"
    retrained.write_bytes(model_io.serialize_model(model))
    _one_line_error(*run_cli("report", retrained, patched[0], "-o", tmp_path / "r"), 2,
                    "the two models do not belong together: op ", "of the patched model (FULLY_CONNECTED) vs op 7 of "
                    "the original (FULLY_CONNECTED): different constant data")
    # and the real pair is accepted
    code, stdout, err = run_cli("report", RESIDUAL, patched[0], "-o", tmp_path / "r")
    assert code == 0 and (tmp_path / "r" / "report.md").exists(), err


def test_verify_refuses_the_models_in_the_wrong_order(patched):
    _one_line_error(*run_cli("verify", patched[0], RESIDUAL), 2, "is itself a patched model")


# 3. a valid model with nothing to patch: exit 3, model left unchanged ---------------------------

@pytest.fixture(scope="module")
def dense_model(tmp_path_factory):
    """A small int8 dense classifier made by TensorFlow: FULLY_CONNECTED first."""
    tf = pytest.importorskip("tensorflow")
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((16,)), tf.keras.layers.Dense(32, activation="relu"),
                                 tf.keras.layers.Dense(10)])
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(32):
            yield [rng.normal(size=(1, 16)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    path = tmp_path_factory.mktemp("dense") / "dense.tflite"
    path.write_bytes(conv.convert())
    return path


def test_a_model_with_nothing_to_patch_is_left_unchanged_with_exit_3(tmp_path, dense_model):
    before = dense_model.read_bytes()
    out = tmp_path / "out.tflite"
    code, stdout, err = run_cli("convert", dense_model, "-o", out)
    line = _one_line_error(code, stdout, err, 3, "nothing to patch: op 0 (FULLY_CONNECTED)",
                           "model left unchanged")
    assert not out.exists() and dense_model.read_bytes() == before
    assert "bad input" not in line


# 4. output paths are checked before any work ----------------------------------------------------

def test_convert_output_that_is_a_directory_fails_before_the_search(tmp_path):
    code, stdout, err = run_cli("convert", RESIDUAL, "-o", tmp_path)
    _one_line_error(code, stdout, err, 2, f"{tmp_path}: is a directory")
    assert stdout == ""  # no search, no summary, no verification
    assert os.listdir(tmp_path) == []


def test_convert_output_under_a_file_fails_before_the_search(tmp_path):
    (tmp_path / "notes.txt").write_text("a file, not a directory")
    out = tmp_path / "notes.txt" / "sub" / "p.tflite"
    code, stdout, err = run_cli("convert", RESIDUAL, "-o", out)
    _one_line_error(code, stdout, err, 2, f"{out}: cannot write there", "notes.txt is not a directory")
    assert stdout == ""


def test_convert_output_in_a_read_only_directory_fails_before_the_search(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("this user (root) can write to any directory: the not-a-directory case covers the check")
        code, stdout, err = run_cli("convert", RESIDUAL, "-o", ro / "p.tflite")
        _one_line_error(code, stdout, err, 2, "is not writable")
        assert stdout == ""
    finally:
        ro.chmod(0o755)


def test_convert_still_creates_missing_directories(tmp_path):
    out = tmp_path / "a" / "b" / "p.tflite"
    code, stdout, err = run_cli("convert", RESIDUAL, "-o", out, "--verify-inputs", "0")
    assert code == 0 and out.exists(), err


def test_nothing_is_created_when_convert_fails(tmp_path, dense_model):
    out = tmp_path / "new" / "p.tflite"
    assert run_cli("convert", dense_model, "-o", out)[0] == 3
    assert not (tmp_path / "new").exists()


def test_export_c_and_report_check_their_outputs_first(tmp_path, patched):
    (tmp_path / "model_data.h").mkdir()
    _one_line_error(*run_cli("export-c", patched[0], "-o", tmp_path / "model_data.cc"), 2,
                    "model_data.h: is a directory")
    assert not (tmp_path / "model_data.cc").exists()
    _one_line_error(*run_cli("export-c", patched[0], "-o", tmp_path), 2, "is a directory")
    (tmp_path / "file").write_text("x")
    _one_line_error(*run_cli("report", RESIDUAL, patched[0], "-o", tmp_path / "file"), 2,
                    "file: exists and is not a directory")


# 5. units -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("64KB", 64_000), ("64kb", 64_000), ("64kB", 64_000), ("64KiB", 65_536), ("64kib", 65_536), ("64K", 65_536),
    ("64k", 65_536), ("1MB", 1_000_000), ("1mb", 1_000_000), ("1MiB", 1_048_576), ("1M", 1_048_576),
    ("98304", 98_304), ("98304B", 98_304), ("1.5MiB", 1_572_864), ("96 KiB", 98_304),
])
def test_sizes_mean_what_users_expect(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["lots", "64XB", "", "KiB", "-5", "1.5", "0", "0KiB", "1e5", "64 K B"])
def test_junk_sizes_are_refused_in_one_line(tmp_path, text):
    with pytest.raises(ValueError):
        parse_size(text)
    code, stdout, err = run_cli("convert", RESIDUAL, "-o", tmp_path / "p.tflite", "--sram-budget", text)
    _one_line_error(code, stdout, err, 2, "argument --sram-budget: ")
    assert not (tmp_path / "p.tflite").exists()


@pytest.mark.parametrize("budget,bytes_", [("64KB", "64,000"), ("64KiB", "65,536"), ("64k", "65,536")])
def test_budget_units_reach_the_planner(tmp_path, budget, bytes_):
    """residual_add needs 46,080 bytes: any of these budgets already fits, and the message says how many bytes."""
    code, stdout, err = run_cli("convert", RESIDUAL, "-o", tmp_path / "p.tflite", "--sram-budget", budget)
    _one_line_error(code, stdout, err, 3, f"--sram-budget {bytes_} bytes", "planned arena 46,080 bytes")


@pytest.mark.parametrize("command", ["convert", "report"])
def test_help_of_every_size_option_says_the_units(command):
    code, stdout, _ = run_cli(command, "--help")
    text = " ".join(stdout.split())
    assert code == 0 and "--sram-budget SIZE" in text
    assert "KB = 1,000" in text and "K = KiB = 1,024" in text and "64KB is 64,000 bytes" in text


# 6. custom ops TFLM does not know are named ------------------------------------------------------

@pytest.fixture(scope="module")
def ethos_model(tmp_path_factory):
    """residual_add with op 3 turned into a CUSTOM 'ethos-u' op (as an Ethos-U compiled model has)."""
    model = model_io.load_model(RESIDUAL)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = BuiltinOperator.CUSTOM
    code.customCode, code.version = "ethos-u", 1
    model.operatorCodes.append(code)
    op = model.subgraphs[0].operators[3]
    op.opcodeIndex, op.builtinOptionsType, op.builtinOptions = len(model.operatorCodes) - 1, 0, None
    path = tmp_path_factory.mktemp("ethos") / "ethos.tflite"
    path.write_bytes(model_io.serialize_model(model))
    return path


def test_analyze_names_the_custom_op_tflm_does_not_know(ethos_model):
    _one_line_error(*run_cli("analyze", ethos_model), 2,
                    "op 3 is custom op 'ethos-u', which TFLM's op resolver does not know")
    code, stdout, err = run_cli("analyze", ethos_model, "--no-measure")
    assert code == 0, err
    row = next(l for l in stdout.splitlines() if l.split()[:1] == ["3"])
    assert row.split()[1] == "ethos-u"


# 7. formatting -----------------------------------------------------------------------------------

def test_summary_peaks_are_separated_and_use_the_original_op_numbers(tmp_path, patched):
    lines = patched[1].splitlines()
    before = next(l for l in lines if l.startswith("peak before"))
    after = next(l for l in lines if l.startswith("peak after"))
    # no line runs two peak descriptions together (each is on its own line)
    assert not any(l.count("bytes in use") > 1 for l in lines), lines
    assert before.split(None, 2)[2] == "op 2 (DEPTHWISE_CONV_2D): 46,080 bytes in use"
    assert after.split(None, 2)[2].startswith("ops 1-5 (PATCH_STAGE): 17,328 bytes in use")
    # the report numbers ops the same way: ops 1-5 are the stage, at the patched model's peak
    # (the patched model has only 4 ops: op 5 exists in the original's numbering only)
    assert run_cli("report", RESIDUAL, patched[0], "-o", tmp_path / "r")[0] == 0
    rows = {int(r[0]): [c.strip() for c in r[1:]] for r in
            (l.split("|")[1:-1] for l in (tmp_path / "r" / "report.md").read_text().splitlines()
             if re.match(r"\| \d", l))}
    assert rows[5][0] == "CONV_2D (in PATCH_STAGE)" and rows[5][3] == "17,328"
    assert max(int(r[3].replace(",", "")) for r in rows.values()) == 17_328
    assert rows[2][0] == "DEPTHWISE_CONV_2D (in PATCH_STAGE)" and rows[2][2] == "46,080"


def test_a_peak_inside_the_stage_is_named_as_the_stage(tmp_path):
    """pooling_pad, patched 4x4 over ops 0-2: the patched model peaks in PATCH_STAGE."""
    code, stdout, err = run_cli("convert", POOLING, "-o", tmp_path / "p.tflite", "--verify-inputs", "0",
                                "--patches", "4x4", "--split", "3")
    assert code == 0, err
    after = next(l for l in stdout.splitlines() if l.startswith("peak after"))
    assert re.fullmatch(r"peak after +ops 0-2 \(PATCH_STAGE\): \d{1,3}(,\d{3})* bytes in use +"
                        r"\(op numbers of the original model\)", after), after


@pytest.mark.parametrize("args", [["--sram-budget", "1MiB"], ["--patches", "1x1", "--split", "1"]])
def test_exit_3_messages_separate_thousands(tmp_path, args):
    code, stdout, err = run_cli("convert", RESIDUAL, "-o", tmp_path / "p.tflite", *args)
    line = _one_line_error(code, stdout, err, 3, "model left unchanged")
    assert re.findall(r"\d{1,3}(?:,\d{3})+ bytes", line), line
    assert not re.search(r"\d{4,}", line), line


# 8. README: the commands at its top are what CI runs ---------------------------------------------

def _readme_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    block = text.split("```sh", 1)[1].split("```", 1)[0]
    return [l for l in block.splitlines() if l.strip() and not l.startswith("#")]


def test_ci_runs_exactly_the_readme_test_command():
    main_job, tests = _readme_commands()
    ci = open(os.path.join(ROOT, ".ci", "run")).read().splitlines()
    assert tests in ci
    for command in (main_job, tests):
        # PEP 668: Debian's python3 refuses pip installs outside a virtual environment
        assert "python3 -m venv .venv" in command and "python3 -m pip" not in command
        assert ".venv/bin/python -m pip install" in command
    assert "g++" in tests and "dataset-fashion-mnist" in tests


def test_ci_script_is_valid_shell():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    assert subprocess.run([bash, "-n", os.path.join(ROOT, ".ci", "run")]).returncode == 0


def test_a_real_mismatch_says_where_with_separated_byte_counts(tmp_path, patched):
    """A corrupted bias in PATCH_STAGE: exit 4, and the one line says how many bytes of the stage output differ."""
    model = model_io.load_model(patched[0])
    sg = model.subgraphs[0]
    stage = next(op for op in sg.operators if model.operatorCodes[op.opcodeIndex].customCode in
                 ("PATCH_STAGE", b"PATCH_STAGE"))
    bias = next(sg.tensors[t] for t in stage.inputs[1:] if sg.tensors[t].type == TensorType.INT32)
    data = np.asarray(model.buffers[bias.buffer].data, dtype=np.uint8).copy()
    data[1] ^= 0x10
    model.buffers[bias.buffer].data = data
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(model_io.serialize_model(model))
    line = _one_line_error(*run_cli("verify", RESIDUAL, bad, "--inputs", "1"), 4,
                           "patched model is NOT bit-identical: input 0: python output of the PATCH_STAGE at op ",
                           " differs in ")
    assert re.search(r"differs in \d{1,3}(,\d{3})* of 13,824 bytes$", line), line


def test_report_refuses_an_original_with_other_stage_weights(tmp_path, patched):
    """Same graph, one filter of the stage changed: the patched stage does not come from it."""
    record = json.loads(bytes(next(
        model_io.load_model(patched[0]).buffers[m.buffer].data for m in model_io.load_model(patched[0]).metadata
        if m.name in ("tflm_patch.plan", b"tflm_patch.plan"))).decode())
    first = record["stages"][0]["stage_ops"][0]
    model = model_io.load_model(RESIDUAL)
    sg = model.subgraphs[0]
    weights = sg.tensors[sg.operators[first].inputs[1]]
    data = np.asarray(model.buffers[weights.buffer].data, dtype=np.uint8).copy()
    data[3] ^= 1
    model.buffers[weights.buffer].data = data
    retrained = tmp_path / "retrained.tflite"
    retrained.write_bytes(model_io.serialize_model(model))
    _one_line_error(*run_cli("report", retrained, patched[0], "-o", tmp_path / "r"), 2,
                    "the two models do not belong together: the PATCH_STAGE op ", " has other weights in ",
                    "than ops ")
    assert not (tmp_path / "r").exists()

"""Hostile models: every class of fault the converter fuzz campaign found, refused as bad input.

Each case takes a real test model, makes one targeted edit (the kind the
fuzzer made), and runs the CLI: exit 2 with one line naming the fault, no
output file, input untouched, and never a "NOT bit-identical" that is the
model's fault.
"""
import os

import numpy as np
import pytest

from tflm_patch import cli
from tflm_patch.converter import model_io, pipeline
from tflm_patch.converter.schema import schema

from .conftest import MODELS_DIR

RESIDUAL = os.path.join(MODELS_DIR, "residual_add.tflite")
DEPTHWISE = os.path.join(MODELS_DIR, "depth_multiplier.tflite")


def _load(path):
    with open(path, "rb") as f:
        data = f.read()
    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))


def _sg(m):
    return m.subgraphs[0]


def _op(m, name):
    """The first op of a builtin kind."""
    for op in _sg(m).operators:
        code = m.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) == getattr(schema.BuiltinOperator, name):
            return op
    raise LookupError(name)


def _first_conv_output(m):
    return _sg(m).tensors[_op(m, "CONV_2D").outputs[0]]


def _conv_filter(m):
    return _sg(m).tensors[_op(m, "CONV_2D").inputs[1]]


def _set(obj, **kw):
    for k, v in kw.items():
        setattr(obj, k, v)


def _orphan_input(m):
    """A fresh activation tensor (never written) read by the second op."""
    sg = _sg(m)
    op = sg.operators[1]
    src = sg.tensors[op.inputs[0]]
    t = schema.TensorT()
    t.shape, t.type, t.buffer, t.name, t.quantization = list(src.shape), src.type, 0, "orphan", src.quantization
    sg.tensors.append(t)
    op.inputs = [len(sg.tensors) - 1] + list(op.inputs[1:])


def _scale(value):
    def edit(m):
        q = _first_conv_output(m).quantization
        q.scale = [value]
    return edit


def _truncate_weights(m):
    buf = m.buffers[_conv_filter(m).buffer]
    buf.data = buf.data[:-3]


def _metadata(name, buffer):
    def edit(m):
        md = schema.MetadataT()
        md.name, md.buffer = name, buffer(m)
        m.metadata = list(m.metadata or []) + [md]
    return edit


def _add_output_scale(m):
    add = _op(m, "ADD")
    _sg(m).tensors[add.inputs[0]].quantization.scale = [1e3]
    _sg(m).tensors[add.outputs[0]].quantization.scale = [1e-5]


# (model, edit, words the one-line message must contain)
CASES = {
    "tensor name not UTF-8": (RESIDUAL, lambda m: _set(_sg(m).tensors[3], name=b"conv\xff\xfe"), "not UTF-8"),
    "custom code not UTF-8": (RESIDUAL, lambda m: _set(m.operatorCodes[0], customCode=b"\xc3("), "not UTF-8"),
    "metadata name not UTF-8": (RESIDUAL, _metadata(b"\xffmeta", lambda m: 0), "not UTF-8"),
    "metadata buffer out of range": (RESIDUAL, _metadata(b"x", lambda m: len(m.buffers) + 3), "refers to buffer"),
    "NaN scale": (RESIDUAL, _scale(float("nan")), "scale nan"),
    "infinite scale": (RESIDUAL, _scale(float("inf")), "scale inf"),
    "zero scale": (RESIDUAL, _scale(0.0), "finite and positive"),
    "negative scale": (RESIDUAL, _scale(-0.02), "finite and positive"),
    "absurd scale": (RESIDUAL, _scale(1e30), "outside"),
    "tiny activation scale": (RESIDUAL, _scale(1e-30), "outside"),
    "absurd requantization": (RESIDUAL, lambda m: _set(_conv_filter(m).quantization,
                                                       scale=[1e12] * len(_conv_filter(m).quantization.scale)),
                              "requantization multiplier"),
    "zero point outside int8": (RESIDUAL, lambda m: _set(_first_conv_output(m).quantization,
                                                         zeroPoint=[-8214565720323784832]), "zero point"),
    "zero point 128 on int8": (RESIDUAL, lambda m: _set(_first_conv_output(m).quantization, zeroPoint=[128]),
                               "zero point 128"),
    "scales and zero points differ in count": (RESIDUAL, lambda m: _set(_first_conv_output(m).quantization,
                                                                        zeroPoint=[]), "zero points"),
    "per-channel scales on a wrong dimension": (RESIDUAL, lambda m: _set(_conv_filter(m).quantization,
                                                                         quantizedDimension=3), "per-channel"),
    "emptied weight buffer": (RESIDUAL, lambda m: _set(m.buffers[_conv_filter(m).buffer], data=None),
                              "never written"),
    "tensor read but never written": (RESIDUAL, _orphan_input, "never written"),
    "weights shorter than the shape": (RESIDUAL, _truncate_weights, "needs"),
    "buffer index out of range": (RESIDUAL, lambda m: _set(_conv_filter(m), buffer=len(m.buffers) + 1),
                                  "refers to buffer"),
    "buffer outside the file": (RESIDUAL, lambda m: _set(m.buffers[1], offset=1 << 40, size=100), "outside the file"),
    "op input index negative": (RESIDUAL, lambda m: _set(_sg(m).operators[1], inputs=[-7, 1, 2]), "refers to tensor"),
    "op output index out of range": (RESIDUAL, lambda m: _set(_sg(m).operators[0], outputs=[10**6]), "writes tensor"),
    "subgraph input out of range": (RESIDUAL, lambda m: _set(_sg(m), inputs=[10**6]), "input is tensor"),
    "opcode index out of range": (RESIDUAL, lambda m: _set(_sg(m).operators[0], opcodeIndex=99), "operator code"),
    "negative dimension": (RESIDUAL, lambda m: _set(_first_conv_output(m), shape=[1, -3, 12, 8]), "dimensions"),
    "zero dimension": (RESIDUAL, lambda m: _set(_first_conv_output(m), shape=[1, 0, 12, 8]), "dimensions"),
    "conv options missing": (RESIDUAL, lambda m: _set(_op(m, "CONV_2D"), builtinOptions=None, builtinOptionsType=0),
                             "Conv2DOptions"),
    "conv stride 0": (RESIDUAL, lambda m: _set(_op(m, "CONV_2D").builtinOptions, strideH=0), "not a valid convolution"),
    "conv dilation 0": (RESIDUAL, lambda m: _set(_op(m, "CONV_2D").builtinOptions, dilationWFactor=0),
                        "not a valid convolution"),
    "unknown fused activation": (RESIDUAL, lambda m: _set(_op(m, "CONV_2D").builtinOptions,
                                                          fusedActivationFunction=99), "fused activation"),
    "conv without filter": (RESIDUAL, lambda m: _set(_op(m, "CONV_2D"), inputs=list(_op(m, "CONV_2D").inputs[:1])),
                            "inputs"),
    "ADD output scale too small": (RESIDUAL, _add_output_scale, "too small"),
    "depth multiplier contradicts the shapes": (DEPTHWISE, lambda m: _set(_op(m, "DEPTHWISE_CONV_2D").builtinOptions,
                                                                          depthMultiplier=99), "depth multiplier"),
    "no operators": (RESIDUAL, lambda m: _set(_sg(m), operators=[]), "no operators"),
    # found by the long run (each was refused only as "NOT bit-identical" before)
    "huge dilation": (RESIDUAL, lambda m: _set(_op(m, "DEPTHWISE_CONV_2D").builtinOptions,
                                               dilationWFactor=2**31 - 1), "beyond TFLite's integer geometry"),
    "bias that is not INT32": (RESIDUAL, lambda m: _set(_op(m, "CONV_2D"), inputs=list(_op(m, "CONV_2D").inputs[:2])
                                                        + [_sg(m).inputs[0]]), "not INT32"),
    "FULLY_CONNECTED output larger than computed": (RESIDUAL, lambda m: _set(
        _sg(m).tensors[_op(m, "FULLY_CONNECTED").outputs[0]], shape=[1, 10, 2]), "FULLY_CONNECTED"),
    "MEAN output not the reduction": (RESIDUAL, lambda m: _set(_sg(m).tensors[_op(m, "MEAN").outputs[0]], shape=[1]),
                                      "reduction"),
    "conv output larger than the padding rule gives": (RESIDUAL, lambda m: _set(
        _first_conv_output(m), shape=[1] + [d + 1 for d in _first_conv_output(m).shape[1:3]]
        + [_first_conv_output(m).shape[3]]), "give"),
    "constant marked variable": (RESIDUAL, lambda m: _set(_conv_filter(m), isVariable=True), "marked variable"),
    "INT8 op writing FLOAT32": (RESIDUAL, lambda m: _set(_first_conv_output(m), type=0), "writes FLOAT32"),
    "signature naming an inner tensor": (RESIDUAL, lambda m: _set(m.signatureDefs[0].inputs[0], tensorIndex=3),
                                         "signature 0 input"),
}


def _run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_refused(code, out, err, mention, output=None):
    assert code == 2, (code, err)
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("tflm-patch: error: "), err
    assert "internal error" not in err and "Traceback" not in err + out
    assert mention in lines[0], lines[0]
    if output is not None:
        assert not os.path.exists(output)
        assert not [f for f in os.listdir(os.path.dirname(output)) if f.startswith(".tflm-patch-")]


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_model_refused_by_convert_and_analyze(case, tmp_path, capsys):
    path, edit, mention = CASES[case]
    m = _load(path)
    edit(m)
    data = model_io.serialize_model(m)
    src = tmp_path / "hostile.tflite"
    src.write_bytes(data)
    out = tmp_path / "out.tflite"
    _assert_refused(*_run(["convert", src, "-o", out], capsys), mention, str(out))
    _assert_refused(*_run(["analyze", src], capsys), mention)
    assert src.read_bytes() == data


def test_a_per_channel_bias_naming_another_dimension_is_a_model_users_have(tmp_path, capsys):
    """Old converters wrote 1-D per-channel biases with quantized_dimension 3 (TFLM's own person_detect
    model); TFLM reads them by count. Such a model converts and verifies; a 4-D filter naming a wrong
    dimension stays refused (above)."""
    m = _load(RESIDUAL)
    conv = _op(m, "CONV_2D")
    bias = _sg(m).tensors[conv.inputs[2]]
    assert len(bias.shape) == 1 and len(bias.quantization.scale) == bias.shape[0] > 1
    bias.quantization.quantizedDimension = 3
    src = tmp_path / "old_converter.tflite"
    src.write_bytes(model_io.serialize_model(m))
    code, out, err = _run(["convert", src, "-o", tmp_path / "p.tflite", "--verify-inputs", "2"], capsys)
    assert code == 0 and "Verified bit-identical" in out, err


@pytest.fixture(scope="module")
def patched_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    out = d / "patched.tflite"
    # --split 5: the stage starts at op 0 and reads the model input (the default plan may start later)
    assert cli.main(["convert", RESIDUAL, "-o", str(out), "--split", "5", "--verify-inputs", "0"]) == 0
    m = schema.Model.GetRootAs(out.read_bytes(), 0)
    assert m.OperatorCodes(m.Subgraphs(0).Operators(0).OpcodeIndex()).CustomCode() == b"PATCH_STAGE"
    return out.read_bytes()


def _patched_edit(patched_bytes, edit):
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(patched_bytes, 0))
    edit(m)
    return model_io.serialize_model(m)


def _corrupt_options(m):
    op = _sg(m).operators[0]
    opts = bytearray(np.asarray(op.customOptions, dtype=np.uint8).tobytes())
    i = opts.index(b"op") + 3 if b"op" in opts else len(opts) // 2
    opts[i:i + 8] = b"\xff" * 8  # keys and offsets of the first layer map
    op.customOptions = list(opts)


def _other_input_shape(m):
    t = _sg(m).tensors[_sg(m).inputs[0]]
    t.shape = list(t.shape[:-1])


@pytest.mark.parametrize("engine", ["python", "cpp"])
@pytest.mark.parametrize("edit,mention", [
    (_corrupt_options, "PATCH_STAGE"),
    (_other_input_shape, "inputs differ"),
    (lambda m: _set(_sg(m).operators[0], customOptions=None), "PATCH_STAGE"),
])
def test_verify_refuses_a_broken_patched_model(patched_pair, tmp_path, capsys, edit, mention, engine):
    patched = tmp_path / "patched.tflite"
    patched.write_bytes(_patched_edit(patched_pair, edit))
    code, out, err = _run(["verify", RESIDUAL, patched, "--inputs", "1", "--engine", engine], capsys)
    assert code in (2, 4), err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and "internal error" not in err, err
    if code == 2:
        assert mention in lines[0], lines[0]


def test_verify_feeds_the_model_input_to_ops_after_the_stage():
    """A tail op reading the model input itself: verify's tail model must get that input too."""
    from tflm_patch.converter import planner, verify
    from tflm_patch.converter.graph import build_graph

    from .modelgen import ModelBuilder
    mb = ModelBuilder(np.random.default_rng(3))
    x = mb.activation((12, 12, 4), 0.03, 2)
    y = mb.conv(x, 8, 3)
    mean_x = mb.mean_tail(x)   # not a stage op: the stage is the conv alone
    mean_y = mb.mean_tail(y)
    data = mb.finish([x.index], [mean_x.index, mean_y.index])
    model = model_io.parse_model(data)
    graph = build_graph(model)
    plan = planner.make_plan(graph, patches=(2, 2), split=1, require_gain=False)
    patched = pipeline.write_patched(model, plan).data
    report = verify.verify(data, patched, verify.random_inputs(graph, 2))
    assert report.identical, report.first_difference

"""Models as users have them: float or uint8 I/O around an int8 body, a leading RESHAPE.

Each model is made by TensorFlow here; each must convert with a real gain (a
stage that starts after the QUANTIZE or RESHAPE) and verify bit-identical
against TFLM.
"""
from __future__ import annotations

import numpy as np
import pytest

from tflm_patch.converter import model_io, options
from tflm_patch.converter.layers import QUANTIZE
from tflm_patch.converter.graph import build_graph

from .conftest import run_cli

tf = pytest.importorskip("tensorflow")
L = tf.keras.layers


def _body(x):
    x = L.Conv2D(16, 3, padding="same", activation="relu")(x)  # 48x48x16: the peak, above a float input's
    x = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.Conv2D(24, 1, activation="relu")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(8, 1)(x)
    x = L.GlobalAveragePooling2D()(x)
    return L.Dense(4)(x)


def _convert(model, shape, input_type=None, output_type=None) -> bytes:
    rng = np.random.default_rng(3)

    def representative():
        for _ in range(16):
            yield [rng.uniform(0, 1, (1,) + shape).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if input_type is not None:
        conv.inference_input_type = input_type
    if output_type is not None:
        conv.inference_output_type = output_type
    return conv.convert()


def _check(tmp_path, data: bytes, first_op: str) -> None:
    src = tmp_path / "m.tflite"
    src.write_bytes(data)
    g = build_graph(model_io.parse_model(data))
    assert g.ops[0].name == first_op
    out = tmp_path / "m_patched.tflite"
    code, stdout, err = run_cli("convert", src, "-o", out, "--verify-inputs", "2")
    assert code == 0, err
    assert "Verified bit-identical" in stdout
    patched = build_graph(model_io.load_model(str(out)))
    stages = [op for op in patched.ops if op.name == "PATCH_STAGE"]
    assert stages
    if patched.ops[0].name == "PATCH_STAGE":  # the first op went into the stage, as its layer 0
        assert first_op == "QUANTIZE" and options.decode(stages[0].custom_options).layers[0].op == QUANTIZE
    else:
        assert patched.ops[0].name == first_op, "the op before the stage is kept"
    code, stdout, err = run_cli("verify", src, out, "--inputs", "3", "--engine", "python")
    assert code == 0, err


def test_float_io_model(tmp_path):
    """Representative dataset without inference_input_type: float32 in, QUANTIZE first, DEQUANTIZE last."""
    i = tf.keras.Input((48, 48, 3))
    data = _convert(tf.keras.Model(i, _body(i)), (48, 48, 3))
    g = build_graph(model_io.parse_model(data))
    assert g.tensors[g.inputs[0]].type_name == "FLOAT32" and g.ops[-1].name == "DEQUANTIZE"
    _check(tmp_path, data, "QUANTIZE")


def test_uint8_input_model(tmp_path):
    """A camera pipeline's uint8 input, QUANTIZE'd to int8 by the model."""
    i = tf.keras.Input((48, 48, 3))
    data = _convert(tf.keras.Model(i, _body(i)), (48, 48, 3), input_type=tf.uint8, output_type=tf.int8)
    g = build_graph(model_io.parse_model(data))
    assert g.tensors[g.inputs[0]].type_name == "UINT8"
    _check(tmp_path, data, "QUANTIZE")


def test_leading_reshape_model(tmp_path):
    """A keyword-spotting-like model reshapes its flat input before the first conv."""
    i = tf.keras.Input((48 * 48,), batch_size=1)
    x = L.Reshape((48, 48, 1))(i)
    data = _convert(tf.keras.Model(i, _body(x)), (48 * 48,), input_type=tf.int8, output_type=tf.int8)
    _check(tmp_path, data, "RESHAPE")

import os
import subprocess
import sys

import numpy as np
import pytest

from tflm_patch.converter.schema import BuiltinOperator, BuiltinOptions, Padding, TensorType, schema

from .modelgen import ModelBuilder

MODELS_DIR = os.path.join(os.path.dirname(__file__), "models")


def run_cli(*args, cwd=None):
    """Run the installed command as a user would; return (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "tflm_patch", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="session")
def small_model_bytes() -> bytes:
    """A small int8 CNN (conv 3x3/2, dw 3x3, conv 1x1, MEAN) whose peak patching lowers."""
    rng = np.random.default_rng(7)
    mb = ModelBuilder(rng)
    x = mb.activation((32, 32, 3), 0.02, -5)
    y = mb.conv(x, 16, 3, stride=2)
    y = mb.conv(y, 0, 3, depthwise=True)
    y = mb.conv(y, 8, 1)
    y = mb.conv(y, 16, 3, stride=2)
    out = mb.mean_tail(y)
    return mb.finish([x.index], [out.index])


@pytest.fixture(scope="session")
def float_model_bytes() -> bytes:
    mb = ModelBuilder(np.random.default_rng(0))
    x = mb.tensor((1, 8, 8, 3), TensorType.FLOAT32)
    w = mb.tensor((4, 3, 3, 3), TensorType.FLOAT32, data=np.ones((4, 3, 3, 3), np.float32))
    y = mb.tensor((1, 8, 8, 4), TensorType.FLOAT32)
    o = schema.Conv2DOptionsT()
    o.padding, o.strideH, o.strideW = Padding.SAME, 1, 1
    mb.op(BuiltinOperator.CONV_2D, [x, w, -1], [y], BuiltinOptions.Conv2DOptions, o)
    return mb.finish([x], [y])


@pytest.fixture(scope="session")
def mean_first_model_bytes() -> bytes:
    """An int8 model whose first op (MEAN) cannot be patched."""
    mb = ModelBuilder(np.random.default_rng(0))
    x = mb.activation((8, 8, 3), 0.02, 0)
    out = mb.mean_tail(x)
    return mb.finish([x.index], [out.index])

#!/usr/bin/env python3
"""Random whole models, made by TensorFlow, patched with the default search and verified end to end.

Each case builds a random Keras CNN (a chain of convolutions, depthwise
convolutions, residual blocks with ADD, zero padding and pools, then the usual
GlobalAveragePooling + Dense tail), converts it to full-integer int8 with
TFLite's converter and a representative dataset (tests/models/make_models.py),
runs `tflm-patch convert` with its default plan search (and its own
verification), then `tflm-patch verify --engine both` on 4 random inputs.
A case passes when convert ends with 0 (patched) or 3 (no plan lowers the
peak) and every patched model verifies bit-identical with both engines.

    python tools/fuzz/fuzz_models.py --cases 100 --seed 1
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def random_keras_model(rng: np.random.Generator):
    import tensorflow as tf
    L = tf.keras.layers
    h, w = int(rng.integers(16, 49)), int(rng.integers(16, 49))
    c = int(rng.choice([1, 3, 4]))
    inp = L.Input((h, w, c))
    x = inp
    channels = c
    blocks = []
    for _ in range(int(rng.integers(2, 8))):
        kind = str(rng.choice(["conv", "conv", "dw", "residual", "residual", "pad", "maxpool", "avgpool"]))
        size = min(int(x.shape[1]), int(x.shape[2]))
        act = str(rng.choice(["relu", "relu6", "linear"]))
        if kind == "conv":
            k = int(rng.choice([1, 3, 3, 5]))
            s = int(rng.choice([1, 1, 2])) if size >= 8 else 1
            channels = int(rng.integers(4, 17))
            x = L.Conv2D(channels, k, strides=s, padding="same")(x)
            x = L.Activation(tf.nn.relu6)(x) if act == "relu6" else L.Activation(act)(x)
        elif kind == "dw":
            s = int(rng.choice([1, 2])) if size >= 8 else 1
            dm = int(rng.choice([1, 1, 2]))
            x = L.DepthwiseConv2D(3, strides=s, padding="same", depth_multiplier=dm)(x)
            channels *= dm
            x = L.Activation(tf.nn.relu6)(x) if act == "relu6" else L.Activation(act)(x)
        elif kind == "residual":
            y = L.Conv2D(channels * 2, 1, padding="same", activation="relu")(x)
            y = L.DepthwiseConv2D(3, padding="same", activation="relu")(y)
            y = L.Conv2D(channels, 1, padding="same")(y)
            x = L.Add()([x, y])
        elif kind == "pad":
            p = [int(v) for v in rng.integers(0, 3, size=4)]
            x = L.ZeroPadding2D(((p[0], p[1]), (p[2], p[3])))(x)
        elif size >= 4:
            pool = L.MaxPooling2D if kind == "maxpool" else L.AveragePooling2D
            x = pool(int(rng.choice([2, 3])), strides=int(rng.choice([1, 2])), padding=str(rng.choice(["same", "valid"])))(x)
        blocks.append(kind)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(10)(x)
    return tf.keras.Model(inp, out), blocks, (h, w, c)


def run_case(i: int, seed: int, workdir: str) -> dict:
    import tensorflow as tf
    from tests.models.make_models import convert, structured_images
    from tflm_patch import cli

    rng = np.random.default_rng(seed * 1_000_003 + i)
    tf.keras.utils.set_random_seed(int(rng.integers(0, 2**31 - 1)))
    model, blocks, shape = random_keras_model(rng)
    data = convert(model, structured_images(16, shape, seed=i))
    src, out = os.path.join(workdir, f"m{i}.tflite"), os.path.join(workdir, f"m{i}_patched.tflite")
    with open(src, "wb") as f:
        f.write(data)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli.main(["convert", src, "-o", out])
    result = {"case": i, "blocks": blocks, "input": shape, "convert": code, "message": err.getvalue().strip()}
    if code == 0:
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            result["verify"] = cli.main(["verify", src, out, "--inputs", "4", "--engine", "both", "--seed", str(i)])
        result["message"] = err.getvalue().strip()
    for p in (src, out):
        if os.path.exists(p):
            os.unlink(p)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    counts, failures = Counter(), []
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="tflm-patch-models-") as workdir:
        for i in range(args.start, args.start + args.cases):
            r = run_case(i, args.seed, workdir)
            ok = r["convert"] in (0, 3) and r.get("verify", 0) == 0
            counts["patched" if r["convert"] == 0 else f"convert exit {r['convert']}"] += 1
            if r.get("verify") == 0:
                counts["verified"] += 1
            if not ok:
                failures.append(r)
                print(f"FAIL case {i}: {r}", flush=True)
            elif args.verbose:
                print(f"case {i} {r['input']} {r['blocks']}: convert {r['convert']}, verify {r.get('verify')}",
                      flush=True)
    print(f"\nwhole-model campaign, seed {args.seed}: {args.cases} random TensorFlow models in "
          f"{time.time() - t0:.0f} s: {dict(counts)}; failures {len(failures)} "
          f"(a failure: convert not 0/3, or a patched model not bit-identical with both engines)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

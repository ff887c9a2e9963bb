"""Generate the small full-integer int8 ``.tflite`` test models in this folder.

Usage::

    python tests/models/make_models.py [--out DIR] [--only NAME ...]

Every model is a real Keras model converted by ``tf.lite.TFLiteConverter
.from_keras_model`` with ``Optimize.DEFAULT``, a representative dataset of 32
structured images, ``TFLITE_BUILTINS_INT8`` and int8 input/output, exactly as
a user of TFLM would produce it.  Each model has a convolutional front (the
stage tflm-patch rewrites: CONV_2D, DEPTHWISE_CONV_2D, ADD, PAD, MAX_POOL_2D,
AVERAGE_POOL_2D) followed by a classifier tail made of other ops
(MEAN + FULLY_CONNECTED [+ SOFTMAX]), so the stage always has a consumer.

Models made (name: what it exercises):

* ``mobilenetv2_035_96``, ``mobilenetv2_035_144``: Keras MobileNetV2
  (alpha 0.35, 10 classes, no pretrained weights) at 96x96 and 144x144;
  real-world op mix with residual ADDs.  (Keras puts a ZeroPadding2D before
  each stride-2 depthwise conv, but the converter folds PAD + VALID into a
  SAME DEPTHWISE_CONV_2D, so these models contain no PAD op.)
* ``mobilenetv1_025_96_gray``: Keras MobileNet (V1, alpha 0.25, no top) at
  96x96x1, the shape of TFLM's person-detection example; a plain chain
  where TFLM's greedy planner leaves gaps.
* ``kernels_5x5_7x7``: 7x7 stride-2 conv, 5x5 depthwise, 5x5 conv.
* ``stride2_odd`` / ``stride2_even``: stride-2 SAME conv + depthwise on a
  33x33 (odd) and a 32x32 (even) input.
* ``dilation2``: dilation 2 in a conv and a depthwise conv.
* ``dilation_space_to_batch``: dilated 3x3 conv (rate 2) and depthwise conv
  (rate 3) on a 45x45 input left as SPACE_TO_BATCH_ND -> conv -> BATCH_TO_SPACE_ND
  (bias and ReLU inside, odd size so the first has crops), as TFLite lowers
  atrous convolutions it cannot fold. Its TFLM outputs differ from
  BUILTIN_REF's: TFLM's SPACE_TO_BATCH_ND pads with an unset parameter (0 on
  a fresh arena), TFLite with the zero point.
* ``rescaling_normalization``: Keras Rescaling (scalar MUL and ADD) and
  Normalization (per-channel SUB and MUL) in the model, and a MUL of two
  feature maps (a gated block).
* ``valid_padding``: VALID conv / depthwise on a 37x37 input.
* ``residual_add``: inverted-residual block with an ADD.
* ``nonsquare``: 30x52 input (H != W, neither a multiple of 4).
* ``pooling_pad``: asymmetric ZeroPadding2D (PAD), MAX_POOL_2D, and two
  AVERAGE_POOL_2D (SAME stride 1, VALID stride 2).
* ``depth_multiplier``: depthwise conv with depth_multiplier 2.
* ``unet_small``: a small U-Net at 64x64: stride-2 encoder convs, a decoder
  of nearest-neighbour upsampling (RESIZE_NEAREST_NEIGHBOR) and Concatenate
  skip connections (CONCATENATION), then a stride-2 conv.
* ``mobilenetv3_small_like``: MobileNetV3-Small's front with every standalone
  activation a stage runs (HARD_SWISH, LEAKY_RELU, RELU6, RELU, LOGISTIC).
  TFLM's int8 RELU6 ignores the output quantization (a clamp on the input's),
  TFLite's does not: the two runtimes differ on this model, and tflm-patch
  follows TFLM.
* ``mobilenetv2_035_96_float``: ``mobilenetv2_035_96`` with float32 input
  and output (no ``inference_input_type``): QUANTIZE first, DEQUANTIZE last.
* ``cnn_uint8``: a camera CNN with uint8 input (QUANTIZE to int8 first).

Why the batch-norm recalibration: an untrained MobileNetV2 has BN moving
statistics mean 0 / variance 1, which do not match the real activation
statistics of its random weights.  Activations then blow up or collapse
through the ~50 layers, the calibrated int8 ranges become degenerate and the
int8 model outputs the same vector for every input.  So before conversion
each BatchNormalization gets momentum 0 and the model is run once in
training mode on a batch of structured images (smooth random fields,
gradients, Gaussian blobs, stripes): the moving mean/variance become the real
per-channel statistics, every layer is well scaled, and the int8 outputs vary
with the input.  The small models have no BN and keep their random init.

All models (MobileNets included) then get a "head calibration": the final
Dense is rescaled and biased so that its logits are random combinations of
*standardised* pooled features (see calibrate_head).  Without it the random
features' common component dominates, the logits hardly depend on the input
and e.g. stride2_even gives the same argmax for every image.  The
convolutional front -- the part tflm-patch rewrites -- is untouched by this.

After conversion the script checks, for every model: no float tensors and no
QUANTIZE/DEQUANTIZE (full int8; but for the float/uint8 I/O models), the
expected ops are present, the int8
outputs on 8 different inputs are not all identical and their argmax is not
always the same (TFLite BUILTIN_REF kernels), and the model loads and runs
in the TFLM Python interpreter (tflite-micro wheel) with the same result.
It prints the file size, input shape/quantization and op sequence.

Deterministic: fixed seeds (tf.keras.utils.set_random_seed, numpy
Generators) and TF op determinism; rerunning yields byte-identical files
with the same TF version.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

keras = tf.keras
L = keras.layers

try:  # imported as tests.models.make_models, or run as a script from this folder
    from .architectures import (cnn_uint8, depth_multiplier, dilation2, dilation_space_to_batch,  # noqa: E402
                                kernels_5x5_7x7, mobilenetv1_025_96_gray, mobilenetv2, mobilenetv2_full,
                                mobilenetv3_small_like, nonsquare, pooling_pad, rescaling_normalization,
                                residual_add, stride2, unet_small, valid_padding)
except ImportError:
    from architectures import (cnn_uint8, depth_multiplier, dilation2, dilation_space_to_batch,  # noqa: E402
                               kernels_5x5_7x7, mobilenetv1_025_96_gray, mobilenetv2, mobilenetv2_full,
                               mobilenetv3_small_like, nonsquare, pooling_pad, rescaling_normalization,
                               residual_add, stride2, unet_small, valid_padding)

N_REPR = 32        # representative-dataset images per model
N_CHECK = 8        # inputs for the output-variation check
N_BN = 64          # images for the BN recalibration and the head calibration

STAGE_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "MAX_POOL_2D", "AVERAGE_POOL_2D", "RELU", "RELU6",
             "LEAKY_RELU", "HARD_SWISH", "LOGISTIC", "MUL", "SUB", "CONCATENATION", "RESIZE_NEAREST_NEIGHBOR"}
FORBIDDEN_OPS = {"QUANTIZE", "DEQUANTIZE", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"}


# --------------------------------------------------------------------------
# structured input images
# --------------------------------------------------------------------------

def _resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of an (h0, w0, c) array to (h, w, c)."""
    return tf.image.resize(a[None].astype(np.float32), (h, w), method="bilinear").numpy()[0]


def structured_images(n: int, shape, seed: int) -> np.ndarray:
    """n images of shape (H, W, C) in [-1, 1]: smooth random fields, linear
    gradients, Gaussian blobs and stripes, mixed with random weights and
    random contrast.  Not uniform noise, so that calibration sees
    realistic, spatially correlated activations."""
    h, w, c = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    out = np.empty((n, h, w, c), np.float32)
    for i in range(n):
        g = int(rng.integers(2, 9))
        smooth = _resize(rng.uniform(-1, 1, (g, g, c)), h, w)
        grad = (rng.uniform(-1, 1, c) * xx[..., None] + rng.uniform(-1, 1, c) * yy[..., None]
                + rng.uniform(-0.5, 0.5, c))
        blobs = np.zeros((h, w, c), np.float32)
        for _ in range(int(rng.integers(1, 5))):
            cy, cx = rng.uniform(-1, 1, 2)
            s = rng.uniform(0.08, 0.5)
            amp = rng.uniform(-1.5, 1.5, c)
            blobs += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))[..., None]
        theta, freq, phase = rng.uniform(0, np.pi), rng.uniform(2, 12), rng.uniform(0, 2 * np.pi)
        stripes = np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)[..., None] \
            * rng.uniform(-1, 1, c)
        wts = rng.uniform(0, 1, 4) * (rng.uniform(size=4) < 0.75)
        wts[i % 4] += 0.5              # each image has a dominant kind
        img = wts[0] * smooth + wts[1] * grad + wts[2] * blobs + wts[3] * stripes
        img = img - img.min()
        img = img / max(float(img.max()), 1e-6)           # [0, 1]
        contrast = rng.uniform(0.5, 1.0)
        centre = rng.uniform(-(1 - contrast), 1 - contrast)
        out[i] = (img * 2 - 1) * contrast + centre          # inside [-1, 1]
    return np.clip(out, -1, 1)


# --------------------------------------------------------------------------
# Keras models
# --------------------------------------------------------------------------

def recalibrate_bn(model: keras.Model, images: np.ndarray) -> None:
    """Set BN moving statistics to the real batch statistics of `images`."""
    bns = [l for l in model.layers if isinstance(l, L.BatchNormalization)]
    before = float(np.mean([np.mean(np.abs(b.moving_mean.numpy())) for b in bns]))
    saved = [b.momentum for b in bns]
    for b in bns:
        b.momentum = 0.0
    model(tf.constant(images), training=True)
    for b, m in zip(bns, saved):
        b.momentum = m
    after = float(np.mean([np.mean(np.abs(b.moving_mean.numpy())) for b in bns]))
    assert after > before + 1e-3, "BN recalibration did not update the moving statistics"
    print(f"  BN recalibration: {len(bns)} BN layers, mean|moving_mean| {before:.3f} -> {after:.3f}")


def predict(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Float inference (one image at a time if the model has a fixed batch of 1)."""
    if model.input_shape[0] is None:
        return model(tf.constant(images), training=False).numpy()
    return np.concatenate([model(tf.constant(images[k:k + 1]), training=False).numpy()
                           for k in range(len(images))])


def calibrate_head(model: keras.Model, images: np.ndarray) -> None:
    """Standardise the final Dense on the features of `images`.

    With random weights the pooled features of different images share a large
    common component and differ only slightly, so the logits barely depend on
    the input (e.g. the same argmax for every image).  Dividing each input
    row of the Dense kernel by the feature std and setting the bias to cancel
    the feature mean makes every logit a random combination of standardised
    features: outputs span the int8 range and their argmax varies."""
    dense = model.layers[-1]
    assert isinstance(dense, L.Dense)
    feats = predict(keras.Model(model.inputs, dense.input), images)
    mu, sd = feats.mean(axis=0), feats.std(axis=0) + 1e-3
    kernel, _ = dense.get_weights()
    kernel = (kernel / sd[:, None]).astype(np.float32)
    dense.set_weights([kernel, (-mu @ kernel).astype(np.float32)])
    logits = (feats - mu) @ kernel
    print(f"  head calibration: {feats.shape[1]} features, logit std "
          f"{logits.std(axis=0).min():.2f}..{logits.std(axis=0).max():.2f}")


MODELS = {
    "mobilenetv2_035_96": (mobilenetv2(96), 1, True,
                           {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "ADD": 1}),
    "mobilenetv2_035_144": (mobilenetv2(144), 2, True,
                            {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "ADD": 1}),
    "mobilenetv1_025_96_gray": (mobilenetv1_025_96_gray, 12, True, {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1}),
    # 3.5 MB: not shipped; benchmarks/bench_memory.py makes it on first use (--only mobilenetv2_100_224).
    "mobilenetv2_100_224": (mobilenetv2_full(224), 13, True,
                            {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "ADD": 1}),
    "kernels_5x5_7x7": (kernels_5x5_7x7, 3, False, {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 1}),
    "stride2_odd": (lambda: stride2(33), 4, False, {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 1}),
    "stride2_even": (lambda: stride2(32), 5, False, {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 1}),
    "dilation2": (dilation2, 6, False, {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 1}),
    "dilation_space_to_batch": (dilation_space_to_batch, 14, False,
                                {"SPACE_TO_BATCH_ND": 2, "BATCH_TO_SPACE_ND": 2, "CONV_2D": 3,
                                 "DEPTHWISE_CONV_2D": 1}),
    "rescaling_normalization": (rescaling_normalization, 15, False,
                                {"MUL": 3, "ADD": 1, "SUB": 1, "CONV_2D": 3, "DEPTHWISE_CONV_2D": 1}),
    "valid_padding": (valid_padding, 7, False, {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 1}),
    "residual_add": (residual_add, 8, False, {"CONV_2D": 4, "DEPTHWISE_CONV_2D": 1, "ADD": 1}),
    "nonsquare": (nonsquare, 9, False, {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 1}),
    "pooling_pad": (pooling_pad, 10, False,
                    {"PAD": 1, "CONV_2D": 3, "MAX_POOL_2D": 1, "AVERAGE_POOL_2D": 2}),
    "depth_multiplier": (depth_multiplier, 11, False, {"DEPTHWISE_CONV_2D": 1, "CONV_2D": 1}),
    "unet_small": (unet_small, 14, False, {"CONV_2D": 6, "CONCATENATION": 2, "RESIZE_NEAREST_NEIGHBOR": 2}),
    "mobilenetv3_small_like": (mobilenetv3_small_like, 14, True,
                               {"HARD_SWISH": 3, "LEAKY_RELU": 2, "RELU6": 1, "RELU": 1, "LOGISTIC": 1}),
    # Float and uint8 I/O around the int8 body: QUANTIZE first (DEQUANTIZE last for float).
    "mobilenetv2_035_96_float": (mobilenetv2(96), 15, True, {"QUANTIZE": 1, "ADD": 1, "DEQUANTIZE": 1}),
    "cnn_uint8": (cnn_uint8, 16, False, {"QUANTIZE": 1, "CONV_2D": 3}),
}
# Models whose input/output are not int8: name -> (input type, output type); None = float32.
IO_TYPES = {"mobilenetv2_035_96_float": (None, None), "cnn_uint8": (tf.uint8, tf.int8)}


# --------------------------------------------------------------------------
# conversion and checks
# --------------------------------------------------------------------------

def convert(model: keras.Model, repr_images: np.ndarray, io_types=(tf.int8, tf.int8)) -> bytes:
    def representative_dataset():
        for img in repr_images:
            yield [img[None].astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_dataset
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io_types[0] is not None:
        conv.inference_input_type = io_types[0]
    if io_types[1] is not None:
        conv.inference_output_type = io_types[1]
    with contextlib.redirect_stdout(io.StringIO()):   # Keras export chatter
        return conv.convert()


def describe(buf: bytes):
    """(input shape, input (scale, zp), list of op names, list of op descriptions, tensor types)."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as sp

    names = {v: k for k, v in vars(sp.BuiltinOperator).items() if not k.startswith("_")}
    pad_names = {v: k for k, v in vars(sp.Padding).items() if not k.startswith("_")}
    act_names = {v: k for k, v in vars(sp.ActivationFunctionType).items() if not k.startswith("_")}
    m = sp.ModelT.InitFromPackedBuf(buf, 0)
    assert len(m.subgraphs) == 1, "expected a single subgraph"
    sg = m.subgraphs[0]
    inp = sg.tensors[sg.inputs[0]]
    ops, descs = [], []
    for op in sg.operators:
        oc = m.operatorCodes[op.opcodeIndex]
        name = names[max(oc.builtinCode, oc.deprecatedBuiltinCode)]
        ops.append(name)
        o = op.builtinOptions
        d = name
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            k = sg.tensors[op.inputs[1]].shape  # conv: [O,kh,kw,I]; dw: [1,kh,kw,C*M]
            extra = f" dm{o.depthMultiplier}" if name == "DEPTHWISE_CONV_2D" and o.depthMultiplier != 1 else ""
            dil = f" d{o.dilationHFactor}x{o.dilationWFactor}" if (o.dilationHFactor, o.dilationWFactor) != (1, 1) else ""
            d = (f"{name}({k[1]}x{k[2]} s{o.strideH}x{o.strideW}{dil}{extra} "
                 f"{pad_names[o.padding]} {act_names[o.fusedActivationFunction]})")
        elif name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            d = f"{name}({o.filterHeight}x{o.filterWidth} s{o.strideH}x{o.strideW} {pad_names[o.padding]})"
        elif name == "PAD":
            pads = sg.tensors[op.inputs[1]]
            pv = np.frombuffer(bytes(m.buffers[pads.buffer].data), np.int32).reshape(-1, 2).tolist()
            d = f"PAD({pv[1:3]})"
        out_shape = [int(v) for v in sg.tensors[op.outputs[0]].shape]
        descs.append(f"{d}->{out_shape[1:] if len(out_shape) == 4 else out_shape}")
    types = {sg.tensors[i].type for i in range(len(sg.tensors))}
    q = inp.quantization
    quant = (float(q.scale[0]), int(q.zeroPoint[0])) if q is not None and q.scale is not None else (1.0, 0)
    return [int(v) for v in inp.shape], quant, ops, descs, types


def quantize_input(x: np.ndarray, scale: float, zp: int, dtype=np.int8) -> np.ndarray:
    """The model's input for image x: quantized to int8 / uint8, or x itself for a float input."""
    if dtype == np.float32:
        return x.astype(np.float32)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zp, info.min, info.max).astype(dtype)


def run_tflite_ref(buf: bytes, xs: np.ndarray) -> np.ndarray:
    it = tf.lite.Interpreter(model_content=buf,
                             experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    ind, outd = it.get_input_details()[0], it.get_output_details()[0]
    scale, zp = ind["quantization"]
    res = []
    for x in xs:
        it.set_tensor(ind["index"], quantize_input(x[None], scale, zp, ind["dtype"]))
        it.invoke()
        res.append(it.get_tensor(outd["index"])[0].copy())
    return np.stack(res)


def run_tflm(buf: bytes, xs: np.ndarray, scale: float, zp: int, dtype=np.int8) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime
    it = runtime.Interpreter.from_bytes(buf, arena_size=max(10 * len(buf), 4 << 20))
    res = []
    for x in xs:
        it.set_input(quantize_input(x[None], scale, zp, dtype), 0)
        it.invoke()
        res.append(np.array(it.get_output(0))[0].copy())
    return np.stack(res)


def make(name: str, out_dir: str) -> dict:
    builder, seed, recal, required = MODELS[name]
    t0 = time.time()
    keras.backend.clear_session()        # reset layer-name counters: tensor names in
    tf.keras.utils.set_random_seed(seed)  # the file must not depend on --only
    model = builder()
    shape = tuple(model.input_shape[1:])
    print(f"[{name}] input {shape}, {model.count_params()} params")
    calib_images = structured_images(N_BN, shape, 1000 + seed)
    if recal:
        recalibrate_bn(model, calib_images)
    calibrate_head(model, calib_images)
    repr_images = structured_images(N_REPR, shape, 2000 + seed)
    check_images = structured_images(N_CHECK, shape, 3000 + seed)

    io_types = IO_TYPES.get(name, (tf.int8, tf.int8))
    in_dtype = {None: np.float32, tf.uint8: np.uint8, tf.int8: np.int8}[io_types[0]]
    buf = convert(model, repr_images, io_types)
    path = os.path.join(out_dir, name + ".tflite")
    with open(path, "wb") as f:
        f.write(buf)

    in_shape, (scale, zp), ops, descs, types = describe(buf)
    print(f"  wrote {path}: {len(buf)} bytes, sha256 {hashlib.sha256(buf).hexdigest()[:16]}")
    print(f"  input {in_shape} {in_dtype.__name__} scale={scale:.6g} zp={zp}")
    print(f"  ops ({len(ops)}): {' '.join(ops)}")
    for d in descs:
        print(f"    {d}")

    # structural checks
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as sp
    if name not in IO_TYPES:
        assert sp.TensorType.FLOAT32 not in types, f"{name}: float32 tensors in the model"
    io_ops = {"QUANTIZE", "DEQUANTIZE"} if name in IO_TYPES else set()
    bad = (FORBIDDEN_OPS - set(required)).intersection(ops) - io_ops
    assert not bad, f"{name}: unexpected ops {bad}"
    for op, cnt in required.items():
        assert ops.count(op) >= cnt, f"{name}: expected >= {cnt} {op}, got {ops.count(op)}"
    assert ops[0] in STAGE_OPS | {"QUANTIZE"}, f"{name}: first op {ops[0]} is not a stage op"
    assert ops[-1] not in STAGE_OPS, f"{name}: last op {ops[-1]} is a stage op (no tail)"

    # output variation (TFLite reference kernels)
    ref = run_tflite_ref(buf, check_images)
    distinct = len({r.tobytes() for r in ref})
    argmax = ref.argmax(axis=1)
    float_argmax = predict(model, check_images).argmax(axis=1)
    print(f"  int8 outputs (BUILTIN_REF): {distinct}/{N_CHECK} distinct vectors, "
          f"argmax {argmax.tolist()}, float argmax {float_argmax.tolist()} "
          f"({int((argmax == float_argmax).sum())}/{N_CHECK} agree), "
          f"output range [{ref.min()}, {ref.max()}]")
    assert distinct > 1, f"{name}: int8 outputs identical for all inputs"
    assert len(set(argmax.tolist())) > 1, f"{name}: argmax is the same for all inputs"

    # TFLM
    micro = run_tflm(buf, check_images, scale, zp, in_dtype)
    diff = float(np.abs(micro.astype(np.float64) - ref.astype(np.float64)).max())
    print(f"  TFLM runtime: ok, max |TFLM - BUILTIN_REF| = {diff}")
    print(f"  ({time.time() - t0:.1f}s)")
    return {"name": name, "bytes": len(buf), "ops": ops, "distinct": distinct,
            "argmax": argmax.tolist(), "tflm_diff": diff}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                    help="output directory (default: the folder of this script)")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help=f"only these models (of: {', '.join(MODELS)})")
    args = ap.parse_args(argv)
    names = list(MODELS)
    if args.only:
        names = [n[:-7] if n.endswith(".tflite") else n for n in args.only]
        unknown = [n for n in names if n not in MODELS]
        if unknown:
            ap.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    os.makedirs(args.out, exist_ok=True)
    warnings.filterwarnings("ignore", category=UserWarning)  # tf.lite.Interpreter deprecation etc.
    tf.config.experimental.enable_op_determinism()
    t0 = time.time()
    results = [make(n, args.out) for n in names]
    print(f"\nsummary ({time.time() - t0:.1f}s):")
    for r in results:
        print(f"  {r['name'] + '.tflite':28s} {r['bytes']:8d} B  distinct {r['distinct']}/{N_CHECK}  "
              f"argmax {r['argmax']}  TFLM diff {r['tflm_diff']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""From Keras training to a smaller model on the device, on real data.

Trains a MobileNetV2 (alpha 0.35, 96x96 grayscale) on Fashion-MNIST, converts
it to a full-integer int8 .tflite, patches its memory-heavy first stage with
tflm-patch, proves the patched model gives the same predictions (bit-identical
logits) on the held-out test images, exports the C array and writes the memory
report. Everything goes to --out (default out/):

  model.keras               the trained Keras model
  model_int8.tflite         full-integer int8 model (int8 input and output)
  model_patched.tflite      the same model with PATCH_STAGE (run it with micro_ops/)
  model_data.cc / .h        the patched model as a C array for the firmware
  report/                   memory.png, report.md, report.html (arena per op, before/after)
  predictions.npz           test labels, int8 inputs, int8 logits of both models
  verify_inputs.npy         the real test inputs `tflm-patch verify` was run on
  summary.json              the numbers printed at the end

Data: Debian's dataset-fashion-mnist package (`apt-get install dataset-fashion-mnist`)
installs the original files under /usr/share/datasets/fashion-mnist/; --data DIR
(or $FASHION_MNIST_DIR) points at any folder with the four *-idx*-ubyte.gz files.

  python examples/train_and_patch.py              # a few minutes on 2 CPU cores
  python examples/train_and_patch.py --quick      # seconds-scale smoke test (also TFLM_PATCH_QUICK=1)

--quick trains a truncated MobileNetV2 (its first 6 blocks) at 64x64 for one
short epoch on a few hundred images: it exercises every step, its accuracy
means nothing.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # TensorFlow's C++ info logs

# Note: TensorFlow is imported inside functions only. tflm-patch runs TFLM in a
# worker process started with "spawn", which re-imports this file; keep the top
# level light.

DEFAULT_DATA_DIRS = ("/usr/share/datasets/fashion-mnist", "~/.keras/datasets/fashion-mnist")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")

FULL = dict(size=96, train_images=8000, epochs=3, batch_size=64, test_images=1000, blocks=None,
            sram_budget="96KiB", calib_images=1024)
QUICK = dict(size=64, train_images=384, epochs=1, batch_size=32, test_images=64, blocks=6,
             sram_budget="48KiB", calib_images=128)


class Failure(Exception):
    """A step failed; the message says why (printed as one line)."""


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------

def find_data_dir(explicit: str | None) -> str:
    candidates = [explicit] if explicit else [os.environ.get("FASHION_MNIST_DIR")] + list(DEFAULT_DATA_DIRS)
    for d in candidates:
        if d and all(os.path.isfile(os.path.join(os.path.expanduser(d), f)) for pair in FILES.values() for f in pair):
            return os.path.expanduser(d)
    where = explicit or ", ".join(DEFAULT_DATA_DIRS)
    raise Failure(f"Fashion-MNIST not found in {where}: install it with `sudo apt-get install -y "
                  "dataset-fashion-mnist` (Debian/Ubuntu), or pass --data DIR with "
                  + ", ".join(f for pair in FILES.values() for f in pair))


def _read_idx(path: str, count: int | None, magic: int) -> np.ndarray:
    """The first `count` items of a gzipped idx file; decompresses only what it needs."""
    with gzip.open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or struct.unpack(">I", head)[0] != magic:
            raise Failure(f"{path}: not an idx file of the expected kind")
        ndim = magic & 0xFF
        dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
        n = dims[0] if count is None else min(dims[0], count)
        size = int(np.prod(dims[1:])) if ndim > 1 else 1
        raw = f.read(n * size)
    if len(raw) != n * size:
        raise Failure(f"{path}: truncated")
    return np.frombuffer(raw, np.uint8).reshape((n,) + tuple(dims[1:]))


def load_split(data_dir: str, split: str, count: int | None) -> tuple:
    images, labels = FILES[split]
    x = _read_idx(os.path.join(data_dir, images), count, 2051)
    y = _read_idx(os.path.join(data_dir, labels), count, 2049).astype(np.int64)
    return x, y


def preprocess(images_uint8, size: int):
    """28x28 uint8 -> size x size x 1 float in [-1, 1): bilinear upsampling, (p - 128) / 128.

    On the device the int8 input is then (about) the 8-bit pixel minus 128."""
    import tensorflow as tf
    x = tf.image.resize(tf.cast(images_uint8, tf.float32)[..., None], (size, size), method="bilinear")
    return (x - 128.0) / 128.0


def preprocess_np(images_uint8: np.ndarray, size: int, chunk: int = 500) -> np.ndarray:
    return np.concatenate([preprocess(images_uint8[i:i + chunk], size).numpy()
                           for i in range(0, len(images_uint8), chunk)])


# --------------------------------------------------------------------------
# model and training
# --------------------------------------------------------------------------

def build_model(size: int, blocks: int | None, classes: int = 10, seed: int = 0):
    """Keras' MobileNetV2, alpha 0.35, one input channel, logits out.

    blocks=N keeps only the first N inverted-residual blocks (--quick). The
    BatchNorm momentum is lowered from MobileNetV2's 0.999 to 0.9: with a few
    hundred training steps the moving statistics must keep up with the weights.
    """
    import tensorflow as tf
    keras = tf.keras
    keras.utils.set_random_seed(seed)
    base = keras.applications.MobileNetV2(input_shape=(size, size, 1), alpha=0.35, include_top=False,
                                          weights=None)
    if blocks is not None:
        last = [layer.name for layer in base.layers if layer.name.startswith(f"block_{blocks - 1}_")][-1]
        features = base.get_layer(last).output
    else:
        features = base.output
    x = keras.layers.GlobalAveragePooling2D()(features)
    logits = keras.layers.Dense(classes, name="logits")(x)
    model = keras.Model(base.input, logits, name=f"mobilenetv2_035_{size}" + (f"_{blocks}blocks" if blocks else ""))
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


def train(model, x_train, y_train, cfg, seed: int):
    import tensorflow as tf
    keras = tf.keras
    size, batch = cfg["size"], cfg["batch_size"]
    ds = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
          .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
          .batch(batch)
          .map(lambda x, y: (tf.image.random_flip_left_right(preprocess(x, size), seed=seed), y),
               num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(2))
    steps = cfg["epochs"] * ((len(x_train) + batch - 1) // batch)
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, steps))
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=False)   # XLA compiles for a minute on a CPU
    optimizer.build(model.trainable_variables)               # variables now: one trace, not two
    verbose = 1 if sys.stdout.isatty() else 2                 # the bar on a terminal, one line per epoch in logs
    model.fit(ds, epochs=cfg["epochs"], verbose=verbose)


def float_accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    logits = model.predict(x, batch_size=200, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == y))


# --------------------------------------------------------------------------
# the tflm-patch steps
# --------------------------------------------------------------------------

def tool(*args) -> None:
    """Run a tflm-patch command in this process, echoing it like a shell would."""
    from tflm_patch import cli
    print(f"$ tflm-patch {' '.join(str(a) for a in args)}", flush=True)
    rc = cli.main([str(a) for a in args])
    sys.stdout.flush()
    if rc != 0:
        raise Failure(f"tflm-patch {args[0]} failed (exit code {rc})")


def total_macs(path: str) -> int:
    from tflm_patch.converter import analysis, model_io
    from tflm_patch.converter.graph import build_graph
    return analysis.analyze(build_graph(model_io.parse_model(model_io.read_model_bytes(path), path))).total_macs


def print_front(front, budget: int, chosen) -> None:
    print(f"{'':2}{'MAC limit':>9} {'arena after':>13} {'smaller':>8} {'stage MACs':>11}  fits {budget // 1024} KiB  stages")
    for p in front:
        mark = "->" if p == chosen else ""
        print(f"{mark:2}{p.max_mac_overhead:>9.2f} {p.arena_after:>11,} B {p.reduction:>7.2f}x "
              f"{p.mac_overhead:>10.3f}x  {'yes' if p.arena_after <= budget else 'no':<{8 + len(str(budget // 1024))}} {p.stages}")


def kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def config(args) -> tuple:
    """(settings, quick?) from the command line and $TFLM_PATCH_QUICK."""
    quick = args.quick or os.environ.get("TFLM_PATCH_QUICK", "").strip().lower() in ("1", "true", "yes", "on")
    cfg = dict(QUICK if quick else FULL)
    for key in ("size", "train_images", "epochs", "test_images", "sram_budget", "blocks"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    return cfg, quick


def run(args) -> dict:
    t_start = time.time()
    cfg, quick = config(args)
    data_dir = find_data_dir(args.data)
    from tflm_patch import training
    from tflm_patch.converter.errors import NoGainError
    from tflm_patch.units import parse_size
    budget = parse_size(cfg["sram_budget"])
    out = args.out
    os.makedirs(out, exist_ok=True)
    path = {k: os.path.join(out, v) for k, v in dict(
        keras="model.keras", int8="model_int8.tflite", patched="model_patched.tflite", cc="model_data.cc",
        report="report", npz="predictions.npz", verify="verify_inputs.npy", summary="summary.json").items()}
    mode = "QUICK smoke test (accuracy not meaningful)" if quick else "full run"
    print(f"== tflm-patch: train, convert, patch, verify, export, report ({mode}) ==")

    # 1. data
    x_train, y_train = load_split(data_dir, "train", cfg["train_images"])
    x_test, y_test = load_split(data_dir, "test", None if cfg["test_images"] == 0 else cfg["test_images"])
    size = cfg["size"]
    print(f"[1/6] Fashion-MNIST from {data_dir}: {len(x_train)} training images, the first {len(x_test)} "
          f"of the 10000 held-out test images; upsampled 28x28 -> {size}x{size}x1", flush=True)

    import warnings
    warnings.filterwarnings("ignore", message=".*shuffle=True.*")            # our tf.data is shuffled
    import tensorflow as tf  # noqa: F401  (after the data check: a missing dataset fails fast)

    # 2. train
    t0 = time.time()
    model = build_model(size, cfg["blocks"], seed=args.seed)
    what = f"first {cfg['blocks']} blocks of " if cfg["blocks"] else ""
    print(f"[2/6] Training {what}MobileNetV2 alpha 0.35 ({model.count_params():,} parameters), "
          f"{cfg['epochs']} epoch(s) of {len(x_train)} images, batch {cfg['batch_size']}", flush=True)
    train(model, x_train, y_train, cfg, args.seed)
    calib = preprocess_np(x_train[:cfg["calib_images"]], size)
    n_bn = training.recalibrate_batchnorm(model, calib)
    x_test_f = preprocess_np(x_test, size)
    acc_float = float_accuracy(model, x_test_f, y_test)
    model.save(path["keras"])
    t_train = time.time() - t0
    print(f"      BatchNorm statistics recalibrated on {len(calib)} training images ({n_bn} layers); "
          f"float accuracy {100 * acc_float:.1f}% on {len(x_test)} test images ({t_train:.0f} s)", flush=True)

    # 3. int8
    t0 = time.time()
    representative = calib[:200]
    int8 = training.to_int8_tflite(model, representative)    # also checks the outputs are not constant
    with open(path["int8"], "wb") as f:
        f.write(int8)
    x_test_q = training.quantize_inputs(int8, x_test_f)
    np.save(path["verify"], x_test_q[:8, None])              # a stack of [1, H, W, 1] inputs
    print(f"[3/6] Full-integer int8 model: {path['int8']} ({len(int8):,} bytes), calibrated on "
          f"{len(representative)} training images ({time.time() - t0:.0f} s)", flush=True)

    # 4. plan and patch
    t0 = time.time()
    front = training.pareto_plans(int8)
    if not front:
        raise Failure("no patch plan lowers this model's peak memory")
    try:
        chosen = training.choose_plan(front, sram_budget=budget, max_mac_overhead=args.max_mac_overhead)
    except NoGainError as exc:  # the budget is already met, or no plan meets it: take the smallest arena
        print(f"      {exc}; taking the smallest arena within the MAC limit instead", flush=True)
        chosen = training.choose_plan(front, max_mac_overhead=args.max_mac_overhead)
    if chosen is None:
        raise Failure(f"every plan recomputes more than --max-mac-overhead {args.max_mac_overhead}")
    before = front[0].arena_before
    print(f"[4/6] Patch plans on the Pareto front (predicted TFLM arena vs stage MACs); the original needs "
          f"{before:,} B ({kib(before)}), SRAM budget {kib(budget)}:")
    print_front(front, budget, chosen)
    rule = ("the cheapest plan that fits the budget" if chosen.arena_after <= budget
            else "the smallest arena within the MAC limit (none fits the budget)")
    print(f"      chosen: {rule}, --max-mac-overhead {args.max_mac_overhead}", flush=True)
    tool("convert", path["int8"], "-o", path["patched"], *chosen.cli_args())
    tool("verify", path["int8"], path["patched"], "--input-npy", path["verify"])
    t_patch = time.time() - t0

    # 5. accuracy of both int8 models on the test images, in TFLM
    t0 = time.time()
    print(f"[5/6] Running both int8 models on the {len(x_test)} test images (original: TFLM; patched: "
          f"PATCH_STAGE in the {args.engine} executor + the rest in TFLM) ...", flush=True)
    with open(path["patched"], "rb") as f:
        patched = f.read()
    logits_int8, logits_patched = training.predict_both(int8, patched, x_test_q, engine=args.engine)
    pred_int8, pred_patched = logits_int8.argmax(axis=1), logits_patched.argmax(axis=1)
    acc_int8 = float(np.mean(pred_int8 == y_test))
    acc_patched = float(np.mean(pred_patched == y_test))
    same_logits = int(np.sum(np.all(logits_int8 == logits_patched, axis=1)))
    same_pred = int(np.sum(pred_int8 == pred_patched))
    np.savez_compressed(path["npz"], labels=y_test, inputs_int8=x_test_q, logits_int8=logits_int8,
                        logits_patched=logits_patched)
    print(f"      int8 accuracy: original {100 * acc_int8:.1f}%, patched {100 * acc_patched:.1f}%; "
          f"identical logits on {same_logits}/{len(x_test)} images ({time.time() - t0:.0f} s)", flush=True)
    if same_logits != len(x_test):
        raise Failure(f"the patched model differs from the original on {len(x_test) - same_logits} test images")

    # 6. C array and memory report
    print("[6/6] Firmware array and memory report", flush=True)
    tool("export-c", path["patched"], "-o", path["cc"])
    tool("report", path["int8"], path["patched"], "-o", path["report"], "--sram-budget", cfg["sram_budget"])

    macs_before, macs_after = total_macs(path["int8"]), total_macs(path["patched"])
    after = chosen.arena_after
    summary = dict(
        mode="quick" if quick else "full", data_dir=data_dir, image_size=size, train_images=len(x_train),
        epochs=cfg["epochs"], test_images=len(x_test), float_accuracy=acc_float, int8_accuracy=acc_int8,
        patched_accuracy=acc_patched, identical_logits=same_logits, identical_predictions=same_pred,
        arena_before=before, arena_after=after, sram_budget=budget, stages=chosen.stages, grid=list(chosen.grid),
        stage_ops=chosen.stage_ops, stage_mac_overhead=chosen.mac_overhead, model_macs_before=macs_before,
        model_macs_after=macs_after, engine=args.engine, seconds=round(time.time() - t_start, 1),
        seconds_training=round(t_train, 1), seconds_patching=round(t_patch, 1),
        files={k: v for k, v in path.items()})
    with open(path["summary"], "w") as f:
        json.dump(summary, f, indent=2)

    fits = lambda n: "fits" if n <= budget else "does NOT fit"  # noqa: E731
    print()
    print(f"== Summary ({mode}) ==")
    print(f"Fashion-MNIST {size}x{size}x1, MobileNetV2-0.35{' (truncated)' if cfg['blocks'] else ''}, "
          f"{len(x_train)} training images x {cfg['epochs']} epoch(s)")
    print(f"accuracy on {len(x_test)} test images   float {100 * acc_float:.1f}%   int8 {100 * acc_int8:.1f}%   "
          f"int8 patched {100 * acc_patched:.1f}%   (same logits on {same_logits}/{len(x_test)})")
    print(f"{'':34}{'original':>14}{'patched':>14}")
    print(f"{'TFLM arena (planned, bytes)':<34}{before:>14,}{after:>14,}   {before / after:.2f}x smaller")
    print(f"{'':34}{kib(before):>14}{kib(after):>14}")
    print(f"{'SRAM budget ' + kib(budget):<34}{fits(before):>14}{fits(after):>14}")
    print(f"{'MACs, whole model':<34}{macs_before:>14,}{macs_after:>14,}   "
          f"+{100 * (macs_after / macs_before - 1):.1f}%")
    print(f"plan: {chosen.stages} ({chosen.stage_ops}) in PATCH_STAGE ops, stage MACs x{chosen.mac_overhead:.3f}")
    print(f"files in {out}/: model_int8.tflite, model_patched.tflite, model_data.cc/.h, "
          f"report/memory.png, report/report.md, report/report.html, summary.json")
    print(f"total time {summary['seconds']:.0f} s")
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("--out", default="out", help="output folder (default out/)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test in well under a minute (also TFLM_PATCH_QUICK=1)")
    p.add_argument("--data", help="folder with the Fashion-MNIST idx .gz files (default: Debian's package)")
    p.add_argument("--size", type=int, help=f"input resolution (default {FULL['size']}, quick {QUICK['size']})")
    p.add_argument("--train-images", type=int, help=f"training images (default {FULL['train_images']})")
    p.add_argument("--epochs", type=int, help=f"epochs (default {FULL['epochs']})")
    p.add_argument("--blocks", type=int,
                   help="keep only the first N inverted-residual blocks (a smaller model, e.g. for the Arduino example)")
    p.add_argument("--test-images", type=int,
                   help=f"test images to evaluate, 0 for all 10000 (default {FULL['test_images']})")
    p.add_argument("--sram-budget", help=f"SRAM budget for the plan and the report (default {FULL['sram_budget']}, "
                                         f"quick {QUICK['sram_budget']})")
    p.add_argument("--max-mac-overhead", type=float, default=1.05,
                   help="largest stage MAC ratio patched/original to accept (default 1.05)")
    p.add_argument("--engine", choices=("python", "cpp"), default="python",
                   help="PATCH_STAGE executor for the test-set comparison (default: python reference)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from tflm_patch.converter.errors import TflmPatchError
    try:
        run(args)
        return 0
    except (Failure, TflmPatchError, ValueError) as exc:
        print(f"train_and_patch: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)


if __name__ == "__main__":
    sys.exit(main())

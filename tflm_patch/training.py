"""The training side: from a trained Keras model to an int8 model that tflm-patch can patch.

* :func:`to_int8_tflite` converts a Keras model to a full-integer int8
  ``.tflite`` (int8 input and output, every op int8) with a representative
  dataset taken from your own images, and by default checks that the result is
  not a constant function (see below).
* :func:`recalibrate_batchnorm` sets the BatchNorm moving statistics to the
  real statistics of your data ("precise BN"); do it after a short training
  run, before converting.
* :func:`check_not_constant` runs the int8 model in TFLM on different inputs
  and raises :class:`ConstantOutputError` if every output is the same. An
  untrained model, or one trained briefly with BatchNorm moving statistics
  that do not match the data, quantizes to such a model: the calibrated
  ranges are degenerate and the int8 network ignores its input.
* :func:`pareto_plans` lists the patch plans on the Pareto front of predicted
  arena (peak memory) against MAC overhead, so you can choose one;
  :func:`choose_plan` picks one like ``tflm-patch convert`` does and
  :func:`patch_tflite` applies it.
* :func:`predict_int8` runs an int8 model in TFLM (the tflite-micro wheel's
  reference kernels, the numbers the device computes); :func:`predict_patched`
  runs a patched model: ``PATCH_STAGE`` in tflm-patch's executor, the rest in
  TFLM. Their outputs are equal byte for byte. :func:`predict_both` runs the
  two side by side.

TensorFlow is imported only by the functions that need it
(``pip install 'tflm-patch[train]'``); the rest of tflm-patch works without it.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from .converter import model_io, oracle, pipeline, planner, reference
from .converter.plan_validation import stage_plans
from .converter import verify as verify_mod
from .converter.errors import ModelError, NoGainError, TflmPatchError
from .converter.model_file import ModelFile
from .converter.graph import build_graph

__all__ = [
    "TrainingDependencyError", "ConstantOutputError", "PlanChoice",
    "to_int8_tflite", "recalibrate_batchnorm", "check_not_constant", "quantize_inputs",
    "predict_int8", "predict_patched", "predict_both", "pareto_plans", "choose_plan", "patch_tflite",
]


class TrainingDependencyError(TflmPatchError):
    """TensorFlow is needed for this function and is not installed."""


class ConstantOutputError(TflmPatchError):
    """The int8 model gives the same output whatever its input."""


def _tf():
    """TensorFlow, imported on first use."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise TrainingDependencyError(
            f"TensorFlow is not installed ({exc}); the training helpers need it: "
            "pip install 'tflm-patch[train]'") from None
    return tf


# --------------------------------------------------------------------------
# Keras -> int8 .tflite
# --------------------------------------------------------------------------

def recalibrate_batchnorm(keras_model, images, batch_size: int = 128, max_images: int = 1024) -> int:
    """Set every BatchNormalization's moving mean/variance to the statistics of `images`.

    Runs the model in training mode on up to `max_images` images, batch by
    batch, with each BN's momentum set so that its moving statistics become the
    running average over the batches (then the momenta are restored; the
    weights are not changed). Use the training images, preprocessed as for
    training. Returns the number of BN layers updated.

    Why: Keras' BatchNormalization momentum is 0.99 (0.999 in
    keras.applications.MobileNetV2), so after a short training run the moving
    statistics lag far behind the weights; inference then sees wrongly scaled
    activations, the accuracy drops and the int8 calibration can collapse to a
    constant model.
    """
    tf = _tf()
    bns = [layer for layer in _all_layers(keras_model) if isinstance(layer, tf.keras.layers.BatchNormalization)]
    if not bns:
        return 0
    images = np.asarray(images, dtype=np.float32)[:max_images]
    if len(images) < 2:
        raise ModelError("recalibrate_batchnorm needs at least 2 images")
    saved = [b.momentum for b in bns]
    try:
        for k, start in enumerate(range(0, len(images), batch_size)):
            for b in bns:
                b.momentum = k / (k + 1.0)     # running mean over the batches seen so far
            keras_model(tf.constant(images[start:start + batch_size]), training=True)
    finally:
        for b, m in zip(bns, saved):
            b.momentum = m
    return len(bns)


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def to_int8_tflite(keras_model, representative_images, *, max_samples: int = 200, check: bool = True,
                   check_samples: int = 8) -> bytes:
    """Convert a Keras model to a full-integer int8 .tflite and return its bytes.

    `representative_images`: real inputs, preprocessed exactly as the model
    sees them (float, shape (N, H, W, C)); the converter calibrates every
    activation range on up to `max_samples` of them. Use images from your
    training data, not random noise: the ranges must match what the device will
    see.

    The model gets int8 input and output tensors and only int8 builtin ops
    (``Optimize.DEFAULT``, ``TFLITE_BUILTINS_INT8``, ``inference_input_type``
    and ``inference_output_type`` int8): what TFLM and tflm-patch need. Feed it
    ``quantize_inputs(model_bytes, images)``.

    With `check` (default), the int8 model is run in TFLM on `check_samples`
    different representative images and :class:`ConstantOutputError` is raised
    if it ignores its input (see :func:`check_not_constant`).
    """
    tf = _tf()
    images = np.asarray(representative_images, dtype=np.float32)
    if images.ndim < 2 or len(images) == 0:
        raise ModelError("representative_images must be a non-empty array of images, shape (N, H, W, C)")
    samples = images[:max_samples]

    def representative_dataset():
        for img in samples:
            yield [img[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    failure = None
    # Keras' export chatter (Python) and the converter's logs (C++, on fds 1 and 2) are not for the user.
    with oracle.captured_c_output() as log, contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # int8 input without given input statistics is what we ask for: the converter warns anyway.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        try:
            data = bytes(converter.convert())
        except Exception as exc:
            failure = exc
    if failure is not None:
        lines = [line for line in log["text"].splitlines() if "error" in line.lower()]
        first = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
        detail = f" ({lines[-1].strip()})" if lines else ""
        raise ModelError(f"TensorFlow Lite could not convert the model to full-integer int8: {first}{detail}")
    graph = build_graph(model_io.parse_model(data, "converted model"))
    for t in list(graph.inputs) + list(graph.outputs):
        if graph.tensors[t].type_name != "INT8":
            raise ModelError(f"the converted model's tensor {graph.tensors[t].name!r} is "
                             f"{graph.tensors[t].type_name}, not INT8")
    if check:
        distinct = _distinct(images, check_samples)
        if len(distinct) >= 2:
            check_not_constant(data, quantize_inputs(data, distinct))
    return data


def _distinct(images: np.ndarray, count: int) -> np.ndarray:
    picked, seen = [], set()
    for img in images:
        key = img.tobytes()
        if key not in seen:
            seen.add(key)
            picked.append(img)
            if len(picked) == count:
                break
    return np.stack(picked) if picked else images[:0]


# --------------------------------------------------------------------------
# running int8 models (TFLM)
# --------------------------------------------------------------------------

def _io(graph, what: str):
    ins, outs = graph.inputs, graph.outputs
    if len(ins) != 1 or len(outs) != 1:
        raise ModelError(f"{what}: the training helpers handle models with one input and one output "
                         f"(this one has {len(ins)} and {len(outs)})")
    return graph.tensors[ins[0]], graph.tensors[outs[0]]


def _graph(tflite_bytes: bytes, what: str = "model"):
    if not isinstance(tflite_bytes, (bytes, bytearray)):
        raise ModelError(f"{what}: expected the .tflite file's bytes, got {type(tflite_bytes).__name__}")
    return build_graph(model_io.parse_model(bytes(tflite_bytes), what))


def quantize_inputs(tflite_bytes: bytes, images) -> np.ndarray:
    """Float images (preprocessed as for the Keras model) -> int8 model inputs.

    q = clip(round(x / scale) + zero_point, -128, 127) with the model input's
    scale and zero point. Returns (N, H, W, C) int8. Already-int8 arrays are
    returned as they are.
    """
    tin, _ = _io(_graph(tflite_bytes), "model")
    x = np.asarray(images)
    if x.dtype == np.int8:
        return _as_batch(x, tin.shape)
    if tin.type_name != "INT8" or not len(tin.scales):
        raise ModelError(f"the model input is {tin.type_name} without int8 quantization: "
                         "convert with to_int8_tflite (int8 input)")
    q = np.rint(x.astype(np.float64) / tin.scale) + tin.zero_point
    return _as_batch(np.clip(q, -128, 127).astype(np.int8), tin.shape)


def _as_batch(x: np.ndarray, input_shape) -> np.ndarray:
    """(N, H, W, C) from a stack of inputs, one input, or (N, H, W) for a one-channel model."""
    one = tuple(int(d) for d in input_shape[1:])
    if tuple(x.shape) == one:
        return x[None]
    if tuple(x.shape[1:]) == one:
        return x
    if one and one[-1] == 1 and tuple(x.shape[1:]) == one[:-1]:
        return x[..., None]
    raise ModelError(f"inputs of shape {list(x.shape)} do not match the model input {list(input_shape)}")


def predict_int8(tflite_bytes: bytes, images) -> np.ndarray:
    """Run an int8 model in TFLM (tflite-micro wheel) on every image; (N, outputs) int8.

    `images`: int8 model inputs, or float images (quantized with
    :func:`quantize_inputs`).
    """
    graph = _graph(tflite_bytes)
    tin, tout = _io(graph, "model")
    x = quantize_inputs(tflite_bytes, images)
    out = oracle.run_batch(bytes(tflite_bytes), x, tin.shape)
    return out.reshape((len(x),) + tuple(d for d in tout.shape[1:]))


def predict_patched(patched_bytes: bytes, images, engine: str = "python") -> np.ndarray:
    """Run a patched model on every image; (N, outputs) int8, as :func:`predict_int8`.

    Every ``PATCH_STAGE`` runs in tflm-patch's reference executor (``engine="python"``)
    or the C++ kernel built on the host (``engine="cpp"``); the runs of other
    ops between them run in TFLM.
    """
    patched_model = model_io.parse_model(bytes(patched_bytes), "patched model")
    graph = build_graph(patched_model)
    tin, tout = _io(graph, "patched model")
    x = quantize_inputs(bytes(patched_bytes), images)
    if engine == "python":
        plans = stage_plans(graph)  # parsed and checked once, as the kernel's Init and Prepare do

        def stage(op, value):
            return reference.run_plan(plans[op.index], [value] + [graph.tensors[t].data for t in op.inputs[1:]])
    elif engine == "cpp":
        from . import native

        def stage(op, value):
            return native.run_stage(op.custom_options, [value] + [graph.tensors[t].data for t in op.inputs[1:]],
                                    tuple(graph.tensors[op.outputs[0]].shape))
    else:
        raise ModelError(f"engine must be 'python' or 'cpp' (got {engine!r})")
    runner = verify_mod.PatchedRunner(patched_model, stage)
    out = np.stack([np.asarray(runner.run([img.reshape(tin.shape)])[0]) for img in x])
    return out.reshape((len(x),) + tuple(d for d in tout.shape[1:]))


def predict_both(original_bytes: bytes, patched_bytes: bytes, images, engine: str = "python") -> tuple:
    """(predict_int8(original), predict_patched(patched)) on the same images.

    The original runs in the TFLM worker process while this process computes
    the PATCH_STAGE outputs: on two cores it takes about the time of the
    patched model alone.
    """
    import concurrent.futures
    x = quantize_inputs(bytes(original_bytes), images)
    oracle.start_worker()                     # before two threads use it
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        original = pool.submit(predict_int8, bytes(original_bytes), x)
        patched = predict_patched(patched_bytes, x, engine=engine)
        return original.result(), patched


def check_not_constant(tflite_bytes: bytes, sample_inputs) -> np.ndarray:
    """Run the int8 model in TFLM on different inputs; raise ConstantOutputError if all outputs are equal.

    `sample_inputs`: at least two different inputs (int8, or float images that
    are quantized with :func:`quantize_inputs`). Returns the int8 outputs.
    """
    x = quantize_inputs(tflite_bytes, sample_inputs)
    if len({img.tobytes() for img in x}) < 2:
        raise ModelError("check_not_constant needs at least two different inputs")
    out = predict_int8(tflite_bytes, x)
    flat = out.reshape(len(out), -1)
    if np.all(flat == flat[0]):
        raise ConstantOutputError(
            f"the int8 model gives the same output {flat[0].tolist()[:10]} for all {len(x)} different inputs: "
            "it ignores its input. Its activation ranges are degenerate, usually because the BatchNorm "
            "moving statistics do not match the data (an untrained model, or a short training run: "
            "call tflm_patch.training.recalibrate_batchnorm(model, train_images) before converting, "
            "or train longer), or because the representative images are not preprocessed like the "
            "real inputs")
    return out


# --------------------------------------------------------------------------
# patch plans
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class PlanChoice:
    """One patch plan: what it costs and what it saves."""
    max_mac_overhead: float    # the MAC limit under which the search chose this plan
    stages: str                # e.g. "ops 0-5 (24x5, cached) + ops 6-12 (12x4, cached)"
    grid: tuple                # (rows, cols) of the first stage's patches
    stage_ops: str             # e.g. "CONV_2D x4, DEPTHWISE_CONV_2D x2"
    stage_output: tuple        # (H, W, C) of the last stage's output
    arena_before: int          # predicted TFLM arena (planned, bytes) of the original model
    arena_after: int           # ... of the patched model
    macs_original: int         # the stages' MACs computed once
    macs_patched: int          # the stages' MACs as patched (halos recomputed where not cached)
    plan: object = field(default=None, compare=False, repr=False)  # the planner's Plan

    @property
    def mac_overhead(self) -> float:
        return self.macs_patched / self.macs_original if self.macs_original else 1.0

    @property
    def reduction(self) -> float:
        """How many times smaller the arena gets."""
        return self.arena_before / self.arena_after if self.arena_after else float("inf")

    def cli_args(self) -> list:
        """The `tflm-patch convert` options that select this plan."""
        return ["--max-mac-overhead", f"{self.max_mac_overhead:g}"]

    def __str__(self) -> str:
        return (f"{self.stages}: arena {self.arena_after:,} B ({self.reduction:.2f}x smaller), "
                f"stage MACs x{self.mac_overhead:.3f}")


def _choice(limit: float, plan) -> PlanChoice:
    counts = {}
    for sp in plan.stages:
        for layer in sp.stage.layers:
            counts[layer.name] = counts.get(layer.name, 0) + 1
    stages = " + ".join(f"ops {sp.stage.start}-{sp.stage.end - 1} ({sp.grid[0]}x{sp.grid[1]}, "
                        f"{'halos ' + sp.caching if sp.caching != 'none' else 'halos recomputed'})"
                        for sp in plan.stages)
    return PlanChoice(max_mac_overhead=limit, stages=stages, grid=tuple(plan.grid),
                      stage_ops=", ".join(f"{n} x{c}" for n, c in counts.items()),
                      stage_output=tuple(plan.stages[-1].stage.layers[-1].out_shape),
                      arena_before=plan.arena_before, arena_after=plan.arena_after,
                      macs_original=plan.macs_original, macs_patched=plan.macs_patched, plan=plan)


def _int8_graph(tflite_bytes: bytes):
    graph = _graph(tflite_bytes)
    for t in graph.inputs:
        if graph.tensors[t].type_name != "INT8":
            raise ModelError(f"input {graph.tensors[t].name!r} is {graph.tensors[t].type_name}: convert with "
                             "full-integer int8 quantization (to_int8_tflite)")
    return graph


def pareto_plans(tflite_bytes: bytes, max_mac_overhead: float | None = None) -> list:
    """The patch plans on the Pareto front of predicted arena vs MACs, by increasing arena.

    Only plans that lower the peak are listed (an empty list: patching cannot
    help this model). Each entry is a :class:`PlanChoice`; none is beaten by
    another on both arena and MACs. With `max_mac_overhead`, plans that
    recompute more than that ratio of the stage's MACs are left out.
    """
    graph = _int8_graph(tflite_bytes)
    front = [_choice(limit, p) for limit, p in planner.pareto(graph)]
    if max_mac_overhead is not None:
        front = [c for c in front if c.mac_overhead <= max_mac_overhead]
    return front


def choose_plan(plans: list, sram_budget: int | None = None, max_mac_overhead: float | None = 1.05):
    """Pick a plan by ``tflm-patch convert``'s rules (planner.make_plan): within `max_mac_overhead`, the
    cheapest (fewest MACs) that fits `sram_budget`, else the smallest arena. None if no plan is within the
    overhead limit; like convert, NoGainError when the model already fits `sram_budget` unpatched or when
    no plan fits it (the message names the smallest arena reachable)."""
    within = [p for p in plans if max_mac_overhead is None or p.mac_overhead <= max_mac_overhead]
    if not within:
        return None
    smallest = min(within, key=lambda p: (p.arena_after, p.macs_patched))
    if sram_budget is None:
        return smallest
    before = smallest.arena_before
    if before <= sram_budget:
        raise NoGainError(f"the model already fits --sram-budget {sram_budget:,} bytes "
                          f"(planned arena {before:,} bytes): model left unchanged")
    fitting = [p for p in within if p.arena_after <= sram_budget]
    if not fitting:
        raise NoGainError(f"no plan fits --sram-budget {sram_budget:,} bytes: the smallest arena reachable "
                          f"is {smallest.arena_after:,} bytes (stage MACs x{smallest.mac_overhead:.2f}): "
                          "model left unchanged")
    return min(fitting, key=lambda p: (p.macs_patched, p.arena_after))


def patch_tflite(tflite_bytes: bytes, plan: PlanChoice | None = None, *, sram_budget: int | None = None,
                 max_mac_overhead: float = 1.05, verify_inputs=None) -> bytes:
    """Patch an int8 model and prove it bit-identical against TFLM; the patched model's bytes.

    `plan`: one of :func:`pareto_plans`; without it the plan is searched as by
    ``tflm-patch convert`` (`sram_budget`, `max_mac_overhead`). The result is
    verified on `verify_inputs` (int8 or float images; default one random
    input) and :class:`~tflm_patch.converter.errors.VerifyError` is raised if
    it differs.
    """
    from . import __version__
    original = ModelFile.from_bytes(tflite_bytes, "model")
    _int8_graph(original.data)
    if plan is not None:
        conv = pipeline.convert(original, plan.plan, __version__, max_mac_overhead=plan.max_mac_overhead)
    else:
        conv = pipeline.convert(original, None, __version__, sram_budget=sram_budget,
                                max_mac_overhead=max_mac_overhead)
    if verify_inputs is None:
        sets = verify_mod.random_inputs(original.graph, 1, seed=1)
    else:
        tin, _ = _io(original.graph, "model")
        sets = [[x.reshape(tin.shape)] for x in quantize_inputs(original.data, verify_inputs)]
    verify_mod.require_identical(conv.verify(sets))
    return conv.patched.data

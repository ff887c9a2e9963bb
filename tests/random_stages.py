"""Random stage specs for property-based tests (shared by converter and engine tests)."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tflm_patch.converter.schema import ActivationFunctionType as A
from tflm_patch.converter.schema import Padding

from .modelgen import ModelBuilder

ACTS = [A.NONE, A.RELU, A.RELU6]


@st.composite
def stage_specs(draw, max_layers: int = 4):
    """A list of layer specs plus an input size: small, but every feature appears."""
    h = draw(st.integers(5, 19))
    w = draw(st.integers(5, 19))
    c = draw(st.integers(1, 4))
    layers = []
    for _ in range(draw(st.integers(1, max_layers))):
        kind = draw(st.sampled_from(["conv", "dw", "residual", "pad", "maxpool", "avgpool"]))
        spec = {"kind": kind, "act": draw(st.sampled_from(ACTS))}
        if kind in ("conv", "dw"):
            spec["k"] = draw(st.sampled_from([1, 2, 3, 5, 7]))
            spec["stride"] = draw(st.sampled_from([1, 2]))
            spec["dilation"] = 1 if spec["stride"] == 2 else draw(st.sampled_from([1, 1, 2]))
            spec["padding"] = draw(st.sampled_from([Padding.SAME, Padding.SAME, Padding.VALID]))
            spec["out_c"] = draw(st.integers(1, 6))
            spec["dm"] = draw(st.sampled_from([1, 1, 2]))
        elif kind == "pad":
            spec["p"] = [draw(st.integers(0, 2)) for _ in range(4)]
        elif kind in ("maxpool", "avgpool"):
            spec["k"] = draw(st.sampled_from([2, 3]))
            spec["stride"] = draw(st.sampled_from([1, 2]))
            spec["padding"] = draw(st.sampled_from([Padding.SAME, Padding.VALID]))
        layers.append(spec)
    return {"input": (h, w, c), "layers": layers, "seed": draw(st.integers(0, 2**31 - 1))}


def build(spec) -> bytes | None:
    """The model for a spec, or None when the spec shrinks the image to nothing."""
    rng = np.random.default_rng(spec["seed"])
    mb = ModelBuilder(rng)
    x = mb.activation(spec["input"], float(rng.uniform(0.01, 0.05)), int(rng.integers(-20, 20)))
    first = x
    for s in spec["layers"]:
        h, w, c = x.shape
        if s["kind"] in ("conv", "dw"):
            kh, kw = (s["k"], s["k"]) if isinstance(s["k"], int) else tuple(s["k"])
            eff_h, eff_w = (kh - 1) * s["dilation"] + 1, (kw - 1) * s["dilation"] + 1
            if s["padding"] == Padding.VALID and (eff_h > h or eff_w > w):
                return None
            x = mb.conv(x, s["out_c"], s["k"], s["stride"], s["dilation"], s["padding"], s["act"],
                        depthwise=s["kind"] == "dw", depth_multiplier=s["dm"])
        elif s["kind"] == "residual":
            y = mb.conv(x, c, 3, act=s["act"])
            x = mb.add(x, y, s["act"])
        elif s["kind"] == "pad":
            x = mb.pad(x, *s["p"])
        else:
            if s["padding"] == Padding.VALID and (s["k"] > h or s["k"] > w):
                return None
            x = mb.pool(x, s["k"], s["stride"], s["padding"], average=s["kind"] == "avgpool")
    out = mb.mean_tail(x)
    return mb.finish([first.index], [out.index])


# ---- wider draws, for the exactness-at-scale campaign (tools/fuzz/fuzz_stages.py) ----

WIDE_KERNELS = [1, 2, 3, 5, 7, (1, 3), (3, 1), (3, 5), (5, 2), (1, 7), (7, 3)]


def wide_stage_spec(rng: np.random.Generator) -> dict:
    """A random stage wider than stage_specs: images up to 48x48, up to 8 layers, stride 3,
    non-square kernels, dilation up to 3, depth multipliers up to 3."""
    h, w = int(rng.integers(5, 49)), int(rng.integers(5, 49))
    c = int(rng.integers(1, 9))
    layers = []
    channels = c
    for _ in range(int(rng.integers(1, 9))):
        kind = str(rng.choice(["conv", "conv", "dw", "dw", "residual", "pad", "maxpool", "avgpool"]))
        spec = {"kind": kind, "act": int(rng.choice(ACTS))}
        if kind in ("conv", "dw"):
            k = WIDE_KERNELS[int(rng.integers(len(WIDE_KERNELS)))]
            spec["k"] = list(k) if isinstance(k, tuple) else k
            spec["stride"] = int(rng.choice([1, 1, 2, 3]))
            spec["dilation"] = 1 if spec["stride"] > 1 else int(rng.choice([1, 1, 2, 3]))
            spec["padding"] = int(rng.choice([Padding.SAME, Padding.SAME, Padding.VALID]))
            spec["out_c"] = int(rng.integers(1, 13))
            spec["dm"] = int(rng.choice([1, 1, 2, 3])) if channels * 3 <= 24 else 1
            channels = spec["out_c"] if kind == "conv" else channels * spec["dm"]
        elif kind == "pad":
            spec["p"] = [int(v) for v in rng.integers(0, 4, size=4)]
        elif kind in ("maxpool", "avgpool"):
            spec["k"] = int(rng.choice([2, 3]))
            spec["stride"] = int(rng.choice([1, 2, 3]))
            spec["padding"] = int(rng.choice([Padding.SAME, Padding.VALID]))
        layers.append(spec)
    return {"input": (h, w, c), "layers": layers, "seed": int(rng.integers(0, 2**31 - 1))}


def uneven_cuts(rng: np.random.Generator, size: int, max_parts: int = 5) -> list:
    """Random grid boundaries [0, ..., size]: 1 to max_parts parts of uneven sizes."""
    parts = int(rng.integers(1, min(max_parts, size) + 1))
    inner = sorted(int(v) for v in rng.choice(np.arange(1, size), size=parts - 1, replace=False)) if parts > 1 else []
    return [0] + inner + [size]

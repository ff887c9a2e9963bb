"""Random stage specs for property-based tests (shared by converter and engine tests)."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tflm_patch.converter.schema import ActivationFunctionType as A
from tflm_patch.converter.schema import Padding

from .modelgen import ModelBuilder

ACTS = [A.NONE, A.RELU, A.RELU6]


@st.composite
def stage_specs(draw):
    """A list of layer specs plus an input size: small, but every feature appears."""
    h = draw(st.integers(5, 19))
    w = draw(st.integers(5, 19))
    c = draw(st.integers(1, 4))
    layers = []
    for _ in range(draw(st.integers(1, 4))):
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
            eff = (s["k"] - 1) * s["dilation"] + 1
            if s["padding"] == Padding.VALID and (eff > h or eff > w):
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

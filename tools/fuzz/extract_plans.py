#!/usr/bin/env python3
"""Write the PATCH_STAGE options of converted test models as a fuzzing corpus.

Every test model (tests/models/*.tflite) is converted with a few plans (the
default search, fixed grids, CMSIS-NN workspace), and each patched model's
PATCH_STAGE custom options are written to DIR, prefixed with the fuzz
target's selector byte 0 (the tensors the plan asks for).

    python tools/fuzz/extract_plans.py DIR
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tflm_patch.converter import cmsis_nn, options, planner  # noqa: E402
from tflm_patch.converter import model_io  # noqa: E402
from tflm_patch.converter.errors import TflmPatchError  # noqa: E402
from tflm_patch.converter.graph import build_graph  # noqa: E402

VARIANTS = [dict(), dict(patches=(2, 2)), dict(patches=(3, 3)), dict(patches=(1, 2), split=1),
            dict(kernels=cmsis_nn.CMSIS_NN), dict(patches=(4, 3), kernels=cmsis_nn.CMSIS_NN)]


def plans_of(path: str, variants=None):
    graph = build_graph(model_io.load_model(path))
    for kw in variants or VARIANTS:
        try:
            plan = planner.make_plan(graph, require_gain=False, **kw)
        except TflmPatchError:
            continue
        yield options.encode(plan.stage_plan)


def extract(out_dir: str, models=None, variants=None) -> list:
    """Write the plans of `models` (default: every test model) made with `variants` of planner arguments."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for path in models or sorted(glob.glob(os.path.join(ROOT, "tests", "models", "*.tflite"))):
        for opts in plans_of(path, variants):
            data = b"\0" + bytes(opts)
            name = os.path.join(out_dir, hashlib.sha1(data).hexdigest()[:16])
            with open(name, "wb") as f:
                f.write(data)
            written.append(name)
    return sorted(set(written))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    args = p.parse_args()
    files = extract(args.out_dir)
    print(f"{len(files)} plans written to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

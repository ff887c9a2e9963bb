"""Produce arduino/src/ from micro_ops/, the kernel's one source of truth.

    python tools/sync_arduino.py          # write arduino/src/
    python tools/sync_arduino.py --check  # exit 1 if arduino/src/ has drifted

Arduino compiles .cpp, so each .cc becomes a .cpp; every file gets a banner
saying where it comes from. Host-only code (micro_ops/host/) is not shipped.
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_DIR = os.path.join(ROOT, "micro_ops")
TARGET_DIR = os.path.join(ROOT, "arduino", "src")
KERNEL_FILES = ("flexbuffer_reader.h", "flexbuffer_reader.cc", "patch_engine.h", "patch_engine.cc",
                "halo_cache.h", "halo_cache.cc", "cmsis_nn_layers.h", "cmsis_nn_layers.cc", "image_view.h",
                "patch_stage.h", "patch_stage.cc")
BANNER = "// Generated from micro_ops/{name} by tools/sync_arduino.py: edit micro_ops/, not this file.\n"


def expected_files() -> dict:
    out = {}
    for name in KERNEL_FILES:
        with open(os.path.join(SOURCE_DIR, name), encoding="utf-8") as f:
            text = f.read()
        target = name[:-3] + ".cpp" if name.endswith(".cc") else name
        out[target] = BANNER.format(name=name) + text
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 on drift")
    args = ap.parse_args(argv)
    drift = []
    for name, text in expected_files().items():
        path = os.path.join(TARGET_DIR, name)
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if current != text:
            drift.append(name)
            if not args.check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
    generated = set(expected_files()) | {"TFLMPatch.h"}
    stray = sorted(set(os.listdir(TARGET_DIR)) - generated)
    if args.check:
        if drift or stray:
            print(f"arduino/src is out of date with micro_ops/: {', '.join(drift + stray)} "
                  "(run python tools/sync_arduino.py)", file=sys.stderr)
            return 1
        print("arduino/src matches micro_ops/")
        return 0
    print(f"updated {len(drift)} file(s) in arduino/src" + (f"; stray files: {stray}" if stray else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

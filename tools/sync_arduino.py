"""Produce arduino/src/ from micro_ops/, the kernel's one source of truth.

    python tools/sync_arduino.py          # write arduino/src/, remove stale files
    python tools/sync_arduino.py --check  # exit 1 if arduino/src/ has drifted

The files shipped are those micro_ops/kernel_sources.txt lists (host-only code,
micro_ops/host/, is not). Arduino compiles .cpp, so each .cc becomes a .cpp;
every file gets a banner saying where it comes from.
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_DIR = os.path.join(ROOT, "micro_ops")
TARGET_DIR = os.path.join(ROOT, "arduino", "src")
KERNEL_SOURCES_LIST = os.path.join(SOURCE_DIR, "kernel_sources.txt")
HAND_WRITTEN = ("TFLMPatch.h",)  # the library's own header, not generated
BANNER = "// Generated from micro_ops/{name} by tools/sync_arduino.py: edit micro_ops/, not this file.\n"


def kernel_files() -> list:
    """Every file kernel_sources.txt lists (its lines minus [section] headers and # comments)."""
    with open(KERNEL_SOURCES_LIST, encoding="utf-8") as f:
        lines = [line.split("#", 1)[0].strip() for line in f]
    return [line for line in lines if line and not line.startswith("[")]


def expected_files() -> dict:
    out = {}
    for name in kernel_files():
        with open(os.path.join(SOURCE_DIR, name), encoding="utf-8") as f:
            text = f.read()
        target = name[:-3] + ".cpp" if name.endswith(".cc") else name
        out[target] = BANNER.format(name=name) + text
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 on drift")
    args = ap.parse_args(argv)
    expected = expected_files()
    drift = []
    for name, text in expected.items():
        path = os.path.join(TARGET_DIR, name)
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if current != text:
            drift.append(name)
            if not args.check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
    stray = sorted(set(os.listdir(TARGET_DIR)) - set(expected) - set(HAND_WRITTEN))
    if args.check:
        if drift or stray:
            print(f"arduino/src is out of date with micro_ops/: {', '.join(drift + stray)} "
                  "(run python tools/sync_arduino.py)", file=sys.stderr)
            return 1
        print("arduino/src matches micro_ops/")
        return 0
    for name in stray:  # generated from a file micro_ops no longer has
        os.remove(os.path.join(TARGET_DIR, name))
    print(f"updated {len(drift)} file(s) in arduino/src" + (f"; removed stale {', '.join(stray)}" if stray else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

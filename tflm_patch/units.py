"""Byte sizes as users write them: 98304, 96K, 96KiB, 96kB, 1.5MiB."""
from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1 << 20, "mib": 1 << 20, "mb": 1000 ** 2}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 98304, 96KiB, 96kB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"

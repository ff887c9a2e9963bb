"""Byte sizes as users write them.

Decimal (SI) units are powers of 1000, binary units and the bare letters powers
of 1024, case-insensitive: 64KB = 64kB = 64,000 bytes; 64KiB = 64K = 65,536;
1MB = 1,000,000; 1MiB = 1M = 1,048,576; a plain number is bytes.
"""
from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1,
          "k": 1024, "kib": 1024, "kb": 1000,
          "m": 1 << 20, "mib": 1 << 20, "mb": 1000 ** 2,
          "g": 1 << 30, "gib": 1 << 30, "gb": 1000 ** 3}

SIZE_HELP = ("SIZE: a plain number is bytes; KB = 1,000 and MB = 1,000,000 bytes; K = KiB = 1,024 and "
             "M = MiB = 1,048,576 bytes (case-insensitive): 64KB is 64,000 bytes, 64KiB and 64K are 65,536")


def parse_size(text: str) -> int:
    """The number of bytes `text` names; ValueError (one line) for anything else."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 98304, 96KiB or 96K (= 98,304 bytes), 96KB (= 96,000 bytes))")
    value = float(m.group(1)) * _UNITS[unit]
    if value != int(value):
        raise ValueError(f"not a whole number of bytes: {text!r} (= {value:,.2f} bytes)")
    if value <= 0:
        raise ValueError(f"a size must be more than 0 bytes (got {text!r})")
    return int(value)


def kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"

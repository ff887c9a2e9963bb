"""TFLM itself as the oracle: the tflite-micro wheel's interpreter (reference kernels).

`kPreserveAllTensors` keeps every intermediate tensor readable after Invoke, so
the stage output of the original model can be compared byte for byte; the
recording allocator reports the arena TFLM actually planned.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

from .errors import ModelError


def _runtime():
    from tflite_micro.python.tflite_micro import runtime
    return runtime


def _interpreter(model_bytes: bytes, preserve: bool):
    rt = _runtime()
    config = rt.InterpreterConfig.kPreserveAllTensors if preserve else rt.InterpreterConfig.kAllocationRecording
    arena = max(1 << 20, len(model_bytes) * 10)
    try:
        return rt.Interpreter.from_bytes(model_bytes, arena_size=arena, intrepreter_config=config)
    except Exception as exc:
        raise ModelError(f"the TFLM interpreter rejected the model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


@dataclass
class Run:
    outputs: list          # output arrays, in subgraph output order
    tensors: dict          # tensor index -> array, for the requested tensors


def run(model_bytes: bytes, inputs: list, num_outputs: int, keep_tensors=()) -> Run:
    """Invoke the model in TFLM; return its outputs and the requested intermediate tensors."""
    it = _interpreter(model_bytes, preserve=bool(keep_tensors))
    for i, x in enumerate(inputs):
        it.set_input(x, i)
    it.invoke()
    outputs = [np.array(it.get_output(i)) for i in range(num_outputs)]
    tensors = {t: np.array(it.GetTensor(t, 0)["tensor_data"]) for t in keep_tensors}
    return Run(outputs, tensors)


@contextlib.contextmanager
def _captured_c_output():
    """Collect what C code prints on fds 1 and 2 (the wheel's MicroPrintf uses stderr)."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    result = {"text": ""}
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for fd in saved:
            os.dup2(tmp.fileno(), fd)
        try:
            yield result
        finally:
            libc.fflush(None)
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            result["text"] = tmp.read().decode(errors="replace")


@dataclass
class MeasuredArena:
    total: int
    head: int       # non-persistent: the memory plan
    tail: int       # persistent: tensor structs, op data, quantization params


def measure_arena(model_bytes: bytes, inputs: list) -> MeasuredArena:
    """Arena sizes reported by TFLM's RecordingMicroAllocator for this model."""
    it = _interpreter(model_bytes, preserve=False)
    for i, x in enumerate(inputs):
        it.set_input(x, i)
    it.invoke()
    with _captured_c_output() as out:
        it.print_allocations()
    text = out["text"]
    values = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if not m:
            raise RuntimeError(f"could not read the arena {key} from TFLM's report:\n{text}")
        values[key] = int(m.group(1))
    return MeasuredArena(**values)

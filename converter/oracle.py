"""TFLM itself as the oracle: the tflite-micro wheel's interpreter (reference kernels).

`kPreserveAllTensors` keeps every intermediate tensor readable after Invoke, so
the stage output of the original model can be compared byte for byte; the
recording allocator reports the arena TFLM actually planned.

The interpreter runs in a worker process: TFLM aborts the process on some
models (a failed TFLITE_CHECK), and that must become a one-line error, not a
crash of the tool.
"""
from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import multiprocessing
import ctypes
import os
import re
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

from .errors import ModelError
from .schema import BuiltinOperator


# Custom ops the wheel's op resolver registers besides TFLite's builtins (read from its library).
TFLM_CUSTOM_OPS = frozenset({
    "TFLite_Detection_PostProcess", "SignalDelay", "SignalEnergy", "SignalFftAutoScale", "SignalFilterBank",
    "SignalFilterBankLog", "SignalFilterBankSpectralSubtraction", "SignalFilterBankSquareRoot", "SignalFramer",
    "SignalIrfft", "SignalOverlapAdd", "SignalPCAN", "SignalRfft", "SignalStacker", "SignalWindow",
})


def require_known_ops(graph, hint: str = "", allow=()) -> None:
    """ModelError naming the first custom op TFLM's op resolver cannot run (an Ethos-U op, say)."""
    for op in graph.ops:
        if op.opcode == BuiltinOperator.CUSTOM and op.custom_code not in TFLM_CUSTOM_OPS and op.custom_code not in allow:
            raise ModelError(f"op {op.index} is custom op {op.custom_code or ''!r}, which TFLM's op resolver "
                             f"does not know{hint}")


def _runtime():
    from tflite_micro.python.tflite_micro import runtime
    return runtime


def _interpreter(model_bytes: bytes, preserve: bool):
    rt = _runtime()
    config = rt.InterpreterConfig.kPreserveAllTensors if preserve else rt.InterpreterConfig.kAllocationRecording
    # A multiple of 16: the arena's end is then 16-byte aligned, as in firmware (alignas(16)), so
    # the persistent tail measured is the one persistent.py predicts.
    arena = (max(1 << 20, len(model_bytes) * 10) + 15) // 16 * 16
    try:
        return rt.Interpreter.from_bytes(model_bytes, arena_size=arena, intrepreter_config=config)
    except Exception as exc:
        raise ModelError(f"the TFLM interpreter rejected the model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


_worker = None
_worker_log = None


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def _init_worker(log_path: str) -> None:
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    _fresh_arenas()


def _fresh_arenas() -> None:
    """Every interpreter arena (>= 1 MiB) from its own fresh, zero-filled mmap, as a firmware's static
    arena is zero before its first AllocateTensors.

    TFLM's SPACE_TO_BATCH_ND pads with a SpaceToBatchParams field its kernel never sets, read from
    persistent arena memory: its output depends on what the arena held before. glibc's dynamic mmap
    threshold would otherwise hand a later interpreter a recycled, dirty heap block (and the stock
    model's output would depend on which models this process ran before). A fixed threshold keeps
    large blocks on mmap. No-op where glibc's mallopt is missing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, 256 * 1024)


def _shutdown() -> None:
    global _worker
    if _worker is not None:
        _worker.shutdown(wait=True, cancel_futures=True)
        _worker = None
    if _worker_log and os.path.exists(_worker_log):
        os.unlink(_worker_log)


def _call(fn, *args):
    """Run fn in the TFLM worker process; a crash there becomes a ModelError."""
    global _worker, _worker_log
    if _worker is None:
        fd, _worker_log = tempfile.mkstemp(prefix="tflm-patch-oracle-", suffix=".log")
        os.close(fd)
        _worker = concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(_worker_log,))
        atexit.register(_shutdown)
    try:
        return _worker.submit(fn, *args).result()
    except concurrent.futures.process.BrokenProcessPool:
        with open(_worker_log, errors="replace") as f:
            lines = [l.strip() for l in f if l.strip()]
        _worker = None
        reason = lines[-1] if lines else "no message"
        raise ModelError(f"TFLM (tflite-micro wheel) aborted on this model: {reason}") from None


@dataclass
class Run:
    outputs: list          # output arrays, in subgraph output order
    tensors: dict          # tensor index -> array, for the requested tensors


def run(model_bytes: bytes, inputs: list, num_outputs: int, keep_tensors=()) -> Run:
    """Invoke the model in TFLM; return its outputs and the requested intermediate tensors."""
    return _call(_run, model_bytes, inputs, num_outputs, tuple(keep_tensors))


def _run(model_bytes: bytes, inputs: list, num_outputs: int, keep_tensors=()) -> Run:
    it = _interpreter(model_bytes, preserve=bool(keep_tensors))
    _invoke(it, inputs)
    outputs = [np.array(it.get_output(i)) for i in range(num_outputs)]
    tensors = {t: np.array(it.GetTensor(t, 0)["tensor_data"]) for t in keep_tensors}
    return Run(outputs, tensors)


def _invoke(it, inputs) -> None:
    """Set the inputs and invoke; what TFLM refuses (shapes, types, a failed Prepare) is the model's fault."""
    try:
        for i, x in enumerate(inputs):
            it.set_input(x, i)
        it.invoke()
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        text = str(exc).strip().splitlines()
        raise ModelError(f"TFLM (tflite-micro wheel) could not run the model: {text[0] if text else type(exc).__name__}") from None


def run_batch(model_bytes: bytes, inputs: np.ndarray, input_shape, chunk: int = 256) -> np.ndarray:
    """Output 0 of the model for every input of a stack, one interpreter per chunk."""
    results = [_call(_run_batch, model_bytes, inputs[i:i + chunk], tuple(input_shape))
               for i in range(0, len(inputs), chunk)]
    return np.concatenate(results) if results else np.zeros((0,), np.int8)


def _run_batch(model_bytes: bytes, inputs: np.ndarray, input_shape: tuple) -> np.ndarray:
    it = _interpreter(model_bytes, preserve=False)
    outs = []
    for x in inputs:
        it.set_input(x.reshape(input_shape), 0)
        it.invoke()
        outs.append(np.array(it.get_output(0)).reshape(-1).copy())
    return np.stack(outs)


def start_worker() -> None:
    """Start the TFLM worker process now (before several threads use it)."""
    _call(int)


@contextlib.contextmanager
def captured_c_output():
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
    return _call(_measure_arena, model_bytes, inputs)


def _measure_arena(model_bytes: bytes, inputs: list) -> MeasuredArena:
    it = _interpreter(model_bytes, preserve=False)
    _invoke(it, inputs)
    with captured_c_output() as out:
        it.print_allocations()
    text = out["text"]
    values = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if not m:
            raise RuntimeError(f"could not read the arena {key} from TFLM's report:\n{text}")
        values[key] = int(m.group(1))
    return MeasuredArena(**values)

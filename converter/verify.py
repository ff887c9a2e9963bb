"""Prove a patched model bit-identical to its original, with TFLM as the oracle.

For every input: (1) the original runs in TFLM with all tensors preserved;
(2) PATCH_STAGE runs in the reference executor (and, if asked, the C++ engine)
on the same input with the patched model's constants; its output must equal
TFLM's stage output tensor byte for byte; (3) the rest of the patched model,
written as a tail model whose input is the stage output, runs in TFLM on that
output and must give the original model's outputs byte for byte.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from . import model_io, oracle, reference
from .errors import ModelError, VerifyError
from .graph import build_graph
from .options import CUSTOM_CODE
from .rewrite import _drop_unused_opcodes
from .schema import BuiltinOperator


@dataclass
class VerifyReport:
    inputs: int = 0
    stage_mismatches: int = 0
    output_mismatches: int = 0
    engines: list = field(default_factory=list)
    first_difference: str = ""

    @property
    def identical(self) -> bool:
        return self.inputs > 0 and self.stage_mismatches == 0 and self.output_mismatches == 0


def _patch_op(graph):
    ops = [op for op in graph.ops if op.opcode == BuiltinOperator.CUSTOM and op.custom_code == CUSTOM_CODE]
    if len(ops) != 1 or ops[0].index != 0:
        raise ModelError("the patched model must have exactly one PATCH_STAGE op, as its first op")
    return ops[0]


def tail_inputs_read(patched_model) -> list:
    """Positions (in the model's inputs) of the model inputs that ops after PATCH_STAGE read too."""
    sg = patched_model.subgraphs[0]
    read = {int(t) for op in sg.operators[1:] for t in (op.inputs if op.inputs is not None else [])}
    return [k for k, t in enumerate(sg.inputs) if int(t) in read]


def tail_model_bytes(patched_model) -> bytes:
    """The patched model without PATCH_STAGE: its inputs are the stage output, then the model inputs
    that the rest of the model reads too (tail_inputs_read)."""
    model = copy.deepcopy(patched_model)
    sg = model.subgraphs[0]
    stage_out = int(sg.operators[0].outputs[0])
    extra = [int(sg.inputs[k]) for k in tail_inputs_read(patched_model)]
    sg.operators = list(sg.operators[1:])
    sg.inputs = [stage_out] + extra
    model.signatureDefs = []
    _drop_unused_opcodes(model)
    return model_io.serialize_model(model)


def random_inputs(graph, count: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(count):
        one = []
        for t in graph.inputs:
            tensor = graph.tensors[t]
            if tensor.type_name != "INT8":
                raise ModelError(f"model input {tensor.name!r} is {tensor.type_name}; tflm-patch handles int8 inputs")
            one.append(rng.integers(-128, 128, size=tensor.shape, dtype=np.int8))
        sets.append(one)
    return sets


def _check_pair(g_orig, g_patched, stage_tensor: int, patched_stage_tensor: int) -> None:
    """The patched model must take the original's inputs and stage output, and give its outputs."""
    def sig(g, ts):
        return [(g.tensors[t].shape, g.tensors[t].type) for t in ts]

    if sig(g_orig, g_orig.inputs) != sig(g_patched, g_patched.inputs):
        raise ModelError("the patched model's inputs differ from the original's in shape or type")
    if sig(g_orig, g_orig.outputs) != sig(g_patched, g_patched.outputs):
        raise ModelError("the patched model's outputs differ from the original's in shape or type")
    if sig(g_orig, [stage_tensor]) != sig(g_patched, [patched_stage_tensor]):
        raise ModelError("the patched model's stage output differs from the original's tensor in shape or type")


def _run_engine(engine, options: bytes, op_inputs: list, output_shape) -> np.ndarray:
    """The stage output by one engine; options that an engine cannot execute are the patched model's fault."""
    if callable(engine):  # (options, op inputs, output shape) -> stage output
        return engine(options, op_inputs, output_shape)
    if engine == "python":
        try:
            return reference.run_stage(options, op_inputs)
        except ModelError:
            raise
        except (IndexError, ValueError, KeyError, TypeError, AssertionError, ZeroDivisionError,
                OverflowError, MemoryError) as exc:
            raise ModelError(f"the patched model's PATCH_STAGE options cannot be executed "
                             f"({type(exc).__name__}): corrupt or not made for these tensors") from None
    from tflm_patch import native
    try:
        return native.run_stage(options, op_inputs, output_shape)
    except native.EngineError as exc:
        raise ModelError(f"the C++ kernel rejects the patched model's PATCH_STAGE options: {exc}") from None


def verify(original_bytes: bytes, patched_bytes: bytes, input_sets: list, engines=("python",)) -> VerifyReport:
    """engines: "python" (reference executor), "cpp" (the C++ engine), or a
    callable (options, op inputs, output shape) -> stage output."""
    original_model = model_io.parse_model(original_bytes, "original model")
    patched_model = model_io.parse_model(patched_bytes, "patched model")
    g_orig, g_patched = build_graph(original_model), build_graph(patched_model)
    op = _patch_op(g_patched)
    stage_out_name = g_patched.tensors[op.outputs[0]].name
    matches = [t.index for t in g_orig.tensors if t.name == stage_out_name]
    if len(matches) != 1:
        raise ModelError(f"the stage output tensor {stage_out_name!r} is not in the original model: "
                         "are these two models original and patched?")
    stage_tensor = matches[0]
    _check_pair(g_orig, g_patched, stage_tensor, op.outputs[0])
    if not op.custom_options or any(t < 0 or not g_patched.tensors[t].is_constant for t in op.inputs[1:]):
        raise ModelError("the patched model's PATCH_STAGE has no options, or inputs after the first "
                         "that are not constants")
    constants = [g_patched.tensors[t].data for t in op.inputs[1:]]
    tail = tail_model_bytes(patched_model)
    tail_extra = tail_inputs_read(patched_model)
    report = VerifyReport(engines=list(engines))
    for inputs in input_sets:
        run = oracle.run(original_bytes, inputs, len(g_orig.outputs), keep_tensors=(stage_tensor,))
        expected_stage = run.tensors[stage_tensor]
        stage_out = None
        for engine in engines:
            got = _run_engine(engine, op.custom_options, [inputs[0]] + constants, expected_stage.shape)
            if got.shape != expected_stage.shape or got.tobytes() != expected_stage.tobytes():
                report.stage_mismatches += 1
                if not report.first_difference:
                    diff = int(np.count_nonzero(got.reshape(-1) != expected_stage.reshape(-1))) \
                        if got.size == expected_stage.size else -1
                    report.first_difference = f"input {report.inputs}: {engine} stage output differs in {diff} bytes"
            stage_out = got
        tail_run = oracle.run(tail, [stage_out] + [inputs[k] for k in tail_extra], len(g_orig.outputs))
        for a, b in zip(tail_run.outputs, run.outputs):
            if a.tobytes() != b.tobytes():
                report.output_mismatches += 1
                if not report.first_difference:
                    report.first_difference = f"input {report.inputs}: model outputs differ"
                break
        report.inputs += 1
    return report


def require_identical(report: VerifyReport) -> None:
    if not report.identical:
        raise VerifyError(f"patched model is NOT bit-identical: {report.first_difference}")

"""Prove a patched model bit-identical to its original, with TFLM as the oracle.

For every input: (1) the original runs in TFLM with all tensors preserved;
(2) every PATCH_STAGE runs in the reference executor (and, if asked, the C++
engine) on TFLM's tensor for its input, with the patched model's constants;
its output must equal TFLM's tensor for the stage output byte for byte; (3) the
rest of the patched model, written as a model whose inputs are the stage
outputs (and the model inputs other ops read), runs in TFLM on those outputs
and must give the original model's outputs byte for byte.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from . import model_io, oracle, reference, stage_overlap
from .errors import ModelError, VerifyError
from .graph import build_graph
from .model_file import ModelFile
from .options import CUSTOM_CODE
from .plan_validation import validated_plan
from .rewrite import drop_unused_opcodes
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


def patch_ops(graph) -> list:
    ops = [op for op in graph.ops if op.opcode == BuiltinOperator.CUSTOM and op.custom_code == CUSTOM_CODE]
    if not ops:
        raise ModelError("the patched model has no PATCH_STAGE op")
    return ops


def rest_model(patched_model) -> tuple:
    """The patched model without its PATCH_STAGE ops, whose inputs are the stage outputs and the model
    inputs that other ops read: (bytes, its input tensor indices in the patched model)."""
    model = copy.deepcopy(patched_model)
    sg = model.subgraphs[0]
    custom = {i for i, c in enumerate(model.operatorCodes)
              if (c.customCode.decode() if isinstance(c.customCode, bytes) else c.customCode) == CUSTOM_CODE}
    stage_ops = [o for o in sg.operators if o.opcodeIndex in custom]
    sg.operators = [o for o in sg.operators if o.opcodeIndex not in custom]
    read = {int(t) for o in sg.operators for t in (o.inputs if o.inputs is not None else [])}
    inputs = [int(t) for t in sg.inputs if int(t) in read] + [int(o.outputs[0]) for o in stage_ops]
    sg.inputs = inputs
    model.signatureDefs = []
    # The stage outputs become inputs, live from the start: an offline memory plan made for the
    # patched model does not hold here (TFLM plans this model online).
    model.metadata = [m for m in model.metadata or []
                      if (m.name.decode() if isinstance(m.name, bytes) else m.name) != "OfflineMemoryAllocation"]
    drop_unused_opcodes(model)
    return model_io.serialize_model(model), inputs


def _float_range(graph, t: int) -> tuple:
    """The float range a float input is quantized into: that of the QUANTIZE op reading it, else [-1, 1]."""
    for op in graph.ops:
        if op.opcode == BuiltinOperator.QUANTIZE and op.inputs and op.inputs[0] == t:
            q = graph.tensors[op.outputs[0]]
            if len(q.scales) and q.scale > 0:
                lo, hi = (-128, 127) if q.type_name == "INT8" else (0, 255)
                return (lo - q.zero_point) * q.scale, (hi - q.zero_point) * q.scale
    return -1.0, 1.0


def random_inputs(graph, count: int, seed: int = 0) -> list:
    """Random inputs of the model's own types: int8, uint8, or float32 across the range its QUANTIZE covers."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(count):
        one = []
        for t in graph.inputs:
            tensor = graph.tensors[t]
            if tensor.type_name == "INT8":
                one.append(rng.integers(-128, 128, size=tensor.shape, dtype=np.int8))
            elif tensor.type_name == "UINT8":
                one.append(rng.integers(0, 256, size=tensor.shape, dtype=np.uint8))
            elif tensor.type_name == "FLOAT32":
                lo, hi = _float_range(graph, t)
                one.append(rng.uniform(lo, hi, size=tensor.shape).astype(np.float32))
            else:
                raise ModelError(f"model input {tensor.name!r} is {tensor.type_name}; tflm-patch takes int8, "
                                 "uint8 or float32 inputs")
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


def _run_engine(engine, options: bytes, op_inputs: list, output_shape, lead: int | None = None) -> np.ndarray:
    """The stage output by one engine; options that an engine cannot execute are the patched model's fault.
    lead: the output lies that many bytes before the input, over it (the model's offline plan)."""
    if callable(engine):  # (options, op inputs, output shape[, output_lead=]) -> stage output
        if lead is None:
            return engine(options, op_inputs, output_shape)
        return engine(options, op_inputs, output_shape, output_lead=lead)
    if engine == "python":
        try:
            return reference.run_stage(options, op_inputs, lead)
        except ModelError:
            raise
        except (IndexError, ValueError, KeyError, TypeError, AssertionError, ZeroDivisionError,
                OverflowError, MemoryError) as exc:
            raise ModelError(f"the patched model's PATCH_STAGE options cannot be executed "
                             f"({type(exc).__name__}): corrupt or not made for these tensors") from None
    from tflm_patch import native
    try:
        return native.run_stage(options, op_inputs, output_shape, output_lead=lead)
    except native.EngineError as exc:
        raise ModelError(f"the C++ kernel rejects the patched model's PATCH_STAGE options: {exc}") from None


def verify(original_bytes: bytes, patched_bytes: bytes, input_sets: list, engines=("python",)) -> VerifyReport:
    """engines: "python" (reference executor), "cpp" (the C++ engine), or a
    callable (options, op inputs, output shape) -> stage output."""
    return verify_files(ModelFile.from_bytes(original_bytes, "original model"),
                        ModelFile.from_bytes(patched_bytes, "patched model"), input_sets, engines)


def verify_files(original, patched, input_sets: list, engines=("python",)) -> VerifyReport:
    """verify() on models already read (ModelFile: bytes, object tree, graph)."""
    if not input_sets:
        raise ModelError("no inputs to verify on (give at least one)")
    original_bytes, patched_model = original.data, patched.model
    g_orig, g_patched = original.graph, patched.graph
    stage_ops = patch_ops(g_patched)
    oracle.require_known_ops(g_orig, " (the original model must run in TFLM, the oracle)")
    by_name = {}
    for t in g_orig.tensors:
        by_name.setdefault(t.name, []).append(t.index)

    def original_tensor(t: int) -> int:
        matches = by_name.get(g_patched.tensors[t].name, [])
        if len(matches) != 1:
            raise ModelError(f"tensor {g_patched.tensors[t].name!r} of a PATCH_STAGE is not in the original "
                             "model: are these two models original and patched?")
        return matches[0]

    for op in stage_ops:
        _check_pair(g_orig, g_patched, original_tensor(op.outputs[0]), op.outputs[0])
        validated_plan(op, g_patched)  # what the kernel's Prepare would refuse is bad input, not a mismatch
        if any(t < 0 or not g_patched.tensors[t].is_constant for t in op.inputs[1:]):
            raise ModelError(f"the patched model's PATCH_STAGE at op {op.index} has inputs after the first that "
                             "are not constants")
    stages = [(op, original_tensor(op.inputs[0]), original_tensor(op.outputs[0]),
               [g_patched.tensors[t].data for t in op.inputs[1:]]) for op in stage_ops]
    rest, rest_inputs = rest_model(patched_model)
    model_inputs = {t: k for k, t in enumerate(g_patched.inputs)}
    keep = tuple({t for _, i, o, _ in stages for t in (i, o)})
    report = VerifyReport(engines=list(engines))
    for inputs in input_sets:
        run = oracle.run(original_bytes, inputs, len(g_orig.outputs), keep_tensors=keep)
        stage_outputs = {}
        for op, in_t, out_t, constants in stages:
            expected = run.tensors[out_t]
            for engine in engines:
                got = _run_engine(engine, op.custom_options, [run.tensors[in_t]] + constants, expected.shape,
                                  stage_overlap.planned_output_lead(g_patched, op))
                if got.shape != expected.shape or got.tobytes() != expected.tobytes():
                    report.stage_mismatches += 1
                    if not report.first_difference:
                        report.first_difference = f"input {report.inputs}: {engine} output of the PATCH_STAGE " \
                                                  f"at op {op.index} {_difference(got, expected)}"
                stage_outputs[op.outputs[0]] = got
        feed = [inputs[model_inputs[t]] if t in model_inputs else stage_outputs[t] for t in rest_inputs]
        rest_run = oracle.run(rest, feed, len(g_orig.outputs))
        for a, b in zip(rest_run.outputs, run.outputs):
            if a.tobytes() != b.tobytes():
                report.output_mismatches += 1
                if not report.first_difference:
                    report.first_difference = f"input {report.inputs}: model outputs differ"
                break
        report.inputs += 1
    return report


def _difference(got: np.ndarray, expected: np.ndarray) -> str:
    if got.size != expected.size:
        return f"has shape {list(got.shape)}, TFLM's {list(expected.shape)}"
    diff = int(np.count_nonzero(got.reshape(-1) != expected.reshape(-1)))
    return f"differs in {diff:,} of {expected.size:,} bytes"


def require_identical(report: VerifyReport) -> None:
    if not report.identical:
        raise VerifyError(f"patched model is NOT bit-identical: {report.first_difference}")


class PatchedRunner:
    """Runs a patched model: PATCH_STAGE ops in an engine, every run of other ops between them in TFLM.

    Each run of ops becomes a small model (built once) whose inputs are the tensors it reads from
    before it and whose outputs are the tensors read after it or given by the model.
    """

    def __init__(self, patched_model, stage_fn):
        """stage_fn(op, stage input array) -> stage output array, for a PATCH_STAGE op of build_graph."""
        self.graph = build_graph(patched_model)
        self.stage_fn = stage_fn
        g = self.graph
        stage_ops = {op.index for op in patch_ops(g)}
        self.steps = []
        run: list = []
        for op in g.ops + [None]:
            if op is not None and op.index not in stage_ops:
                run.append(op.index)
                continue
            if run:
                self.steps.append(("tflm",) + self._segment(patched_model, run))
                run = []
            if op is not None:
                self.steps.append(("stage", op))

    def _segment(self, patched_model, indices: list) -> tuple:
        g = self.graph
        inside = set(indices)
        produced = {t for i in indices for t in g.ops[i].outputs}
        reads = []
        for i in indices:
            for t in g.ops[i].inputs:
                if t >= 0 and t not in produced and not g.tensors[t].is_constant and t not in reads:
                    reads.append(t)
        later = {t for op in g.ops if op.index not in inside and op.index > max(indices) for t in op.inputs}
        writes = [t for t in sorted(produced) if t in later or t in g.outputs]
        model = copy.deepcopy(patched_model)
        sg = model.subgraphs[0]
        sg.operators = [sg.operators[i] for i in indices]
        sg.inputs, sg.outputs = list(reads), list(writes)
        model.signatureDefs = []
        drop_unused_opcodes(model)
        return model_io.serialize_model(model), reads, writes

    def run(self, inputs: list) -> list:
        values = dict(zip(self.graph.inputs, inputs))
        for step in self.steps:
            if step[0] == "stage":
                op = step[1]
                values[op.outputs[0]] = self.stage_fn(op, values[op.inputs[0]])
            else:
                _, model, reads, writes = step
                result = oracle.run(model, [values[t] for t in reads], len(writes))
                values.update(zip(writes, result.outputs))
        return [values[t] for t in self.graph.outputs]

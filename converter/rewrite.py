"""Rewrite the model: every stage's ops become one PATCH_STAGE op; nothing else changes.

Tensors the stage no longer needs are removed and the rest renumbered in their
original order (so TFLM's planner sees them in the order the arena prediction
assumed); buffers and operator codes that became unused are dropped; every
index (ops, subgraph inputs/outputs, signatures, metadata) is remapped. A
metadata entry `tflm_patch.plan` records the plan.
"""
from __future__ import annotations

import copy
import json

import numpy as np

from . import options
from .errors import ModelError
from .planner import Plan, tensor_mapping
from .schema import BuiltinOperator, schema

PLAN_METADATA = "tflm_patch.plan"
BUFFER_ALIGNMENT = 16


class _AlignedBufferT(schema.BufferT):
    """A Buffer whose data starts on a 16-byte boundary, as TFLM expects for weights."""

    def Pack(self, builder):
        data = None
        if self.data is not None and len(self.data) > 0:
            raw = np.asarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
            builder.head = builder.head - len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            data = builder.EndVector(len(raw)) if _end_vector_takes_length() else builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)


def _end_vector_takes_length() -> bool:
    import inspect

    import flatbuffers
    params = inspect.signature(flatbuffers.Builder.EndVector).parameters
    return "vectorNumElems" in params and params["vectorNumElems"].default is inspect.Parameter.empty


def _custom_opcode_index(model) -> int:
    for i, code in enumerate(model.operatorCodes):
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        if max(code.builtinCode, code.deprecatedBuiltinCode) == BuiltinOperator.CUSTOM and custom == options.CUSTOM_CODE:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = BuiltinOperator.CUSTOM
    code.deprecatedBuiltinCode = BuiltinOperator.CUSTOM
    code.customCode = options.CUSTOM_CODE
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _remap(values, mapping):
    if values is None:
        return None
    return [mapping[int(v)] if int(v) >= 0 else int(v) for v in values]


def plan_summary(plan: Plan, tool_version: str) -> dict:
    stages = [{
        "stage_ops": sp.stage.op_indices, "grid": list(sp.grid), "caching": sp.caching,
        "format_version": sp.stage_plan.version,
        "grid_rows": sp.stage_plan.grid_rows, "grid_cols": sp.stage_plan.grid_cols,
        "scratch_bytes": sp.stage_plan.scratch_bytes,
        "macs_original": sp.macs_original, "macs_patched": sp.macs_patched,
    } for sp in plan.stages]
    first = stages[0]
    return {
        "tool": "tflm-patch", "version": tool_version, "stages": stages,
        # The first stage, as version-1 records had it.
        "format_version": first["format_version"], "stage_ops": first["stage_ops"], "grid": first["grid"],
        "grid_rows": first["grid_rows"], "grid_cols": first["grid_cols"], "scratch_bytes": first["scratch_bytes"],
        "predicted_arena_before": plan.arena_before, "predicted_arena_after": plan.arena_after,
        "macs_original": plan.macs_original, "macs_patched": plan.macs_patched,
    }


OFFLINE_PLAN_METADATA = "OfflineMemoryAllocation"


def rewrite_model(original, plan: Plan, tool_version: str):
    """A new ModelT with the stage replaced; `original` is not modified."""
    if any(_name(m) == OFFLINE_PLAN_METADATA for m in original.metadata or []):
        # Its per-tensor offsets would no longer match the tensors (and our arena prediction
        # replays the online planner only).
        raise ModelError("models with an offline memory plan (OfflineMemoryAllocation metadata) are not supported")
    model = copy.deepcopy(original)
    sg = model.subgraphs[0]
    opcode = _custom_opcode_index(model)
    by_start = {sp.stage.start: sp for sp in plan.stages}
    operators, i = [], 0
    while i < len(sg.operators):
        sp = by_start.get(i)
        if sp is None:
            operators.append(sg.operators[i])
            i += 1
            continue
        op = schema.OperatorT()
        op.opcodeIndex = opcode
        op.inputs = [sp.stage.input_tensor] + list(sp.stage.constants)
        op.outputs = [sp.stage.output_tensor]
        op.customOptions = list(options.encode(sp.stage_plan))
        op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
        op.builtinOptionsType = 0
        operators.append(op)
        i = sp.stage.end
    sg.operators = operators

    # Tensors: drop the stages' own, keep the order of the rest (as planner.patched_graph predicts).
    removed = set().union(*(sp.stage.removed_tensors for sp in plan.stages))
    tensor_map = tensor_mapping(len(sg.tensors), removed)
    sg.tensors = [sg.tensors[old] for old in tensor_map]
    for o in sg.operators:
        o.inputs = _remap(o.inputs, tensor_map)
        o.outputs = _remap(o.outputs, tensor_map)
        o.intermediates = _remap(o.intermediates, tensor_map)
    sg.inputs = _remap(sg.inputs, tensor_map)
    sg.outputs = _remap(sg.outputs, tensor_map)
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex != 0:
            continue
        for tmap in list(sig.inputs or []) + list(sig.outputs or []):
            tmap.tensorIndex = tensor_map[tmap.tensorIndex]

    # Metadata: the plan, as JSON in a new buffer.
    summary = json.dumps(plan_summary(plan, tool_version), sort_keys=True).encode()
    buf = schema.BufferT()
    buf.data = np.frombuffer(summary, dtype=np.uint8).copy()
    model.buffers.append(buf)
    meta = schema.MetadataT()
    meta.name = PLAN_METADATA
    meta.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _name(m) != PLAN_METADATA] + [meta]

    if plan.offline_offsets:  # the planner found a placement better than TFLM's greedy one
        from . import offline_plan
        model = offline_plan.with_offline_plan(model, sg, plan.offline_offsets)
    _drop_unused_buffers(model)
    drop_unused_opcodes(model)
    model.buffers = [_aligned(b) for b in model.buffers]
    return model


def _name(meta) -> str:
    return meta.name.decode() if isinstance(meta.name, bytes) else (meta.name or "")


def _drop_unused_buffers(model) -> None:
    used = {0}  # buffer 0 is the empty sentinel by convention
    for sg in model.subgraphs:
        used.update(t.buffer for t in sg.tensors or [])
    used.update(m.buffer for m in model.metadata or [])
    kept = sorted(used)
    mapping = {old: new for new, old in enumerate(kept)}
    model.buffers = [model.buffers[i] for i in kept]
    for sg in model.subgraphs:
        for t in sg.tensors or []:
            t.buffer = mapping[t.buffer]
    for m in model.metadata or []:
        m.buffer = mapping[m.buffer]


def drop_unused_opcodes(model) -> None:
    used = sorted({o.opcodeIndex for sg in model.subgraphs for o in sg.operators or []})
    mapping = {old: new for new, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[i] for i in used]
    for sg in model.subgraphs:
        for o in sg.operators or []:
            o.opcodeIndex = mapping[o.opcodeIndex]


def _aligned(buf):
    new = _AlignedBufferT()
    new.data, new.offset, new.size = buf.data, buf.offset, buf.size
    return new

"""Tell whether a patched model belongs to an original, and map its ops to the original's.

A patched model is its original with runs of ops replaced by PATCH_STAGE ops
(the runs are recorded in the `tflm_patch.plan` metadata); every other op, its
constant inputs and the model's inputs and outputs are the original's. The
report and the CLI's summaries number ops as in the original model.
"""
from __future__ import annotations

import json

from .errors import ModelError
from .graph import Graph
from .options import CUSTOM_CODE
from .schema import BuiltinOperator

PLAN_METADATA = "tflm_patch.plan"   # the name rewrite.py gives the plan record


def _meta_name(meta) -> str:
    return meta.name.decode() if isinstance(meta.name, bytes) else (meta.name or "")


def plan_record(model) -> dict | None:
    """The plan record of a patched model (None if it has none)."""
    for m in model.metadata or []:
        if _meta_name(m) == PLAN_METADATA:
            try:
                return json.loads(bytes(bytearray(model.buffers[m.buffer].data)))
            except (ValueError, TypeError, IndexError):
                raise ModelError(f"corrupt {PLAN_METADATA} metadata") from None
    return None


def stage_runs(record: dict) -> list:
    """The original op indices of every PATCH_STAGE op, in model order.

    Accepts a record with one stage ("stage_ops") or several ("stages", each
    with "stage_ops" or "ops")."""
    if isinstance(record.get("stages"), list):
        runs = [list(s.get("stage_ops", s.get("ops", []))) for s in record["stages"]]
    else:
        runs = [list(record.get("stage_ops", []))]
    runs = [sorted(int(i) for i in r) for r in runs if r]
    if not runs:
        raise ModelError(f"corrupt {PLAN_METADATA} metadata: no stage ops")
    return sorted(runs)


def patch_stage_ops(graph: Graph) -> list:
    return [op.index for op in graph.ops
            if op.opcode == BuiltinOperator.CUSTOM and op.custom_code == CUSTOM_CODE]


def is_patched(model, graph: Graph) -> bool:
    return bool(patch_stage_ops(graph)) or plan_record(model) is not None


def require_roles(original_model, original: Graph, patched_model, patched: Graph,
                  original_name: str = "the first model", patched_name: str = "the second model") -> dict:
    """The patched model's plan record, after checking the first model is an original and the second patched."""
    if is_patched(original_model, original):
        raise ModelError(f"{original_name} is itself a patched model (it has a PATCH_STAGE op): "
                         "give the original model first, then the patched one")
    record = plan_record(patched_model)
    if not patch_stage_ops(patched) or record is None:
        raise ModelError(f"{patched_name} is not a model patched by tflm-patch (no PATCH_STAGE op "
                         f"with {PLAN_METADATA} metadata)")
    return record


def _signature(graph: Graph, t: int) -> tuple:
    tensor = graph.tensors[t]
    return tensor.type_name, tuple(tensor.shape)


def _mismatch(why: str):
    return ModelError(f"the two models do not belong together: {why}")


def op_map(original: Graph, patched: Graph, record: dict) -> list:
    """For every op of the patched model, the original op indices it computes.

    Raises ModelError saying why when the patched model is not the original
    with the recorded runs replaced by PATCH_STAGE ops."""
    runs = stage_runs(record)
    for name, a, b in (("inputs", original.inputs, patched.inputs), ("outputs", original.outputs, patched.outputs)):
        sa, sb = [_signature(original, t) for t in a], [_signature(patched, t) for t in b]
        if sa != sb:
            raise _mismatch(f"model {name} differ ({_describe(sa)} vs {_describe(sb)})")
    mapping, i = [], 0
    pending = list(runs)
    for op in patched.ops:
        is_stage = op.opcode == BuiltinOperator.CUSTOM and op.custom_code == CUSTOM_CODE
        if pending and pending[0][0] == i:
            run = pending.pop(0)
            if not is_stage:
                raise _mismatch(f"op {op.index} of the patched model ({op.name}) should be the PATCH_STAGE "
                                f"for ops {_span(run)} of the original")
            if run != list(range(run[0], run[-1] + 1)) or run[-1] >= len(original.ops):
                raise _mismatch(f"the recorded stage ops {_span(run)} are not ops of the original model")
            produced = {_signature(original, t) for j in run for t in original.ops[j].outputs}
            if not all(_signature(patched, t) in produced for t in op.outputs):
                raise _mismatch(f"the PATCH_STAGE op {op.index} does not compute what ops {_span(run)} of the "
                                "original compute")
            # Weights the stage kept from the original (same tensor name) must be the original's.
            weights = {original.tensors[t].name: original.tensors[t] for j in run for t in original.ops[j].inputs
                       if t >= 0 and original.tensors[t].is_constant}
            for t in op.inputs:
                mine = patched.tensors[t] if t >= 0 else None
                theirs = weights.get(mine.name) if mine is not None and mine.is_constant else None
                if theirs is not None and theirs.data.tobytes() != mine.data.tobytes():
                    raise _mismatch(f"the PATCH_STAGE op {op.index} has other weights in {mine.name!r} than ops "
                                    f"{_span(run)} of the original")
            mapping.append(run)
            i = run[-1] + 1
            continue
        if is_stage:
            raise _mismatch(f"op {op.index} of the patched model is a PATCH_STAGE the plan metadata does not record")
        if i >= len(original.ops):
            raise _mismatch(f"the patched model has more ops than the original ({len(original.ops)})")
        _same_op(original, original.ops[i], patched, op)
        mapping.append([i])
        i += 1
    if pending or i != len(original.ops):
        raise _mismatch(f"the patched model covers {i} of the original's {len(original.ops)} ops")
    return mapping


def _same_op(original: Graph, a, patched: Graph, b) -> None:
    where = f"op {b.index} of the patched model ({b.name}) vs op {a.index} of the original ({a.name})"
    if (a.opcode, a.custom_code) != (b.opcode, b.custom_code):
        raise _mismatch(f"{where}: different operators")
    if len(a.inputs) != len(b.inputs) or len(a.outputs) != len(b.outputs):
        raise _mismatch(f"{where}: different numbers of inputs or outputs")
    for ta, tb in zip(a.inputs + a.outputs, b.inputs + b.outputs):
        if (ta < 0) != (tb < 0):
            raise _mismatch(f"{where}: different inputs")
        if ta < 0:
            continue
        x, y = original.tensors[ta], patched.tensors[tb]
        if _signature(original, ta) != _signature(patched, tb):
            raise _mismatch(f"{where}: tensor {x.name!r} is {_describe([_signature(original, ta)])}, "
                            f"{y.name!r} is {_describe([_signature(patched, tb)])}")
        if x.is_constant != y.is_constant or (x.is_constant and x.data.tobytes() != y.data.tobytes()):
            raise _mismatch(f"{where}: different constant data in {y.name!r} (other weights?)")
        if (x.scales.tobytes(), x.zero_points.tobytes()) != (y.scales.tobytes(), y.zero_points.tobytes()):
            raise _mismatch(f"{where}: different quantization of {y.name!r}")


def _describe(signatures) -> str:
    return ", ".join(f"{t} {'x'.join(map(str, s))}" for t, s in signatures) or "none"


def _span(run) -> str:
    return f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0])


def describe_ops(original: Graph, run: list, is_stage: bool) -> str:
    """'op 5 (CONV_2D)' or 'ops 0-4 (PATCH_STAGE)', in the original's numbering."""
    name = "PATCH_STAGE" if is_stage else original.ops[run[0]].name
    return f"{'ops' if len(run) > 1 else 'op'} {_span(run)} ({name})"

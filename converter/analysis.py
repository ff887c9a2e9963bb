"""Per-op memory and compute table, and the predicted TFLM arena of a model."""
from __future__ import annotations

from dataclasses import dataclass

from . import arena, stage_cost
from .graph import Graph
from .layers import Unsupported, lower_op
from .options import CUSTOM_CODE
from .plan_validation import validated_plan
from .schema import BuiltinOperator


@dataclass
class OpRow:
    index: int
    name: str
    input_shapes: list     # activation inputs
    output_shapes: list
    io_bytes: int          # activation bytes read + written
    macs: int
    live_bytes: int        # sum of the planned buffers live during the op
    extent_bytes: int      # highest arena byte in use during the op (after TFLM's packing)


@dataclass
class Analysis:
    rows: list
    arena: arena.ArenaPlan

    @property
    def peak_row(self) -> OpRow:
        return max(self.rows, key=lambda r: (r.extent_bytes, r.live_bytes))

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)


def patch_stage_scratch(graph: Graph) -> dict:
    """Scratch requests of PATCH_STAGE ops, read from their options."""
    requests = {}
    for op in graph.ops:
        if op.opcode == BuiltinOperator.CUSTOM and op.custom_code == CUSTOM_CODE:
            scratch = validated_plan(op, graph).scratch_bytes
            if scratch > 0:
                requests[op.index] = [scratch]
    return requests


def op_macs(graph: Graph, op) -> int:
    if op.opcode == BuiltinOperator.CUSTOM and op.custom_code == CUSTOM_CODE:
        return stage_cost.plan_macs(validated_plan(op, graph))
    if op.opcode == BuiltinOperator.FULLY_CONNECTED:
        w = graph.tensors[op.inputs[1]]
        out = graph.tensors[op.outputs[0]]
        return out.num_elements * (w.shape[-1] if w.shape else 1)
    try:
        layer = lower_op(graph, op, [-1] * len(op.inputs))
    except Unsupported:
        return 0
    return layer.out_shape[0] * layer.out_shape[1] * layer.macs_per_output_pixel()


def analyze(graph: Graph) -> Analysis:
    plan = arena.plan_arena(graph, patch_stage_scratch(graph))
    rows = []
    for op in graph.ops:
        acts_in = [t for t in op.inputs if t >= 0 and not graph.tensors[t].is_constant]
        io = sum(graph.tensors[t].nbytes for t in acts_in + op.outputs)
        scope = op.index + 1
        rows.append(OpRow(op.index, op.name, [graph.tensors[t].shape for t in acts_in],
                          [graph.tensors[t].shape for t in op.outputs], io, op_macs(graph, op),
                          plan.live_bytes_at(scope), plan.extent_at(scope)))
    return Analysis(rows, plan)

"""Where a stage's output may lie over its own input (docs/patch_stage_format.md, "Output over the input").

The kernel reads the stage input and writes the stage output patch by patch,
in row-major tile order. Once every patch that reads an input byte has run,
that byte is dead, and the output may take its place. The contract is one
number per plan, the *lead*: how many bytes before the input the output must
start at least, when the two overlap.

    lead = max over patches p of  write_end(p) - min over patches q >= p of read_start(q)

write_end(p) is the byte offset (in the output) one past the last byte patch p
writes: ((tile.y1 - 1) * out_width + tile.x1) * out_channels. read_start(q) is
the byte offset (in the input) of the first byte patch q reads: the corner of
the union of what the layers reading the stage input need
(regions.patch_regions), (y0 * in_width + x0) * in_channels * element size.
Row-major images make every byte a patch writes lie below write_end and every
byte it reads lie at or above read_start, so an output that starts `lead` bytes
(or more) before the input never overwrites a byte a later patch, or the same
one, still reads. The kernel computes the same number in Prepare
(micro_ops/stage_overlap.cc) and checks the real tensor addresses in Eval;
`check` is that check.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .arena import align_up
from .layers import INPUT_FLOAT32, INPUT_INT8, QUANTIZE
from .options import CUSTOM_CODE, decode, fail
from .regions import grid_tiles, is_empty, patch_regions

NO_LIMIT = -(1 << 63)  # no patch reads the input: any overlap is safe
OVERLAP_MESSAGE = "stage output overlaps input bytes still to be read"
LEAD_ALIGNMENT = 16    # the planner keeps both tensors on TFLM's 16-byte arena alignment


def element_bytes(input_type: int) -> int:
    return 4 if input_type == INPUT_FLOAT32 else 1


def min_output_lead(layers: list, grid_rows: list, grid_cols: list, input_shape: tuple, input_type: int) -> int:
    """The least number of bytes the output must start before the input when they overlap (may be
    negative: then the output may start after the input's first byte); NO_LIMIT if nothing is read."""
    _, in_w, in_c = input_shape
    _, out_w, out_c = layers[-1].out_shape
    size = element_bytes(input_type)
    writes, reads = [], []
    for tile in grid_tiles(grid_rows, grid_cols):
        _, stage_in = patch_regions(layers, tile)
        writes.append(None if is_empty(tile) else ((tile[1] - 1) * out_w + tile[3]) * out_c)
        reads.append(None if is_empty(stage_in) else (stage_in[0] * in_w + stage_in[2]) * in_c * size)
    lead, low = NO_LIMIT, None
    for write, read in zip(reversed(writes), reversed(reads)):
        if read is not None:
            low = read if low is None else min(low, read)
        if write is not None and low is not None:
            lead = max(lead, write - low)
    return lead


def plan_lead(plan) -> int:
    """min_output_lead of a decoded StagePlan."""
    return min_output_lead(plan.layers, plan.grid_rows, plan.grid_cols, plan.input_shape, plan.input_type)


def planned_lead(layers: list, grid_rows: list, grid_cols: list, input_shape: tuple, input_type: int) -> int:
    """The lead the planner gives a fused input/output: the least one, at least 0, on 16 bytes."""
    lead = max(0, min_output_lead(layers, grid_rows, grid_cols, input_shape, input_type))
    return (lead + LEAD_ALIGNMENT - 1) // LEAD_ALIGNMENT * LEAD_ALIGNMENT


def fused_layout(input_array: np.ndarray, output_shape: tuple, lead: int) -> tuple:
    """One byte buffer holding the output `lead` bytes before the input (over it), as an offline
    plan lays them: (buffer, input view, output view)."""
    in_bytes, out_bytes = input_array.nbytes, int(np.prod(output_shape))
    in_at, out_at = max(lead, 0), max(-lead, 0)
    memory = np.zeros(max(in_at + in_bytes, out_at + out_bytes), dtype=np.uint8)
    memory[in_at:in_at + in_bytes] = np.frombuffer(input_array.tobytes(), np.uint8)
    view_in = memory[in_at:in_at + in_bytes].view(input_array.dtype).reshape(input_array.shape)
    view_out = memory[out_at:out_at + out_bytes].view(np.int8).reshape(output_shape)
    return memory, view_in, view_out


def overlaps(input_offset: int, input_bytes: int, output_offset: int, output_bytes: int) -> bool:
    return input_offset < output_offset + output_bytes and output_offset < input_offset + input_bytes


def check(min_lead: int, input_offset: int, input_bytes: int, output_offset: int, output_bytes: int) -> None:
    """The kernel's Eval check (RunStage): an output over the input must start `min_lead` bytes before it."""
    if overlaps(input_offset, input_bytes, output_offset, output_bytes) and \
            input_offset - output_offset < min_lead:
        fail(OVERLAP_MESSAGE, "output")


@dataclass(frozen=True)
class Fusion:
    """A stage output laid `lead` bytes before the stage input, over it (offline plan)."""
    output: int   # tensor indices
    input: int
    lead: int


@functools.lru_cache(maxsize=256)
def _options_lead(options: bytes) -> int:
    plan = decode(options)
    return planned_lead(plan.layers, plan.grid_rows, plan.grid_cols, plan.input_shape, plan.input_type)


def fusions(graph) -> list:
    """The PATCH_STAGE ops whose output may take its input's place: the input is an activation that
    no later op reads and that is not a model output, and the lead leaves the two overlapping (a
    single-patch stage writes its last byte only after reading its input: its lead is the output's size)."""
    last_read = {}
    for op in graph.ops:
        for t in op.inputs:
            if t >= 0:
                last_read[t] = op.index
    found = []
    for op in graph.ops:
        if op.custom_code != CUSTOM_CODE or not op.custom_options or not op.inputs or len(op.outputs) != 1:
            continue
        source, output = op.inputs[0], op.outputs[0]
        tensor = graph.tensors[source]
        if source < 0 or tensor.is_constant or tensor.is_variable or source in graph.outputs \
                or last_read.get(source) != op.index or op.inputs.count(source) != 1:
            continue
        lead = _options_lead(bytes(op.custom_options))
        if lead < align_up(graph.tensors[output].nbytes):  # else the output ends before its input: nothing to fuse
            found.append(Fusion(output, source, lead))
    return found


def stage_saving(graph, stage, rows: list, cols: list, input_shape: tuple) -> int:
    """Bytes an offline plan saves by laying the stage's output over its input (TFLM's 16-byte
    sizes), 0 where the input lives on after the stage."""
    source = graph.tensors[stage.input_tensor]
    if source.is_constant or source.is_variable or stage.input_tensor in graph.outputs or any(
            stage.input_tensor in op.inputs for op in graph.ops[stage.end:]):
        return 0
    first = stage.layers[0]
    input_type = first.input_type if first.op == QUANTIZE else INPUT_INT8
    lead = planned_lead(stage.layers, rows, cols, input_shape, input_type)
    size_in = align_up(source.nbytes)
    size_out = align_up(graph.tensors[stage.output_tensor].nbytes)
    return max(0, size_in + size_out - max(size_out, lead + size_in))


def planned_output_lead(graph, op) -> int | None:
    """How many bytes before its input the model's offline plan lays a PATCH_STAGE's output, where
    the two overlap; None where they do not (or TFLM places them)."""
    offsets = graph.offline_offsets or {}
    source, output = op.inputs[0], op.outputs[0]
    at_in, at_out = offsets.get(source, -1), offsets.get(output, -1)
    if at_in < 0 or at_out < 0:
        return None
    if not overlaps(at_in, graph.tensors[source].nbytes, at_out, graph.tensors[output].nbytes):
        return None
    return at_in - at_out

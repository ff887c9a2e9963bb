"""Find the stages a model can patch: leading runs of ops with one way in and one way out."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import NoGainError, PlanError
from .graph import Graph
from .layers import QUANTIZE, STAGE_INPUT, Unsupported, lower_op
from .layers_dilated import lower_dilated
from .schema import BuiltinOperator


@dataclass
class Stage:
    """Ops [start, end) of the graph, lowered to layers: one tensor in, one tensor out."""
    start: int
    end: int
    layers: list
    input_tensor: int
    output_tensor: int
    constants: list          # graph tensor indices, in PATCH_STAGE input order [1..]
    removed_tensors: set     # tensors that no longer exist after the rewrite

    @property
    def split(self) -> int:
        """For a stage that starts at op 0: the number of ops it takes."""
        return self.end

    @property
    def op_indices(self) -> list:
        return list(range(self.start, self.end))


def _assign_constant_slots(layers: list) -> list:
    constants = []
    for layer in layers:
        for attr, tensor in (("filter", layer.filter_tensor), ("bias", layer.bias_tensor),
                             ("constant", layer.constant_tensor)):
            if tensor < 0:
                setattr(layer, attr, -1)
                continue
            if tensor not in constants:
                constants.append(tensor)
            setattr(layer, attr, 1 + constants.index(tensor))
    return constants


def stages_from(graph: Graph, start: int, lowered: dict | None = None) -> tuple:
    """Every valid stage that starts at op `start` (by end), and why the walk stopped where it did.

    lowered: a dict shared by walks over the same graph, op index -> (layers, internal tensors) or
    Unsupported, so that each op is lowered once (stages copy their layers; the records are never changed)."""
    producer_layer = {}
    layers: list = []
    stage_input = None
    stages = []
    stop_reason = "the whole graph is made of stage ops"
    graph_outputs = set(graph.outputs)
    index = start
    while index < len(graph.ops):
        op = graph.ops[index]
        sources, external = [], None
        for t in op.inputs:
            if t < 0 or graph.tensors[t].is_constant:
                continue
            if t in producer_layer:
                sources.append(producer_layer[t])
            elif stage_input in (None, t) and external in (None, t):  # one tensor in, also within the first op
                sources.append(STAGE_INPUT)
                external = t
            else:
                external = "second"
                break
        if external == "second":
            stop_reason = f"op {op.index} ({op.name}) reads a second tensor from outside the stage"
            break
        if lowered is None or op.index not in lowered:
            try:
                result = _lower(graph, op, sources, len(layers))
            except Unsupported as exc:
                result = exc
            if lowered is not None:
                lowered[op.index] = result
        else:  # the records do not depend on their sources but for `inputs`
            result = lowered[op.index]
            if not isinstance(result, Unsupported):
                result = _rebase(result, sources, len(layers))
        if isinstance(result, Unsupported):
            stop_reason = f"op {op.index} ({op.name}): {result}"
            break
        new_layers, internal = result
        if layers and any(layer.op == QUANTIZE for layer in new_layers):
            stop_reason = f"op {op.index} (QUANTIZE): only a stage's first layer may quantize"
            break
        if external is not None:
            stage_input = external
        last = graph.ops[op.index + len(internal)]  # a lowered group ends with the op after its internal tensors
        layers.extend(new_layers)
        for t in internal + [last.outputs[0]]:
            producer_layer[t] = len(layers) - 1
        end = last.index + 1
        index = end
        escaping = {t for t in producer_layer
                    if t in graph_outputs or any(c >= end for c in graph.consumers.get(t, []))}
        if escaping == {last.outputs[0]}:
            stages.append(_make_stage(graph, layers, start, end, stage_input, last.outputs[0], producer_layer))
    return stages, stop_reason


def _rebase(result: tuple, sources: list, first_layer: int) -> tuple:
    """A memoized (layers, internal tensors) for this walk: the first layer reads `sources`, each
    further layer of a group the one before it."""
    new_layers, internal = result
    rebased = [dataclasses.replace(new_layers[0], inputs=list(sources))]
    rebased += [dataclasses.replace(layer, inputs=[first_layer + k]) for k, layer in enumerate(new_layers[1:])]
    return rebased, internal


def _lower(graph: Graph, op, sources: list, first_layer: int) -> tuple:
    """The layers an op (or the op group it starts) lowers to, and the group's internal tensors.

    A group of n ops has n - 1 internal tensors (each read only by the next op of the group).
    """
    if op.opcode == BuiltinOperator.SPACE_TO_BATCH_ND:
        return lower_dilated(graph, op.index, sources, first_layer)
    return [lower_op(graph, op, sources)], []


def candidate_stages(graph: Graph) -> tuple:
    """Every valid stage that starts at op 0, and why the walk stopped where it did."""
    return stages_from(graph, 0)


def all_stages(graph: Graph) -> list:
    """Every valid stage, from any start, in (start, end) order; NoGainError when there is none."""
    lowered = {}
    stages = [st for start in range(len(graph.ops)) for st in stages_from(graph, start, lowered)[0]]
    if not stages:
        raise NoGainError(f"nothing to patch: {stages_from(graph, 0)[1]}; no op of the model can start "
                          "a stage; model left unchanged")
    return stages


def _make_stage(graph, layers, start, end, stage_input, stage_output, producer_layer) -> Stage:
    import copy
    layers = [copy.copy(layer) for layer in layers]  # slots are per stage; parameters are shared, never changed
    constants = _assign_constant_slots(layers)
    removed = {t for t in producer_layer if t != stage_output}
    used_elsewhere = {t for op in graph.ops[:start] + graph.ops[end:] for t in op.inputs}
    for op in graph.ops[start:end]:
        for t in op.inputs:
            if t >= 0 and graph.tensors[t].is_constant and t not in constants and t not in used_elsewhere:
                removed.add(t)
    return Stage(start, end, layers, stage_input, stage_output, constants, removed)


def select_stage(graph: Graph, split: int | None = None) -> list:
    """Stages from op 0 to consider: all of them, or the one with the requested split."""
    stages, reason = candidate_stages(graph)
    if not stages:
        # A valid model whose first op no stage can start with: nothing to gain, not bad input.
        raise NoGainError(f"nothing to patch: {reason}; model left unchanged")
    if split is None:
        return stages
    for s in stages:
        if s.split == split:
            return [s]
    valid = ", ".join(str(s.split) for s in stages)
    raise PlanError(f"--split {split} is impossible: valid splits are {valid} ({reason})")

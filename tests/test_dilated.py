"""Dilated convolutions as TFLite lowers them: SPACE_TO_BATCH_ND -> conv -> BATCH_TO_SPACE_ND as one layer."""
import os

import numpy as np
import pytest

from tflm_patch.converter import model_io, planner, rewrite, verify
from tflm_patch.converter.graph import build_graph, builtin_code
from tflm_patch.converter.layers import CONV, DEPTHWISE, PAD
from tflm_patch.converter.schema import BuiltinOperator, schema
from tflm_patch.converter.stage import candidate_stages

from .conftest import MODELS_DIR, run_cli

MODEL = os.path.join(MODELS_DIR, "dilation_space_to_batch.tflite")


def _ops(m):
    sg = m.subgraphs[0]
    return sg, [builtin_code(m.operatorCodes[op.opcodeIndex]) for op in sg.operators]


def _verify(model, seed=1):
    data = model_io.serialize_model(model)
    graph = build_graph(model_io.parse_model(data))
    plan = planner.make_plan(graph, max_mac_overhead=1.3)
    patched = model_io.serialize_model(rewrite.rewrite_model(model, plan, "test"))
    report = verify.verify(data, patched, verify.random_inputs(graph, 2, seed=seed), engines=("python", "cpp"))
    assert report.identical, report.first_difference
    return plan


def test_the_three_ops_become_one_dilated_layer_padded_with_zeros():
    graph = build_graph(model_io.load_model(MODEL))
    stages, _ = candidate_stages(graph)
    whole = max(stages, key=lambda s: s.end)
    assert whole.end == 8  # conv, 2 x (S2B, conv, B2S), conv: all in one stage
    kinds = [(layer.op, layer.dilation) for layer in whole.layers]
    # the inputs' zero point is -128 (after ReLU), not the 0 TFLM's SPACE_TO_BATCH_ND pads with: PAD layers
    assert kinds == [(CONV, (1, 1)), (PAD, (1, 1)), (CONV, (2, 2)), (PAD, (1, 1)), (DEPTHWISE, (3, 3)),
                     (CONV, (1, 1))]
    pad = whole.layers[1]
    assert pad.pad_value == 0 and pad.in_zp == [-128]
    # 45x45, rate 2: SPACE_TO_BATCH pads [2, 3], BATCH_TO_SPACE crops [0, 1]: SAME padding of the dilated conv
    assert pad.padding == (2, 2, 2, 2) and pad.out_shape == (49, 49, 16)
    assert whole.layers[2].padding == (0, 0, 0, 0) and whole.layers[2].out_shape == (45, 45, 16)


def test_zero_point_zero_keeps_the_padding_in_the_conv_and_stays_bit_identical():
    """With input zero point 0 the padding is the conv's own: one layer, no PAD."""
    m = model_io.load_model(MODEL)
    sg, codes = _ops(m)
    moves = [op for op, c in zip(sg.operators, codes)
             if c in (BuiltinOperator.SPACE_TO_BATCH_ND, BuiltinOperator.BATCH_TO_SPACE_ND)]
    for op in moves:  # the tensors around every SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND: zero point 0
        for t in (op.inputs[0], op.outputs[0]):
            sg.tensors[t].quantization.zeroPoint = [0]
    graph = build_graph(model_io.parse_model(model_io.serialize_model(m)))
    whole = max(candidate_stages(graph)[0], key=lambda s: s.end)
    assert [layer.op for layer in whole.layers] == [CONV, CONV, DEPTHWISE, CONV]
    assert whole.layers[1].dilation == (2, 2) and whole.layers[1].padding == (2, 2, 2, 2)
    assert whole.layers[2].dilation == (3, 3) and whole.layers[2].padding == (3, 3, 3, 3)
    plan = _verify(m)
    assert plan.arena_after < plan.arena_before


def test_the_model_converts_with_a_gain_and_verifies_with_both_engines(tmp_path):
    out = tmp_path / "p.tflite"
    code, stdout, err = run_cli("convert", MODEL, "-o", out, "--verify-inputs", "2")
    assert code == 0, err
    assert "SPACE_TO_BATCH_ND" not in stdout.split("peak after")[1]
    code, stdout, err = run_cli("verify", MODEL, out, "--inputs", "2", "--engine", "both")
    assert code == 0, err


def test_a_dynamic_batch_model_is_refused_with_the_reason():
    """TFLiteConverter with a dynamic batch writes batch 1 between the ops: TFLM computes 1 of 4 phases."""
    m = model_io.load_model(MODEL)
    sg, codes = _ops(m)
    for op, c in zip(sg.operators, codes):
        if c in (BuiltinOperator.SPACE_TO_BATCH_ND, BuiltinOperator.CONV_2D, BuiltinOperator.DEPTHWISE_CONV_2D):
            t = sg.tensors[op.outputs[0]]
            if t.shape[0] > 1:
                t.shape = [1] + list(t.shape[1:])
    graph = build_graph(model_io.parse_model(model_io.serialize_model(m)))
    stages, reason = candidate_stages(graph)
    assert max(s.end for s in stages) == 1
    assert "op 1 (SPACE_TO_BATCH_ND)" in reason and "batch 1, not 4" in reason and "dynamic batch" in reason


@pytest.mark.parametrize("what", ["crops", "block"])
def test_patterns_that_are_not_a_padded_dilated_conv_end_the_stage(what):
    m = model_io.load_model(MODEL)
    sg, codes = _ops(m)
    b2s = next(op for op, c in zip(sg.operators, codes) if c == BuiltinOperator.BATCH_TO_SPACE_ND)
    if what == "crops":  # SPACE_TO_BATCH_ND pads 0 rows at the top, BATCH_TO_SPACE_ND crops 1 there
        s2b = next(op for op, c in zip(sg.operators, codes) if c == BuiltinOperator.SPACE_TO_BATCH_ND)
        for t, value in ((s2b.inputs[2], [[0, 5], [2, 3]]), (b2s.inputs[2], [[1, 0], [0, 1]])):
            m.buffers[sg.tensors[t].buffer].data = np.frombuffer(np.array(value, np.int32).tobytes(), np.uint8).copy()
        expect = "crops more than SPACE_TO_BATCH_ND pads"
    else:  # a block shape for BATCH_TO_SPACE_ND of its own, differing from SPACE_TO_BATCH_ND's
        t = sg.tensors[b2s.inputs[1]]
        new = schema.TensorT()
        new.shape, new.type, new.name = [2], t.type, "other_block"
        b = schema.BufferT()
        b.data = np.frombuffer(np.array([2, 3], np.int32).tobytes(), np.uint8).copy()
        m.buffers.append(b)
        new.buffer = len(m.buffers) - 1
        sg.tensors.append(new)
        b2s.inputs = [b2s.inputs[0], len(sg.tensors) - 1, b2s.inputs[2]]
        expect = "block shapes differ"
    graph = build_graph(model_io.parse_model(model_io.serialize_model(m)))
    stages, reason = candidate_stages(graph)
    assert max(s.end for s in stages) == 1
    assert expect in reason

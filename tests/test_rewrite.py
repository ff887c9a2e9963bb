"""The rewrite changes the stage and nothing else; the output is written atomically."""
import json

import numpy as np

from tflm_patch.converter import analysis, model_io, pipeline, planner, rewrite
from tflm_patch.converter import stage as stage_mod
from tflm_patch.converter.graph import build_graph
from tflm_patch.converter.options import CUSTOM_CODE, decode
from tflm_patch.converter.schema import BuiltinOperator, schema

from .conftest import run_cli


def _plan_and_rewrite(data, **kw):
    model = model_io.parse_model(data)
    graph = build_graph(model)
    plan = planner.make_plan(graph, **kw)
    new_bytes = pipeline.write_patched(model, plan).data
    return model, graph, plan, new_bytes


def test_everything_after_the_stage_is_preserved(small_model_bytes):
    model, graph, plan, new_bytes = _plan_and_rewrite(small_model_bytes, patches=(2, 2), split=3)
    new_model = model_io.parse_model(new_bytes)
    new = build_graph(new_model)
    assert new.ops[0].name == CUSTOM_CODE
    assert [op.name for op in new.ops[1:]] == [op.name for op in graph.ops[3:]]
    for old_op, new_op in zip(graph.ops[3:], new.ops[1:]):
        for a, b in zip(old_op.inputs + old_op.outputs, new_op.inputs + new_op.outputs):
            ta, tb = graph.tensors[a], new.tensors[b]
            assert (ta.name, ta.shape, ta.type) == (tb.name, tb.shape, tb.type)
            assert (ta.data is None) == (tb.data is None)
            if ta.data is not None:
                assert ta.data.tobytes() == tb.data.tobytes()
            assert np.array_equal(ta.scales, tb.scales) and np.array_equal(ta.zero_points, tb.zero_points)
    assert [new.tensors[t].name for t in new.inputs] == [graph.tensors[t].name for t in graph.inputs]
    assert [new.tensors[t].name for t in new.outputs] == [graph.tensors[t].name for t in graph.outputs]
    # PATCH_STAGE: stage input, then the stage's constants; output: the stage output
    op = new.ops[0]
    assert new.tensors[op.inputs[0]].name == graph.tensors[graph.ops[0].inputs[0]].name
    assert new.tensors[op.outputs[0]].name == graph.tensors[graph.ops[2].outputs[0]].name
    assert all(new.tensors[t].is_constant for t in op.inputs[1:])
    # the stage's intermediate tensors are gone
    names = {t.name for t in new.tensors}
    assert graph.tensors[graph.ops[0].outputs[0]].name not in names
    assert graph.tensors[graph.ops[1].outputs[0]].name not in names
    # the plan is recorded in the metadata, the options decode
    meta = {m.name.decode() if isinstance(m.name, bytes) else m.name: m.buffer for m in new_model.metadata}
    record = json.loads(bytes(new_model.buffers[meta[rewrite.PLAN_METADATA]].data))
    assert record["grid"] == [2, 2] and record["stage_ops"] == [0, 1, 2]
    assert decode(op.custom_options).scratch_bytes == plan.stage_plan.scratch_bytes


def test_unused_buffers_and_opcodes_are_dropped(small_model_bytes):
    model, graph, plan, new_bytes = _plan_and_rewrite(small_model_bytes, patches=(2, 2), split=4)
    new_model = model_io.parse_model(new_bytes)
    used = {t.buffer for t in new_model.subgraphs[0].tensors} | {m.buffer for m in new_model.metadata} | {0}
    assert used == set(range(len(new_model.buffers)))
    names = [build_graph(new_model).ops[i].name for i in range(len(new_model.subgraphs[0].operators))]
    assert names == ["PATCH_STAGE", "MEAN"]
    assert len(new_model.operatorCodes) == 2


def _buffer_data_offsets(model_bytes):
    """(buffer index, file offset of its data, its bytes) for every non-empty buffer,
    read from the flatbuffer itself: Model.buffers[i].data is a [ubyte] vector."""
    root = schema.Model.GetRootAs(model_bytes, 0)
    found = []
    for i in range(root.BuffersLength()):
        buf = root.Buffers(i)
        assert buf.Offset() == 0, "buffer data outside the flatbuffer"
        if buf.DataLength() == 0:
            continue
        field = buf._tab.Offset(4)  # vtable slot of `data`
        start = buf._tab.Vector(field)  # where the vector's first element lies
        found.append((i, start, bytes(model_bytes[start:start + buf.DataLength()])))
    return found


def test_weights_are_16_byte_aligned_in_the_file(small_model_bytes):
    _, _, _, new_bytes = _plan_and_rewrite(small_model_bytes, patches=(2, 2), split=3)
    new_model = model_io.parse_model(new_bytes)
    located = _buffer_data_offsets(new_bytes)
    non_empty = [i for i, b in enumerate(new_model.buffers) if b.data is not None and len(b.data) > 0]
    assert [i for i, _, _ in located] == non_empty
    weights = {t.buffer for t in new_model.subgraphs[0].tensors if t.buffer != 0}
    assert weights <= set(non_empty)
    for i, start, data in located:
        # the offset located is that buffer's: its bytes are the ones the model holds
        assert data == np.asarray(new_model.buffers[i].data, dtype=np.uint8).tobytes()
        assert start % 16 == 0, f"buffer {i} starts at {start}"


def test_prediction_of_the_written_model_equals_the_plan(small_model_bytes):
    _, _, plan, new_bytes = _plan_and_rewrite(small_model_bytes)
    new = build_graph(model_io.parse_model(new_bytes))
    assert analysis.analyze(new).arena.head_bytes == plan.arena_after < plan.arena_before


def test_convert_writes_a_verified_model_and_never_touches_the_input(tmp_path, small_model_bytes):
    src = tmp_path / "m.tflite"
    src.write_bytes(small_model_bytes)
    out = tmp_path / "sub" / "m_patched.tflite"
    code, stdout, err = run_cli("convert", src, "-o", out)
    assert code == 0, err
    assert src.read_bytes() == small_model_bytes
    assert "Verified bit-identical" in stdout and "arena (planned, bytes)" in stdout
    code, stdout, err = run_cli("verify", src, out, "--inputs", "3")
    assert code == 0 and "bit-identical on 3 input(s)" in stdout, err
    code, stdout, err = run_cli("export-c", out, "-o", tmp_path / "model_data.cc", "--name", "g_patched")
    assert code == 0, err
    text = (tmp_path / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_patched[]" in text
    assert f"g_patched_len = {out.stat().st_size};" in text
    assert "extern const unsigned char g_patched[];" in (tmp_path / "model_data.h").read_text()
    code, stdout, err = run_cli("analyze", out)
    assert code == 0 and "PATCH_STAGE" in stdout
    code, stdout, err = run_cli("report", src, out, "-o", tmp_path / "report", "--sram-budget", "8KiB")
    assert code == 0, err
    import matplotlib.image
    picture = matplotlib.image.imread(str(tmp_path / "report" / "memory.png"))
    assert picture.shape[0] > 300 and picture.shape[1] > 600 and picture.std() > 0.01
    table = [l for l in (tmp_path / "report" / "report.md").read_text().splitlines() if l.startswith("| ")]
    assert len(table) == 1 + 5  # header + one row per op of the original model
    assert "<img src=memory.png" in (tmp_path / "report" / "report.html").read_text()


def test_verify_detects_a_wrong_stage(tmp_path, small_model_bytes):
    """Corrupt one bias value inside the patched model: verify must fail with exit code 4."""
    model, graph, plan, new_bytes = _plan_and_rewrite(small_model_bytes, patches=(2, 2), split=3)
    new_model = model_io.parse_model(new_bytes)
    new = build_graph(new_model)
    bias = next(t for t in new.tensors if t.type_name == "INT32" and t.is_constant and t.index in new.ops[0].inputs)
    data = np.asarray(new_model.buffers[bias.buffer].data, dtype=np.uint8).copy()
    data[0] ^= 0x40
    new_model.buffers[bias.buffer].data = data
    (tmp_path / "o.tflite").write_bytes(small_model_bytes)
    (tmp_path / "p.tflite").write_bytes(model_io.serialize_model(new_model))
    code, out, err = run_cli("verify", tmp_path / "o.tflite", tmp_path / "p.tflite")
    assert code == 4 and "NOT bit-identical" in err


def test_offline_planned_models_are_refused(small_model_bytes):
    import pytest

    from tflm_patch.converter.errors import ModelError
    from tflm_patch.converter.schema import schema
    model = model_io.parse_model(small_model_bytes)
    buf = schema.BufferT()
    buf.data = np.zeros(12 + 4 * len(model.subgraphs[0].tensors), dtype=np.uint8)
    model.buffers.append(buf)
    meta = schema.MetadataT()
    meta.name, meta.buffer = "OfflineMemoryAllocation", len(model.buffers) - 1
    model.metadata = [meta]
    plan = planner.make_plan(build_graph(model), patches=(2, 2), split=3)
    with pytest.raises(ModelError, match="offline memory plan"):
        rewrite.rewrite_model(model, plan, "test")


def test_a_stage_never_starts_at_an_add_of_two_outside_tensors(tmp_path):
    """ADD(x, conv(x)) with x and conv(x) both made before the stage: two stage inputs,
    which PATCH_STAGE cannot take. Found by the sanitizer TFLM run (tests/test_tflm_sanitized.py):
    the default plan started a stage at that ADD, and TFLM's Prepare refused it (zero points)."""
    from .random_stages import build
    spec = {"input": (13, 27, 7), "seed": 1438807957, "layers": [
        {"kind": "maxpool", "act": 1, "k": 2, "stride": 1, "padding": 1},
        {"kind": "residual", "act": 0},
        {"kind": "conv", "act": 1, "k": 5, "stride": 1, "dilation": 3, "padding": 0, "out_c": 7, "dm": 1},
        {"kind": "maxpool", "act": 3, "k": 3, "stride": 3, "padding": 0},
        {"kind": "maxpool", "act": 0, "k": 3, "stride": 3, "padding": 0}]}
    src = tmp_path / "residual_first.tflite"
    src.write_bytes(build(spec))
    graph = build_graph(model_io.load_model(str(src)))
    add = next(op.index for op in graph.ops if op.opcode == BuiltinOperator.ADD)
    assert not [s for s in stage_mod.all_stages(graph) if s.start == add]
    code, out, err = run_cli("convert", src, "-o", tmp_path / "out.tflite")
    assert code in (0, 3), err  # never 4 (NOT bit-identical)

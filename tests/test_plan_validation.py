"""The Python mirror of Prepare gives the kernel's verdict and the kernel's message.

converter/options.decode mirrors the C++ parser and converter/plan_validation
mirrors ValidatePlan / ValidateHaloCache. Every malformed plan the engine tests
reject, and a few hundred garbage buffers, go through both: the same plans must
be refused, with the same words.
"""
from __future__ import annotations

import numpy as np
import pytest

from tflm_patch import native
from tflm_patch.converter.errors import ModelError
from tflm_patch.converter.options import decode
from tflm_patch.converter.plan_validation import TensorDesc, descs_from_arrays, validate_plan

from .cached_plans import with_caches
from .test_engine_cache import CACHE_REJECTIONS, cached_chain  # noqa: F401  (fixture)
from .test_engine_unit import REJECTIONS, byte_flips, chain, encode, garbage_options, mutated  # noqa: F401  (fixture)

PREFIX = "PATCH_STAGE options: "


def python_verdict(options: bytes, inputs: list, output_shape) -> str | None:
    """None when the Python side accepts the plan, else its message without the prefix."""
    try:
        plan = decode(options)
        validate_plan(plan, descs_from_arrays(inputs), TensorDesc("INT8", tuple(output_shape), False))
    except ModelError as exc:
        text = str(exc)
        assert text.startswith(PREFIX), text
        return text[len(PREFIX):]
    return None


def engine_verdicts(cases: list, inputs: list, output_shape) -> list:
    results = native.run_many(cases, inputs, output_shape)
    return [str(r) if isinstance(r, native.EngineError) else None for r in results]


def test_every_named_rejection_has_the_kernels_message(chain, cached_chain):
    stage, doc, x = chain
    cases = {name: encode(mutated(doc, fn)) for name, (fn, _) in REJECTIONS.items()}
    cstage, coptions, cx = cached_chain
    cached = {name: with_caches(coptions, edit=edit) for name, (edit, _) in CACHE_REJECTIONS.items()}
    for (st, inp), group in (((stage, x), cases), ((cstage, cx), cached)):
        inputs = st.inputs(inp)
        engine = engine_verdicts(list(group.values()), inputs, st.output_shape)
        for (name, options), expected in zip(group.items(), engine):
            assert expected is not None, f"{name}: the engine accepts it"
            assert python_verdict(options, inputs, st.output_shape) == expected, name


def test_valid_plans_pass_both(chain, cached_chain):
    for st, options, x in ((chain[0], encode(chain[1]), chain[2]), cached_chain):
        assert python_verdict(options, st.inputs(x), st.output_shape) is None
        assert engine_verdicts([options], st.inputs(x), st.output_shape) == [None]


def test_tensors_that_do_not_match_the_plan(chain):
    stage, doc, x = chain
    options = encode(doc)
    cases = [
        (stage.inputs(x), (1, 6, 6, 5)),
        (stage.inputs(x), (2, 6, 6, 4)),
        ([x[0]] + stage.constants, stage.output_shape),
        ([x.astype(np.int32)] + stage.constants, stage.output_shape),
        ([x, stage.constants[0], stage.constants[1].astype(np.int8)] + stage.constants[2:], stage.output_shape),
        ([x, stage.constants[0][:, :2]] + stage.constants[1:], stage.output_shape),
        ([x], stage.output_shape),
    ]
    for inputs, out_shape in cases:
        expected = engine_verdicts([options], inputs, out_shape)[0]
        assert expected is not None
        assert python_verdict(options, inputs, out_shape) == expected


def test_garbage_gets_the_same_verdict_and_message(chain, cached_chain):
    """Truncations, random bytes and byte flips of plain and cached plans: the Python side reads them through
    the kernel's FlexBuffer reader, so it refuses exactly what the kernel refuses, in the same words."""
    cstage, coptions, cx = cached_chain
    for st, x, cases in ((chain[0], chain[2], garbage_options(chain)),
                         (cstage, cx, _garbage(with_caches(coptions)))):
        inputs = st.inputs(x)
        engine = engine_verdicts(cases, inputs, st.output_shape)
        assert sum(e is not None for e in engine) > len(cases) // 2
        for options, expected in zip(cases, engine):
            assert python_verdict(options, inputs, st.output_shape) == expected, options


def _garbage(valid: bytes, count: int = 150) -> list:
    cases = [valid[:n] for n in range(0, len(valid), max(1, len(valid) // 40))]
    return cases + byte_flips(valid, np.random.default_rng(5), count)


# --------------------------------------------------------------------------
# Through the CLI: options that decode but that Prepare refuses are bad input.
# --------------------------------------------------------------------------

def _edit_plan(edit):
    def fn(plan):
        edit(plan)
        return plan
    return fn


BROKEN_PLANS = {
    "two-element out_shape": (lambda p: setattr(p.layers[0], "out_shape", p.layers[0].out_shape[:2]),
                              "layer 0: vector has the wrong length ('out_shape')"),
    "grid past the output": (lambda p: setattr(p, "grid_rows", [0, 100]),
                             "grid must run from 0 to the output size ('grid_rows')"),
    "filter index 99": (lambda p: setattr(p.layers[0], "filter", 99),
                        "layer 0: index is not a constant input of the op ('filter')"),
    "stride 0": (lambda p: setattr(p.layers[0], "stride", (0, 1)),
                 "layer 0: invalid kernel, stride, dilation or padding ('padding')"),
    "overlapping live buffers": (lambda p: setattr(p.layers[1], "buffer_offset", p.layers[0].buffer_offset),
                                 "layer 1: layer buffer overlaps a buffer that is still live ('buffer_offset')"),
    "16-byte scratch": (lambda p: setattr(p, "scratch_bytes", 16),
                        "layer buffer lies outside scratch_bytes ('buffer_offset')"),
}


@pytest.fixture(scope="module")
def residual_pair(tmp_path_factory):
    from tflm_patch import cli
    from .test_hostile_models import RESIDUAL
    out = tmp_path_factory.mktemp("pair") / "patched.tflite"
    assert cli.main(["convert", RESIDUAL, "-o", str(out), "--split", "5", "--verify-inputs", "0"]) == 0
    return RESIDUAL, out.read_bytes()


@pytest.mark.parametrize("name", list(BROKEN_PLANS))
def test_cli_refuses_what_prepare_refuses(residual_pair, tmp_path, capsys, name):
    """verify (both engines) and analyze: exit 2, one line, the kernel's own words; never a traceback or a
    false "not bit-identical"."""
    from tflm_patch import cli
    from tflm_patch.converter import model_io
    from tflm_patch.converter.options import encode
    from tflm_patch.converter.schema import schema
    original, patched_bytes = residual_pair
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(patched_bytes, 0))
    op = m.subgraphs[0].operators[0]
    plan = decode(bytes(np.asarray(op.customOptions, dtype=np.uint8)))
    edit, message = BROKEN_PLANS[name]
    edit(plan)
    op.customOptions = list(encode(plan))
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(model_io.serialize_model(m))
    for argv in (["verify", original, str(broken), "--inputs", "1", "--engine", "python"],
                 ["verify", original, str(broken), "--inputs", "1", "--engine", "cpp"],
                 ["analyze", str(broken), "--no-measure"]):
        code = cli.main(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (argv, err)
        assert len(lines) == 1 and message in lines[0] and "op 0" in lines[0], (argv, err)

"""The convert pipeline, in one place: read -> analyse -> plan -> rewrite -> write (-> verify).

The CLI, the training API (tflm_patch.training), the benchmarks and the tests
all convert through these functions, so a model is patched one way only. Each
model is parsed once: `ModelFile` holds its bytes, its object tree and its
graph, and the patched model is parsed once, right after it is serialized;
verification and arena prediction reuse those.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import model_io, planner, rewrite, verify
from .model_file import ModelFile


@dataclass
class Conversion:
    """A plan, the original model and the patched model it wrote."""
    plan: planner.Plan
    original: ModelFile
    patched: ModelFile

    def verify(self, input_sets: list, engines=("python",)) -> verify.VerifyReport:
        return verify.verify_files(self.original, self.patched, input_sets, engines)


def write_patched(model, plan: planner.Plan, tool_version: str = "test") -> ModelFile:
    """The rewrite of `model` (a flatbuffer object tree, left unchanged) by `plan`, serialized and parsed once."""
    return ModelFile.from_bytes(model_io.serialize_model(rewrite.rewrite_model(model, plan, tool_version)),
                                "patched model")


def convert(original: ModelFile, plan: planner.Plan | None = None, tool_version: str = "test",
            **search) -> Conversion:
    """Patch a model: `plan` as given, else the planner's best for `search` (planner.make_plan's keywords:
    patches, split, sram_budget, max_mac_overhead, kernels, require_gain). PlanError / NoGainError when
    there is no plan to write."""
    if plan is None:
        plan = planner.make_plan(original.graph, **search)
    return Conversion(plan, original, write_patched(original.model, plan, tool_version))

"""A model read once: its bytes, its flatbuffer object tree and its graph."""
from __future__ import annotations

from dataclasses import dataclass

from . import model_io
from .graph import Graph, build_graph


@dataclass
class ModelFile:
    data: bytes
    model: object
    graph: Graph

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "model") -> "ModelFile":
        data = bytes(data)
        model = model_io.parse_model(data, what)
        return cls(data, model, build_graph(model))

    @classmethod
    def load(cls, path: str) -> "ModelFile":
        return cls.from_bytes(model_io.read_model_bytes(path), path)

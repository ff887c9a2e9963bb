"""Flatbuffer analysis and rewriting for tflm-patch.

Data flows one way: read model (model_io) -> analyse (graph, analysis, arena)
-> plan (layers, regions, planner) -> rewrite (options, rewrite) -> write
(model_io). The reference executor (reference) and the TFLM oracle (oracle)
prove the result.
"""

"""Cached-halo (version 2) options made from version-1 options, for tests.

The cache geometry of docs "Cached halos" is computed here on its own, from
the regions of converter/regions.py, so that the kernel's copy is checked
against an independent one. Caching must not change a single output byte:
a version-2 plan made from a version-1 plan gives the version-1 output.
"""
from __future__ import annotations

from flatbuffers import flexbuffers

from tflm_patch.converter import options as options_mod
from tflm_patch.converter import regions as regions_mod

WORKSPACE_ALIGNMENT = 16


class NotCacheable(Exception):
    """A layer's regions are empty somewhere or not separable."""


def axis_spans(layers, grid_rows, grid_cols):
    """Per layer but the last: its rows Y(r) per tile row and columns X(c) per tile column."""
    n, rows, cols = len(layers) - 1, len(grid_rows) - 1, len(grid_cols) - 1
    ys = [[None] * rows for _ in range(n)]
    xs = [[None] * cols for _ in range(n)]
    for r in range(rows):
        for c in range(cols):
            tile = (grid_rows[r], grid_rows[r + 1], grid_cols[c], grid_cols[c + 1])
            out, _ = regions_mod.patch_regions(layers, tile)
            for i in range(n):
                if regions_mod.is_empty(out[i]):
                    raise NotCacheable(f"layer {i} has an empty region in tile ({r}, {c})")
                for table, k, span in ((ys, r, out[i][:2]), (xs, c, out[i][2:])):
                    if table[i][k] is None:
                        table[i][k] = span
                    elif table[i][k] != span:
                        raise NotCacheable(f"layer {i} is not separable")
    return ys, xs


def new_spans(spans, cached):
    """N(r) (or M(c)): what a layer computes per tile row (column)."""
    return [(max(a, spans[k - 1][1]) if cached and k > 0 else a, b) for k, (a, b) in enumerate(spans)]


def kept(spans):
    """rows_i (cols_i): the most a span shares with the next one."""
    return max([0] + [spans[k][1] - spans[k + 1][0] for k in range(len(spans) - 1)])


def cache_bytes(ys, xs, channels, rows, cols):
    """Per layer: (row cache bytes, column cache bytes) it needs."""
    out = []
    for y, x, ch in zip(ys, xs, channels):
        row_bytes = kept(y) * sum(b - a for a, b in x) * ch if rows else 0
        most_new = max(b - a for a, b in new_spans(y, rows))
        col_bytes = most_new * kept(x) * ch if cols else 0
        out.append((row_bytes, col_bytes))
    return out


def computed_pixels(ys, xs, rows, cols):
    """Per cached layer: output pixels computed over the whole stage."""
    return [sum(b - a for a, b in new_spans(y, rows)) * sum(b - a for a, b in new_spans(x, cols))
            for y, x in zip(ys, xs)]


def _encode(doc: dict) -> bytes:
    b = flexbuffers.Builder()

    def put(key, value):
        if isinstance(value, (list, tuple)):
            b.Key(key)
            b.TypedVectorFromElements([int(v) for v in value], flexbuffers.Type.INT)
        else:
            b.Int(key, int(value))

    with b.Map():
        for key, value in doc.items():
            if key == "layers":
                with b.Vector("layers"):
                    for layer in value:
                        with b.Map():
                            for lk, lv in layer.items():
                                put(lk, lv)
            else:
                put(key, value)
    return bytes(b.Finish())


def with_caches(options: bytes, rows: bool = True, cols: bool = True, slack: int = 0, edit=None) -> bytes:
    """Version-2 options from version-1 `options`: the caches are placed after the
    layer buffers (before the CMSIS-NN workspace, if any), `slack` spare bytes each.
    `edit(doc, needs)` may change the document before it is written (for malformed cases)."""
    plan = options_mod.decode(options)
    doc = flexbuffers.Loads(bytes(options))
    try:
        ys, xs = axis_spans(plan.layers, plan.grid_rows, plan.grid_cols)
        needs = cache_bytes(ys, xs, [layer.out_shape[2] for layer in plan.layers[:-1]], rows, cols)
    except NotCacheable:
        if edit is None:
            raise
        # a plan the kernel must refuse: caches of the layers' whole images
        needs = [(layer.out_shape[0] * layer.out_shape[1] * layer.out_shape[2],) * 2 for layer in plan.layers[:-1]]
    workspace = doc.get("workspace_bytes", 0)
    offset = doc["scratch_bytes"] - workspace
    for layer, (row_bytes, col_bytes) in zip(doc["layers"], needs):
        for flag, name, size in ((rows, "row", row_bytes), (cols, "col", col_bytes)):
            if flag:
                layer[f"{name}_cache_offset"], layer[f"{name}_cache_bytes"] = offset, size + slack
                offset += size + slack
    if workspace:
        offset = -(-offset // WORKSPACE_ALIGNMENT) * WORKSPACE_ALIGNMENT
    doc.update(version=2, cache_rows=int(rows), cache_cols=int(cols), scratch_bytes=offset + workspace)
    if edit is not None:
        edit(doc, needs)
    return _encode(doc)


def v1_document(options: bytes) -> dict:
    return flexbuffers.Loads(bytes(options))


def encode_document(doc: dict) -> bytes:
    return _encode(doc)

"""Patch regions: which part of every layer's output a tile of the stage output needs.

Shared by the planner (buffer sizes, MACs) and the reference executor; the C++
kernel implements the same rules (docs/patch_stage_format.md, "Coordinates and
regions"). A region is (y0, y1, x0, x1), half-open, in the layer's own
full-image coordinates.
"""
from __future__ import annotations

from .layers import CONCAT, PAD, POINTWISE, RESIZE_NEAREST, STAGE_INPUT
from .nearest import source_index

EMPTY = (0, 0, 0, 0)


def is_empty(r: tuple) -> bool:
    return r[0] >= r[1] or r[2] >= r[3]


def area(r: tuple) -> int:
    return 0 if is_empty(r) else (r[1] - r[0]) * (r[3] - r[2])


def union(a: tuple, b: tuple) -> tuple:
    if is_empty(a):
        return b
    if is_empty(b):
        return a
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


def resize_input_span(layer, axis: int, o0: int, o1: int, in_size: int) -> tuple:
    """RESIZE_NEAREST_NEIGHBOR along one axis (0 rows, 1 columns): the input span [i0, i1) that output span
    [o0, o1) (non-empty) reads. source_index is non-decreasing, so it is [src(o0), src(o1 - 1) + 1)."""
    out_size = layer.out_shape[axis]
    args = (in_size, out_size, bool(layer.align_corners), bool(layer.half_pixel_centers))
    return source_index(o0, *args), source_index(o1 - 1, *args) + 1


def input_region(layer, out_region: tuple, in_shape: tuple) -> tuple:
    """The part of one input that `layer` reads to produce `out_region`."""
    if is_empty(out_region):
        return EMPTY
    y0, y1, x0, x1 = out_region
    if layer.op in POINTWISE or layer.op == CONCAT:
        return out_region
    if layer.op == RESIZE_NEAREST:
        return resize_input_span(layer, 0, y0, y1, in_shape[0]) + resize_input_span(layer, 1, x0, x1, in_shape[1])
    top, left = layer.padding[0], layer.padding[1]
    if layer.op == PAD:
        r = (max(0, y0 - top), min(in_shape[0], y1 - top), max(0, x0 - left), min(in_shape[1], x1 - left))
        return EMPTY if is_empty(r) else r
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.stride, layer.dilation
    r = (max(0, y0 * sh - top), min(in_shape[0], (y1 - 1) * sh - top + (kh - 1) * dh + 1),
         max(0, x0 * sw - left), min(in_shape[1], (x1 - 1) * sw - left + (kw - 1) * dw + 1))
    return EMPTY if is_empty(r) else r


def patch_regions(layers: list, tile: tuple) -> tuple:
    """Output region of every layer, and the region read from the stage input."""
    out = [EMPTY] * len(layers)
    out[-1] = tile
    stage_input = EMPTY
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        for src, in_shape in zip(layer.inputs, layer.in_shapes):
            need = input_region(layer, out[i], in_shape)
            if src == STAGE_INPUT:
                stage_input = union(stage_input, need)
            else:
                out[src] = union(out[src], need)
    return out, stage_input


def grid_tiles(grid_rows: list, grid_cols: list):
    """Tiles of the stage output, row-major: (y0, y1, x0, x1)."""
    for r in range(len(grid_rows) - 1):
        for c in range(len(grid_cols) - 1):
            yield (grid_rows[r], grid_rows[r + 1], grid_cols[c], grid_cols[c + 1])


def even_boundaries(size: int, parts: int) -> list:
    """Cut `size` into `parts` near-equal spans (uneven when it does not divide)."""
    return [round(i * size / parts) for i in range(parts + 1)]

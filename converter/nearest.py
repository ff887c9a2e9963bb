"""RESIZE_NEAREST_NEIGHBOR's index rule, as TFLM computes it (float32, bit for bit).

reference_ops::GetNearestNeighbor (tensorflow/lite/kernels/internal/reference/
resize_nearest_neighbor.h) maps output row/column `o` to input row/column

    scale  = (in - 1) / (float)(out - 1)   if align_corners and out > 1
             in / (float)out               otherwise
    offset = 0.5f if half_pixel_centers else 0.0f
    v      = ((float)o + offset) * scale                    (float32)
    i      = min(align_corners ? (int)round(v) : (int)floor(v), in - 1)
    i      = max(0, i)                                      if half_pixel_centers

(`round` is std::round: halves away from zero.) Every step is one IEEE float32
operation, so NumPy float32 gives the C++ result. The map is non-decreasing in
`o`, which is what the region rule (regions.py) relies on.
"""
from __future__ import annotations

import numpy as np


def source_index(o, in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool):
    """Input index (int or int64 array) for output index `o` (int or array) along one axis."""
    f32 = np.float32
    if align_corners and out_size > 1:
        scale = f32(in_size - 1) / f32(out_size - 1)
    else:
        scale = f32(in_size) / f32(out_size)
    offset = f32(0.5) if half_pixel_centers else f32(0.0)
    v = (np.asarray(o).astype(np.float32) + offset) * scale
    floor = np.floor(v)
    if align_corners:
        # std::round: nearest, halves away from zero (v - floor(v) is exact in float32)
        r = np.where(v >= 0, np.where(v - floor >= f32(0.5), floor + 1, floor),
                     -np.where((-v) - np.floor(-v) >= f32(0.5), np.floor(-v) + 1, np.floor(-v)))
    else:
        r = floor
    i = np.minimum(r.astype(np.int64), in_size - 1)
    if half_pixel_centers:
        i = np.maximum(i, 0)
    return int(i) if np.ndim(i) == 0 else i

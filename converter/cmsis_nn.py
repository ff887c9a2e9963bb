"""The workspace PATCH_STAGE needs in a TFLM build with CMSIS-NN kernels.

With CMSIS_NN defined (TFLM's OPTIMIZED_KERNEL_DIR=cmsis_nn), the kernel
computes CONV_2D, DEPTHWISE_CONV_2D and the pools with CMSIS-NN, one call per
band of output rows (micro_ops/cmsis_nn_layers.h), and needs a workspace for
CMSIS-NN's context buffers and for input rows that are not contiguous in
memory. Planning for such a build (`--kernels cmsis_nn`) reserves that
workspace inside the op's scratch buffer, so that the predicted arena stays
TFLM's to the byte and a plan that does not lower the peak is refused.

This mirrors the kernel's banding exactly, and CMSIS-NN's buffer sizes (as
TFLM pins it) for Cortex-M cores with the DSP extension (M4, M7, M33), which
also bound the portable C build's. On MVE cores (M55, M85) CMSIS-NN may ask
for more; the kernel then appends it, and the arena grows by that much.
"""
from __future__ import annotations

from .layers import AVG_POOL, CONV, DEPTHWISE, MAX_POOL, STAGE_INPUT
from .regions import input_region, is_empty, patch_regions

REFERENCE, CMSIS_NN = "reference", "cmsis_nn"
KERNELS = (REFERENCE, CMSIS_NN)
WORKSPACE_ALIGNMENT = 16  # kCmsisWorkspaceAlignment
WINDOW_OPS = (CONV, DEPTHWISE, MAX_POOL, AVG_POOL)


def _align(value: int, alignment: int = WORKSPACE_ALIGNMENT) -> int:
    return -(-value // alignment) * alignment


def _dense(view_x0: int, view_width: int, region: tuple) -> bool:
    """A view's rows of `region` lie back to back (cmsis_nn_layers.cc IsDense)."""
    return region[1] - region[0] == 1 or (view_x0 == region[2] and view_width == region[3] - region[2])


def bands(layer, in_shape: tuple, in_view: tuple, region: tuple, out_view: tuple):
    """(out rows, input region, staged) per CMSIS-NN call, as the kernel cuts
    them; None if a band reads nothing inside the image (kernel: reference)."""
    whole = input_region(layer, region, in_shape)
    if is_empty(whole):
        return None
    if _dense(*in_view, whole) and _dense(*out_view, region):
        return [(region, whole, False)]
    rows = [(y, y + 1, region[2], region[3]) for y in range(region[0], region[1])]
    needs = [input_region(layer, row, in_shape) for row in rows]
    if is_empty(needs[0]) or is_empty(needs[-1]):  # only the first or last rows can be
        return None
    return [(row, need, not _dense(*in_view, need)) for row, need in zip(rows, needs)]


def _leading_pad(out_begin: int, stride: int, pad: int, in_begin: int) -> int:
    return in_begin - (out_begin * stride - pad)


def context_bytes(layer, in_channels: int, band: tuple) -> int:
    """CMSIS-NN's get_buffer_size for the call (ARM_MATH_DSP, GCC)."""
    out_rows, need, _ = band
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.stride, layer.dilation
    pad_h = _leading_pad(out_rows[0], sh, layer.padding[0], need[0])
    pad_w = _leading_pad(out_rows[2], sw, layer.padding[1], need[2])
    if layer.op == CONV:
        if kh == kw == 1 and dh == dw == 1 and pad_h == pad_w == 0:
            return 0  # the 1x1 kernels (their buffer is ARM Compiler 6's only)
        return 2 * _align(kh * kw * in_channels, 4) * 2  # arm_convolve_s8 im2col
    if layer.op == DEPTHWISE:
        if in_channels != layer.out_shape[2] or dh != 1 or dw != 1:
            return 0
        if kh == kw == 3 and pad_h <= 1 and pad_w <= 1:
            return 0  # arm_depthwise_conv_3x3_s8
        return in_channels * kh * kw * 2  # arm_depthwise_conv_s8_opt
    if layer.op == AVG_POOL:
        return in_channels * 4
    return 0


def band_bytes(layer, in_shape: tuple, band: tuple) -> int:
    _, need, staged = band
    staging = _align((need[1] - need[0]) * (need[3] - need[2]) * in_shape[2]) if staged else 0
    return staging + context_bytes(layer, in_shape[2], band)


def _tiles(grid_rows: list, grid_cols: list):
    for r in range(len(grid_rows) - 1):
        for c in range(len(grid_cols) - 1):
            yield r, c, (grid_rows[r], grid_rows[r + 1], grid_cols[c], grid_cols[c + 1])


def workspace_bytes(layers: list, grid_rows: list, grid_cols: list, input_shape: tuple, geo=None) -> int:
    """The largest workspace one CMSIS-NN call of the stage needs, over all patches.

    With cached halos (`geo`, halo_cache.CacheGeometry) a layer computes only
    its new rows and columns: the box N x M inside its region."""
    most = 0
    last = len(layers) - 1
    for r, c, tile in _tiles(grid_rows, grid_cols):
        if geo is None:
            regions, _ = patch_regions(layers, tile)
        else:
            regions = [geo.rows[r][i] + geo.cols[c][i] for i in range(last)] + [tile]
        for i, layer in enumerate(layers):
            if layer.op not in WINDOW_OPS or is_empty(regions[i]):
                continue
            box = regions[i]
            if geo is not None and i != last:
                box = geo.new_rows(i)[r] + geo.new_cols(i)[c]
                if is_empty(box):
                    continue
            src = layer.inputs[0]
            src_region = regions[src] if src != STAGE_INPUT else None
            in_view = (0, input_shape[1]) if src == STAGE_INPUT else (src_region[2], src_region[3] - src_region[2])
            out_view = (0, layer.out_shape[1]) if i == last else (regions[i][2], regions[i][3] - regions[i][2])
            cut = bands(layer, layer.in_shapes[0], in_view, box, out_view)
            for band in cut or ():
                most = max(most, band_bytes(layer, layer.in_shapes[0], band))
    return most

"""Python reference executor of PATCH_STAGE: runs the stage from its options alone.

It follows the contract in docs/patch_stage_format.md with TFLM's reference
integer arithmetic (quant.py), patch by patch, exactly as the C++ kernel does,
so that the converter can prove a plan bit-exact on the host without a
compiler. Arrays are NumPy; arithmetic is done in int64 and wrapped where
int32 would wrap.
"""
from __future__ import annotations

import numpy as np

from . import halo_cache, pointwise, quant, stage_overlap
from .errors import ModelError
from .layers import (ADD, ADD_CONST, AVG_POOL, CONCAT, CONV, DEPTHWISE, INPUT_FLOAT32, INPUT_UINT8, MAX_POOL, MUL,
                     MUL_CONST, PAD, POINTWISE_OPS, RESIZE_NEAREST, STAGE_INPUT, SUB_CONST)
from .options import StagePlan, decode
from .plan_validation import TensorDesc, descs_from_arrays, validate_plan
from .nearest import source_index
from .reference_arith import run_arith_layer
from .regions import is_empty, patch_regions


class _View:
    """A region of a layer's full image held densely: data[y - y0, x - x0, c]."""

    def __init__(self, region, data):
        self.region, self.data = region, data

    def taps(self, ys: np.ndarray, xs: np.ndarray, in_shape):
        """Values at global (ys[:,None], xs[None,:]) and the mask of in-image taps."""
        y0, _, x0, _ = self.region
        valid_y = (ys >= 0) & (ys < in_shape[0])
        valid_x = (xs >= 0) & (xs < in_shape[1])
        yi = np.where(valid_y, ys - y0, 0)
        xi = np.where(valid_x, xs - x0, 0)
        valid = valid_y[:, None] & valid_x[None, :]
        inside = ((yi >= 0) & (yi < self.data.shape[0]))[:, None] & ((xi >= 0) & (xi < self.data.shape[1]))[None, :]
        if not inside[valid].all():
            raise AssertionError("patch region does not cover a tap the layer reads")
        if not valid.any():  # e.g. an empty region: every tap is padding
            return np.zeros((len(ys), len(xs), self.data.shape[2]), dtype=self.data.dtype), valid
        return self.data[yi[:, None], xi[None, :], :], valid


def _out_coords(region):
    y0, y1, x0, x1 = region
    return np.arange(y0, y1), np.arange(x0, x1)


def _requantize(acc, multiplier, shift, out_zp, act):
    out = quant.multiply_by_quantized_multiplier(quant._wrap_int32(acc), np.asarray(multiplier), np.asarray(shift))
    return np.clip(out + out_zp, act[0], act[1]).astype(np.int8)


def _conv(layer, region, src: _View, filt, bias):
    oys, oxs = _out_coords(region)
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.stride, layer.dilation
    top, left = layer.padding[0], layer.padding[1]
    in_shape = layer.in_shapes[0]
    acc = np.zeros((len(oys), len(oxs), layer.out_shape[2]), dtype=np.int64)
    offset = -layer.in_zp[0]
    for ky in range(kh):
        for kx in range(kw):
            vals, valid = src.taps(oys * sh - top + ky * dh, oxs * sw - left + kx * dw, in_shape)
            vals = np.where(valid[:, :, None], vals.astype(np.int64) + offset, 0)
            if layer.op == CONV:
                acc += np.tensordot(vals, filt[:, ky, kx, :].astype(np.int64), axes=([2], [1]))
            else:
                acc += np.repeat(vals, layer.depth_multiplier, axis=2) * filt[0, ky, kx, :].astype(np.int64)
    if bias is not None:
        acc += bias.astype(np.int64)
    return _requantize(acc, layer.multiplier, layer.shift, layer.out_zp, layer.act)


def _pool(layer, region, src: _View):
    oys, oxs = _out_coords(region)
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    top, left = layer.padding[0], layer.padding[1]
    shape = (len(oys), len(oxs), layer.out_shape[2])
    best = np.full(shape, -128, dtype=np.int64)
    total = np.zeros(shape, dtype=np.int64)
    count = np.zeros(shape[:2], dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            vals, valid = src.taps(oys * sh - top + ky, oxs * sw - left + kx, layer.in_shapes[0])
            vals = vals.astype(np.int64)
            best = np.where(valid[:, :, None], np.maximum(best, vals), best)
            total += np.where(valid[:, :, None], vals, 0)
            count += valid
    if layer.op == MAX_POOL:
        out = best
    else:
        n = count[:, :, None]
        num = np.where(total > 0, total + n // 2, total - n // 2)
        out = np.sign(num) * (np.abs(num) // n)  # C++ division truncates toward zero
    return np.clip(out, layer.act[0], layer.act[1]).astype(np.int8)


def _add(layer, region, a: _View, b: _View):
    left_shift, m1, s1, m2, s2, mo, so = layer.add_params

    def scaled(view, zp, m, s):
        y0, y1, x0, x1 = region
        ry, rx = view.region[0], view.region[2]
        vals = view.data[y0 - ry:y1 - ry, x0 - rx:x1 - rx, :].astype(np.int64) - zp
        return quant.multiply_by_quantized_multiplier_smaller_than_one_exp(vals * (1 << left_shift), m, s)

    total = scaled(a, layer.in_zp[0], m1, s1) + scaled(b, layer.in_zp[1], m2, s2)
    out = quant.multiply_by_quantized_multiplier_smaller_than_one_exp(quant._wrap_int32(total), mo, so)
    return np.clip(out + layer.out_zp, layer.act[0], layer.act[1]).astype(np.int8)


def _pad(layer, region, src: _View):
    oys, oxs = _out_coords(region)
    vals, valid = src.taps(oys - layer.padding[0], oxs - layer.padding[1], layer.in_shapes[0])
    return np.where(valid[:, :, None], vals, np.int8(layer.pad_value)).astype(np.int8)


def _concat(layer, region, sources: list):
    """reference_ops::Concatenation along channels (int8 inputs share the output's quantization): copies."""
    oys, oxs = _out_coords(region)
    parts = [src.taps(oys, oxs, shape)[0] for src, shape in zip(sources, layer.in_shapes)]
    return np.concatenate(parts, axis=2).astype(np.int8)


def _resize_nearest(layer, region, src: _View):
    """reference_ops::ResizeNearestNeighbor: output (y, x) is input (source_index(y), source_index(x))."""
    oys, oxs = _out_coords(region)
    (ih, iw, _), (oh, ow, _) = layer.in_shapes[0], layer.out_shape
    flags = (bool(layer.align_corners), bool(layer.half_pixel_centers))
    ys = np.atleast_1d(source_index(oys, ih, oh, *flags))
    xs = np.atleast_1d(source_index(oxs, iw, ow, *flags))
    return src.taps(ys, xs, layer.in_shapes[0])[0].astype(np.int8)


def run_layer(layer, region, sources: list, constants: list) -> np.ndarray:
    if layer.op in (CONV, DEPTHWISE):
        bias = constants[layer.bias] if layer.bias >= 0 else None
        return _conv(layer, region, sources[0], constants[layer.filter], bias)
    if layer.op in (MAX_POOL, AVG_POOL):
        return _pool(layer, region, sources[0])
    if layer.op == ADD:
        return _add(layer, region, sources[0], sources[1])
    if layer.op == PAD:
        return _pad(layer, region, sources[0])
    if layer.op == CONCAT:
        return _concat(layer, region, sources)
    if layer.op == RESIZE_NEAREST:
        return _resize_nearest(layer, region, sources[0])
    if layer.op in POINTWISE_OPS:
        oys, oxs = _out_coords(region)
        vals, _ = sources[0].taps(oys, oxs, layer.in_shapes[0])
        return pointwise.run(layer, vals)
    if layer.op in (ADD_CONST, MUL_CONST, MUL, SUB_CONST):
        return run_arith_layer(layer, region, sources, constants)
    raise ModelError(f"unknown layer op {layer.op}")


def _buffer(scratch: np.ndarray, offset: int, region: tuple, channels: int, reserved: int, what: str):
    """A dense int8 [y, x, c] view of `region` at `offset` in the scratch area, as the kernel lays it out."""
    y0, y1, x0, x1 = region
    nbytes = (y1 - y0) * (x1 - x0) * channels
    if nbytes > reserved or offset < 0 or offset + nbytes > scratch.size:
        raise ModelError(f"PATCH_STAGE options: {what} ({nbytes} bytes at offset {offset}) does not fit "
                         f"its {reserved} reserved bytes inside the {scratch.size}-byte scratch area")
    return scratch[offset:offset + nbytes].view(np.int8).reshape(y1 - y0, x1 - x0, channels)


def _tile_regions(plan: StagePlan, geo, r: int, c: int, tile: tuple) -> list:
    if geo is None:
        return patch_regions(plan.layers, tile)[0]
    regions = [geo.rows[r][i] + geo.cols[c][i] for i in range(len(plan.layers) - 1)]
    return regions + [tile]


def run_plan(plan: StagePlan, inputs: list, output_lead: int | None = None) -> np.ndarray:
    """Run a decoded plan in its own scratch layout, patch by patch, as the kernel does.

    inputs[0] is the stage input [1,H,W,C]; the rest are the op's constants.
    Every layer buffer and halo cache lives at its offset in one scratch
    area, which starts filled with noise: a plan whose buffers overlap while
    live, or that reads a halo it never cached, gives wrong bytes here too.
    output_lead: the output lies that many bytes before the input, over it, in
    one buffer (an offline plan's fused layout), after the kernel's check
    (stage_overlap.check); a patch that overwrote input still to be read would
    give wrong bytes here as on the device.
    """
    image = np.asarray(inputs[0]).reshape(plan.input_shape)
    wanted = {INPUT_FLOAT32: np.float32, INPUT_UINT8: np.uint8}.get(plan.input_type)
    if wanted is not None and image.dtype != wanted:
        raise ModelError(f"PATCH_STAGE: the stage input is {image.dtype}, the plan's QUANTIZE reads {np.dtype(wanted)}")
    constants = [None] + [np.asarray(x) for x in inputs[1:]]
    output = np.zeros(plan.layers[-1].out_shape, dtype=np.int8)
    if output_lead is not None:
        stage_overlap.check(stage_overlap.plan_lead(plan), output_lead, image.nbytes, 0, output.nbytes)
        _memory, image, output = stage_overlap.fused_layout(np.ascontiguousarray(image), output.shape, output_lead)
    full_input = _View((0, plan.input_shape[0], 0, plan.input_shape[1]), image)
    scratch = np.random.default_rng(7).integers(0, 256, size=max(plan.scratch_bytes, 0), dtype=np.uint8)
    geo = None
    if plan.cache_rows or plan.cache_cols:
        geo = halo_cache.geometry(plan.layers, plan.grid_rows, plan.grid_cols, plan.cache_rows, plan.cache_cols)
        if geo is None:
            raise ModelError("PATCH_STAGE options: cached halos need separable, monotone patch regions")
    last = len(plan.layers) - 1
    for r in range(len(plan.grid_rows) - 1):
        for c in range(len(plan.grid_cols) - 1):
            tile = (plan.grid_rows[r], plan.grid_rows[r + 1], plan.grid_cols[c], plan.grid_cols[c + 1])
            regions = _tile_regions(plan, geo, r, c, tile)
            views = []
            for i, (layer, region) in enumerate(zip(plan.layers, regions)):
                channels = layer.out_shape[2]
                if is_empty(region):
                    views.append(_View(region, np.zeros((0, 0, channels), dtype=np.int8)))
                    continue
                srcs = [full_input if s == STAGE_INPUT else views[s] for s in layer.inputs]
                if i == last:
                    output[tile[0]:tile[1], tile[2]:tile[3], :] = run_layer(layer, region, srcs, constants)
                    continue
                buf = _buffer(scratch, layer.buffer_offset, region, channels, layer.buffer_bytes, f"layer {i} buffer")
                if geo is None:
                    buf[...] = run_layer(layer, region, srcs, constants)
                else:
                    _run_cached_layer(plan, geo, i, r, c, region, buf, srcs, constants, scratch)
                views.append(_View(region, buf))
    return output.reshape((1,) + tuple(output.shape)).copy()


def _run_cached_layer(plan, geo, i, r, c, region, buf, srcs, constants, scratch) -> None:
    """Steps 1-5 of docs "Cached halos": caches in, the new box computed, caches out."""
    layer = plan.layers[i]
    y0, y1, x0, x1 = region
    ny0, ny1 = geo.new_rows(i)[r]
    nx0, nx1 = geo.new_cols(i)[c]
    width = x1 - x0
    if plan.cache_rows and r > 0 and ny0 > y0:  # 1. rows shared with the tile row above
        slot = _row_slot(scratch, geo, layer, i, c, ny0 - y0, width)
        buf[:ny0 - y0] = slot
    if plan.cache_cols and c > 0 and nx0 > x0 and ny1 > ny0:  # 2. columns shared with the tile to the left
        buf[ny0 - y0:ny1 - y0, :nx0 - x0] = _col_cache(scratch, layer, ny1 - ny0, nx0 - x0)
    if ny1 > ny0 and nx1 > nx0:  # 3. the new box
        buf[ny0 - y0:ny1 - y0, nx0 - x0:nx1 - x0] = run_layer(layer, (ny0, ny1, nx0, nx1), srcs, constants)
    if plan.cache_cols and c + 1 < len(geo.cols) and ny1 > ny0:  # 4. columns the tile to the right shares
        nxt = geo.cols[c + 1][i][0]
        if x1 > nxt:
            _col_cache(scratch, layer, ny1 - ny0, x1 - nxt)[...] = buf[ny0 - y0:ny1 - y0, nxt - x0:]
    if plan.cache_rows and r + 1 < len(geo.rows):  # 5. rows the tile row below shares
        nyt = geo.rows[r + 1][i][0]
        if y1 > nyt:
            _row_slot(scratch, geo, layer, i, c, y1 - nyt, width)[...] = buf[nyt - y0:]


def _row_slot(scratch, geo, layer, i, c, rows, width):
    channels = layer.out_shape[2]
    offset = layer.row_cache_offset + geo.row_slot_offset(i, c, channels)
    end = layer.row_cache_offset + layer.row_cache_bytes
    nbytes = rows * width * channels
    if offset + nbytes > end or end > scratch.size:
        raise ModelError(f"PATCH_STAGE options: layer {i}'s row cache is too small")
    return scratch[offset:offset + nbytes].view(np.int8).reshape(rows, width, channels)


def _col_cache(scratch, layer, rows, cols):
    nbytes = rows * cols * layer.out_shape[2]
    if nbytes > layer.col_cache_bytes or layer.col_cache_offset + nbytes > scratch.size:
        raise ModelError("PATCH_STAGE options: a column cache is too small")
    return scratch[layer.col_cache_offset:layer.col_cache_offset + nbytes].view(np.int8).reshape(
        rows, cols, layer.out_shape[2])


def run_stage(options: bytes, inputs: list, output_lead: int | None = None) -> np.ndarray:
    """Parse, check (as the kernel's Init and Prepare do) and run a stage on numpy inputs;
    output_lead: see run_plan."""
    plan = decode(options)
    output = TensorDesc("INT8", (1,) + tuple(plan.layers[-1].out_shape), False)
    validate_plan(plan, descs_from_arrays(inputs), output)
    return run_plan(plan, inputs, output_lead)

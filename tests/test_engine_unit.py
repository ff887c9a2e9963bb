"""The C++ engine (micro_ops/) on hand-built PATCH_STAGE options.

Options are written with flatbuffers' own FlexBuffer Builder, following
docs/patch_stage_format.md; the expected output is a whole-image (unpatched)
NumPy implementation of TFLite's reference integer kernels written here, in
both rounding modes. Malformed options must be rejected with a message, and
run through the ASan/UBSan build too.
"""
from __future__ import annotations

import array
import copy
import math

import numpy as np
import pytest
from flatbuffers import flexbuffers

from tflm_patch import native

CONV, DW, ADD, PAD, MAX_POOL, AVG_POOL = range(6)
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1

# --------------------------------------------------------------------------
# TFLite integer arithmetic (common.h, gemmlowp), on int64 arrays.
# --------------------------------------------------------------------------


def wrap32(x):
    return ((np.asarray(x, dtype=np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def srdhm(a, b):
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    total = a * b + np.where(a * b >= 0, 1 << 30, 1 - (1 << 30))
    high = np.where(total >= 0, total >> 31, -((-total) >> 31))  # C++ truncation
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, high)


def rounding_divide_by_pot(x, exponent):
    x, exponent = np.asarray(x, np.int64), np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def mbqm(x, multiplier, shift, single):
    """MultiplyByQuantizedMultiplier(int32 x, ...)."""
    x, m, shift = wrap32(x), np.asarray(multiplier, np.int64), np.asarray(shift, np.int64)
    if single:
        total = 31 - shift
        return wrap32((x * m + (np.int64(1) << (total - 1))) >> total)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    return rounding_divide_by_pot(srdhm(wrap32(x << left), m), right)


def mbqm_smaller_than_one_exp(x, multiplier, shift, single):
    if single:
        return mbqm(x, multiplier, shift, single)
    return rounding_divide_by_pot(srdhm(x, multiplier), -np.asarray(shift, np.int64))


def quantize_multiplier(real):
    """QuantizeMultiplier (double precision, round half away from zero)."""
    if real == 0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(math.copysign(math.floor(abs(q) * (1 << 31) + 0.5), q))
    if q_fixed == 1 << 31:
        q_fixed, shift = q_fixed // 2, shift + 1
    return q_fixed, shift


# --------------------------------------------------------------------------
# Whole-image reference kernels. A layer is a dict holding its option keys
# (plus private "_" keys); images are (H, W, C) arrays.
# --------------------------------------------------------------------------


def window_taps(L, out_hw, in_hw):
    """For every tap (ky, kx): input rows, cols and the in-image mask."""
    (kh, kw), (sh, sw) = L["kernel"], L["stride"]
    dh, dw = L.get("dilation", (1, 1))
    top, left = L["padding"][0], L["padding"][1]
    oy, ox = np.arange(out_hw[0]), np.arange(out_hw[1])
    for ky in range(kh):
        for kx in range(kw):
            ys, xs = oy * sh - top + ky * dh, ox * sw - left + kx * dw
            valid = ((ys >= 0) & (ys < in_hw[0]))[:, None] & ((xs >= 0) & (xs < in_hw[1]))[None, :]
            yield ky, kx, np.clip(ys, 0, in_hw[0] - 1), np.clip(xs, 0, in_hw[1] - 1), valid


def requantize(acc, L, single):
    out = mbqm(acc, np.array(L["multiplier"]), np.array(L["shift"]), single) + L["out_zp"]
    return np.clip(out, *L["act"]).astype(np.int8)


def conv_ref(L, x, filt, bias, single):
    out_h, out_w, out_c = L["out_shape"]
    acc = np.zeros((out_h, out_w, out_c), np.int64)
    xs64 = x.astype(np.int64) - L["in_zp"][0]
    for ky, kx, ys, xs, valid in window_taps(L, (out_h, out_w), x.shape):
        vals = np.where(valid[:, :, None], xs64[ys][:, xs], 0)
        if L["op"] == CONV:
            acc += np.tensordot(vals, filt[:, ky, kx, :].astype(np.int64), axes=([2], [1]))
        else:
            acc += np.repeat(vals, L["depth_multiplier"], axis=2) * filt[0, ky, kx, :].astype(np.int64)
    acc = wrap32(acc)
    if bias is not None:
        acc = wrap32(acc + bias.astype(np.int64))
    return requantize(acc, L, single)


def pool_ref(L, x):
    out_h, out_w, c = L["out_shape"]
    best = np.full((out_h, out_w, c), -128, np.int64)
    total = np.zeros((out_h, out_w, c), np.int64)
    count = np.zeros((out_h, out_w, 1), np.int64)
    for _, _, ys, xs, valid in window_taps(L, (out_h, out_w), x.shape):
        vals = x[ys][:, xs].astype(np.int64)
        best = np.where(valid[:, :, None], np.maximum(best, vals), best)
        total += np.where(valid[:, :, None], vals, 0)
        count += valid[:, :, None]
    if L["op"] == MAX_POOL:
        out = best
    else:
        num = np.where(total > 0, total + count // 2, total - count // 2)
        out = np.sign(num) * (np.abs(num) // count)  # C++ division truncates
    return np.clip(out, *L["act"]).astype(np.int8)


def add_ref(L, a, b, single):
    ls, m1, s1, m2, s2, mo, so = L["add_params"]
    sa = mbqm_smaller_than_one_exp((a.astype(np.int64) - L["in_zp"][0]) << ls, m1, s1, single)
    sb = mbqm_smaller_than_one_exp((b.astype(np.int64) - L["in_zp"][1]) << ls, m2, s2, single)
    out = mbqm_smaller_than_one_exp(sa + sb, mo, so, single) + L["out_zp"]
    return np.clip(out, *L["act"]).astype(np.int8)


def pad_ref(L, x):
    top, left, bottom, right = L["padding"]
    out = np.full(L["out_shape"], L["pad_value"], np.int8)
    out[top:top + x.shape[0], left:left + x.shape[1], :] = x
    return out


# --------------------------------------------------------------------------
# Building stages and their options.
# --------------------------------------------------------------------------


def same_or_valid(in_size, k, s, d, padding):
    eff = (k - 1) * d + 1
    out = (in_size + s - 1) // s if padding == "SAME" else (in_size - eff) // s + 1
    total = max(0, (out - 1) * s + eff - in_size)
    return out, total // 2, total - total // 2


class Stage:
    """A stage under construction: layers (option dicts) and op constants."""

    def __init__(self, rng, shape, in_zp=-3):
        self.rng = rng
        self.input_shape = tuple(shape)
        self.in_zp = in_zp
        self.layers = []
        self.constants = []  # op inputs 1..

    def shape_of(self, src):
        return self.input_shape if src == -1 else tuple(self.layers[src]["out_shape"])

    def zp_of(self, src):
        return self.in_zp if src == -1 else self.layers[src]["out_zp"]

    def _constant(self, array_):
        self.constants.append(array_)
        return len(self.constants)  # op input index

    def _act(self, zp):
        return [int(self.rng.choice([-128, zp])), int(self.rng.choice([127, 100]))]

    def _add(self, layer):
        self.layers.append(layer)
        return len(self.layers) - 1

    def _window(self, src, k, stride, dilation, padding):
        h, w, _ = self.shape_of(src)
        oh, pt, pb = same_or_valid(h, k, stride, dilation, padding)
        ow, pl, pr = same_or_valid(w, k, stride, dilation, padding)
        return (oh, ow), [pt, pl, pb, pr]

    def conv(self, src, out_c=None, k=3, stride=1, dilation=1, padding="SAME", depthwise=False, dm=1,
             bias=True, big_shifts=False):
        h, w, c = self.shape_of(src)
        (oh, ow), pads = self._window(src, k, stride, dilation, padding)
        out_c = c * dm if depthwise else out_c
        shape = (1, k, k, out_c) if depthwise else (out_c, k, k, c)
        filt = self.rng.integers(-127, 128, size=shape, dtype=np.int8)
        out_zp = int(self.rng.integers(-10, 10))
        layer = dict(op=DW if depthwise else CONV, inputs=[src], out_shape=[oh, ow, out_c],
                     in_zp=[self.zp_of(src)], out_zp=out_zp, act=self._act(out_zp), kernel=[k, k],
                     stride=[stride, stride], dilation=[dilation, dilation], padding=pads,
                     filter=self._constant(filt), multiplier=[], shift=[])
        layer["bias"] = self._constant(self.rng.integers(-5000, 5000, size=out_c, dtype=np.int32)) if bias else -1
        low_shift = -12 if not depthwise else -9
        for _ in range(out_c):
            layer["multiplier"].append(int(self.rng.integers(1 << 30, (1 << 31) - 1)))
            layer["shift"].append(int(self.rng.integers(-31, 2)) if big_shifts else
                                  int(self.rng.integers(low_shift, low_shift + 4)))
        if depthwise:
            layer["depth_multiplier"] = dm
        return self._add(layer)

    def pool(self, src, k=3, stride=2, padding="SAME", average=False):
        h, w, c = self.shape_of(src)
        (oh, ow), pads = self._window(src, k, stride, 1, padding)
        zp = self.zp_of(src)
        return self._add(dict(op=AVG_POOL if average else MAX_POOL, inputs=[src], out_shape=[oh, ow, c],
                              in_zp=[zp], out_zp=zp, act=self._act(zp), kernel=[k, k],
                              stride=[stride, stride], padding=pads))

    def pad(self, src, top, left, bottom, right):
        h, w, c = self.shape_of(src)
        zp = self.zp_of(src)
        return self._add(dict(op=PAD, inputs=[src], out_shape=[h + top + bottom, w + left + right, c],
                              in_zp=[zp], out_zp=zp, padding=[top, left, bottom, right],
                              pad_value=int(self.rng.integers(-128, 128))))

    def add(self, a, b):
        assert self.shape_of(a) == self.shape_of(b)
        s1, s2, so = (float(self.rng.uniform(0.01, 0.05)) for _ in range(3))
        twice_max = 2 * max(s1, s2)
        m1, sh1 = quantize_multiplier(s1 / twice_max)
        m2, sh2 = quantize_multiplier(s2 / twice_max)
        mo, sho = quantize_multiplier(twice_max / ((1 << 20) * so))
        out_zp = int(self.rng.integers(-10, 10))
        return self._add(dict(op=ADD, inputs=[a, b], out_shape=list(self.shape_of(a)),
                              in_zp=[self.zp_of(a), self.zp_of(b)], out_zp=out_zp, act=self._act(out_zp),
                              add_params=[20, m1, sh1, m2, sh2, mo, sho]))

    @property
    def output_shape(self):
        return (1,) + tuple(self.layers[-1]["out_shape"])

    def random_input(self):
        return self.rng.integers(-128, 128, size=(1,) + self.input_shape, dtype=np.int8)

    def inputs(self, x):
        return [x] + self.constants

    def reference(self, x, single=False):
        """The whole stage on the whole image, no patches."""
        images = []
        for L in self.layers:
            srcs = [x[0] if s == -1 else images[s] for s in L["inputs"]]
            if L["op"] in (CONV, DW):
                bias = self.constants[L["bias"] - 1] if L["bias"] >= 0 else None
                images.append(conv_ref(L, srcs[0], self.constants[L["filter"] - 1], bias, single))
            elif L["op"] in (MAX_POOL, AVG_POOL):
                images.append(pool_ref(L, srcs[0]))
            elif L["op"] == ADD:
                images.append(add_ref(L, srcs[0], srcs[1], single))
            else:
                images.append(pad_ref(L, srcs[0]))
        return images[-1][None]

    # ---- the plan: regions, buffers, options document ----

    def patch_regions(self, tile):
        """Output region of every layer for a tile (docs: Coordinates and regions)."""
        regions = [None] * len(self.layers)
        regions[-1] = tile
        for i in range(len(self.layers) - 1, -1, -1):
            L, out = self.layers[i], regions[i]
            for src in L["inputs"]:
                if src == -1 or out is None:
                    continue
                h, w, _ = self.shape_of(src)
                y0, y1, x0, x1 = out
                if L["op"] == ADD:
                    need = out
                elif L["op"] == PAD:
                    t, l = L["padding"][:2]
                    need = (max(0, y0 - t), min(h, y1 - t), max(0, x0 - l), min(w, x1 - l))
                else:
                    (kh, kw), (sh, sw) = L["kernel"], L["stride"]
                    dh, dw = L.get("dilation", (1, 1))
                    t, l = L["padding"][:2]
                    need = (max(0, y0 * sh - t), min(h, (y1 - 1) * sh - t + (kh - 1) * dh + 1),
                            max(0, x0 * sw - l), min(w, (x1 - 1) * sw - l + (kw - 1) * dw + 1))
                if need[0] >= need[1] or need[2] >= need[3]:
                    continue
                prev = regions[src]
                regions[src] = need if prev is None else (min(prev[0], need[0]), max(prev[1], need[1]),
                                                          min(prev[2], need[2]), max(prev[3], need[3]))
        return regions

    def document(self, rows, cols, tight=True):
        """The options as a dict (encode() writes it); buffers placed greedily by liveness."""
        layers = copy.deepcopy(self.layers)
        sizes = [0] * len(layers)
        for r in range(len(rows) - 1):
            for c in range(len(cols) - 1):
                for i, reg in enumerate(self.patch_regions((rows[r], rows[r + 1], cols[c], cols[c + 1]))):
                    if reg is not None:
                        area = (reg[1] - reg[0]) * (reg[3] - reg[2]) * layers[i]["out_shape"][2]
                        sizes[i] = max(sizes[i], area)
        if not tight:
            sizes = [int(np.prod(L["out_shape"])) for L in layers]
        last_use = list(range(len(layers)))
        for j, L in enumerate(layers):
            for s in L["inputs"]:
                if s >= 0:
                    last_use[s] = max(last_use[s], j)
        placed, scratch = [], 0
        for i in range(len(layers) - 1):
            # lowest offset clear of every buffer still live when layer i writes
            live = sorted(placed[k] for k in range(i) if i <= last_use[k])
            offset = 0
            for off, size in live:
                if offset < off + size and off < offset + sizes[i]:
                    offset = off + size
            placed.append((offset, sizes[i]))
            layers[i]["buffer_offset"], layers[i]["buffer_bytes"] = offset, sizes[i]
            scratch = max(scratch, offset + sizes[i])
        return dict(version=1, grid_rows=list(rows), grid_cols=list(cols), input_shape=list(self.input_shape),
                    scratch_bytes=scratch, layers=layers)


def encode(doc, style="typed", extra_wide_int=False):
    """Write a document with flexbuffers.Builder; `style` picks the vector encoding."""
    b = flexbuffers.Builder()

    def put(key, value):
        if isinstance(value, (list, tuple)):
            values = [int(v) for v in value]
            b.Key(key)
            if style == "untyped":
                b.VectorFromElements(values)
            elif style == "fixed" and 2 <= len(values) <= 4:
                b.FixedTypedVectorFromElements(values, flexbuffers.Type.INT)
            elif style == "array64":
                b.TypedVectorFromElements(array.array("q", values))
            else:
                b.TypedVectorFromElements(values, flexbuffers.Type.INT)
        elif style == "indirect" and key in ("scratch_bytes", "out_zp", "version"):
            b.IndirectInt(key, int(value))
        elif style == "uint" and key in ("version", "scratch_bytes", "op") and value >= 0:
            b.UInt(key, int(value))
        else:
            b.Int(key, int(value))

    with b.Map():
        for key, value in doc.items():
            if key == "layers":
                with b.Vector("layers"):
                    for layer in value:
                        with b.Map():
                            for lk, lv in layer.items():
                                if not lk.startswith("_"):
                                    put(lk, lv)
                            if extra_wide_int:
                                b.Int("zz_unknown", 1 << 40)  # forces 8-byte values in the map
            else:
                put(key, value)
        if extra_wide_int:
            b.Int("aa_unknown", -(1 << 40))
    return bytes(b.Finish())


def even(size, parts):
    return [round(i * size / parts) for i in range(parts + 1)]


def check_stage(stage, grids, single=False, seed_inputs=2, style="typed"):
    for _ in range(seed_inputs):
        x = stage.random_input()
        expected = stage.reference(x, single)
        for rows, cols in grids:
            options = encode(stage.document(rows, cols), style=style)
            got = native.run_stage(options, stage.inputs(x), stage.output_shape, single_rounding=single)
            assert got.shape == expected.shape
            mismatches = int(np.count_nonzero(got != expected))
            assert mismatches == 0, f"grid {rows}x{cols}: {mismatches} bytes differ"


def grids_for(stage, *shapes):
    h, w = stage.layers[-1]["out_shape"][:2]
    return [(even(h, min(r, h)), even(w, min(c, w))) for r, c in shapes]


# --------------------------------------------------------------------------
# Bit-exactness.
# --------------------------------------------------------------------------

ROUNDINGS = [pytest.param(False, id="double-rounding"), pytest.param(True, id="single-rounding")]


def test_build_flags_select_rounding():
    assert native.single_rounding_of_build(False) is False
    assert native.single_rounding_of_build(True) is True


@pytest.mark.parametrize("single", ROUNDINGS)
@pytest.mark.parametrize("stride", [1, 2])
def test_single_conv_same(single, stride):
    rng = np.random.default_rng(10 + stride)
    stage = Stage(rng, (13, 11, 3))
    stage.conv(-1, 8, k=3, stride=stride)
    check_stage(stage, grids_for(stage, (1, 1), (2, 3), (3, 2), (4, 4)), single)


@pytest.mark.parametrize("single", ROUNDINGS)
def test_conv_valid_dilated_no_bias_and_wide_shifts(single):
    rng = np.random.default_rng(3)
    stage = Stage(rng, (15, 12, 2))
    stage.conv(-1, 5, k=3, dilation=2, padding="VALID", bias=False, big_shifts=True)
    stage.conv(0, 4, k=5, stride=2, padding="SAME")
    check_stage(stage, grids_for(stage, (1, 1), (2, 2), (3, 3)), single)


@pytest.mark.parametrize("single", ROUNDINGS)
def test_depthwise_with_depth_multiplier_2(single):
    rng = np.random.default_rng(4)
    stage = Stage(rng, (12, 14, 3))
    stage.conv(-1, k=3, stride=1, depthwise=True, dm=2)
    stage.conv(0, k=3, stride=2, depthwise=True, dm=1, padding="VALID")
    check_stage(stage, grids_for(stage, (1, 1), (2, 2), (3, 2)), single)


@pytest.mark.parametrize("single", ROUNDINGS)
def test_conv_dw_conv_chain(single):
    rng = np.random.default_rng(5)
    stage = Stage(rng, (20, 18, 3))
    a = stage.conv(-1, 8, k=3, stride=2)
    b = stage.conv(a, k=3, depthwise=True)
    stage.conv(b, 6, k=1)
    check_stage(stage, grids_for(stage, (1, 1), (2, 2), (3, 3), (4, 3), (10, 9)), single)


@pytest.mark.parametrize("single", ROUNDINGS)
def test_add_residual(single):
    rng = np.random.default_rng(6)
    stage = Stage(rng, (11, 13, 4))
    a = stage.conv(-1, 4, k=3)
    b = stage.conv(a, 4, k=3)
    c = stage.add(a, b)                 # residual inside the stage
    d = stage.conv(c, 4, k=3, depthwise=True)
    stage.add(d, -1)                    # residual from the stage input
    check_stage(stage, grids_for(stage, (1, 1), (2, 2), (3, 4)), single)


def test_pad_then_valid_conv():
    rng = np.random.default_rng(7)
    stage = Stage(rng, (9, 10, 2))
    p = stage.pad(-1, 1, 2, 0, 1)
    c = stage.conv(p, 4, k=3, stride=2, padding="VALID")
    stage.pad(c, 2, 0, 1, 3)            # last layer PAD: tiles fully in the padding read nothing
    check_stage(stage, grids_for(stage, (1, 1), (2, 2), (3, 5), (7, 7)))


@pytest.mark.parametrize("average", [False, True])
@pytest.mark.parametrize("padding,k,stride", [("SAME", 3, 2), ("VALID", 3, 2), ("SAME", 2, 2), ("SAME", 3, 1),
                                              ("VALID", 2, 1)])
def test_pools(average, padding, k, stride):
    rng = np.random.default_rng(8)
    stage = Stage(rng, (11, 9, 3))
    c = stage.conv(-1, 3, k=3)
    stage.pool(c, k=k, stride=stride, padding=padding, average=average)
    check_stage(stage, grids_for(stage, (1, 1), (2, 2), (3, 3)))


@pytest.mark.parametrize("style", ["typed", "untyped", "fixed", "array64", "indirect", "uint"])
def test_every_flexbuffer_encoding_reads_the_same(style):
    rng = np.random.default_rng(9)
    stage = Stage(rng, (10, 10, 2))
    a = stage.conv(-1, 4, k=3, stride=2)
    stage.add(a, stage.conv(a, 4, k=1))
    x = stage.random_input()
    expected = stage.reference(x)
    doc = stage.document(even(5, 2), even(5, 2))
    for wide in (False, True):
        got = native.run_stage(encode(doc, style, extra_wide_int=wide), stage.inputs(x), stage.output_shape)
        assert np.array_equal(got, expected)


def test_full_size_buffers_and_one_pixel_tiles():
    rng = np.random.default_rng(11)
    stage = Stage(rng, (7, 6, 2))
    a = stage.conv(-1, 3, k=3)
    stage.pool(a, k=3, stride=1, average=True)
    x = stage.random_input()
    expected = stage.reference(x)
    for tight in (True, False):
        options = encode(stage.document(list(range(8)), list(range(7)), tight=tight))
        assert np.array_equal(native.run_stage(options, stage.inputs(x), stage.output_shape), expected)


def test_random_stages_against_reference():
    """Random small chains, random grids: the patched run equals the whole-image reference."""
    rng = np.random.default_rng(1234)
    for trial in range(25):
        stage = Stage(rng, (int(rng.integers(6, 16)), int(rng.integers(6, 16)), int(rng.integers(1, 4))))
        src = -1
        for _ in range(int(rng.integers(1, 5))):
            kind = rng.choice(["conv", "dw", "pool", "pad", "res"])
            h, w, _ = stage.shape_of(src)
            if kind == "conv":
                src = stage.conv(src, int(rng.integers(1, 5)), k=int(rng.choice([1, 3, 5])),
                                 stride=int(rng.choice([1, 2])))
            elif kind == "dw":
                src = stage.conv(src, k=3, depthwise=True, dm=int(rng.choice([1, 2])),
                                 dilation=int(rng.choice([1, 2])))
            elif kind == "pool" and min(h, w) >= 3:
                src = stage.pool(src, k=int(rng.choice([2, 3])), stride=int(rng.choice([1, 2])),
                                 padding=str(rng.choice(["SAME", "VALID"])), average=bool(rng.integers(2)))
            elif kind == "pad":
                src = stage.pad(src, *(int(v) for v in rng.integers(0, 3, size=4)))
            else:
                src = stage.add(src, stage.conv(src, stage.shape_of(src)[2], k=3))
        if not stage.layers:
            continue
        oh, ow = stage.layers[-1]["out_shape"][:2]
        rows, cols = int(rng.integers(1, min(4, oh) + 1)), int(rng.integers(1, min(4, ow) + 1))
        single = bool(trial % 2)
        x = stage.random_input()
        got = native.run_stage(encode(stage.document(even(oh, rows), even(ow, cols))), stage.inputs(x),
                               stage.output_shape, single_rounding=single)
        assert np.array_equal(got, stage.reference(x, single)), f"trial {trial}"


# --------------------------------------------------------------------------
# Rejections: every malformed input yields a message, never a crash.
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain():
    """conv -> dw -> conv, 2x2 grid, and a matching input."""
    rng = np.random.default_rng(21)
    stage = Stage(rng, (12, 12, 3))
    a = stage.conv(-1, 6, k=3, stride=2)
    b = stage.conv(a, k=3, depthwise=True)
    stage.conv(b, 4, k=1)
    return stage, stage.document(even(6, 2), even(6, 2)), stage.random_input()


def mutated(doc, fn):
    doc = copy.deepcopy(doc)
    fn(doc)
    return doc


def set_layer(i, **fields):
    def fn(doc):
        doc["layers"][i].update(fields)
    return fn


def set_root(**fields):
    def fn(doc):
        doc.update(fields)
    return fn


def delete_key(i, key):
    def fn(doc):
        (doc if i is None else doc["layers"][i]).pop(key)
    return fn


def overlap_live_buffers(doc):
    # layer 1 reads layer 0 while writing its own buffer: they must not overlap
    doc["layers"][1]["buffer_offset"] = doc["layers"][0]["buffer_offset"]


def exceed_scratch(doc):
    doc["layers"][0]["buffer_bytes"] = doc["scratch_bytes"] - doc["layers"][0]["buffer_offset"] + 1


def shrink_buffer(doc):
    doc["layers"][1]["buffer_bytes"] -= 1


def workspace_over_buffers(doc):
    # reserve an aligned tail that the last layer buffer still reaches into
    end = max(l["buffer_offset"] + l["buffer_bytes"] for l in doc["layers"][:-1])
    aligned_end = -(-end // 16) * 16
    doc["scratch_bytes"] = aligned_end + 16
    doc["workspace_bytes"] = 32  # its start, aligned_end - 16, lies below `end`


REJECTIONS = {
    "wrong version": (set_root(version=3), "version"),
    "missing key": (delete_key(0, "multiplier"), "missing key ('multiplier')"),
    "missing root key": (delete_key(None, "grid_cols"), "missing key ('grid_cols')"),
    "filter index out of range": (set_layer(0, filter=99), "('filter')"),
    "filter index is the stage input": (set_layer(0, filter=0), "('filter')"),
    "filter index names a bias": (set_layer(0, filter=2), "wrong tensor type"),
    "bias index out of range": (set_layer(2, bias=-5), "('bias')"),
    "source is a later layer": (set_layer(0, inputs=[1]), "earlier layer"),
    "source is itself": (set_layer(1, inputs=[1]), "earlier layer"),
    "unknown op": (set_layer(1, op=17), "unknown layer op"),
    "out_shape not the geometry": (set_layer(0, out_shape=[5, 6, 6]), "geometry"),
    "buffer beyond scratch": (exceed_scratch, "outside scratch_bytes"),
    "negative buffer offset": (set_layer(0, buffer_offset=-4), "outside scratch_bytes"),
    "overlapping live buffers": (overlap_live_buffers, "overlaps a buffer that is still live"),
    "region larger than buffer": (shrink_buffer, "does not fit the layer buffer"),
    "grid not increasing": (set_root(grid_rows=[0, 4, 3, 6]), "strictly increase"),
    "grid repeats a boundary": (set_root(grid_cols=[0, 3, 3, 6]), "strictly increase"),
    "grid does not reach the edge": (set_root(grid_rows=[0, 3, 5]), "grid must run"),
    "grid does not start at 0": (set_root(grid_cols=[1, 3, 6]), "grid must run"),
    "too few multipliers": (set_layer(2, multiplier=[1 << 30] * 3, shift=[-8] * 3), "one multiplier"),
    "shift out of range": (set_layer(2, shift=[-8, -8, 31, -8]), "shift outside"),
    "negative multiplier": (set_layer(2, multiplier=[-5, 1 << 30, 1 << 30, 1 << 30]), "negative multiplier"),
    "zero point outside int8": (set_layer(1, out_zp=200), "zero point outside int8"),
    "activation range inverted": (set_layer(1, act=[10, -10]), "activation range"),
    "wrong vector length": (set_layer(0, kernel=[3, 3, 3]), "wrong length ('kernel')"),
    "vector where an int belongs": (set_layer(0, filter=[1]), "not an integer ('filter')"),
    "int where a vector belongs": (set_layer(0, stride=2), "not a vector of integers ('stride')"),
    "integer beyond int32": (set_layer(0, buffer_bytes=1 << 33), "does not fit int32"),
    "vector element beyond int32": (set_layer(2, shift=[1 << 33, -8, -8, -8]), "vector element out of range ('shift')"),
    "padding not smaller than kernel": (set_layer(0, padding=[3, 0, 0, 0]), "padding"),
    "zero stride": (set_layer(1, stride=[0, 1]), "padding"),
    "depth multiplier mismatch": (set_layer(1, depth_multiplier=2), "depth_multiplier"),
    "input shape mismatch": (set_root(input_shape=[12, 12, 4]), "input_shape"),
    "no layers": (set_root(layers=[]), "no layers"),
    "negative scratch": (set_root(scratch_bytes=-1), "negative size ('scratch_bytes')"),
    "workspace beyond scratch": (lambda d: d.update(workspace_bytes=d["scratch_bytes"] + 16),
                                 "aligned tail of scratch_bytes"),
    "negative workspace": (set_root(workspace_bytes=-16), "aligned tail of scratch_bytes"),
    "workspace misaligned": (lambda d: d.update(scratch_bytes=-(-d["scratch_bytes"] // 16) * 16 + 19,
                                                workspace_bytes=16),
                             "aligned tail of scratch_bytes"),
    "workspace over layer buffers": (workspace_over_buffers, "outside scratch_bytes"),
    "workspace not an integer": (set_root(workspace_bytes=[16]), "not an integer ('workspace_bytes')"),
}


def rejection_cases(chain):
    stage, doc, _ = chain
    return {name: (encode(mutated(doc, fn)), needle) for name, (fn, needle) in REJECTIONS.items()}


@pytest.mark.parametrize("name", list(REJECTIONS))
def test_rejected_with_message(chain, name):
    stage, doc, x = chain
    fn, needle = REJECTIONS[name]
    with pytest.raises(native.EngineError) as info:
        native.run_stage(encode(mutated(doc, fn)), stage.inputs(x), stage.output_shape)
    assert needle in str(info.value), str(info.value)


def test_the_unmodified_chain_runs(chain):
    stage, doc, x = chain
    assert np.array_equal(native.run_stage(encode(doc), stage.inputs(x), stage.output_shape), stage.reference(x))


def test_tensor_mismatches_rejected(chain):
    stage, doc, x = chain
    options = encode(doc)
    cases = {
        "output shape": (stage.inputs(x), (1, 6, 6, 5), "stage output"),
        "output batch": (stage.inputs(x), (2, 6, 6, 4), "stage output"),
        "input rank": ([x[0]] + stage.constants, stage.output_shape, "stage input"),
        "input dtype": ([x.astype(np.int32)] + stage.constants, stage.output_shape, "stage input"),
        "bias dtype": ([x, stage.constants[0], stage.constants[1].astype(np.int8)] + stage.constants[2:],
                       stage.output_shape, "wrong tensor type ('bias')"),
        "filter shape": ([x, stage.constants[0][:, :2]] + stage.constants[1:], stage.output_shape,
                         "wrong tensor shape ('filter')"),
        "missing constants": ([x], stage.output_shape, "('filter')"),
    }
    for name, (inputs, out_shape, needle) in cases.items():
        with pytest.raises(native.EngineError) as info:
            native.run_stage(options, inputs, out_shape)
        assert needle in str(info.value), f"{name}: {info.value}"


def garbage_options(chain, count=120):
    """Truncations, random bytes and byte flips of valid options."""
    stage, doc, _ = chain
    valid = encode(doc)
    rng = np.random.default_rng(99)
    cases = [valid[:n] for n in range(0, len(valid), max(1, len(valid) // 60))]
    cases += [valid[:-1], valid[1:], b"", b"\x00", b"\x01\x01", b"\xff" * 3]
    cases += [rng.integers(0, 256, size=int(rng.integers(1, 400)), dtype=np.uint8).tobytes() for _ in range(count)]
    return cases + byte_flips(valid, rng, count)


def byte_flips(valid: bytes, rng, count: int) -> list:
    """`count` copies of `valid` with 1-3 random bytes replaced."""
    cases = []
    for _ in range(count):
        flipped = bytearray(valid)
        for pos in rng.integers(0, len(valid), size=int(rng.integers(1, 4))):
            flipped[pos] = int(rng.integers(0, 256))
        cases.append(bytes(flipped))
    return cases


def test_truncated_and_random_options_never_crash(chain):
    stage, doc, x = chain
    valid = encode(doc)
    for n in range(len(valid)):
        with pytest.raises(native.EngineError):
            native.run_stage(valid[:n], stage.inputs(x), stage.output_shape)
    results = native.run_many(garbage_options(chain), stage.inputs(x), stage.output_shape)
    errors = [r for r in results if isinstance(r, native.EngineError)]
    assert len(errors) > len(results) // 2
    assert all(str(e) for e in errors), "every rejection carries a message"


@pytest.mark.parametrize("single", ROUNDINGS)
def test_sanitizer_build_on_valid_and_malformed_options(chain, single):
    stage, doc, x = chain
    expected = stage.reference(x, single)
    cases = rejection_cases(chain)
    garbage = garbage_options(chain, count=60)
    options = [encode(doc)] + [opt for opt, _ in cases.values()] + garbage
    results = native.run_many(options, stage.inputs(x), stage.output_shape, sanitize=True, single_rounding=single)
    assert np.array_equal(results[0], expected)
    for (name, (_, needle)), result in zip(cases.items(), results[1:]):
        assert isinstance(result, native.EngineError), name
        assert needle in str(result), f"{name}: {result}"
    # Garbage may (rarely) still be a valid plan; what matters is that the process survived.
    assert len(results) == len(options)
    # Tensors that do not match the plan, in the same sanitized build.
    wrong_output = native.run_many([encode(doc)], stage.inputs(x), (1, 6, 6, 5), sanitize=True,
                                   single_rounding=single)
    missing_constants = native.run_many([encode(doc)], [x], stage.output_shape, sanitize=True,
                                        single_rounding=single)
    assert "stage output" in str(wrong_output[0])
    assert "('filter')" in str(missing_constants[0])

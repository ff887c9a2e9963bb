"""Prepare's checks of the layout layers (CONCATENATION, RESIZE_NEAREST_NEIGHBOR), in Python.

Mirrors micro_ops/layout_validation.cc: the same rules, in the same order, with the same messages;
plan_validation calls it after the checks every layer gets.
"""
from __future__ import annotations

from .layers import CONCAT, STAGE_INPUT
from .options import fail


def _source_shape(plan, source: int) -> tuple:
    return tuple(plan.input_shape) if source == STAGE_INPUT else tuple(plan.layers[source].out_shape)


def _concatenation(plan, layer, i: int) -> None:
    channels = 0
    for s, zp in zip(layer.inputs, layer.in_zp):
        h, w, c = _source_shape(plan, s)
        if (h, w) != tuple(layer.out_shape[:2]):
            fail("CONCATENATION inputs and output differ in size", "out_shape", i)
        if zp != layer.out_zp:
            fail("CONCATENATION in_zp differs from out_zp", "in_zp", i)
        channels += c
    if channels != layer.out_shape[2]:
        fail("CONCATENATION output channels are not the sum of its inputs'", "out_shape", i)


def _resize_nearest(plan, layer, i: int) -> None:
    if _source_shape(plan, layer.inputs[0])[2] != layer.out_shape[2]:
        fail("output channels differ from input channels", "out_shape", i)
    if layer.align_corners not in (0, 1):
        fail("not 0 or 1", "align_corners", i)
    if layer.half_pixel_centers not in (0, 1):
        fail("not 0 or 1", "half_pixel_centers", i)


def validate_layout_layer(plan, i: int) -> None:
    """ValidateLayoutLayer: ModelError with the kernel's message."""
    layer = plan.layers[i]
    if layer.op == CONCAT:
        _concatenation(plan, layer, i)
    else:
        _resize_nearest(plan, layer, i)

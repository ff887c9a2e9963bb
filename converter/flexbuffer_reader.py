"""A bounds-checked, lazy FlexBuffer reader: micro_ops/flexbuffer_reader.cc in Python.

The PATCH_STAGE options parser (options.decode) reads through this, not through
flatbuffers' own reader, so that it sees exactly what the kernel sees: the
same values, the same lazy lookups (a corrupt key the kernel never reads is
no error), and the same failures in the same places. Every read returns a
status, as in C++: OK, MALFORMED, WRONG_TYPE, NOT_FOUND or OUT_OF_RANGE.
"""
from __future__ import annotations

from dataclasses import dataclass

OK, MALFORMED, WRONG_TYPE, NOT_FOUND, OUT_OF_RANGE = range(5)

NULL, INT, UINT, FLOAT, KEY, STRING, INDIRECT_INT, INDIRECT_UINT = range(8)
MAP, VECTOR, VECTOR_INT, VECTOR_KEY, VECTOR_STRING_DEPRECATED = 9, 10, 11, 14, 15
VECTOR_INT2, VECTOR_FLOAT4, BOOL, VECTOR_BOOL = 16, 24, 26, 36
INT64_MAX = (1 << 63) - 1


@dataclass
class Ref:
    """One value: where it is stored (offset, parent_width) and how to read it (type, byte_width)."""
    buffer: bytes
    offset: int = 0
    parent_width: int = 1
    byte_width: int = 1
    type: int = NULL


@dataclass
class Vector:
    buffer: bytes
    data_offset: int = 0
    byte_width: int = 1
    length: int = 0
    has_type_table: bool = False
    element_type: int = NULL


@dataclass
class Map:
    keys: Vector
    values: Vector


def _valid_width(width: int) -> bool:
    return width in (1, 2, 4, 8)


def _read_unsigned(buf: bytes, offset: int, width: int):
    if not _valid_width(width) or offset < 0 or offset + width > len(buf):
        return None
    return int.from_bytes(buf[offset:offset + width], "little")


def _read_signed(buf: bytes, offset: int, width: int):
    raw = _read_unsigned(buf, offset, width)
    if raw is None:
        return None
    return raw - (1 << (8 * width)) if raw >> (8 * width - 1) else raw


def _indirect(ref: Ref):
    distance = _read_unsigned(ref.buffer, ref.offset, ref.parent_width)
    if distance is None or distance > ref.offset:
        return None
    return ref.offset - distance


def get_root(buf: bytes):
    """(status, root Ref)."""
    size = len(buf)
    if size < 3:
        return MALFORMED, None
    root_width, packed = buf[-1], buf[-2]
    if not _valid_width(root_width) or size < 2 + root_width:
        return MALFORMED, None
    return OK, Ref(buf, size - 2 - root_width, root_width, 1 << (packed & 3), packed >> 2)


def read_int64(ref: Ref):
    """(status, value) of an int or uint, direct or indirect."""
    offset, width = ref.offset, ref.parent_width
    if ref.type in (INDIRECT_INT, INDIRECT_UINT):
        offset = _indirect(ref)
        if offset is None:
            return MALFORMED, 0
        width = ref.byte_width
    if ref.type in (INT, INDIRECT_INT):
        value = _read_signed(ref.buffer, offset, width)
        return (MALFORMED, 0) if value is None else (OK, value)
    if ref.type in (UINT, INDIRECT_UINT):
        raw = _read_unsigned(ref.buffer, offset, width)
        if raw is None:
            return MALFORMED, 0
        return (OUT_OF_RANGE, 0) if raw > INT64_MAX else (OK, raw)
    return WRONG_TYPE, 0


def _typed(t: int) -> bool:
    return VECTOR_INT <= t <= VECTOR_STRING_DEPRECATED or t == VECTOR_BOOL


def _fixed(t: int) -> bool:
    return VECTOR_INT2 <= t <= VECTOR_FLOAT4


def read_vector(ref: Ref):
    """(status, Vector) of an untyped, typed or fixed-length typed vector (or a map's values)."""
    untyped = ref.type in (VECTOR, MAP)
    if not (untyped or _typed(ref.type) or _fixed(ref.type)):
        return WRONG_TYPE, None
    data = _indirect(ref)
    if data is None or not _valid_width(ref.byte_width):
        return MALFORMED, None
    v = Vector(ref.buffer, data, ref.byte_width, has_type_table=untyped)
    size = len(ref.buffer)
    if _fixed(ref.type):
        index = ref.type - VECTOR_INT2
        v.length, v.element_type = index // 3 + 2, INT + index % 3
        if data > size or v.length * ref.byte_width > size - data:
            return MALFORMED, None
        return OK, v
    v.element_type = NULL if untyped else (BOOL if ref.type == VECTOR_BOOL else ref.type - VECTOR_INT + INT)
    width = ref.byte_width
    if data < width:
        return MALFORMED, None
    length = _read_unsigned(ref.buffer, data - width, width)
    if length is None or data > size or length > (size - data) // (width + (1 if untyped else 0)):
        return MALFORMED, None
    v.length = length
    return OK, v


def vector_element(v: Vector, index: int):
    """(status, Ref) of element `index`."""
    if index >= v.length:
        return OUT_OF_RANGE, None
    ref = Ref(v.buffer, v.data_offset + index * v.byte_width, v.byte_width)
    if v.has_type_table:
        type_offset = v.data_offset + v.length * v.byte_width + index
        if type_offset >= len(v.buffer):
            return MALFORMED, None
        packed = v.buffer[type_offset]
        ref.byte_width, ref.type = 1 << (packed & 3), packed >> 2
    else:
        ref.byte_width, ref.type = 1, v.element_type
    return OK, ref


def read_map(ref: Ref):
    """(status, Map)."""
    if ref.type != MAP:
        return WRONG_TYPE, None
    status, values = read_vector(ref)
    if status != OK:
        return status, None
    width = values.byte_width
    if values.data_offset < 3 * width:
        return MALFORMED, None
    keys_width = _read_unsigned(ref.buffer, values.data_offset - 2 * width, width)
    if keys_width is None or not _valid_width(keys_width):
        return MALFORMED, None
    keys_ref = Ref(ref.buffer, values.data_offset - 3 * width, width, keys_width, VECTOR_KEY)
    status, keys = read_vector(keys_ref)
    if status != OK or keys.length != values.length:
        return MALFORMED, None
    return OK, Map(keys, values)


def _key_equals(buf: bytes, offset: int, key: bytes):
    """True/False, or None when the stored key runs past the end of the buffer."""
    for i in range(len(key) + 1):
        if offset + i >= len(buf):
            return None
        stored, wanted = buf[offset + i], (key[i] if i < len(key) else 0)
        if stored != wanted:
            return False
        if stored == 0:
            return True
    return True


def map_lookup(m: Map, key: str):
    """(status, Ref): a linear search, as the kernel's (it tolerates unsorted keys)."""
    wanted = key.encode("ascii")
    for i in range(m.keys.length):
        status, key_ref = vector_element(m.keys, i)
        if status != OK:
            return MALFORMED, None
        key_ref.parent_width = m.keys.byte_width
        key_offset = _indirect(key_ref)
        if key_offset is None:
            return MALFORMED, None
        equal = _key_equals(m.keys.buffer, key_offset, wanted)
        if equal is None:
            return MALFORMED, None
        if equal:
            return vector_element(m.values, i)
    return NOT_FOUND, None

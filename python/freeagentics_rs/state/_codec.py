"""The agent-state record format: a small tagged binary encoding of dicts of numpy arrays,
numbers, strings, bools, None and nested dicts/lists. No pickle, on write or on read: anything
else is refused with a ``TypeError`` naming where it sits in the state.

record := b"FAS1" value
value  := "N" | "T" | "F"
        | "i" int64                  | "I" u32 len, signed little-endian bytes (ints beyond 64 bits)
        | "d" float64                | "s" u32 len, utf-8
        | "l" u32 count, value*      | "m" u32 count, (u32 len, utf-8 key, value)*
        | "a" u8 len, dtype.str, u8 ndim, u64 shape*, u64 nbytes, bytes (C order)
All integers little-endian. Arrays keep dtype, shape and byte order exactly; numpy scalars are
stored as Python int/float/bool. Nesting is limited to ``MAX_DEPTH`` levels.
"""

from __future__ import annotations

import re
import struct
from typing import Any

import numpy as np

__all__ = ["encode", "decode", "MAGIC"]

MAGIC = b"FAS1"
_ARRAY_KINDS = "biufcmMSU"  # numeric, bool, datetime, bytes and unicode: no objects, no voids
# What dtype.str looks like for those kinds; anything else is never handed to np.dtype().
_DTYPE_STR = re.compile(r"[<>|=][biufcmMSU][0-9]{1,9}(\[[0-9]*[a-zA-Z]{1,2}\])?")
MAX_DEPTH = 100
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def _refuse(path: str, value: Any) -> TypeError:
    return TypeError(
        f"state[{path}] has type {type(value).__name__}, which an agent state cannot hold (no pickle): "
        "use numpy arrays, int, float, str, bool, None, or dicts and lists of those"
    )


def encode(state: dict[str, Any]) -> bytes:
    """Encodes a state dict (str keys). ``TypeError`` naming the first value it cannot hold."""
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, not {type(state).__name__}")
    out = bytearray(MAGIC)
    _encode(out, state, "", 0)
    return bytes(out)


def _encode(out: bytearray, value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise TypeError(f"state[{path}] is nested more than {MAX_DEPTH} levels deep")
    if value is None:
        out += b"N"
    elif value is True or value is False or isinstance(value, np.bool_):
        out += b"T" if value else b"F"
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        _encode_int(out, int(value))
    elif isinstance(value, (float, np.floating)) and not isinstance(value, np.longdouble):
        out += b"d" + _F64.pack(float(value))
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        out += b"s" + _U32.pack(len(data)) + data
    elif type(value) is np.ndarray:  # subclasses (masked arrays, matrices) would lose what they add
        _encode_array(out, value, path)
    elif isinstance(value, dict):
        _encode_dict(out, value, path, depth)
    elif isinstance(value, list):
        out += b"l" + _U32.pack(len(value))
        for i, item in enumerate(value):
            _encode(out, item, f"{path}[{i}]", depth + 1)
    else:
        raise _refuse(path or "<root>", value)


def _encode_int(out: bytearray, value: int) -> None:
    if -(1 << 63) <= value < (1 << 63):
        out += b"i" + _I64.pack(value)
    else:
        data = value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)
        out += b"I" + _U32.pack(len(data)) + data


def _encode_array(out: bytearray, value: np.ndarray[Any, Any], path: str) -> None:
    if value.dtype.kind not in _ARRAY_KINDS or not _DTYPE_STR.fullmatch(value.dtype.str):
        raise TypeError(
            f"state[{path}] is an array of dtype {value.dtype}, which an agent state cannot hold (no pickle)"
        )
    dtype = value.dtype.str.encode("ascii")
    data = np.ascontiguousarray(value).tobytes()
    out += b"a" + bytes([len(dtype)]) + dtype + bytes([value.ndim])
    for n in value.shape:
        out += _U64.pack(n)
    out += _U64.pack(len(data)) + data


def _encode_dict(out: bytearray, value: dict[Any, Any], path: str, depth: int) -> None:
    out += b"m" + _U32.pack(len(value))
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"state[{path}] has a key of type {type(key).__name__}; keys must be str")
        data = key.encode("utf-8", "surrogatepass")
        out += _U32.pack(len(data)) + data
        _encode(out, item, f"{path}.{key}" if path else key, depth + 1)


def decode(record: bytes) -> dict[str, Any]:
    """Decodes a record made by ``encode``. ``ValueError`` if it is malformed."""
    view = memoryview(record)
    if bytes(view[:4]) != MAGIC:
        raise ValueError("not an agent-state record")
    try:
        value, end = _decode(view, 4, 0)
    except Exception as exc:  # whatever a malformed record trips over, it is only malformed
        raise ValueError(f"malformed agent-state record: {exc}") from None
    if end != len(view) or not isinstance(value, dict):
        raise ValueError("malformed agent-state record: trailing bytes")
    return value


def _decode(view: memoryview, at: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise ValueError("nested too deep")
    tag = view[at : at + 1].tobytes()
    at += 1
    if tag == b"N":
        return None, at
    if tag == b"T":
        return True, at
    if tag == b"F":
        return False, at
    if tag == b"i":
        return _I64.unpack_from(view, at)[0], at + 8
    if tag == b"I":
        return _decode_big_int(view, at)
    if tag == b"d":
        return _F64.unpack_from(view, at)[0], at + 8
    if tag == b"s":
        (n,) = _U32.unpack_from(view, at)
        return _utf8(view, at + 4, n), at + 4 + n
    if tag == b"l":
        return _decode_list(view, at, depth)
    if tag == b"m":
        return _decode_dict(view, at, depth)
    if tag == b"a":
        return _decode_array(view, at)
    raise TypeError(f"unknown tag {tag!r}")


def _decode_big_int(view: memoryview, at: int) -> tuple[int, int]:
    (n,) = _U32.unpack_from(view, at)
    if at + 4 + n > len(view):
        raise IndexError("int out of bounds")
    return int.from_bytes(view[at + 4 : at + 4 + n], "little", signed=True), at + 4 + n


def _decode_list(view: memoryview, at: int, depth: int) -> tuple[list[Any], int]:
    (n,) = _U32.unpack_from(view, at)
    at += 4
    items = []
    for _ in range(n):
        item, at = _decode(view, at, depth + 1)
        items.append(item)
    return items, at


def _decode_dict(view: memoryview, at: int, depth: int) -> tuple[dict[str, Any], int]:
    (n,) = _U32.unpack_from(view, at)
    at += 4
    mapping = {}
    for _ in range(n):
        (k,) = _U32.unpack_from(view, at)
        key = _utf8(view, at + 4, k)
        mapping[key], at = _decode(view, at + 4 + k, depth + 1)
    return mapping, at


def _decode_array(view: memoryview, at: int) -> tuple[np.ndarray[Any, Any], int]:
    k = view[at]
    dtype_str = view[at + 1 : at + 1 + k].tobytes().decode("ascii")
    if not _DTYPE_STR.fullmatch(dtype_str):
        raise TypeError(f"unsupported dtype {dtype_str!r}")
    dtype = np.dtype(dtype_str)
    at += 1 + k
    ndim = view[at]
    shape = tuple(_U64.unpack_from(view, at + 1 + 8 * i)[0] for i in range(ndim))
    at += 1 + 8 * ndim
    (nbytes,) = _U64.unpack_from(view, at)
    at += 8
    if at + nbytes > len(view) or dtype.kind not in _ARRAY_KINDS:
        raise IndexError("array data out of bounds")
    array = np.frombuffer(view[at : at + nbytes], dtype=dtype).reshape(shape).copy()
    return array, at + nbytes


def _utf8(view: memoryview, at: int, n: int) -> str:
    if at + n > len(view):
        raise IndexError("string out of bounds")
    return view[at : at + n].tobytes().decode("utf-8", "surrogatepass")

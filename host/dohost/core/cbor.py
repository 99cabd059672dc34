"""A small, strict CBOR (RFC 8949) codec for the messages of the guest ABI.

Supported: unsigned and negative integers (64-bit), byte and text strings, arrays, maps,
false/true/null, and floats (decoded from half/single/double, encoded as double).
Refused on decode: indefinite lengths, tags, undefined and other simple values, integers
outside 64 bits, invalid UTF-8, nesting deeper than `MAX_DEPTH`, trailing bytes, and any
length that runs past the input. Guests are hostile, so every length is checked before
it is used and nothing is allocated from a length the input has not backed with bytes.
"""

from __future__ import annotations

import struct
from typing import Any

from dohost.core.errors import Code, DohostError

MAX_DEPTH = 64

_pack_be_u16 = struct.Struct(">H").pack
_pack_be_u32 = struct.Struct(">I").pack
_pack_be_u64 = struct.Struct(">Q").pack
_pack_f64 = struct.Struct(">d").pack
_unpack_f16 = struct.Struct(">e").unpack_from
_unpack_f32 = struct.Struct(">f").unpack_from
_unpack_f64 = struct.Struct(">d").unpack_from


class CborError(DohostError):
    def __init__(self, message: str) -> None:
        super().__init__(Code.BAD_ENCODING, message)


def encode_head(major: int, n: int) -> bytes:
    mt = major << 5
    if n < 24:
        return bytes((mt | n,))
    if n < 0x100:
        return bytes((mt | 24, n))
    if n < 0x10000:
        return bytes((mt | 25,)) + _pack_be_u16(n)
    if n < 0x100000000:
        return bytes((mt | 26,)) + _pack_be_u32(n)
    if n < 0x10000000000000000:
        return bytes((mt | 27,)) + _pack_be_u64(n)
    raise CborError("integer does not fit in 64 bits")


def encode(value: Any) -> bytes:
    """Encode a Python value (int, bytes, str, list/tuple, dict, bool, None, float)."""
    out: list[bytes] = []
    _encode_into(value, out, 0)
    return b"".join(out)


def _encode_into(v: Any, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CborError("value nested too deeply")
    if v is None:
        out.append(b"\xf6")
    elif v is True:
        out.append(b"\xf5")
    elif v is False:
        out.append(b"\xf4")
    elif isinstance(v, int):
        if v >= 0:
            out.append(encode_head(0, v))
        else:
            out.append(encode_head(1, -1 - v))
    elif isinstance(v, bytes | bytearray | memoryview):
        out.append(encode_head(2, len(v)))
        out.append(bytes(v))
    elif isinstance(v, str):
        b = v.encode("utf-8")
        out.append(encode_head(3, len(b)))
        out.append(b)
    elif isinstance(v, list | tuple):
        out.append(encode_head(4, len(v)))
        for item in v:
            _encode_into(item, out, depth + 1)
    elif isinstance(v, dict):
        out.append(encode_head(5, len(v)))
        for k, item in v.items():
            _encode_into(k, out, depth + 1)
            _encode_into(item, out, depth + 1)
    elif isinstance(v, float):
        out.append(b"\xfb" + _pack_f64(v))
    else:
        raise CborError(f"cannot encode a value of type {type(v).__name__}")


class CborTooMany(DohostError):
    """The input holds more items than the caller allows (checked before decoding)."""

    def __init__(self, message: str) -> None:
        super().__init__(Code.LIMIT_EXCEEDED, message)


def head_count(data: bytes) -> int | None:
    """The element count of the array or map `data` starts with (its head only), or None
    when it starts with something else or is malformed (decode names the problem)."""
    if not data or data[0] >> 5 not in (4, 5):
        return None
    try:
        return read_head(data, 0)[1]
    except CborError:
        return None


def check_items(data: bytes, max_items: int) -> None:
    """Raise CborTooMany when `data` holds more than `max_items` data items in all (a
    map entry counts as two). Walks heads only and stops at the limit, so its work is
    bounded by `max_items` whatever counts the input claims; anything malformed (nesting
    deeper than MAX_DEPTH included) is left for `decode` to refuse."""
    pos, n, seen = 0, len(data), 0
    todo = [1]  # items still to read at each open level
    try:
        while pos < n:
            while todo and todo[-1] == 0:
                todo.pop()
            if not todo:
                return
            todo[-1] -= 1
            seen += 1
            if seen > max_items:
                raise CborTooMany(f"more than {max_items} CBOR items, the limit for this message")
            major, arg, pos = read_head(data, pos)
            if major == 7:
                pos += {25: 2, 26: 4, 27: 8}.get(arg, 0)  # (a float's bytes)
                continue
            if major in (2, 3):
                pos += arg
            elif major in (4, 5):
                if len(todo) > MAX_DEPTH:
                    return
                todo.append(arg if major == 4 else 2 * arg)
            elif major == 6:
                return  # (tags are refused by decode)
    except CborError:
        return


def decode(data: bytes, max_items: int | None = None) -> Any:
    """Decode exactly one CBOR item that spans all of `data`. With `max_items`, first
    refuse (CborTooMany, `limit_exceeded`) an input of more items than that, so that
    decoding a guest's message costs at most that many items."""
    if max_items is not None:
        check_items(data, max_items)
    value, pos = _decode_at(data, 0, 0)
    if pos != len(data):
        raise CborError(f"{len(data) - pos} trailing bytes after the CBOR item")
    return value


def read_head(data: bytes, pos: int) -> tuple[int, int, int]:
    """The head of the item at `pos`: (major type, argument, position after the head).

    The one head reader: the decoder below uses it, and so do the readers that walk a
    known shape without building a tree (core/envelopes.py's response reader,
    storage/sql_exec.py's parameters). For major type 7 (simple values, floats) the
    argument is the additional information itself; a float's bytes are the caller's to
    read. Raises CborError on truncated input, an indefinite length or reserved
    additional information."""
    if pos >= len(data):
        raise CborError("truncated CBOR")
    ib = data[pos]
    major, info = ib >> 5, ib & 0x1F
    if info < 24 or major == 7:  # small arguments are the common case: no call
        return major, info, pos + 1
    arg, pos = _read_arg(data, pos + 1, info)
    return major, arg, pos


def _read_arg(data: bytes, pos: int, info: int) -> tuple[int, int]:
    n = len(data)
    if info == 24:
        if pos + 1 > n:
            raise CborError("truncated CBOR")
        return data[pos], pos + 1
    if info == 25:
        if pos + 2 > n:
            raise CborError("truncated CBOR")
        return int.from_bytes(data[pos : pos + 2], "big"), pos + 2
    if info == 26:
        if pos + 4 > n:
            raise CborError("truncated CBOR")
        return int.from_bytes(data[pos : pos + 4], "big"), pos + 4
    if info == 27:
        if pos + 8 > n:
            raise CborError("truncated CBOR")
        return int.from_bytes(data[pos : pos + 8], "big"), pos + 8
    if info == 31:
        raise CborError("indefinite-length CBOR items are not accepted")
    raise CborError(f"reserved CBOR additional information {info}")


def _decode_at(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise CborError(f"CBOR nested deeper than {MAX_DEPTH}")
    major, arg, pos = read_head(data, pos)
    if major == 7:
        return _decode_simple(data, pos, arg)
    if major == 0:
        return arg, pos
    if major == 3 or major == 2:
        end = pos + arg
        if end > len(data):
            raise CborError("CBOR string runs past the end of the input")
        if major == 2:
            return data[pos:end], end
        try:
            return data[pos:end].decode("utf-8"), end
        except UnicodeDecodeError:
            raise CborError("CBOR text string is not valid UTF-8") from None
    if major == 5:
        if arg > (len(data) - pos) // 2:
            raise CborError("CBOR map longer than its input")
        result: dict[Any, Any] = {}
        for _ in range(arg):
            key, pos = _decode_at(data, pos, depth + 1)
            if isinstance(key, list | dict):
                raise CborError("CBOR map keys must be integers or strings")
            result[key], pos = _decode_at(data, pos, depth + 1)
        return result, pos
    if major == 4:
        # Each item takes at least one byte: refuse counts the input cannot back.
        if arg > len(data) - pos:
            raise CborError("CBOR array longer than its input")
        items = []
        for _ in range(arg):
            item, pos = _decode_at(data, pos, depth + 1)
            items.append(item)
        return items, pos
    if major == 1:
        return -1 - arg, pos
    raise CborError("CBOR tags are not accepted")


def _decode_simple(data: bytes, pos: int, info: int) -> tuple[Any, int]:
    if info == 20:
        return False, pos
    if info == 21:
        return True, pos
    if info == 22:
        return None, pos
    if info == 25:
        if pos + 2 > len(data):
            raise CborError("truncated CBOR float")
        return _unpack_f16(data, pos)[0], pos + 2
    if info == 26:
        if pos + 4 > len(data):
            raise CborError("truncated CBOR float")
        return _unpack_f32(data, pos)[0], pos + 4
    if info == 27:
        if pos + 8 > len(data):
            raise CborError("truncated CBOR float")
        return _unpack_f64(data, pos)[0], pos + 8
    raise CborError(f"unsupported CBOR simple value {info}")

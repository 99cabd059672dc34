"""WebSockets as data (abi/README.md, "WebSockets"; abi/websocket.cddl): limits, argument
checks, the CBOR event inputs, and server frame encoding. No I/O here.

Server frames are never masked and the host negotiates no extension, so a data frame's
bytes do not depend on the connection: a broadcast encodes its frame once and hands the
same bytes object to every connection's send queue.
"""

from __future__ import annotations

import base64
import binascii
import struct

from dohost.core import cbor

MAX_TAGS = 10
MAX_TAG_BYTES = 256
MAX_ATTACHMENT_BYTES = 16 * 1024
MAX_AUTO_RESPONSE_BYTES = 1024
MAX_CLOSE_REASON_BYTES = 123
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
DEFAULT_MAX_CONNECTIONS_PER_OBJECT = 32_768
MAX_CONNECTION_ID = 2**31 - 1

KIND_TEXT = 0
KIND_BINARY = 1

# Close codes (RFC 6455, 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009

_OP_TEXT = 0x1
_OP_BINARY = 0x2
_FIN = 0x80
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def object_close_code_ok(code: int) -> bool:
    """Codes an object may close with: 1000, or the application range 3000-4999."""
    return code == CLOSE_NORMAL or 3000 <= code <= 4999


def check_tag(tag: str) -> str | None:
    """The problem with one tag, or None."""
    n = len(tag.encode("utf-8"))
    if n == 0:
        return "a tag is empty"
    if n > MAX_TAG_BYTES:
        return f"a tag is {n} bytes; the limit is {MAX_TAG_BYTES}"
    return None


# Entries of ws_accept's tag array, repeats included (they collapse to at most MAX_TAGS).
_MAX_TAG_ENTRIES = 4 * MAX_TAGS


def decode_tags(data: bytes) -> tuple[str, ...]:
    """ws_accept's argument as a tuple of tags; raises ValueError(code name, message) with
    "bad_encoding" or "invalid_argument". Repeated tags collapse to one, in first-seen
    order; an empty argument means no tags."""
    if not data:
        return ()
    count = cbor.head_count(data)
    if count is not None and count > _MAX_TAG_ENTRIES:  # before decoding any of them
        raise ValueError(
            "invalid_argument",
            f"{count} tags; the limit is {MAX_TAGS} ({_MAX_TAG_ENTRIES} with repeats)",
        )
    try:
        raw = cbor.decode(data, 1 + _MAX_TAG_ENTRIES)
    except Exception as e:
        raise ValueError("bad_encoding", f"tags: {getattr(e, 'message', e)}") from None
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise ValueError("bad_encoding", "tags must be a CBOR array of text strings")
    tags = tuple(dict.fromkeys(raw))
    if len(tags) > MAX_TAGS:
        raise ValueError("invalid_argument", f"{len(tags)} tags; the limit is {MAX_TAGS}")
    for t in tags:
        problem = check_tag(t)
        if problem is not None:
            raise ValueError("invalid_argument", problem)
    return tags


def handshake_key(headers: list[tuple[str, str]], method: str) -> str | None:
    """The Sec-WebSocket-Key of a valid RFC 6455 opening handshake, else None.

    Valid: GET, `Upgrade: websocket`, `Connection` naming `upgrade`,
    `Sec-WebSocket-Version: 13` and a key that is base64 of 16 bytes."""
    if method != "GET":
        return None
    h: dict[str, str] = {}
    for k, v in headers:
        lk = k.lower()
        h[lk] = f"{h[lk]}, {v}" if lk in h else v
    if h.get("upgrade", "").strip().lower() != "websocket":
        return None
    if "upgrade" not in {t.strip().lower() for t in h.get("connection", "").split(",")}:
        return None
    if h.get("sec-websocket-version", "").strip() != "13":
        return None
    key = h.get("sec-websocket-key", "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    return key


def accept_token(key: str) -> str:
    """Sec-WebSocket-Accept for a client's key (RFC 6455, 4.2.2)."""
    import hashlib

    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode()


def encode_frame(kind: int, payload: bytes) -> bytes:
    """One unmasked, final data frame (text when kind is KIND_TEXT)."""
    first = _FIN | (_OP_TEXT if kind == KIND_TEXT else _OP_BINARY)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 126, n)
    else:
        head = struct.pack("!BBQ", first, 127, n)
    return head + payload


def message_input(conn_id: int, tags: tuple[str, ...], data: str | bytes) -> bytes:
    return cbor.encode({"id": conn_id, "tags": list(tags), "data": data})


def close_input(conn_id: int, tags: tuple[str, ...], code: int, reason: str, clean: bool) -> bytes:
    return cbor.encode(
        {"id": conn_id, "tags": list(tags), "code": code, "reason": reason, "clean": clean}
    )


def error_input(conn_id: int, tags: tuple[str, ...], message: str) -> bytes:
    return cbor.encode({"id": conn_id, "tags": list(tags), "message": message})

"""The request and response messages of a fetch event (abi/request.cddl, abi/response.cddl).

`Request` and `Response` are what the embedded API and the HTTP front door pass around;
`encode_request` and `decode_response` turn them into and out of the CBOR the guest sees.
Both are on the path of every event, so the request encoder is written out by hand
rather than going through the generic codec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dohost.core import cbor
from dohost.core.cbor import CborError, encode_head, read_head
from dohost.core.errors import Code, DohostError

# Headers the host owns: a guest cannot set them on its response.
HOP_BY_HOP = frozenset(
    {"connection", "transfer-encoding", "content-length", "upgrade", "keep-alive", "te", "trailer"}
)


@dataclass(slots=True)
class Request:
    method: str = "GET"
    path: str = "/"
    query: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None


@dataclass(slots=True)
class Response:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def _tstr(s: str) -> bytes:
    b = s.encode("utf-8")
    return encode_head(3, len(b)) + b


# Methods, paths and header names repeat from request to request: their encodings are
# kept (bounded) so the request encoder, on every event's path, mostly joins bytes.
_TSTR_CACHE: dict[str, bytes] = {}
_TSTR_CACHE_MAX = 4096


def _tstr_cached(s: str) -> bytes:
    b = _TSTR_CACHE.get(s)
    if b is None:
        b = _tstr(s)
        if len(_TSTR_CACHE) >= _TSTR_CACHE_MAX:
            _TSTR_CACHE.clear()
        if len(s) <= 256:
            _TSTR_CACHE[s] = b
    return b


# Precomputed map head and keys: {"method", "path", "query", "headers", "body"}.
_REQ_PREFIX = encode_head(5, 5) + _tstr("method")
_K_PATH = _tstr("path")
_K_QUERY = _tstr("query")
_K_HEADERS = _tstr("headers")
_K_BODY = _tstr("body")
_PAIR = encode_head(4, 2)
_EMPTY_TSTR = encode_head(3, 0)
_EMPTY_BSTR = encode_head(2, 0)


def encode_request(req: Request) -> bytes:
    headers = req.headers
    parts = [
        _REQ_PREFIX,
        _tstr_cached(req.method),
        _K_PATH,
        _tstr_cached(req.path),
        _K_QUERY,
        _tstr_cached(req.query) if req.query else _EMPTY_TSTR,
        _K_HEADERS,
        encode_head(4, len(headers)),
    ]
    for name, value in headers:
        parts.append(_PAIR)
        parts.append(_tstr_cached(name.lower()))
        parts.append(_tstr(value))
    parts.append(_K_BODY)
    body = req.body
    parts.append(encode_head(2, len(body)) if body else _EMPTY_BSTR)
    parts.append(body)
    return b"".join(parts)


def decode_request(data: bytes) -> Request:
    m = cbor.decode(data)
    if not isinstance(m, dict):
        raise CborError("request must be a CBOR map")
    headers = _headers(m.get("headers", []), "request")
    body = m.get("body", b"")
    method, path, query = m.get("method", "GET"), m.get("path", "/"), m.get("query", "")
    if not (isinstance(method, str) and isinstance(path, str) and isinstance(query, str)):
        raise CborError("request method, path and query must be text")
    if not isinstance(body, bytes):
        raise CborError("request body must be a byte string")
    return Request(method, path, query, headers, body)


def _headers(raw: object, what: str) -> list[tuple[str, str]]:
    if not isinstance(raw, list):
        raise CborError(f"{what} headers must be an array of [name, value] pairs")
    out: list[tuple[str, str]] = []
    for pair in raw:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not isinstance(pair[0], str)
            or not isinstance(pair[1], str)
        ):
            raise CborError(f"each {what} header must be a [text, text] pair")
        out.append((pair[0], pair[1]))
    return out


def encode_response(resp: Response) -> bytes:
    return cbor.encode(
        {"status": resp.status, "headers": [list(h) for h in resp.headers], "body": resp.body}
    )


# A guest response's headers: at most this many, of at most this many bytes (names and
# values) together, as the front door bounds a request's head (abi/README.md, limits).
MAX_RESPONSE_HEADERS = 100
MAX_RESPONSE_HEADER_BYTES = 64 * 1024
# Items the general decoder may meet in a response: its map, status, body and the
# headers' pairs (a bound on the work of decoding it; core/cbor.check_items).
_MAX_RESPONSE_ITEMS = 8 + 3 * MAX_RESPONSE_HEADERS


def _too_many_headers(count: str) -> DohostError:
    return DohostError(
        Code.LIMIT_EXCEEDED,
        f"the response has {count} headers; the limit is {MAX_RESPONSE_HEADERS} headers "
        f"of {MAX_RESPONSE_HEADER_BYTES} bytes together",
    )


def _check_header_limits(headers: list[tuple[str, str]]) -> None:
    if len(headers) > MAX_RESPONSE_HEADERS:
        raise _too_many_headers(str(len(headers)))
    size = sum(len(k) + len(v) for k, v in headers)
    if size > MAX_RESPONSE_HEADER_BYTES:
        raise _too_many_headers(f"{size} bytes of")


class _Unusual(Exception):
    """The fast response reader met a shape it does not handle: use the general path."""


def _fast_str(data: bytes, pos: int, major: int) -> tuple[bytes, int]:
    """A definite-length byte (2) or text (3) string at pos: (raw bytes, next pos)."""
    m, n, pos = read_head(data, pos)
    end = pos + n
    if m != major or end > len(data):
        raise _Unusual
    return data[pos:end], end


def _decode_response_fast(data: bytes) -> Response:
    """The common response shape, read without building a generic CBOR tree: a small map
    with text keys "status" (uint), "headers" (pairs of short text) and "body" (bytes or
    text). Anything else raises _Unusual (or CborError) and the general decoder (and its
    errors) takes over, so both paths accept and refuse exactly the same inputs."""
    major, count, pos = read_head(data, 0)
    if major != 5 or count > 3:
        raise _Unusual
    status, headers, body = 200, [], b""
    seen = set()
    for _ in range(count):
        key, pos = _fast_str(data, pos, 3)
        if key in seen:
            raise _Unusual
        seen.add(key)
        if key == b"status":
            major, status, pos = read_head(data, pos)
            if major != 0:
                raise _Unusual
        elif key == b"body":
            major = data[pos] >> 5
            raw, pos = _fast_str(data, pos, major if major in (2, 3) else -1)
            if major == 3:
                raw.decode("utf-8")  # must be valid text, as the general path checks
            body = raw
        elif key == b"headers":
            major, pairs, pos = read_head(data, pos)
            if major != 4 or pairs >= 24:
                raise _Unusual
            for _ in range(pairs):
                if data[pos] != 0x82:
                    raise _Unusual
                kraw, pos = _fast_str(data, pos + 1, 3)
                vraw, pos = _fast_str(data, pos, 3)
                headers.append((kraw.decode("utf-8"), vraw.decode("utf-8")))
        else:
            raise _Unusual
    if pos != len(data) or not 100 <= status <= 599:
        raise _Unusual
    if sum(len(k) + len(v) for k, v in headers) > MAX_RESPONSE_HEADER_BYTES:
        raise _Unusual  # (the general path names the limit)
    out: list[tuple[str, str]] = []
    for k, v in headers:
        if k.lower() in HOP_BY_HOP:
            continue
        if not _is_token(k) or not _is_field_value(v):
            raise _Unusual
        out.append((k, v))
    return Response(status, out, body)


def decode_response_fast(data: bytes) -> Response | None:
    """The common response shape, cheaply (see _decode_response_fast); None: anything
    else, for decode_response to decode or refuse."""
    try:
        return _decode_response_fast(data)
    except (_Unusual, CborError, IndexError, UnicodeDecodeError):
        return None


def decode_response(data: bytes) -> Response:
    """Decode and check a guest's response; malformed input raises CborError, headers
    past their count or size limit `limit_exceeded`."""
    fast = decode_response_fast(data)
    if fast is not None:
        return fast
    try:
        m = cbor.decode(data, _MAX_RESPONSE_ITEMS)
    except cbor.CborTooMany:
        raise _too_many_headers(f"more than {MAX_RESPONSE_HEADERS}") from None
    if not isinstance(m, dict):
        raise CborError("response must be a CBOR map")
    status = m.get("status", 200)
    if type(status) is not int or not 100 <= status <= 599:
        raise CborError("response status must be an integer from 100 to 599")
    headers: list[tuple[str, str]] = []
    raw_headers = m.get("headers")
    if raw_headers:
        for k, v in _headers(raw_headers, "response"):
            lk = k.lower()
            if lk in HOP_BY_HOP:
                continue
            if not _is_token(k) or not _is_field_value(v):
                raise CborError(f"response header {k[:64]!r} is not a valid HTTP header")
            headers.append((k, v))
        _check_header_limits(headers)
    elif raw_headers is not None and not isinstance(raw_headers, list):
        raise CborError("response headers must be an array of [name, value] pairs")
    body = m.get("body", b"")
    if type(body) is str:
        body = body.encode("utf-8")
    elif type(body) is not bytes:
        raise CborError("response body must be a byte or text string")
    return Response(status, headers, body)


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _is_token(name: str) -> bool:
    return 0 < len(name) <= 256 and _TOKEN_CHARS.issuperset(name)


# A header value the HTTP server can send as it is: tab, space, visible ASCII and obs-text
# (U+0080-U+00FF, one latin-1 byte each; request headers reach guests decoded the same
# way). Control characters (CR, LF and NUL among them) would forge or break the head, and
# a character above U+00FF has no byte to go out as: accepting either made the server
# fail on the response after the event had committed (a logged 500 `internal`).
_is_field_value = re.compile(r"[\t\x20-\x7e\x80-\xff]*").fullmatch

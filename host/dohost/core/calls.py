"""Object calls as data (abi/README.md, "Object calls"; abi/call.cddl): the target and the
request a guest passes to the `call` import, the error response a failed callee becomes,
and how a call chain is named in error messages. Pure logic: no trio, no wasmtime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from dohost.core import cbor
from dohost.core.envelopes import Request, Response
from dohost.core.errors import Code, DohostError

# A call may create an event at most this many calls below the event that started the
# chain (an HTTP request or an alarm): deeper chains are refused with `call_depth`.
DEFAULT_MAX_CALL_DEPTH = 16
# What the HTTP front door accepts as a request body; a call carries no more.
MAX_CALL_BODY_BYTES = 32 * 1024 * 1024
MAX_CALL_HEADERS = 100
# Request headers the host sets on a call to name the caller (its class, id and, when the
# host knows it, name). Nobody else can set them: the host drops them from requests that
# come from HTTP and from the headers a caller passes, so a callee can trust them.
CALLER_CLASS_HEADER = "dohost-caller-class"
CALLER_ID_HEADER = "dohost-caller-id"
CALLER_NAME_HEADER = "dohost-caller-name"
CALLER_HEADERS = frozenset({CALLER_CLASS_HEADER, CALLER_ID_HEADER, CALLER_NAME_HEADER})


@dataclass(frozen=True, slots=True)
class CallTarget:
    """Another object of the caller's tenant: its class, and its name or its id (hex)."""

    class_name: str
    name: str | None = None
    id_hex: str | None = None

    def label(self) -> str:
        if self.name is not None:
            return f"{self.class_name}/{self.name}"
        return f"{self.class_name}/#{(self.id_hex or '')[:16]}"


def _bad(message: str) -> DohostError:
    return DohostError(Code.BAD_ENCODING, message)


def _decode(data: bytes, max_items: int, what: str) -> object:
    """Decode a guest's message, refusing one of more than `max_items` items before
    decoding it (core/cbor.check_items): BAD_ENCODING naming `what`."""
    try:
        return cbor.decode(data, max_items)
    except cbor.CborTooMany:
        raise _bad(f"{what}: more than {max_items} CBOR items") from None


def decode_target(data: bytes) -> CallTarget:
    """A `call-target` (abi/call.cddl): {"class", "name"} or {"class", "id"}.
    Raises BAD_ENCODING naming what is wrong."""
    m = _decode(data, 16, "call target")
    if not isinstance(m, dict):
        raise _bad('call target must be a CBOR map {"class": text, "name" or "id": text}')
    cls, name, oid = m.get("class"), m.get("name"), m.get("id")
    if not isinstance(cls, str):
        raise _bad('call target needs "class": the class name as text')
    if (name is None) == (oid is None):
        raise _bad('call target needs exactly one of "name" and "id"')
    if name is not None and not isinstance(name, str):
        raise _bad('call target "name" must be text')
    if oid is not None and not isinstance(oid, str):
        raise _bad('call target "id" must be text (64 hex characters)')
    return CallTarget(cls, name, oid)


_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_token(s: str, max_len: int = 256) -> bool:
    return 0 < len(s) <= max_len and _TOKEN.issuperset(s)


def _has_ctl(s: str) -> bool:
    """Characters a request line cannot carry: controls, space, DEL."""
    return any(c <= " " or c == "\x7f" for c in s)


def decode_call_request(data: bytes) -> Request:
    """The request a caller sends (abi/request.cddl; every key optional: method "GET",
    path "/", query "", headers [], body empty). Checked as the HTTP front door would
    check it, so a callee sees the same shapes from a call as from HTTP: header names
    become lower case, and the caller headers are dropped (the router sets them).
    Raises BAD_ENCODING or VALUE_TOO_LARGE."""
    # (method, path, query, body and the headers' pairs: a bound on the items to decode)
    m = _decode(
        data, 16 + 3 * MAX_CALL_HEADERS, f"call request (at most {MAX_CALL_HEADERS} headers)"
    )
    if not isinstance(m, dict):
        raise _bad("call request must be a CBOR map (abi/request.cddl)")
    method, path, query = m.get("method", "GET"), m.get("path", "/"), m.get("query", "")
    if not isinstance(method, str) or not _is_token(method, 32):
        raise _bad('call request method must be an HTTP method name (a token), e.g. "POST"')
    if not isinstance(path, str) or not path.startswith("/") or _has_ctl(path):
        raise _bad('call request path must be text beginning with "/", without spaces')
    if not isinstance(query, str) or _has_ctl(query):
        raise _bad('call request query must be text (without "?"), without spaces')
    raw_headers = m.get("headers", [])
    if not isinstance(raw_headers, list):
        raise _bad("call request headers must be an array of [name, value] pairs")
    if len(raw_headers) > MAX_CALL_HEADERS:
        raise _bad(f"call request has {len(raw_headers)} headers; the limit is {MAX_CALL_HEADERS}")
    headers: list[tuple[str, str]] = []
    for pair in raw_headers:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not isinstance(pair[0], str)
            or not isinstance(pair[1], str)
        ):
            raise _bad("each call request header must be a [text, text] pair")
        name, value = pair
        if not _is_token(name) or "\r" in value or "\n" in value or "\0" in value:
            raise _bad(f"call request header {name[:64]!r} is not a valid HTTP header")
        name = name.lower()
        if name not in CALLER_HEADERS:  # the host's to set (see CALLER_HEADERS)
            headers.append((name, value))
    body = m.get("body", b"")
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif not isinstance(body, bytes):
        raise _bad("call request body must be a byte or text string")
    if len(body) > MAX_CALL_BODY_BYTES:
        raise DohostError(
            Code.VALUE_TOO_LARGE,
            f"call request body is {len(body)} bytes; the limit is {MAX_CALL_BODY_BYTES}",
        )
    return Request(method, path, query, headers, body)


def with_caller(request: Request, class_name: str, id_hex: str, name: str | None) -> Request:
    """The request as the callee receives it: the caller headers appended."""
    extra = [(CALLER_CLASS_HEADER, class_name), (CALLER_ID_HEADER, id_hex)]
    if name is not None and "\r" not in name and "\n" not in name and "\0" not in name:
        extra.append((CALLER_NAME_HEADER, name))  # (a name no header can carry: id only)
    return Request(
        request.method, request.path, request.query, request.headers + extra, request.body
    )


def error_response(err: DohostError) -> Response:
    """What a caller receives when the callee's event failed (a trap, a CPU kill, a
    failed commit): the error as the HTTP front door would answer it."""
    body = json.dumps(err.to_json()).encode()
    return Response(err.code.http_status, [("content-type", "application/json")], body)


def chain_text(labels: list[str]) -> str:
    """`k/a → k/b → k/a`."""
    return " → ".join(labels)

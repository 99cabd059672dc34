"""The WebSocket imports (abi/README.md, "WebSockets"): ws_accept, ws_send, ws_send_tag,
ws_close, ws_list, ws_attachment_set/get and ws_auto_response.

The host owns the connections (server/websockets.py); an event sees them through a
`WsHostView` and records what it does in a per-event `WsEvent`: the connection it
accepted, the connections it closed, attachment changes, the auto-response pair and the
ordered output (sends and closes). The event (runtime/event.py) hands the `WsEvent` to
the supervisor only when it succeeded (`Event.finish`), and the supervisor applies it
after the event's commit is durable: so a failed event's output is dropped and an
abandoned inline attempt's never existed (every attempt is a new `Event`).

Every range is checked first (`bad_pointer`), then the arguments in the order the ABI
lists their errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from dohost.core import cbor
from dohost.core.errors import Code, DohostError
from dohost.core.ids import ObjectId
from dohost.core.websocket import (
    KIND_BINARY,
    KIND_TEXT,
    MAX_ATTACHMENT_BYTES,
    MAX_AUTO_RESPONSE_BYTES,
    MAX_CLOSE_REASON_BYTES,
    MAX_TAG_BYTES,
    decode_tags,
    object_close_code_ok,
)

if TYPE_CHECKING:
    from dohost.runtime.event import Event

_U32 = 0xFFFFFFFF
WsKey = tuple[str, str, bytes]  # (tenant, class, object id): the supervisor's SlotKey


class WsConnView(Protocol):
    """What an event may read of an open connection (server/websockets.py)."""

    id: int
    tags: tuple[str, ...]
    attachment: bytes
    auto_response_at: int | None


class WsHostView(Protocol):
    """The host's connection registry as the imports see it. Called on a worker thread
    or the loop thread while the object's slot lock is held; reads only."""

    max_message_bytes: int

    def open_connections(self, key: WsKey) -> Sequence[WsConnView]:
        """The object's open connections in the order they were accepted (a snapshot)."""

    def connection(self, key: WsKey, conn_id: int) -> WsConnView | None: ...

    def new_id(self) -> int:
        """A connection id never given out before in this process."""

    def capacity_error(self, tenant: str, key: WsKey, adding: int) -> tuple[Code, str] | None:
        """Why `adding` more connections would be over a limit, or None."""


class WsRegistry(WsHostView, Protocol):
    """The registry as the supervisor uses it (server/websockets.py)."""

    def apply(self, key: WsKey, oid: ObjectId, ws: WsEvent) -> None:
        """(Loop thread.) Apply a successful event's record once its writes are durable."""

    def activation_dropped(self, key: WsKey) -> None:
        """(Loop thread.) The object's activation and slot went (hibernation, eviction)."""


@dataclass
class WsAccepted:
    id: int
    tags: tuple[str, ...]
    attachment: bytes = b""
    auto_response_at: int | None = None


@dataclass
class WsSend:
    ids: tuple[int, ...]
    kind: int
    data: bytes


@dataclass
class WsClose:
    id: int
    code: int
    reason: str


@dataclass
class WsEvent:
    """What one event did to the object's connections (applied only if it succeeds)."""

    upgrade_key: str | None = None  # the Sec-WebSocket-Key when this fetch may accept
    accepted: WsAccepted | None = None
    closed: set[int] = field(default_factory=set)
    attachments: dict[int, bytes] = field(default_factory=dict)  # b"": removed
    auto_response_set: bool = False
    auto_response: tuple[bytes, bytes] | None = None
    output: list[WsSend | WsClose] = field(default_factory=list)
    # What `output` will write once applied, counted per recipient (see _queue).
    queued_messages: int = 0
    queued_bytes: int = 0

    def has_effects(self) -> bool:
        return bool(
            self.accepted is not None
            or self.closed
            or self.attachments
            or self.auto_response_set
            or self.output
        )


# Per event, the WebSocket output it may queue, counted per recipient (a broadcast to
# 1,000 connections of a 1 KiB message is 1,000 messages, 1,000 KiB): it is held until the
# event commits and then written on the loop thread, so it must be bounded per event.
MAX_EVENT_WS_MESSAGES = 65_536
MAX_EVENT_WS_BYTES = 32 * 1024 * 1024


def _queue(rec: WsEvent, ids: tuple[int, ...], kind: int, data: bytes, what: str) -> None:
    """Queue a send to `ids`, or refuse it (`limit_exceeded`) past the event's caps."""
    messages = rec.queued_messages + len(ids)
    size = rec.queued_bytes + len(ids) * len(data)
    if messages > MAX_EVENT_WS_MESSAGES or size > MAX_EVENT_WS_BYTES:
        raise DohostError(
            Code.LIMIT_EXCEEDED,
            f"{what}: this event's WebSocket output would be {messages} messages of {size} "
            f"bytes (per recipient); the limit is {MAX_EVENT_WS_MESSAGES} messages and "
            f"{MAX_EVENT_WS_BYTES} bytes per event",
        )
    rec.queued_messages, rec.queued_bytes = messages, size
    rec.output.append(WsSend(ids, kind, data))


def _record(ev: Event) -> WsEvent:
    rec = ev.ws
    if rec is None:
        rec = ev.ws = WsEvent(ev.ws_upgrade_key)
    return rec


def _visible(ev: Event, rec: WsEvent, tag: str | None) -> list[WsConnView]:
    """The connections this event sees: the open ones, minus those it closed, plus the one
    it accepted; only those with `tag` when given."""
    host = ev.host.ws_host
    conns: list[WsConnView] = []
    if host is not None:
        conns = [c for c in host.open_connections(ev.host.ws_key) if c.id not in rec.closed]
    if rec.accepted is not None and rec.accepted.id not in rec.closed:
        conns.append(rec.accepted)
    if tag is not None:
        conns = [c for c in conns if tag in c.tags]
    return conns


def _find(ev: Event, rec: WsEvent, conn_id: int, what: str) -> WsConnView:
    """The open connection `conn_id` as this event sees it; `not_found` otherwise."""
    conn_id &= _U32
    conn: WsConnView | None = None
    if conn_id in rec.closed:
        conn = None
    elif rec.accepted is not None and rec.accepted.id == conn_id:
        conn = rec.accepted
    elif ev.host.ws_host is not None:
        conn = ev.host.ws_host.connection(ev.host.ws_key, conn_id)
    if conn is None:
        raise DohostError(Code.NOT_FOUND, f"{what}: no open connection {conn_id}")
    return conn


def _in_event(ev: Event, what: str) -> WsHostView:
    """The host's registry, when this event may use WebSockets."""
    if ev.input is None:
        raise DohostError(Code.NOT_SUPPORTED, f"{what} is not available during _initialize")
    host = ev.host.ws_host
    if host is None:
        raise DohostError(Code.NOT_SUPPORTED, f"{what}: this host serves no WebSockets")
    return host


def _tag_arg(ev: Event, ptr: int, n: int, what: str) -> str | None:
    """The optional tag argument of ws_send_tag / ws_list: None for all."""
    if (n & _U32) == 0:
        return None
    if (n & _U32) > MAX_TAG_BYTES:  # (before copying it)
        raise DohostError(
            Code.INVALID_ARGUMENT, f"{what}: tag is {n & _U32} bytes; the limit is {MAX_TAG_BYTES}"
        )
    raw = ev.read(ptr, n, what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DohostError(Code.INVALID_ARGUMENT, f"{what}: the tag is not UTF-8") from None


def _message(ev: Event, host: WsHostView, kind: int, ptr: int, n: int, what: str) -> bytes:
    """Checks a message's kind, size and encoding (its range was checked); its bytes."""
    if kind not in (KIND_TEXT, KIND_BINARY):
        raise DohostError(Code.INVALID_ARGUMENT, f"{what}: kind must be 0 (text) or 1 (binary)")
    n &= _U32
    limit = host.max_message_bytes
    if n > limit:
        raise DohostError(
            Code.VALUE_TOO_LARGE, f"{what}: message of {n} bytes is above the {limit}-byte limit"
        )
    data = ev.read(ptr, n, what)
    if kind == KIND_TEXT:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise DohostError(Code.BAD_ENCODING, f"{what}: a text message must be UTF-8") from None
    return data


# ------------------------------------------------------------------ imports


def ws_accept(ev: Event, ptr: int, n: int) -> int:
    ev.loop_bound(ptr, n, "ws_accept")
    data = ev.read(ptr, n, "ws_accept")
    host = _in_event(ev, "ws_accept")
    rec = _record(ev)
    if rec.upgrade_key is None:
        return ev.err(
            Code.NOT_SUPPORTED,
            "ws_accept: this event is not a dohost_fetch of a WebSocket upgrade request "
            "from HTTP (or its handshake is not valid RFC 6455)",
        )
    if not ev.host.has_ws_message:
        return ev.err(
            Code.NOT_SUPPORTED,
            "ws_accept: the module does not export dohost_ws_message, so it cannot take messages",
        )
    try:
        tags = decode_tags(data)
    except ValueError as e:
        code = Code.BAD_ENCODING if e.args[0] == "bad_encoding" else Code.INVALID_ARGUMENT
        return ev.err(code, f"ws_accept: {e.args[1]}")
    if rec.accepted is not None:
        return ev.err(Code.INVALID_ARGUMENT, "ws_accept: the connection is already accepted")
    problem = host.capacity_error(ev.host.ident.tenant, ev.host.ws_key, 1)
    if problem is not None:
        return ev.err(problem[0], f"ws_accept: {problem[1]}")
    rec.accepted = WsAccepted(host.new_id(), tags)
    return rec.accepted.id


def ws_send(ev: Event, conn_id: int, kind: int, ptr: int, n: int) -> int:
    if not ev.mem.check(ptr, n):
        return ev.bad_pointer("ws_send")
    host = _in_event(ev, "ws_send")
    data = _message(ev, host, kind, ptr, n, "ws_send")
    rec = _record(ev)
    conn = _find(ev, rec, conn_id, "ws_send")
    _queue(rec, (conn.id,), kind, data, "ws_send")
    return 0


def ws_send_tag(ev: Event, tptr: int, tlen: int, kind: int, ptr: int, n: int) -> int:
    if not ev.mem.check(tptr, tlen):
        return ev.bad_pointer("ws_send_tag tag")
    if not ev.mem.check(ptr, n):
        return ev.bad_pointer("ws_send_tag message")
    host = _in_event(ev, "ws_send_tag")
    tag = _tag_arg(ev, tptr, tlen, "ws_send_tag")
    data = _message(ev, host, kind, ptr, n, "ws_send_tag")
    rec = _record(ev)
    ids = tuple(c.id for c in _visible(ev, rec, tag))
    if ids:
        _queue(rec, ids, kind, data, "ws_send_tag")
    return len(ids)


def ws_close(ev: Event, conn_id: int, code: int, ptr: int, n: int) -> int:
    if not ev.mem.check(ptr, n):
        return ev.bad_pointer("ws_close")
    _in_event(ev, "ws_close")
    if not object_close_code_ok(code):
        return ev.err(Code.INVALID_ARGUMENT, f"ws_close: code {code} is not 1000 or in 3000-4999")
    n &= _U32
    if n > MAX_CLOSE_REASON_BYTES:
        return ev.err(
            Code.INVALID_ARGUMENT,
            f"ws_close: reason is {n} bytes; the limit is {MAX_CLOSE_REASON_BYTES}",
        )
    raw = ev.read(ptr, n, "ws_close")
    try:
        reason = raw.decode("utf-8")
    except UnicodeDecodeError:
        return ev.err(Code.INVALID_ARGUMENT, "ws_close: the reason is not UTF-8")
    rec = _record(ev)
    conn = _find(ev, rec, conn_id, "ws_close")
    rec.closed.add(conn.id)
    rec.output.append(WsClose(conn.id, code, reason))
    return 0


def ws_list(ev: Event, tptr: int, tlen: int, optr: int, ocap: int) -> int:
    ev.pending = None  # any call of an import that produces bytes drops it
    if not ev.mem.check(tptr, tlen):
        return ev.bad_pointer("ws_list tag")
    if not ev.mem.check(optr, ocap):
        return ev.bad_pointer("ws_list output buffer")
    _in_event(ev, "ws_list")
    tag = _tag_arg(ev, tptr, tlen, "ws_list")
    out = []
    for c in _visible(ev, _record(ev), tag):
        info: dict[str, object] = {"id": c.id, "tags": list(c.tags)}
        if c.auto_response_at is not None:
            info["auto_response_at"] = c.auto_response_at
        out.append(info)
    return ev.output(cbor.encode(out), optr, ocap)


def ws_attachment_set(ev: Event, conn_id: int, ptr: int, n: int) -> int:
    if not ev.mem.check(ptr, n):
        return ev.bad_pointer("ws_attachment_set")
    _in_event(ev, "ws_attachment_set")
    n &= _U32
    if n > MAX_ATTACHMENT_BYTES:
        return ev.err(
            Code.VALUE_TOO_LARGE,
            f"ws_attachment_set: {n} bytes; the limit is {MAX_ATTACHMENT_BYTES}",
        )
    rec = _record(ev)
    conn = _find(ev, rec, conn_id, "ws_attachment_set")
    data = ev.read(ptr, n, "ws_attachment_set")
    if conn is rec.accepted:
        rec.accepted.attachment = data
    else:
        rec.attachments[conn.id] = data
    return 0


def ws_attachment_get(ev: Event, conn_id: int, optr: int, ocap: int) -> int:
    ev.pending = None  # any call of an import that produces bytes drops it
    if not ev.mem.check(optr, ocap):
        return ev.bad_pointer("ws_attachment_get")
    _in_event(ev, "ws_attachment_get")
    rec = _record(ev)
    conn = _find(ev, rec, conn_id, "ws_attachment_get")
    data = rec.attachments.get(conn.id, conn.attachment)
    return ev.output(data, optr, ocap)


def ws_auto_response(ev: Event, rptr: int, rlen: int, sptr: int, slen: int) -> int:
    if not ev.mem.check(rptr, rlen):
        return ev.bad_pointer("ws_auto_response request")
    if not ev.mem.check(sptr, slen):
        return ev.bad_pointer("ws_auto_response response")
    _in_event(ev, "ws_auto_response")
    rlen &= _U32
    slen &= _U32
    if rlen > MAX_AUTO_RESPONSE_BYTES or slen > MAX_AUTO_RESPONSE_BYTES:
        return ev.err(
            Code.INVALID_ARGUMENT,
            f"ws_auto_response: request and response are at most {MAX_AUTO_RESPONSE_BYTES} bytes",
        )
    rec = _record(ev)
    if rlen == 0:
        rec.auto_response_set, rec.auto_response = True, None
        return 0
    req = ev.read(rptr, rlen, "ws_auto_response request")
    resp = ev.read(sptr, slen, "ws_auto_response response")
    try:
        req.decode("utf-8")
        resp.decode("utf-8")
    except UnicodeDecodeError:
        # Both are text frames: the request is compared with text messages, the response
        # is sent as one.
        return ev.err(Code.INVALID_ARGUMENT, "ws_auto_response: both texts must be UTF-8")
    rec.auto_response_set, rec.auto_response = True, (req, resp)
    return 0


IMPORTS: dict[str, Callable[..., int]] = {
    "ws_accept": ws_accept,
    "ws_send": ws_send,
    "ws_send_tag": ws_send_tag,
    "ws_close": ws_close,
    "ws_list": ws_list,
    "ws_attachment_set": ws_attachment_set,
    "ws_attachment_get": ws_attachment_get,
    "ws_auto_response": ws_auto_response,
}

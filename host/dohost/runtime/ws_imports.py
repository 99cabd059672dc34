"""The WebSocket imports (abi/README.md, "WebSockets"): ws_accept, ws_send, ws_send_tag,
ws_close, ws_list, ws_attachment_set/get and ws_auto_response.

The host owns the connections (server/websockets.py); an event sees them through a
`WsHostView` and records what it does in a per-event `WsEvent`: the connection it
accepted, the connections it closed, attachment changes, the auto-response pair and the
ordered output (sends and closes). The activation hands the `WsEvent` to the supervisor
only when the event succeeded (`EventResult.extra["ws"]`), and the supervisor applies it
after the event's commit is durable: so a failed event's output is dropped and an
abandoned inline attempt's never existed (run_event starts every attempt with a fresh one).

Every range is checked first (`bad_pointer`), then the arguments in the order the ABI
lists their errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from dohost.core import cbor
from dohost.core.errors import Code
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
    from dohost.runtime.activation import Activation

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

    def has_effects(self) -> bool:
        return bool(
            self.accepted is not None
            or self.closed
            or self.attachments
            or self.auto_response_set
            or self.output
        )


def _event(act: Activation) -> WsEvent:
    ev = act.ws_event
    if ev is None:
        ev = act.ws_event = WsEvent()
    return ev


def _visible(act: Activation, ev: WsEvent, tag: str | None) -> list[WsConnView]:
    """The connections this event sees: the open ones, minus those it closed, plus the one
    it accepted; only those with `tag` when given."""
    host = act.ws_host
    conns: list[WsConnView] = []
    if host is not None:
        conns = [c for c in host.open_connections(act.ws_key) if c.id not in ev.closed]
    if ev.accepted is not None and ev.accepted.id not in ev.closed:
        conns.append(ev.accepted)
    if tag is not None:
        conns = [c for c in conns if tag in c.tags]
    return conns


def _find(act: Activation, ev: WsEvent, conn_id: int) -> WsConnView | None:
    conn_id &= _U32
    if conn_id in ev.closed:
        return None
    if ev.accepted is not None and ev.accepted.id == conn_id:
        return ev.accepted
    host = act.ws_host
    return host.connection(act.ws_key, conn_id) if host is not None else None


def _in_event(act: Activation, what: str) -> int:
    if act.input is None:
        return act._err(Code.NOT_SUPPORTED, f"{what} is not available during _initialize")
    if act.ws_host is None:
        return act._err(Code.NOT_SUPPORTED, f"{what}: this host serves no WebSockets")
    return 0


def _tag_arg(act: Activation, ptr: int, n: int, what: str) -> str | int | None:
    """The optional tag argument of ws_send_tag / ws_list: None for all, or a status."""
    if (n & _U32) == 0:
        return None
    raw = act._read(ptr, n)
    if raw is None:
        return act._bad_pointer(what)
    if len(raw) > MAX_TAG_BYTES:
        return act._err(
            Code.INVALID_ARGUMENT, f"{what}: tag is {len(raw)} bytes; the limit is {MAX_TAG_BYTES}"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return act._err(Code.INVALID_ARGUMENT, f"{what}: the tag is not UTF-8")


def _message(act: Activation, kind: int, ptr: int, n: int, what: str) -> bytes | int:
    """Checks a message's kind, size and encoding (its range was checked); its bytes."""
    if kind not in (KIND_TEXT, KIND_BINARY):
        return act._err(Code.INVALID_ARGUMENT, f"{what}: kind must be 0 (text) or 1 (binary)")
    n &= _U32
    limit = act.ws_host.max_message_bytes if act.ws_host is not None else 0
    if n > limit:
        return act._err(
            Code.VALUE_TOO_LARGE, f"{what}: message of {n} bytes is above the {limit}-byte limit"
        )
    data = act._read(ptr, n)
    if data is None:
        return act._bad_pointer(what)
    if kind == KIND_TEXT:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return act._err(Code.BAD_ENCODING, f"{what}: a text message must be UTF-8")
    return data


# ------------------------------------------------------------------ imports


def ws_accept(act: Activation, ptr: int, n: int) -> int:
    data = act._read(ptr, n)
    if data is None:
        return act._bad_pointer("ws_accept")
    st = _in_event(act, "ws_accept")
    if st:
        return st
    ev = _event(act)
    if ev.upgrade_key is None:
        return act._err(
            Code.NOT_SUPPORTED,
            "ws_accept: this event is not a dohost_fetch of a WebSocket upgrade request "
            "from HTTP (or its handshake is not valid RFC 6455)",
        )
    if not act.has_ws_message:
        return act._err(
            Code.NOT_SUPPORTED,
            "ws_accept: the module does not export dohost_ws_message, so it cannot take messages",
        )
    try:
        tags = decode_tags(data)
    except ValueError as e:
        code = Code.BAD_ENCODING if e.args[0] == "bad_encoding" else Code.INVALID_ARGUMENT
        return act._err(code, f"ws_accept: {e.args[1]}")
    if ev.accepted is not None:
        return act._err(Code.INVALID_ARGUMENT, "ws_accept: the connection is already accepted")
    assert act.ws_host is not None
    problem = act.ws_host.capacity_error(act.ident.tenant, act.ws_key, 1)
    if problem is not None:
        return act._err(problem[0], f"ws_accept: {problem[1]}")
    ev.accepted = WsAccepted(act.ws_host.new_id(), tags)
    return ev.accepted.id


def ws_send(act: Activation, conn_id: int, kind: int, ptr: int, n: int) -> int:
    if not act.mem.check(ptr, n):
        return act._bad_pointer("ws_send")
    st = _in_event(act, "ws_send")
    if st:
        return st
    data = _message(act, kind, ptr, n, "ws_send")
    if isinstance(data, int):
        return data
    ev = _event(act)
    conn = _find(act, ev, conn_id)
    if conn is None:
        return act._err(Code.NOT_FOUND, f"ws_send: no open connection {conn_id & _U32}")
    ev.output.append(WsSend((conn.id,), kind, data))
    return 0


def ws_send_tag(act: Activation, tptr: int, tlen: int, kind: int, ptr: int, n: int) -> int:
    if not act.mem.check(tptr, tlen):
        return act._bad_pointer("ws_send_tag tag")
    if not act.mem.check(ptr, n):
        return act._bad_pointer("ws_send_tag message")
    st = _in_event(act, "ws_send_tag")
    if st:
        return st
    tag = _tag_arg(act, tptr, tlen, "ws_send_tag")
    if isinstance(tag, int):
        return tag
    data = _message(act, kind, ptr, n, "ws_send_tag")
    if isinstance(data, int):
        return data
    ev = _event(act)
    ids = tuple(c.id for c in _visible(act, ev, tag))
    if ids:
        ev.output.append(WsSend(ids, kind, data))
    return len(ids)


def ws_close(act: Activation, conn_id: int, code: int, ptr: int, n: int) -> int:
    if not act.mem.check(ptr, n):
        return act._bad_pointer("ws_close")
    st = _in_event(act, "ws_close")
    if st:
        return st
    if not object_close_code_ok(code):
        return act._err(Code.INVALID_ARGUMENT, f"ws_close: code {code} is not 1000 or in 3000-4999")
    n &= _U32
    if n > MAX_CLOSE_REASON_BYTES:
        return act._err(
            Code.INVALID_ARGUMENT,
            f"ws_close: reason is {n} bytes; the limit is {MAX_CLOSE_REASON_BYTES}",
        )
    raw = act._read(ptr, n)
    assert raw is not None  # range checked above
    try:
        reason = raw.decode("utf-8")
    except UnicodeDecodeError:
        return act._err(Code.INVALID_ARGUMENT, "ws_close: the reason is not UTF-8")
    ev = _event(act)
    conn = _find(act, ev, conn_id)
    if conn is None:
        return act._err(Code.NOT_FOUND, f"ws_close: no open connection {conn_id & _U32}")
    ev.closed.add(conn.id)
    ev.output.append(WsClose(conn.id, code, reason))
    return 0


def ws_list(act: Activation, tptr: int, tlen: int, optr: int, ocap: int) -> int:
    act.pending = None  # any call of an import that produces bytes drops it
    if not act.mem.check(tptr, tlen):
        return act._bad_pointer("ws_list tag")
    if not act.mem.check(optr, ocap):
        return act._bad_pointer("ws_list output buffer")
    st = _in_event(act, "ws_list")
    if st:
        return st
    tag = _tag_arg(act, tptr, tlen, "ws_list")
    if isinstance(tag, int):
        return tag
    out = []
    for c in _visible(act, _event(act), tag):
        info: dict[str, object] = {"id": c.id, "tags": list(c.tags)}
        if c.auto_response_at is not None:
            info["auto_response_at"] = c.auto_response_at
        out.append(info)
    return act._output(cbor.encode(out), optr, ocap)


def ws_attachment_set(act: Activation, conn_id: int, ptr: int, n: int) -> int:
    if not act.mem.check(ptr, n):
        return act._bad_pointer("ws_attachment_set")
    st = _in_event(act, "ws_attachment_set")
    if st:
        return st
    n &= _U32
    if n > MAX_ATTACHMENT_BYTES:
        return act._err(
            Code.VALUE_TOO_LARGE,
            f"ws_attachment_set: {n} bytes; the limit is {MAX_ATTACHMENT_BYTES}",
        )
    ev = _event(act)
    conn = _find(act, ev, conn_id)
    if conn is None:
        return act._err(Code.NOT_FOUND, f"ws_attachment_set: no open connection {conn_id & _U32}")
    data = act._read(ptr, n)
    assert data is not None
    if conn is ev.accepted:
        ev.accepted.attachment = data
    else:
        ev.attachments[conn.id] = data
    return 0


def ws_attachment_get(act: Activation, conn_id: int, optr: int, ocap: int) -> int:
    act.pending = None  # any call of an import that produces bytes drops it
    if not act.mem.check(optr, ocap):
        return act._bad_pointer("ws_attachment_get")
    st = _in_event(act, "ws_attachment_get")
    if st:
        return st
    ev = _event(act)
    conn = _find(act, ev, conn_id)
    if conn is None:
        return act._err(Code.NOT_FOUND, f"ws_attachment_get: no open connection {conn_id & _U32}")
    data = ev.attachments.get(conn.id, conn.attachment)
    return act._output(data, optr, ocap)


def ws_auto_response(act: Activation, rptr: int, rlen: int, sptr: int, slen: int) -> int:
    if not act.mem.check(rptr, rlen):
        return act._bad_pointer("ws_auto_response request")
    if not act.mem.check(sptr, slen):
        return act._bad_pointer("ws_auto_response response")
    st = _in_event(act, "ws_auto_response")
    if st:
        return st
    rlen &= _U32
    slen &= _U32
    if rlen > MAX_AUTO_RESPONSE_BYTES or slen > MAX_AUTO_RESPONSE_BYTES:
        return act._err(
            Code.INVALID_ARGUMENT,
            f"ws_auto_response: request and response are at most {MAX_AUTO_RESPONSE_BYTES} bytes",
        )
    ev = _event(act)
    if rlen == 0:
        ev.auto_response_set, ev.auto_response = True, None
        return 0
    req, resp = act._read(rptr, rlen), act._read(sptr, slen)
    assert req is not None and resp is not None
    try:
        req.decode("utf-8")
        resp.decode("utf-8")
    except UnicodeDecodeError:
        # Both are text frames: the request is compared with text messages, the response
        # is sent as one.
        return act._err(Code.INVALID_ARGUMENT, "ws_auto_response: both texts must be UTF-8")
    ev.auto_response_set, ev.auto_response = True, (req, resp)
    return 0

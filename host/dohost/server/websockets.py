"""WebSocket connections owned by the host (abi/README.md, "WebSockets"; docs/websockets.md).

`WebSockets` is the registry: per object (`ObjectSockets`) its open connections in the
order they were accepted, their tags and attachments, and the auto-response pair. It
outlives activations, so an object hibernates, is evicted or is redeployed without its
connections noticing. Events see it through `WsHostView` (runtime/ws_imports.py) and
change it only through `apply`, which the supervisor calls on the loop once an event's
commit is durable (the output gate).

`WsConnection` is one connection: wsproto's frame protocol over the stream the HTTP
server hands to `on_upgrade`. Its task reads; each complete message becomes an event
delivered through the supervisor and awaited before the next frame is read, so one
connection's messages are handled in order and a busy object pushes back on its
clients through TCP. Writes go straight to the non-blocking socket from the loop; only
what the kernel does not take is queued (bounded: a client that does not read is
closed with 1008), and a writer task runs only while something is queued. So a
broadcast to 1,000 connections is 1,000 `send` calls and no awaits, and an idle
connection holds one task and no buffers.

No broadcast holds the loop (issue 15): an event may send 32 MiB per recipient, so its
output is applied in steps of at most `APPLY_PAIRS_PER_STEP` (message, recipient)
pairs and `DIRECT_BYTES_PER_STEP` bytes written straight to sockets; the rest of an
object's output waits in its backlog (in order, behind which later events' output
queues) for a pump task that does one step per loop turn. Writer tasks send at most
`WRITE_CHUNK` bytes at a time, and at most `WRITERS_AT_ONCE` of them send in one loop
turn host-wide. A client that leaves more than `send_queue_bytes` unread is still
closed with 1008.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError

from dohost.core.errors import Code, DohostError
from dohost.core.ids import ObjectId
from dohost.core.websocket import (
    CLOSE_ABNORMAL,
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    DEFAULT_MAX_CONNECTIONS_PER_OBJECT,
    DEFAULT_MAX_MESSAGE_BYTES,
    KIND_TEXT,
    close_input,
    encode_frame,
    error_input,
    message_input,
)
from dohost.runtime.ws_imports import WsClose, WsEvent, WsKey, WsSend

if TYPE_CHECKING:
    from dohost.runtime.event import EventOutcome

log = logging.getLogger("dohost.websockets")

# Delivers one WebSocket event (kind, CBOR input) to an object; None when the object's
# class does not export that event (it is skipped without waking the object).
Deliver = Callable[[str, str, ObjectId, str, bytes], Awaitable["EventOutcome | None"]]

RECV_BYTES = 65_536
# Output per loop turn (see the module docstring): (message, recipient) pairs handed to
# connections and bytes written straight to sockets per step of an object's backlog,
# bytes per send of a writer task, and writer sends per loop turn host-wide.
APPLY_PAIRS_PER_STEP = 1024
DIRECT_BYTES_PER_STEP = 256 * 1024
WRITE_CHUNK = 64 * 1024
WRITERS_AT_ONCE = 4
# After the host sends a close frame: how long the client has to answer before the TCP
# connection is cut.
CLOSE_WAIT_S = 5.0


class _Output:
    """One event's output not yet handed to its connections: `ops` from op `i`; of a
    send, its encoded frame and the next recipient `j`."""

    __slots__ = ("frame", "i", "j", "ops")

    def __init__(self, ops: list[WsSend | WsClose]) -> None:
        self.ops = ops
        self.i = self.j = 0
        self.frame: bytes | None = None


class ObjectSockets:
    """One object's connections (insertion order = accept order) and auto-response."""

    __slots__ = ("auto_response", "backlog", "class_name", "conns", "key", "oid", "tenant")

    def __init__(self, key: WsKey, oid: ObjectId) -> None:
        self.key = key
        self.tenant, self.class_name = key[0], key[1]
        self.oid = oid
        self.conns: dict[int, WsConnection] = {}
        self.auto_response: tuple[bytes, bytes] | None = None
        # Committed output still to hand to the connections, oldest first; None when
        # empty (no pump task runs then).
        self.backlog: collections.deque[_Output] | None = None


class WsConnection:
    """One accepted connection: its registry data and its I/O (loop thread only)."""

    __slots__ = (
        "attachment",
        "auto_response_at",
        "close_queued",
        "closing",
        "drained",
        "failure",
        "id",
        "nursery",
        "obj",
        "out",
        "out_bytes",
        "proto",
        "raw",
        "registry",
        "scope",
        "tags",
        "writer",
    )

    def __init__(
        self, registry: WebSockets, obj: ObjectSockets, conn_id: int, tags: tuple[str, ...]
    ) -> None:
        self.registry = registry
        self.obj = obj
        self.id = conn_id
        self.tags = tags
        self.attachment = b""
        self.auto_response_at: int | None = None
        self.proto = Connection(ConnectionType.SERVER)
        # Bytes the kernel did not take yet; None while empty (most connections, most of
        # the time: an empty deque costs ~600 bytes).
        self.out: collections.deque[bytes | memoryview] | None = None
        self.out_bytes = 0
        self.nursery: trio.Nursery | None = None  # while serving: for the writer task
        self.raw: socket.socket | None = None  # set while serving
        self.writer = False  # a writer task is draining `out`
        self.drained: trio.Event | None = None  # set when the writer task ends
        # Set once the host stopped treating it as open (closed by either side, failed).
        self.closing = False
        # An event closed it and the close waits in the object's backlog behind earlier
        # output: events no longer see it, the frames queued before still go out.
        self.close_queued = False
        self.scope: trio.CancelScope | None = None
        # A failure found outside the reader (send queue full): the reader reports it
        # (error, then close event) in order with the connection's other events. The
        # socket's read side is shut down to wake the reader (no cancel scope needed
        # around every receive of every idle connection).
        self.failure: str | None = None

    # ------------------------------------------------------------ output (loop thread)

    def send_frame(self, frame: bytes | memoryview, direct: int = DIRECT_BYTES_PER_STEP) -> int:
        """Queue bytes for the client, writing at once what the kernel takes, up to
        `direct` bytes (the rest goes to the writer task). Returns the bytes written
        at once. (Callers check `closing` for data frames; close frames go out after
        it is set.)"""
        raw = self.raw
        out = self.out
        sent = 0
        if raw is not None and not out and direct > 0:
            try:
                sent = raw.send(frame if len(frame) <= direct else memoryview(frame)[:direct])
            except BlockingIOError:
                sent = 0
            except OSError:
                return 0  # the reader sees the broken connection
            self.registry.bytes_written += sent
            if sent == len(frame):
                return sent
            frame = memoryview(frame)[sent:]
        if out is None:
            out = self.out = collections.deque()
        out.append(frame)
        self.out_bytes += len(frame)
        if self.out_bytes > self.registry.send_queue_bytes and not self.closing:
            self.out = None
            self.out_bytes = 0
            self.registry.fail(
                self,
                CLOSE_POLICY,
                "send queue full: the client does not read",
                f"the client did not read: more than {self.registry.send_queue_bytes} bytes "
                "were waiting to be sent",
            )
            return sent
        nursery = self.nursery
        if raw is not None and not self.writer and nursery is not None:
            self.writer = True
            nursery.start_soon(self._drain)
        return sent

    async def _drain(self) -> None:
        raw = self.raw
        registry = self.registry
        try:
            while self.out and raw is not None:
                await trio.lowlevel.wait_writable(raw)
                # At most WRITERS_AT_ONCE writers send per loop turn, host-wide (the
                # limiter's token is taken with a checkpoint: it spans a turn).
                async with registry.write_turns:
                    out = self.out
                    if not out:
                        break  # dropped meanwhile (the connection failed)
                    frame = out[0]
                    try:
                        sent = raw.send(
                            frame if len(frame) <= WRITE_CHUNK else memoryview(frame)[:WRITE_CHUNK]
                        )
                    except BlockingIOError:
                        continue
                    except OSError:
                        self.out = None
                        self.out_bytes = 0
                        return
                registry.bytes_written += sent
                self.out_bytes -= sent
                if sent == len(frame):
                    out.popleft()
                else:
                    out[0] = memoryview(frame)[sent:]  # (no copy of the rest)
            self.out = None
        finally:
            self.writer = False
            if self.drained is not None:
                self.drained.set()

    def send_close(self, code: int, reason: str) -> None:
        """Start the closing handshake from the host's side."""
        try:
            data = self.proto.send(CloseConnection(code=code, reason=reason))
        except LocalProtocolError:
            return
        self.closing = True
        self.send_frame(data)

    def abandon(self) -> None:
        """The HTTP server could not hand the connection over (UpgradeResponse.on_abandon)."""
        self.registry.abandoned(self)

    # ------------------------------------------------------------ input (its own task)

    async def serve(self, stream: trio.abc.Stream, tail: bytes) -> None:
        """Run the connection until it ends (the HTTP server's connection task)."""
        assert isinstance(stream, trio.SocketStream)
        raw = socket.socket(fileno=stream.socket.fileno())  # shares the fd: detach, never close
        try:
            raw.setblocking(False)
            async with trio.open_nursery() as nursery:
                # The nursery's scope is the connection's: a close deadline
                # (`WebSockets._cut_later`) cancels the reader and any writer alike.
                self.nursery, self.scope = nursery, nursery.cancel_scope
                self.raw = raw
                queued, self.out = self.out, None
                self.out_bytes = 0
                for frame in queued or ():  # output of the accepting event, after the 101
                    self.send_frame(frame)
                del queued
                if self.closing:  # closed by the accepting event itself
                    nursery.cancel_scope.deadline = trio.current_time() + CLOSE_WAIT_S
                await self._read(stream, tail)
                # Let what is queued (a close frame) go out, briefly.
                with trio.move_on_after(CLOSE_WAIT_S):
                    if self.writer:
                        self.drained = trio.Event()
                        await self.drained.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.raw = None
            self.nursery = None
            raw.detach()
            if not self.closing:
                # Ended by cancellation (shutdown cut it): still leave the registry.
                self.registry.remove(self)

    async def _read(self, stream: trio.abc.Stream, tail: bytes) -> None:
        registry = self.registry
        proto = self.proto
        parts: list[str | bytes] = []
        size = 0
        data: bytes | None = tail or None
        while True:
            if data is None:
                try:
                    data = bytes(await stream.receive_some(RECV_BYTES))
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    data = b""
            if self.failure is not None:
                message, self.failure = self.failure, None
                await registry.report_failure(self, message)
                return  # its read side is shut: nothing more comes
            if not data:
                if not self.closing:
                    await registry.vanished(self)
                return
            try:
                proto.receive_data(data)
            except LocalProtocolError:
                return
            data = None
            for event in proto.events():
                if isinstance(event, TextMessage | BytesMessage):
                    if self.closing:
                        continue
                    chunk: str | bytes = (
                        event.data if isinstance(event.data, str) else bytes(event.data)
                    )
                    size += len(chunk.encode("utf-8")) if isinstance(chunk, str) else len(chunk)
                    if size > registry.max_message_bytes:
                        await registry.fail_and_report(
                            self,
                            CLOSE_TOO_BIG,
                            "message too big",
                            f"message above the {registry.max_message_bytes}-byte limit "
                            f"({size} bytes received so far)",
                        )
                        parts, size = [], 0
                        continue
                    parts.append(chunk)
                    if event.message_finished:
                        msg: str | bytes = (
                            "".join(parts)  # type: ignore[arg-type]
                            if isinstance(chunk, str)
                            else b"".join(parts)  # type: ignore[arg-type]
                        )
                        parts, size = [], 0
                        await registry.message(self, msg)
                elif isinstance(event, Ping):
                    if proto.state is ConnectionState.OPEN:
                        self.send_frame(proto.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if proto.state is ConnectionState.REMOTE_CLOSING:
                        # The client started the closing handshake: answer it.
                        self.send_frame(proto.send(event.response()))
                        if not self.closing:
                            await registry.client_closed(self, event.code, event.reason or "")
                        return
                    if proto.state is ConnectionState.CLOSED:
                        return  # the answer to our close frame
                    # wsproto reports a protocol violation as a close event in OPEN state.
                    await registry.fail_and_report(
                        self, event.code, "protocol error", f"protocol violation: {event.reason}"
                    )
                    return


class WebSockets:
    """The host's WebSocket connections (loop thread, except the `WsHostView` reads)."""

    def __init__(
        self,
        deliver: Deliver,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_per_object: int = DEFAULT_MAX_CONNECTIONS_PER_OBJECT,
        send_queue_bytes: int | None = None,
        wall_ms: Callable[[], float] = lambda: time.time() * 1000.0,
    ) -> None:
        self._deliver = deliver
        self.max_message_bytes = max_message_bytes
        self.max_per_object = max_per_object
        # A client that leaves this much unread is closed (1008). At least two messages.
        self.send_queue_bytes = (
            send_queue_bytes if send_queue_bytes is not None else 2 * max_message_bytes + 65_536
        )
        self.wall_ms = wall_ms
        # Writer sends per loop turn, host-wide; bytes written to sockets (all time).
        self.write_turns = trio.CapacityLimiter(WRITERS_AT_ONCE)
        self.bytes_written = 0
        # Per-tenant connection limit (quotas), None: no limit. Set by the server.
        self.tenant_limit: Callable[[str], int | None] | None = None
        self._objects: dict[WsKey, ObjectSockets] = {}
        self._tenant_open: dict[str, int] = {}
        self._ids = itertools.count(1)
        # Accepted by a committed event, waiting for the API to write the 101 (taken by
        # `take_accepted` right after the event's delivery returns). Kept apart from the
        # registry because the same event may already have closed the connection.
        self._handshaking: dict[int, WsConnection] = {}
        self.closing = False
        # Where events that no connection task can carry run (set by the host).
        self.background: trio.Nursery | None = None
        # Counters for the metrics, by (tenant, class).
        self.messages_in: collections.Counter[tuple[str, str]] = collections.Counter()
        self.auto_responses: collections.Counter[tuple[str, str]] = collections.Counter()
        self.open_by_class: collections.Counter[tuple[str, str]] = collections.Counter()

    # ------------------------------------------------------------ WsHostView (any thread)

    def open_connections(self, key: WsKey) -> Sequence[WsConnection]:
        obj = self._objects.get(key)
        if obj is None:
            return ()
        # list() of a dict's values is one C call under the GIL: a consistent snapshot even
        # while the loop changes the dict.
        return [c for c in list(obj.conns.values()) if not (c.closing or c.close_queued)]

    def connection(self, key: WsKey, conn_id: int) -> WsConnection | None:
        obj = self._objects.get(key)
        if obj is None:
            return None
        conn = obj.conns.get(conn_id)
        if conn is None or conn.closing or conn.close_queued:
            return None
        return conn

    def new_id(self) -> int:
        return next(self._ids)  # itertools.count is atomic under the GIL

    def capacity_error(self, tenant: str, key: WsKey, adding: int) -> tuple[Code, str] | None:
        if self.closing:
            return (Code.NOT_SUPPORTED, "the host is shutting down")
        obj = self._objects.get(key)
        n = len(obj.conns) if obj is not None else 0
        if n + adding > self.max_per_object:
            return (
                Code.LIMIT_EXCEEDED,
                f"the object has {n} connections; the limit is {self.max_per_object}",
            )
        limit = self.tenant_limit(tenant) if self.tenant_limit is not None else None
        if limit is not None:
            have = self._tenant_open.get(tenant, 0)
            if have + adding > limit:
                return (
                    Code.QUOTA_EXCEEDED,
                    f"the tenant has {have} open connections; its quota is {limit}",
                )
        return None

    # ------------------------------------------------------------ applying events (loop)

    def apply(self, key: WsKey, oid: ObjectId, ws: WsEvent) -> None:
        obj = self._objects.get(key)
        if obj is None:
            obj = self._objects[key] = ObjectSockets(key, oid)
        if ws.accepted is not None:
            a = ws.accepted
            conn = WsConnection(self, obj, a.id, a.tags)
            conn.attachment = a.attachment
            obj.conns[a.id] = conn
            self._handshaking[a.id] = conn
            self._tenant_open[obj.tenant] = self._tenant_open.get(obj.tenant, 0) + 1
            self.open_by_class[(obj.tenant, obj.class_name)] += 1
        for conn_id, data in ws.attachments.items():
            c = obj.conns.get(conn_id)
            if c is not None:
                c.attachment = data
        if ws.auto_response_set:
            obj.auto_response = ws.auto_response
        if not ws.output:
            return
        for op in ws.output:
            if isinstance(op, WsClose):
                c = obj.conns.get(op.id)
                if c is not None:
                    c.close_queued = True  # later events no longer see it
        pumping = obj.backlog is not None
        if obj.backlog is None:
            obj.backlog = collections.deque()
        obj.backlog.append(_Output(ws.output))
        if not pumping and not self._output_step(obj):
            if self.background is None:
                while not self._output_step(obj):
                    pass
            else:
                self.background.start_soon(self._pump, obj)

    def _output_step(self, obj: ObjectSockets) -> bool:
        """Hand the object's backlog to its connections, in order, up to one step's
        budget (APPLY_PAIRS_PER_STEP, DIRECT_BYTES_PER_STEP). True when it is empty."""
        backlog = obj.backlog
        assert backlog is not None
        pairs = 0
        direct = DIRECT_BYTES_PER_STEP
        while backlog:
            work = backlog[0]
            ops = work.ops
            while work.i < len(ops):
                op = ops[work.i]
                if isinstance(op, WsSend):
                    frame = work.frame
                    if frame is None:  # encoded once for all its recipients
                        frame = work.frame = encode_frame(op.kind, op.data)
                        pairs += len(frame) // WRITE_CHUNK  # (the copy is work too)
                    ids = op.ids
                    while work.j < len(ids):
                        if pairs >= APPLY_PAIRS_PER_STEP:
                            return False
                        c = obj.conns.get(ids[work.j])
                        work.j += 1
                        pairs += 1
                        if c is not None and not c.closing:
                            direct -= c.send_frame(frame, direct)
                    work.frame = None
                    work.j = 0
                elif isinstance(op, WsClose):
                    c = obj.conns.get(op.id)
                    if c is not None and not c.closing:
                        c.send_close(op.code, op.reason)
                        self.remove(c)  # an object's own close gets no close event
                        self._cut_later(c)
                work.i += 1
            backlog.popleft()
        obj.backlog = None
        return True

    async def _pump(self, obj: ObjectSockets) -> None:
        """The rest of an object's backlog, one step per loop turn."""
        try:
            while True:
                await trio.lowlevel.checkpoint()
                if self._output_step(obj):
                    return
        finally:
            obj.backlog = None  # (cancelled: the host is stopping; its output is dropped)

    def activation_dropped(self, key: WsKey) -> None:
        """An object without connections keeps its auto-response pair only while its
        activation lives: the next activation's dohost_init sets it again, and the
        registry does not grow with every object that ever set one."""
        obj = self._objects.get(key)
        if obj is not None and not obj.conns:
            del self._objects[key]

    def take_accepted(self, conn_id: int) -> WsConnection | None:
        """The connection an upgrade event accepted (once), to serve after the 101."""
        return self._handshaking.pop(conn_id, None)

    def remove(self, conn: WsConnection) -> None:
        conn.closing = True
        obj = conn.obj
        if obj.conns.pop(conn.id, None) is not None:
            t = obj.tenant
            self._tenant_open[t] -= 1
            if not self._tenant_open[t]:
                del self._tenant_open[t]
            self.open_by_class[(t, obj.class_name)] -= 1
        if not obj.conns and obj.auto_response is None:
            self._objects.pop(obj.key, None)

    def _cut_later(self, conn: WsConnection) -> None:
        """After the host's close frame: give the client CLOSE_WAIT_S to answer."""
        if conn.scope is not None:
            conn.scope.deadline = min(conn.scope.deadline, trio.current_time() + CLOSE_WAIT_S)

    # ------------------------------------------------------------ connection events (loop)

    async def _event(self, conn: WsConnection, kind: str, data: bytes) -> None:
        obj = conn.obj
        try:
            # Shielded: a close deadline on the connection must not cut an event in the
            # middle (each is bounded by its CPU limit).
            with trio.CancelScope(shield=True):
                result = await self._deliver(obj.tenant, obj.class_name, obj.oid, kind, data)
        except DohostError as e:
            log.warning("ws %s event of connection %d not delivered: %s", kind, conn.id, e)
            return
        if result is not None and result.error is not None:
            # Rolled back like any event; its output was dropped. The connection stays.
            log.warning(
                "[%s/%s/%s] dohost_%s failed (connection %d): %s: %s",
                obj.tenant,
                obj.class_name,
                obj.oid.hex[:16],
                kind,
                conn.id,
                result.error.code.code,
                result.error.message,
            )

    async def message(self, conn: WsConnection, msg: str | bytes) -> None:
        obj = conn.obj
        pair = obj.auto_response
        if pair is not None and isinstance(msg, str) and msg.encode("utf-8") == pair[0]:
            conn.send_frame(encode_frame(KIND_TEXT, pair[1]))
            conn.auto_response_at = int(self.wall_ms())
            self.auto_responses[(obj.tenant, obj.class_name)] += 1
            return
        self.messages_in[(obj.tenant, obj.class_name)] += 1
        await self._event(conn, "ws_message", message_input(conn.id, conn.tags, msg))

    async def client_closed(self, conn: WsConnection, code: int, reason: str) -> None:
        self.remove(conn)
        await self._event(conn, "ws_close", close_input(conn.id, conn.tags, code, reason, True))

    async def vanished(self, conn: WsConnection) -> None:
        self.remove(conn)
        await self._event(
            conn,
            "ws_error",
            error_input(
                conn.id, conn.tags, "the client closed the connection without a close frame"
            ),
        )
        await self._event(
            conn, "ws_close", close_input(conn.id, conn.tags, CLOSE_ABNORMAL, "", False)
        )

    def fail(self, conn: WsConnection, code: int, reason: str, message: str) -> None:
        """Fail a connection from synchronous code: the close frame now; its reader
        delivers the error and close events next, after the events already under way."""
        if conn.closing:
            return
        conn.send_close(code, reason)
        self.remove(conn)
        self._cut_later(conn)
        conn.failure = message
        if conn.raw is not None:
            with contextlib.suppress(OSError):
                conn.raw.shutdown(socket.SHUT_RD)  # wakes the reader: it reports

    async def fail_and_report(
        self, conn: WsConnection, code: int, reason: str, message: str
    ) -> None:
        if conn.closing:
            return
        conn.send_close(code, reason)
        self.remove(conn)
        self._cut_later(conn)
        await self.report_failure(conn, message)

    async def report_failure(self, conn: WsConnection, message: str) -> None:
        await self._event(conn, "ws_error", error_input(conn.id, conn.tags, message))
        await self._event(
            conn, "ws_close", close_input(conn.id, conn.tags, CLOSE_ABNORMAL, "", False)
        )

    # ------------------------------------------------------------ lifecycle (loop)

    def close_all(
        self, code: int = CLOSE_GOING_AWAY, reason: str = "the host is shutting down"
    ) -> None:
        """Close every connection (host shutdown): close frames now, TCP cut soon after."""
        self.closing = True
        for obj in list(self._objects.values()):
            for conn in list(obj.conns.values()):
                conn.send_close(code, reason)
                self.remove(conn)
                self._cut_later(conn)

    def abandoned(self, conn: WsConnection) -> None:
        """The 101 never reached the client (it went away first): the object accepted a
        connection that never opened, so it gets the error and close events."""
        if conn.closing:
            return
        self.remove(conn)
        if self.background is not None:
            self.background.start_soon(
                self.report_failure, conn, "the client went away before the handshake completed"
            )

    def close_object(self, key: WsKey, code: int, reason: str) -> None:
        """Close an object's connections without events (the object was deleted)."""
        obj = self._objects.pop(key, None)
        if obj is None:
            return
        for conn in list(obj.conns.values()):
            conn.send_close(code, reason)
            self.remove(conn)
            self._cut_later(conn)

    def close_class(self, tenant: str, class_name: str, code: int, reason: str) -> None:
        """Close every connection of a class's objects without events (class deleted or
        renamed: its clients reconnect under the new name)."""
        for key in [k for k in self._objects if k[:2] == (tenant, class_name)]:
            self.close_object(key, code, reason)

    def close_tenant(self, tenant: str, code: int, reason: str) -> None:
        """Close every connection of a tenant's objects without events (tenant deleted)."""
        for key in [k for k in self._objects if k[0] == tenant]:
            self.close_object(key, code, reason)

    def open_count(self) -> int:
        return sum(self._tenant_open.values())

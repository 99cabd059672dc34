"""Helpers of the chat-room WebSocket tests: a real HTTP server in this process (the
front door, the API and a `Host` on 127.0.0.1, the way `dohost serve` assembles them, but
with the host's clocks on trio's MockClock so a test can pass the idle timeout without
sleeping), and a small WebSocket client on wsproto."""

from __future__ import annotations

import json
import resource
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from dohost import Host
from dohost.server.api import Api
from dohost.server.http_server import serve_http
from dohost.server.quotas import Quotas
from dohost.server.state import ServerState

ROOT = Path(__file__).resolve().parents[2]
WASM = ROOT / "samples" / "chat-room" / "chat-room.wasm"
CLASS = "chat-room"
ADMIN_TOKEN = "chat-admin-token-" + "x" * 16
START_MS = 1_700_000_000_000  # the wall clock at trio time 0
IDLE_S = 10.0  # the host's idle timeout


def raise_fd_limit(need: int) -> None:
    """Both ends of every connection live in this process: make room for them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


class WsClosed(Exception):
    """The connection ended; `code` and `reason` are the server's close frame (1006 and
    "" when it ended without one)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"closed: {code} {reason!r}")
        self.code, self.reason = code, reason


class WsRejected(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"handshake refused: {status} {body[:200]!r}")
        self.status, self.body = status, body


class WsClient:
    """One client connection: messages are str (text frames) or bytes (binary frames)."""

    def __init__(self, stream: trio.SocketStream, conn: WSConnection) -> None:
        self.stream, self.conn = stream, conn
        self.messages: deque[str | bytes] = deque()
        self.closed: WsClosed | None = None
        self._parts: list[str | bytes] = []

    @classmethod
    async def connect(cls, port: int, target: str, token: str) -> WsClient:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        conn = WSConnection(ConnectionType.CLIENT)
        auth = [("authorization", f"Bearer {token}")]
        await stream.send_all(
            conn.send(Request(host=f"127.0.0.1:{port}", target=target, extra_headers=auth))
        )
        client = cls(stream, conn)
        status, body = 0, b""
        while status == 0 or (status != 101 and not client.closed):
            data = await stream.receive_some(65536)
            conn.receive_data(data or None)
            for ev in conn.events():
                if isinstance(ev, AcceptConnection):
                    status = 101
                elif isinstance(ev, RejectConnection):
                    status = ev.status_code
                    if not ev.has_body:
                        client.closed = WsClosed(1006, "")
                elif isinstance(ev, RejectData):
                    body += ev.data
                    if ev.body_finished:
                        client.closed = WsClosed(1006, "")
                else:
                    client._take(ev)  # frames right behind the 101 (the room's history)
            if not data:
                break
        if status != 101:
            await stream.aclose()
            raise WsRejected(status, body)
        return client

    def _take(self, ev: Any) -> bytes:
        """Handles one event; returns bytes to send back (pong, close reply)."""
        if isinstance(ev, TextMessage | BytesMessage):
            self._parts.append(ev.data)
            if ev.message_finished:
                parts, self._parts = self._parts, []
                self.messages.append(
                    "".join(parts) if isinstance(ev, TextMessage) else b"".join(parts)  # type: ignore[arg-type]
                )
        elif isinstance(ev, Ping):
            return self.conn.send(ev.response())
        elif isinstance(ev, CloseConnection):
            self.closed = WsClosed(ev.code, ev.reason or "")
            try:
                return self.conn.send(ev.response())
            except Exception:  # we had sent a close frame first: nothing to answer
                return b""
        return b""

    async def _pump(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            if self.closed is None:
                self.closed = WsClosed(1006, "")
            return
        self.conn.receive_data(data)
        reply = b"".join(self._take(ev) for ev in self.conn.events())
        if reply:
            await self.stream.send_all(reply)

    async def recv(self) -> str | bytes:
        while not self.messages:
            if self.closed is not None:
                raise self.closed
            await self._pump()
        return self.messages.popleft()

    async def recv_json(self) -> Any:
        msg = await self.recv()
        assert isinstance(msg, str), msg
        return json.loads(msg)

    async def send(self, data: str | bytes) -> None:
        ev = TextMessage(data) if isinstance(data, str) else BytesMessage(data)
        await self.stream.send_all(self.conn.send(ev))

    async def send_json(self, value: Any) -> None:
        await self.send(json.dumps(value))

    async def close(self, code: int = 1000, reason: str = "") -> WsClosed:
        """The closing handshake: our close frame, then the server's answer."""
        await self.stream.send_all(self.conn.send(CloseConnection(code, reason)))
        while self.closed is None:
            await self._pump()
        await self.stream.aclose()
        return self.closed

    async def vanish(self) -> None:
        """Ends the TCP connection without a close frame (a client that crashed)."""
        await self.stream.aclose()


@dataclass
class ChatServer:
    host: Host
    port: int
    token: str
    clock: trio.testing.MockClock
    http: httpx.AsyncClient
    clients: list[WsClient] = field(default_factory=list)
    class_name: str = CLASS

    def path(self, room: str, rest: str = "") -> str:
        return f"/v1/classes/{self.class_name}/objects/{room}{rest}"

    def without_inline_attempts(self) -> None:
        """Run every event on a worker thread. An inline attempt that runs out of its
        short budget (a busy machine suffices) is abandoned with its instance and the
        event re-runs in a new one, whose constructor runs again: tests that count
        constructions turn them off."""
        self.host.supervisor.inline_ticks = 0

    def now_ms(self) -> int:
        return int(START_MS + self.clock.current_time() * 1000)

    async def connect(self, room: str, query: str = "") -> WsClient:
        c = await WsClient.connect(self.port, self.path(room, "/ws" + query), self.token)
        self.clients.append(c)
        return c

    async def connect_many(self, room: str, n: int, at_once: int = 64) -> list[WsClient]:
        """n members, at most `at_once` handshakes in flight; in the order given."""
        out: list[WsClient | None] = [None] * n
        limit = trio.Semaphore(at_once)

        async def one(i: int) -> None:
            async with limit:
                out[i] = await self.connect(room)

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
        return [c for c in out if c is not None]

    async def get(self, room: str, rest: str) -> httpx.Response:
        return await self.http.get(self.path(room, rest))

    async def get_json(self, room: str, rest: str) -> Any:
        r = await self.get(room, rest)
        assert r.status_code == 200, r.text
        return r.json()

    async def post(self, room: str, rest: str, body: Any) -> httpx.Response:
        return await self.http.post(self.path(room, rest), json=body)

    def resident(self, room: str) -> bool:
        """Whether the room has an activation (an instance in memory)."""
        oid = self.host.id_from_name("chat", self.class_name, room)
        return any(
            s.object_id.raw == oid.raw and s.activation is not None
            for s in self.host.supervisor.slots()
        )

    async def hibernate(self) -> None:
        """Moves time past the idle timeout and lets the host's reaper run: every object
        with nothing to do loses its activation."""
        await trio.testing.wait_all_tasks_blocked()
        self.clock.jump(IDLE_S * 1.5)
        await trio.testing.wait_all_tasks_blocked()

    async def wait_until(self, cond: Callable[[], bool]) -> None:
        """Lets the loop run until `cond()` holds (no clock moves, no sleeps)."""
        for _ in range(1000):
            if cond():
                return
            await trio.testing.wait_all_tasks_blocked()
            await trio.lowlevel.checkpoint()
        raise AssertionError("condition never held")


@asynccontextmanager
async def chat_server(
    data: Path,
    clock: trio.testing.MockClock,
    module: bytes | None = None,
    class_name: str = CLASS,
    **host_options: Any,
) -> AsyncIterator[ChatServer]:
    """The chat-room (or `module` as `class_name`) deployed for tenant "chat" behind a
    real HTTP server on 127.0.0.1."""
    clients: list[WsClient] = []
    try:
        async with Host(
            data,
            durability="os",
            idle_timeout=IDLE_S,
            wall_clock_ms=lambda: START_MS + clock.current_time() * 1000,
            **host_options,
        ) as host:
            # The clock stands still, so the request-rate bucket never refills: no limit.
            state = await ServerState.attach(host, ADMIN_TOKEN, Quotas(requests_per_s=1e9))
            api = Api(state)
            async with trio.open_nursery() as nursery:
                _, port = await nursery.start(serve_http, api.handle, "127.0.0.1", 0)
                base = f"http://127.0.0.1:{port}"
                admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
                async with httpx.AsyncClient(base_url=base, headers=admin) as a:
                    r = await a.post("/v1/tenants", json={"name": "chat"})
                    assert r.status_code == 201, r.text
                    token = r.json()["token"]
                auth = {"authorization": f"Bearer {token}"}
                async with httpx.AsyncClient(base_url=base, headers=auth, timeout=None) as http:
                    wasm = WASM.read_bytes() if module is None else module
                    r = await http.put(f"/v1/classes/{class_name}", content=wasm)
                    assert r.status_code == 201, r.text
                    server = ChatServer(host, port, token, clock, http, clients, class_name)
                    yield server
                    nursery.cancel_scope.cancel()
    finally:
        # After the host: closing a client now delivers no close event to a stopped host.
        for c in clients:
            with trio.CancelScope(shield=True):
                await c.stream.aclose()

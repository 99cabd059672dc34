"""Hostile tenants, round two (issue 15): a WebSocket broadcast flood cannot hold the loop.

Real WebSocket connections over real TCP to the real HTTP server and Host: an object of
tenant "noisy" (tests/fixtures/hostile/ws_flood.wat) answers each message by
broadcasting 24 x 64 KiB to its 8 reading connections (12 MiB of socket writes per
event) and to one client that never reads, while tenant "quiet"'s no-op object is asked
over and over. The verdicts are structural, not timed: no task step of the loop writes
more than one step's budget to sockets (a trio instrument measures the bytes the
WebSocket layer wrote in each task step), every reader gets every message in order, the
quiet object answers between the flood's events, and the client that does not read is
closed by the existing policy (1008: more than its unread allowance queued) while the
others go on. (The quiet tenant's latency under the flood is bench/hostile.py's
`broadcast` row.)
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import trio
import wasmtime
from quiet_probe import NOOP
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Message, Request

from dohost import Host
from dohost.server.api import Api
from dohost.server.http_server import serve_http
from dohost.server.http_types import HttpRequest
from dohost.server.quotas import Quotas
from dohost.server.state import ServerState
from dohost.server.websockets import DIRECT_BYTES_PER_STEP, WRITE_CHUNK, WebSockets

HOSTILE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "hostile"
ADMIN = "broadcast-admin-token-" + "x" * 16
READERS = 8
MESSAGES = 24  # per event (ws_flood.wat)
EVENTS = 6


class StepMeter(trio.abc.Instrument):
    """The most bytes the WebSocket layer wrote to sockets within one task step."""

    def __init__(self, ws: WebSockets) -> None:
        self.ws = ws
        self.before = 0
        self.most = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.before = self.ws.bytes_written

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.most = max(self.most, self.ws.bytes_written - self.before)


class Client:
    """A minimal wsproto client."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.proto = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Any] = []

    @classmethod
    async def connect(cls, port: int, target: str, token: str) -> Client:
        c = cls(await trio.open_tcp_stream("127.0.0.1", port))
        req = Request(host="t", target=target, extra_headers=[("authorization", f"Bearer {token}")])
        await c.stream.send_all(c.proto.send(req))
        while True:
            events = await c._events()
            for i, ev in enumerate(events):
                if isinstance(ev, AcceptConnection):
                    c.pending = events[i + 1 :]
                    return c
            assert not any(type(ev).__name__.startswith("Reject") for ev in events), events

    async def _events(self) -> list[Any]:
        data = await self.stream.receive_some(65536)
        self.proto.receive_data(data or None)
        return list(self.proto.events())

    async def send(self, text: str) -> None:
        await self.stream.send_all(self.proto.send(Message(data=text)))

    async def recv(self) -> bytes:
        parts: list[bytes] = []
        while True:
            while self.pending:
                ev = self.pending.pop(0)
                assert isinstance(ev, BytesMessage), ev
                parts.append(bytes(ev.data))
                if ev.message_finished:
                    return b"".join(parts)
            self.pending = await self._events()


async def _tenant(api: Api, name: str) -> str:
    req = HttpRequest(
        "POST",
        "/v1/tenants",
        "",
        [("host", "t"), ("authorization", f"Bearer {ADMIN}")],
        json.dumps({"name": name}).encode(),
        ("127.0.0.1", 1),
        "1.1",
    )
    r = await api.handle(req)
    assert r.status == 201, r.body
    return str(json.loads(r.body)["token"])


async def test_a_broadcast_flood_is_written_in_bounded_steps(tmp_path: Path, wasm: Any) -> None:
    async with Host(tmp_path / "data", durability="os") as host:
        api = Api(await ServerState.attach(host, ADMIN, Quotas()))
        async with trio.open_nursery() as nursery:
            port = (await nursery.start(serve_http, api.handle))[1]
            token = await _tenant(api, "noisy")
            flood = wasmtime.wat2wasm((HOSTILE / "ws_flood.wat").read_text())
            await host.deploy("noisy", "flood", flood)
            await host.deploy("quiet", "noop", wasm("noop"))
            target = "/v1/classes/flood/objects/f/"
            readers = [await Client.connect(port, target, token) for _ in range(READERS)]
            silent = await Client.connect(port, target, token)  # never reads
            ws = host.websockets
            assert ws is not None and ws.open_count() == READERS + 1
            meter = StepMeter(ws)
            trio.lowlevel.add_instrument(meter)
            quiet_answers: list[int] = []  # flood events finished when each answer came
            finished = 0
            done = trio.Event()

            async def quiet() -> None:
                while not done.is_set():
                    r = await host.fetch("quiet", "noop", "q", NOOP)
                    assert r.status in (200, 204)
                    quiet_answers.append(finished)
                    await trio.lowlevel.checkpoint()

            async def read_one_event(c: Client) -> None:
                for i in range(MESSAGES):
                    m = await c.recv()
                    assert len(m) == 65536 and struct.unpack_from("<I", m)[0] == i

            try:
                async with trio.open_nursery() as inner:
                    inner.start_soon(quiet)
                    events = 0
                    # Flood until the silent client is closed (its unread allowance is
                    # ~2 MiB; the kernel's buffers take some more first), then EVENTS more.
                    while events < 40 and (ws.open_count() > READERS or finished < EVENTS):
                        await readers[0].send("go")
                        async with trio.open_nursery() as n:
                            for c in readers:
                                n.start_soon(read_one_event, c)
                        events += 1
                        finished += 1
                    done.set()
            finally:
                trio.lowlevel.remove_instrument(meter)
            assert ws.open_count() == READERS, "the client that does not read was not closed"
            # Each task step wrote at most one step of an event's output or one chunk.
            assert 0 < meter.most <= DIRECT_BYTES_PER_STEP + WRITE_CHUNK, meter.most
            assert ws.bytes_written >= events * READERS * MESSAGES * 65536
            # The quiet object answered between the flood's events, not only after.
            assert len({n for n in quiet_answers if n < events}) >= events - 1, quiet_answers
            await silent.stream.aclose()
            ws.close_all()
            nursery.cancel_scope.cancel()

"""WebSockets end to end: a real wsproto client over real TCP against the real HTTP server,
API and Host, with the C test guest tests/fixtures/c/wstest.c (abi/README.md "WebSockets").

Time is trio's MockClock (hibernation jumps it); nothing sleeps to wait for something.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from api_helpers import ADMIN_TOKEN, http_request
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
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

IDLE_S = 10.0


class World:
    def __init__(self, host: Host, api: Api, port: int, token: str) -> None:
        self.host, self.api, self.port, self.token = host, api, port, token
        # WebSocket events in flight (they may run on worker threads and wait for a
        # commit, which trio does not see as activity): `settle` waits for them too.
        self.inflight = 0
        self.idle = trio.Event()
        self.idle.set()
        deliver = host.websockets._deliver

        async def counting(*args: Any) -> Any:
            if self.inflight == 0:
                self.idle = trio.Event()
            self.inflight += 1
            try:
                return await deliver(*args)
            finally:
                self.inflight -= 1
                if self.inflight == 0:
                    self.idle.set()

        host.websockets._deliver = counting  # type: ignore[method-assign]

    async def settle(self) -> None:
        """Until every task is blocked and no WebSocket event is in flight."""
        while True:
            await trio.testing.wait_all_tasks_blocked(0.01)
            if self.inflight == 0:
                return
            await self.idle.wait()

    def key(self, name: str) -> tuple[str, str, bytes]:
        return ("acme", "ws", self.host.id_from_name("acme", "ws", name).raw)

    async def get(self, path: str) -> tuple[int, bytes]:
        """A plain HTTP GET over TCP."""
        stream = await trio.open_tcp_stream("127.0.0.1", self.port)
        async with stream:
            await stream.send_all(
                f"GET {path} HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {self.token}\r\n"
                "connection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body

    async def ws(self, path: str, *, token: str | None = None) -> Client:
        c = Client()
        await c.connect(self.port, f"/v1/classes/ws/objects/{path}", token or self.token)
        return c


class Client:
    """A wsproto client; `rejected` holds (status, body) when the upgrade was refused."""

    def __init__(self) -> None:
        self.proto = WSConnection(ConnectionType.CLIENT)
        self.rejected: tuple[int, bytes] | None = None
        self.pending: list[Any] = []

    async def connect(
        self, port: int, target: str, token: str, stream: trio.SocketStream | None = None
    ) -> None:
        self.stream = stream or await trio.open_tcp_stream("127.0.0.1", port)
        req = Request(host="t", target=target, extra_headers=[("authorization", f"Bearer {token}")])
        await self.stream.send_all(self.proto.send(req))
        status, body = 0, b""
        while True:
            events = await self._events()
            for i, ev in enumerate(events):
                if isinstance(ev, AcceptConnection):
                    self.pending = events[i + 1 :]  # frames that came with the 101
                    return
                if isinstance(ev, RejectConnection):
                    status = ev.status_code
                    if not ev.has_body:
                        self.rejected = (status, body)
                        return
                elif isinstance(ev, RejectData):
                    body += ev.data
                    if ev.body_finished:
                        self.rejected = (status, body)
                        return
                else:
                    self.pending.append(ev)

    async def _events(self) -> list[Any]:
        data = await self.stream.receive_some(65536)
        self.proto.receive_data(data or None)
        return list(self.proto.events())

    async def send(self, data: str | bytes) -> None:
        await self.stream.send_all(self.proto.send(Message(data=data)))

    async def recv(self) -> str | bytes | CloseConnection:
        """The next whole message, or the close frame (answered)."""
        parts: list[Any] = []
        while True:
            while self.pending:
                ev = self.pending.pop(0)
                if isinstance(ev, CloseConnection):
                    if self.proto.state.name == "REMOTE_CLOSING":
                        await self.stream.send_all(self.proto.send(ev.response()))
                    return ev
                if isinstance(ev, TextMessage | BytesMessage):
                    parts.append(ev.data)
                    if ev.message_finished:
                        return "".join(parts) if isinstance(ev, TextMessage) else b"".join(parts)
            self.pending = await self._events()

    async def ask(self, text: str) -> str | bytes | CloseConnection:
        await self.send(text)
        return await self.recv()

    async def close(self, code: int = 1000, reason: str = "") -> CloseConnection:
        await self.stream.send_all(self.proto.send(CloseConnection(code=code, reason=reason)))
        got = await self.recv()
        assert isinstance(got, CloseConnection)
        return got

    async def vanish(self) -> None:
        await self.stream.aclose()


@contextlib.asynccontextmanager
async def open_world(
    tmp_path: Path, wasm: Any, quotas: dict[str, Any] | None = None, **host_kw: Any
) -> AsyncIterator[World]:
    kw: dict[str, Any] = {
        "durability": "os",
        "workers": 2,
        "idle_timeout": IDLE_S,
        "ws_max_message_bytes": 4096,
    }
    kw.update(host_kw)
    async with Host(tmp_path / "data", **kw) as host:
        state = await ServerState.attach(host, ADMIN_TOKEN, Quotas(**(quotas or {})))
        api = Api(state)
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(serve_http, api.handle)
            world = World(host, api, bound[1], "")
            world.token = await _tenant(world)
            await host.deploy("acme", "ws", wasm("wstest"))
            yield world
            host.websockets.close_all()
            nursery.cancel_scope.cancel()


async def _tenant(world: World) -> str:
    import json

    r = await world.api.handle(
        http_request("POST", "/v1/tenants", token=ADMIN_TOKEN, body=b'{"name": "acme"}')
    )
    assert r.status < 300, r.body
    return str(json.loads(r.body)["token"])


@pytest.fixture
async def world(tmp_path: Path, wasm: Any, mock_clock: trio.testing.MockClock) -> Any:
    async with open_world(tmp_path, wasm) as w:
        yield w


# ---------------------------------------------------------------- accepting


async def test_accept_with_tags_echo_and_list(world: World) -> None:
    a = await world.ws("room/ws?tags=red,blue,red&att=A1&hello=hi")
    assert a.rejected is None
    assert await a.recv() == "hi"  # sent by the accepting event, after the handshake
    assert await a.ask("echo:hello") == "hello"
    await a.send(b"\x00\x01binary")
    assert await a.recv() == b"\x00\x01binary"
    b = await world.ws("room/ws?tags=blue")
    listing = await a.ask("list")
    assert isinstance(listing, str)
    entries = listing.rstrip(";").split(";")
    assert [e.split("[")[1] for e in entries] == ["red,blue]", "blue]"]  # accept order, deduped
    assert await a.ask("list:red") == entries[0] + ";"
    assert await a.ask("getatt") == "att=A1"
    await b.close()


async def test_fetch_that_does_not_accept_answers_normally(world: World) -> None:
    c = await world.ws("room/other")
    assert c.rejected == (403, b"nope")
    status, body = await world.get("/v1/classes/ws/objects/room/ws")  # no upgrade
    assert status == 426
    assert body.startswith(b"-9 not_supported ws_accept: this event is not")


async def test_send_tag_counts_and_reaches_only_tagged(world: World) -> None:
    a = await world.ws("r2/ws?tags=x")
    b = await world.ws("r2/ws?tags=x,y")
    c = await world.ws("r2/ws?tags=y")
    await a.send("bcast:y:to-y")
    assert await b.recv() == "to-y"
    assert await c.recv() == "to-y"
    assert await a.recv() == "sent 2"
    await a.send("bcast::all")
    assert await a.recv() == "all"
    assert await a.recv() == "sent 3"
    assert await b.recv() == "all"
    assert await c.recv() == "all"


# ---------------------------------------------------------------- hibernation


async def test_hibernation_keeps_connections_tags_attachments(
    world: World, mock_clock: trio.testing.MockClock
) -> None:
    a = await world.ws("h/ws?tags=t1")
    b = await world.ws("h/ws?tags=t2")
    assert await a.ask("att:kept") == "ok"
    assert await a.ask("inits") == "inits=1"
    sup = world.host.supervisor
    assert sup.slot_if_exists(world.key("h")) is not None
    mock_clock.jump(IDLE_S + 1)
    await world.settle()
    slot = sup.slot_if_exists(world.key("h"))
    assert slot is None or slot.activation is None  # hibernated
    # The next message re-creates the activation: the constructor runs again and the
    # object still sees both connections, their tags and the attachment.
    assert await a.ask("inits") == "inits=2"
    listing = await a.ask("list")
    assert isinstance(listing, str) and "[t1]" in listing and "[t2]" in listing
    assert await a.ask("getatt") == "att=kept"
    await b.send("bcast:t1:from-b")
    assert await a.recv() == "from-b"


async def test_auto_response_while_hibernated_runs_nothing(
    world: World, mock_clock: trio.testing.MockClock
) -> None:
    a = await world.ws("auto/ws")
    assert await a.ask("inits") == "inits=1"
    mock_clock.jump(IDLE_S + 1)
    await world.settle()
    sup = world.host.supervisor
    assert sup.slot_if_exists(world.key("auto")) is None
    activations = sup.stats.activations
    events = sup.stats.events
    assert await a.ask("ping") == "pong"
    assert sup.stats.activations == activations and sup.stats.events == events
    assert sup.slot_if_exists(world.key("auto")) is None  # still hibernated
    assert await a.ask("list") != ""  # wakes it: the constructor runs once more
    assert await a.ask("inits") == "inits=2"
    listing = await a.ask("list")
    assert isinstance(listing, str) and "@auto" in listing
    assert world.host.websockets.auto_responses[("acme", "ws")] == 1


# ---------------------------------------------------------------- closing


async def test_client_close_gives_a_clean_close_event(world: World) -> None:
    a = await world.ws("c/ws")
    got = await a.close(4001, "leaving")
    assert got.code == 4001
    await world.settle()
    assert (await world.get("/v1/classes/ws/objects/c/log"))[1].endswith(b" 4001 leaving clean;|")


async def test_object_close_reaches_client_without_close_event(world: World) -> None:
    a = await world.ws("oc/ws")
    got = await a.ask("close:4100")
    assert isinstance(got, CloseConnection)
    assert (got.code, got.reason) == (4100, "by object")
    await world.settle()
    assert (await world.get("/v1/classes/ws/objects/oc/log"))[1] == b"|"
    assert not world.host.websockets.open_connections(world.key("oc"))


async def test_vanished_client_gives_error_then_unclean_close(world: World) -> None:
    a = await world.ws("v/ws")
    assert await a.ask("echo:x") == "x"
    await a.vanish()
    await world.settle()
    _, log = await world.get("/v1/classes/ws/objects/v/log")
    closes, errors = log.split(b"|")
    assert closes.endswith(b" 1006  unclean;")
    assert b"without a close frame" in errors


async def test_oversized_message_closes_1009_with_error_and_close(world: World) -> None:
    a = await world.ws("big/ws")
    await a.send("x" * 5000)  # the world's limit is 4096
    got = await a.recv()
    assert isinstance(got, CloseConnection) and got.code == 1009
    await world.settle()
    _, log = await world.get("/v1/classes/ws/objects/big/log")
    closes, errors = log.split(b"|")
    assert b"above the 4096-byte limit" in errors
    assert closes.endswith(b" 1006  unclean;")


# ---------------------------------------------------------------- failures and limits


async def test_failing_message_drops_its_sends_and_keeps_the_connection(world: World) -> None:
    a = await world.ws("f/ws")
    await a.send("fail")  # sends "lost", then fails
    assert await a.ask("echo:after") == "after"  # "lost" never arrived


async def test_failing_accepting_fetch_gives_the_error_and_no_connection(world: World) -> None:
    c = await world.ws("fa/ws?fail=1")
    assert c.rejected is not None and c.rejected[0] == 500
    assert b"object_error" in c.rejected[1]
    assert not world.host.websockets.open_connections(world.key("fa"))


async def test_hostile_arguments(world: World) -> None:
    a = await world.ws("hx/ws")
    await a.send("hostile")
    assert await a.recv() == b"\xff\xfe"  # the one valid call of the battery (binary)
    got = await a.recv()
    assert isinstance(got, str)
    bad_ptr, not_found, invalid, bad_enc, not_sup = "-2", "-3", "-11", "-8", "-9"
    assert got.split() == [
        bad_ptr, not_found, invalid, bad_enc, "0", bad_ptr, invalid, invalid, invalid,
        invalid, not_found, bad_ptr, bad_ptr, not_found, bad_ptr, bad_ptr, not_sup, invalid,
    ]  # fmt: skip
    assert await a.ask("echo:still open") == "still open"


async def test_connection_limit_per_object_and_tenant_quota(tmp_path: Path, wasm: Any) -> None:
    async with open_world(
        tmp_path, wasm, quotas={"ws_connections": 3}, ws_max_connections_per_object=2
    ) as w:
        # (Clients are kept in variables: a collected one closes its socket, which the
        # host sees as a vanished client.)
        a = await w.ws("lim/ws")
        b = await w.ws("lim/ws")
        c = await w.ws("lim/ws")
        assert c.rejected is not None and c.rejected[0] == 426
        assert c.rejected[1].startswith(b"-14 limit_exceeded")
        o = await w.ws("other/ws")  # the tenant's third
        d = await w.ws("third/ws")
        assert d.rejected is not None and d.rejected[1].startswith(b"-7 quota_exceeded")
        await a.close()
        await w.settle()
        e = await w.ws("third/ws")  # a slot came free
        assert e.rejected is None
        assert b.rejected is None and o.rejected is None


async def test_metrics_count_messages_auto_responses_and_open_connections(world: World) -> None:
    a = await world.ws("m/ws")
    b = await world.ws("m/ws")
    assert await a.ask("echo:1") == "1"
    assert await a.ask("ping") == "pong"
    r = await world.api.handle(http_request("GET", "/metrics", token=ADMIN_TOKEN))
    text = r.body.decode()
    assert 'dohost_ws_messages_in_total{class="ws",tenant="acme"} 1.0' in text
    assert 'dohost_ws_auto_responses_total{class="ws",tenant="acme"} 1.0' in text
    assert 'dohost_ws_connections{class="ws",tenant="acme"} 2.0' in text
    assert b.rejected is None


async def test_accepting_twice_is_invalid_argument(world: World) -> None:
    a = await world.ws("tw/ws?twice=1")
    assert await a.recv() == "-11"  # the second ws_accept of the event


async def test_redeploy_keeps_connections(world: World, wasm: Any) -> None:
    a = await world.ws("rd/ws?tags=t&att=A")
    assert await a.ask("inits") == "inits=1"
    # The same module with a custom section appended: a new sha256, so a new version.
    name = b"redeploy"
    module = wasm("wstest") + b"\x00" + bytes([len(name) + 1, len(name)]) + name
    before = world.host.class_info("acme", "ws").version
    assert (await world.host.deploy("acme", "ws", module)).version == before + 1
    assert await a.ask("inits") == "inits=2"  # a new activation of the new version
    assert await a.ask("getatt") == "att=A"
    listing = await a.ask("list:t")
    assert isinstance(listing, str) and listing.endswith("[t];")


async def test_host_shutdown_closes_with_1001(world: World) -> None:
    a = await world.ws("sd/ws")
    world.host.websockets.close_all()  # what Host's drain and `dohost serve` do first
    got = await a.recv()
    assert isinstance(got, CloseConnection) and got.code == 1001
    c = await world.ws("sd/ws")
    assert c.rejected is not None and b"shutting down" in c.rejected[1]


async def test_invalid_utf8_text_is_a_protocol_violation(world: World) -> None:
    a = await world.ws("u8/ws")
    # A masked text frame (mask 0) whose payload is not UTF-8.
    await a.stream.send_all(b"\x81\x82\x00\x00\x00\x00\xff\xfe")
    got = await a.recv()
    assert isinstance(got, CloseConnection) and got.code == 1007
    await world.settle()
    _, log = await world.get("/v1/classes/ws/objects/u8/log")
    closes, errors = log.split(b"|")
    assert b"protocol violation" in errors
    assert closes.endswith(b" 1006  unclean;")


async def test_a_client_that_does_not_read_is_closed_1008(
    tmp_path: Path, wasm: Any, mock_clock: trio.testing.MockClock
) -> None:
    async with open_world(
        tmp_path, wasm, ws_max_message_bytes=65_536, ws_send_queue_bytes=100_000
    ) as w:
        # The slow client's receive buffer is tiny and it never reads.
        sock = trio.socket.socket()
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
        await sock.connect(("127.0.0.1", w.port))
        slow = Client()
        target = "/v1/classes/ws/objects/slow/ws?tags=s"
        await slow.connect(w.port, target, w.token, trio.SocketStream(sock))  # reads the 101
        assert slow.rejected is None
        fast = await w.ws("slow/ws")
        payload = "y" * 60_000
        for _ in range(200):  # 12 MB: more than the kernel's buffers and the queue
            got = await fast.ask(f"bcast:s:{payload}")
            if got == "sent 0":
                break  # the slow connection was dropped from the object's list
        assert got == "sent 0"
        await w.settle()
        _, log = await w.get("/v1/classes/ws/objects/slow/log")
        closes, errors = log.split(b"|")
        assert b"did not read" in errors
        assert closes.endswith(b" 1006  unclean;")
        assert (await fast.ask("echo:ok")) == "ok"
        await slow.vanish()


async def test_abandoned_inline_attempt_sends_nothing(world: World) -> None:
    a = await world.ws("sp/ws")
    assert await a.ask("echo:warm") == "warm"  # the activation exists
    slot = world.host.supervisor.slot_if_exists(world.key("sp"))
    assert slot is not None
    slot.heavy_until = 0.0  # whatever "warm" cost, the next event is tried inline first
    offloads = world.host.supervisor.stats.offloads
    # The event sends, then runs past the inline budget (5-10 ms of CPU): the inline
    # attempt is abandoned and the event runs again on a worker. Its send happens once.
    await a.send("spin:60")
    assert await a.recv() == "before"
    assert await a.recv() == "after"
    assert world.host.supervisor.stats.offloads == offloads + 1
    assert await a.ask("echo:next") == "next"  # nothing else was queued


async def test_eviction_keeps_connections(tmp_path: Path, wasm: Any) -> None:
    async with open_world(tmp_path, wasm, max_resident=1) as w:
        a = await w.ws("ev1/ws?att=kept")
        assert await a.ask("inits") == "inits=1"
        b = await w.ws("ev2/ws")  # a second object's activation evicts the first
        assert await b.ask("inits") == "inits=1"
        assert w.host.supervisor.stats.evictions >= 1
        assert await a.ask("inits") == "inits=2"
        assert await a.ask("getatt") == "att=kept"


async def test_deleting_the_object_or_tenant_closes_its_connections(world: World) -> None:
    a = await world.ws("del/ws")
    b = await world.ws("keep/ws")
    r = await world.api.handle(
        http_request("DELETE", "/v1/classes/ws/objects/del", token=world.token)
    )
    assert r.status == 200
    got = await a.recv()
    assert isinstance(got, CloseConnection) and got.code == 1001
    assert await b.ask("echo:alive") == "alive"
    r = await world.api.handle(http_request("DELETE", "/v1/tenants/acme", token=ADMIN_TOKEN))
    assert r.status == 200
    got = await b.recv()
    assert isinstance(got, CloseConnection) and got.code == 1001
    assert world.host.websockets.open_count() == 0


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("tags=" + ",".join(f"t{i}" for i in range(11)), "-11 invalid_argument"),  # 11 tags
        ("tags=a,,b", "-11 invalid_argument"),  # an empty tag
        ("tags=" + "x" * 257, "-11 invalid_argument"),  # a tag above 256 bytes
        ("badcbor=1", "-8 bad_encoding"),
    ],
)
async def test_accept_refuses_bad_tags(world: World, query: str, status: str) -> None:
    c = await world.ws(f"bt/ws?{query}")
    assert c.rejected is not None and c.rejected[0] == 426
    assert c.rejected[1].decode().startswith(status), c.rejected
    ok = await world.ws("bt/ws?tags=" + ",".join(f"t{i}" for i in range(10)) + ",t0")
    assert ok.rejected is None  # ten distinct tags (a repeat collapses) are fine


async def test_closing_in_the_accepting_event_handshakes_then_closes(world: World) -> None:
    a = await world.ws("cl/ws?hello=first&close=1")
    assert a.rejected is None  # the 101 comes first
    assert await a.recv() == "first"
    got = await a.recv()
    assert isinstance(got, CloseConnection) and (got.code, got.reason) == (4000, "bye")
    assert not world.host.websockets.open_connections(world.key("cl"))


async def test_fragmented_message_and_ping(world: World) -> None:
    a = await world.ws("fr/ws")
    await a.stream.send_all(a.proto.send(Message(data="ec", message_finished=False)))
    await a.stream.send_all(a.proto.send(Message(data="ho:frag", message_finished=True)))
    assert await a.recv() == "frag"  # the host joins the fragments into one message
    await a.stream.send_all(a.proto.send(Ping(payload=b"p1")))
    while True:  # the host answers pings itself
        events = a.pending or await a._events()
        a.pending = []
        pongs = [e for e in events if isinstance(e, Pong)]
        if pongs:
            assert pongs[0].payload == b"p1"
            break
    assert world.host.websockets.messages_in[("acme", "ws")] == 1


async def test_a_pair_without_connections_goes_with_the_activation(
    world: World, mock_clock: trio.testing.MockClock
) -> None:
    # dohost_init sets the auto-response pair on every activation, WebSockets or not.
    assert (await world.get("/v1/classes/ws/objects/plain/inits"))[1] == b"1"
    ws = world.host.websockets
    assert world.key("plain") in ws._objects  # the pair, and no connection
    mock_clock.jump(IDLE_S + 1)
    await world.settle()
    assert world.key("plain") not in ws._objects  # hibernated: the registry forgets it
    a = await world.ws("plain/ws")  # a new activation: its init sets the pair again
    assert await a.ask("ping") == "pong"

"""`dohost serve --processes 2` (issue 13, part 3): real processes, real sockets.

A request can land on either node (SO_REUSEPORT); the node that owns the object's
partition serves it (`x-dohost-node`), and a request that landed elsewhere was forwarded
(`x-dohost-via` names the node that received it). Tests pin a connection to a node by
opening connections until `/healthz` answers from that node.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from api_helpers import ServerProcess, error_code
from multi_helpers import client_on_node, node_pids, owned_names, wait_until
from test_websockets import Client
from wsproto.events import CloseConnection

from dohost.core.partitions import partition_of, static_owner
from dohost.storage.partition_count import read_partition_count

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tests" / "fixtures" / "build"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path / "data", "--forward-timeout", "3", processes=2)
    yield s
    s.stop()


def deploy(s: ServerProcess, token: str, cls: str, wasm: str, storage: str = "kv") -> None:
    with s.client(token) as c:
        r = c.put(f"/v1/classes/{cls}?storage={storage}", content=(BUILD / wasm).read_bytes())
    assert r.status_code == 201, r.text


def test_each_object_is_served_by_its_owner_whichever_node_receives_it(
    server: ServerProcess,
) -> None:
    token = server.new_tenant()
    deploy(server, token, "cc", "checksum_counter.wasm")
    owners = owned_names(server, token, "cc", 20)
    assert set(owners) == {0, 1}, owners  # both nodes own some of 20 objects
    for receiver in (0, 1):
        with client_on_node(server, token, receiver) as c:
            for node, names in owners.items():
                for name in names[:3]:
                    r = c.post(f"/v1/classes/cc/objects/{name}/incr")
                    assert r.status_code == 200, r.text
                    assert r.headers["x-dohost-node"] == str(node)
                    if node != receiver:
                        assert r.headers["x-dohost-via"] == str(receiver)
                    else:
                        assert "x-dohost-via" not in r.headers
    # Each of those objects was created, then incremented once through each node.
    with server.client(token) as c:
        for names in owners.values():
            for name in names[:3]:
                r = c.get(f"/v1/classes/cc/objects/{name}/verify")
                assert r.text.split()[0] == "3", r.text  # created, then once per node


def test_the_six_increment_scenario_ends_at_six(server: ServerProcess) -> None:
    """Issue 13's opening scenario, alternating nodes instead of two servers."""
    token = server.new_tenant()
    deploy(server, token, "cc", "checksum_counter.wasm")
    with client_on_node(server, token, 0) as a, client_on_node(server, token, 1) as b:
        for i in range(6):
            r = (a, b)[i % 2].post("/v1/classes/cc/objects/shared/incr")
            assert r.status_code == 200
        assert a.get("/v1/classes/cc/objects/shared/verify").text.split()[0] == "6"


def test_tenants_tokens_quotas_and_deploys_are_seen_by_every_node_at_once(
    server: ServerProcess,
) -> None:
    with client_on_node(server, server.admin_token, 0) as admin0:
        r = admin0.post("/v1/tenants", json={"name": "acme"})
        assert r.status_code == 201
        token = r.json()["token"]
    with client_on_node(server, token, 1) as c1:
        assert c1.get("/v1/classes").status_code == 200  # the token works on node 1 at once
        r = c1.put("/v1/classes/cc", content=(BUILD / "checksum_counter.wasm").read_bytes())
        assert r.status_code == 201
    with client_on_node(server, token, 0) as c0:
        assert c0.get("/v1/classes/cc").json()["version"] == 1  # deployed through node 1
        assert c0.post("/v1/classes/cc/objects/x/incr").status_code == 200
    # A quota change through node 1 holds on node 0 at once.
    with client_on_node(server, server.admin_token, 1) as admin1:
        r = admin1.patch("/v1/tenants/acme", json={"quotas": {"module_bytes": 10}})
        assert r.status_code == 200
    with client_on_node(server, token, 0) as c0:
        r = c0.put("/v1/classes/other", content=(BUILD / "noop.wasm").read_bytes())
        assert (r.status_code, error_code(r)) == (413, "module_too_large")
    # Rotating the token through node 0 revokes it on node 1 at once.
    with client_on_node(server, server.admin_token, 0) as admin0:
        new = admin0.post("/v1/tenants/acme/token").json()["token"]
    with client_on_node(server, token, 1) as old1:
        assert old1.get("/v1/classes").status_code == 401
    with client_on_node(server, new, 1) as new1:
        assert new1.get("/v1/classes").status_code == 200
    # Deleting the tenant through node 1: node 0 forgets it at once.
    with client_on_node(server, server.admin_token, 1) as admin1:
        assert admin1.delete("/v1/tenants/acme").status_code == 200
    with client_on_node(server, new, 0) as c0:
        assert c0.get("/v1/classes").status_code == 401


def test_object_and_rate_quotas_hold_for_the_host(server: ServerProcess) -> None:
    token = server.new_tenant(quotas={"objects": 6})
    deploy(server, token, "cc", "checksum_counter.wasm")
    owners = owned_names(server, token, "cc", 20, create=False)
    names = owners[0][:4] + owners[1][:4]  # 8 new objects, 4 on each node
    codes = []
    with server.client(token) as c:
        for name in names:
            r = c.post(f"/v1/classes/cc/objects/{name}/incr")
            codes.append(r.status_code if r.status_code == 200 else error_code(r))
    assert codes.count(200) == 6 and codes.count("quota_exceeded") == 2, codes
    with server.admin() as a:
        usage = a.get(f"/v1/tenants/{server.names[token]}").json()["usage"]
    assert usage["objects"] == 6
    # requests_per_s: one bucket for the host, whichever node requests land on.
    limited = server.new_tenant(quotas={"requests_per_s": 0.001, "burst": 5})
    with client_on_node(server, limited, 0) as c0, client_on_node(server, limited, 1) as c1:
        got = [(c0, c1)[i % 2].get("/v1/classes").status_code for i in range(10)]
    assert got.count(200) == 5 and got.count(429) == 5, got


def _at_once(jobs: list[Callable[[], str]]) -> list[str]:
    """Run every job on its own thread, all released together; their results."""
    start = threading.Barrier(len(jobs))
    out: list[str] = [""] * len(jobs)

    def run(i: int) -> None:
        start.wait()
        out[i] = jobs[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


@pytest.mark.parametrize("storage", ["kv", "sqlite"])
def test_object_and_storage_quotas_are_exact_under_concurrent_nodes(
    server: ServerProcess, storage: str
) -> None:
    """Both nodes create objects and write at the same moment: together they never pass
    the tenant's quota (each check reserves its room host-wide before it answers)."""
    # Each request is sent on a connection of its own to the node that owns its object
    # (no forwarding: both owners check at once), all released together.
    token = server.new_tenant(quotas={"objects": 10})
    deploy(server, token, "kv", "kvtest.wasm", storage)
    got = _at_once(_puts(server, token, [f"new{i}" for i in range(24)], b"x"))
    assert got.count("0") == 10 and got.count("-7") == 14, got
    with server.admin() as a:
        assert a.get(f"/v1/tenants/{server.names[token]}").json()["usage"]["objects"] == 10

    bytes_tenant = server.new_tenant(quotas={"storage_bytes": 1000})
    deploy(server, bytes_tenant, "kv", "kvtest.wasm", storage)
    # 100 bytes each (key + value): room for 10 of 24, wherever they run.
    got = _at_once(_puts(server, bytes_tenant, [f"o{i}" for i in range(24)], b"x" * 99))
    assert got.count("0") == 10 and got.count("-7") == 14, got
    with server.admin() as a:
        usage = a.get(f"/v1/tenants/{server.names[bytes_tenant]}").json()["usage"]
    if storage == "kv":
        assert usage["storage_bytes"] == 1000, usage


def _puts(
    server: ServerProcess, token: str, names: list[str], value: bytes
) -> list[Callable[[], str]]:
    """One job per object: PUT key k on a connection pinned to the object's owner; each
    answers the status the guest saw ("0", or "-7" for quota_exceeded, whether the
    object quota refused the event or the storage quota the write)."""
    partitions = read_partition_count(server.data_dir)
    assert partitions is not None
    jobs = []
    for name in names:
        with server.client(token) as c:
            oid = bytes.fromhex(c.get(f"/v1/classes/kv/objects/{name}").json()["id"])
        owner = static_owner(partition_of(oid, partitions), 2)
        stack = contextlib.ExitStack()
        client = stack.enter_context(client_on_node(server, token, owner))

        def job(c: httpx.Client = client, name: str = name, stack: Any = stack) -> str:
            with stack:
                r = c.post(f"/v1/classes/kv/objects/{name}/put?key=k", content=value)
            if r.status_code != 200:
                return "-7" if error_code(r) == "quota_exceeded" else r.text
            return r.text.split()[0]

        jobs.append(job)
    return jobs


def test_alarms_and_tail_answer_for_the_whole_host_on_any_node(server: ServerProcess) -> None:
    token = server.new_tenant()
    deploy(server, token, "call", "calltest.wasm")
    owners = owned_names(server, token, "call", 10, path="/ping", method="GET")
    a, b = owners[0][0], owners[1][0]
    with server.client(token) as c:
        for name, ms in ((b, 7_200_000), (a, 3_600_000)):
            r = c.post(f"/v1/classes/call/objects/{name}/alarm_in", params={"ms": str(ms)})
            assert r.status_code == 200, r.text
    for node in (0, 1):
        with client_on_node(server, token, node) as c:
            alarms = c.get("/v1/alarms").json()["alarms"]
            assert [x["name"] for x in alarms] == [a, b], alarms  # earliest first
            assert c.get("/v1/alarms", params={"class": "nope"}).status_code == 404

    # The tail on node 0 carries the events node 1 serves itself (requests that land on
    # node 1), relayed from node 1's own stream.
    stop = threading.Event()

    def traffic() -> None:
        with client_on_node(server, token, 0) as c0, client_on_node(server, token, 1) as c1:
            while not stop.is_set():
                assert c0.get(f"/v1/classes/call/objects/{a}/ping").status_code == 200
                r = c1.get(f"/v1/classes/call/objects/{b}/ping")
                assert r.status_code == 200 and "x-dohost-via" not in r.headers

    seen: set[str] = set()
    with (
        client_on_node(server, token, 0) as t,
        t.stream("GET", "/v1/tail", params={"class": "call"}) as stream,
    ):
        th = threading.Thread(target=traffic)
        th.start()
        try:
            for n, line in enumerate(stream.iter_lines()):
                assert n < 100_000, seen
                if line:
                    record = json.loads(line)
                    assert record["class"] == "call", record
                    if record.get("path") == "/ping":
                        seen.add(record["object"])
                if seen == {a, b}:
                    break
        finally:
            stop.set()
            th.join(60)


def test_metrics_of_any_node_report_the_whole_host(server: ServerProcess) -> None:
    token = server.new_tenant()
    name = server.names[token]
    deploy(server, token, "cc", "checksum_counter.wasm")
    owners = owned_names(server, token, "cc", 20)
    stored = sum(len(v) for v in owners.values())
    for node in (0, 1):
        with client_on_node(server, server.admin_token, node) as a:
            text = a.get("/metrics").text
        assert 'dohost_node_up{node="0"} 1' in text and 'dohost_node_up{node="1"} 1' in text
        line = f'dohost_stored_objects{{class="cc",tenant="{name}"}} {float(stored)}'
        assert line in text, text


def test_a_killed_node_is_restarted_and_serves_its_objects_from_the_same_data(
    server: ServerProcess,
) -> None:
    token = server.new_tenant()
    deploy(server, token, "cc", "checksum_counter.wasm")
    owners = owned_names(server, token, "cc", 10)
    victim_names = owners[1]
    pids = node_pids(server)
    start = time.monotonic()
    import os

    os.kill(pids[1], signal.SIGKILL)
    with client_on_node(server, token, 0) as c0:
        # Through node 0: waits for the restarted owner (bounded), never served by node 0.
        r = c0.post(f"/v1/classes/cc/objects/{victim_names[0]}/incr")
        assert r.status_code == 200, r.text
        assert r.headers["x-dohost-node"] == "1"
        assert r.text.strip() == "2"  # the increment of owned_names survived
    assert time.monotonic() - start < 30
    wait_until(lambda: node_pids(server).get(1) not in (None, pids[1]), 30)
    assert node_pids(server)[0] == pids[0]  # the other node kept running


def test_sigterm_stops_every_node_gracefully(server: ServerProcess) -> None:
    pids = node_pids(server)
    assert server.stop() == 0
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_sigstop_of_an_owner_fails_its_requests_clearly_and_sigcont_resumes(
    server: ServerProcess,
) -> None:
    token = server.new_tenant()
    deploy(server, token, "cc", "checksum_counter.wasm")
    owners = owned_names(server, token, "cc", 10)
    pids = node_pids(server)
    import os

    with client_on_node(server, token, 0) as c0:
        os.kill(pids[1], signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            r = c0.post(f"/v1/classes/cc/objects/{owners[1][0]}/incr")
            # Node 0 never serves node 1's objects while node 1 holds its claims.
            assert (r.status_code, error_code(r)) == (503, "owner_unavailable"), r.text
            assert "did not answer within 3 s" in r.json()["error"]["message"]
            assert time.monotonic() - t0 < 20
            # Node 0's own objects are not held up.
            r = c0.post(f"/v1/classes/cc/objects/{owners[0][0]}/incr")
            assert r.status_code == 200 and r.headers["x-dohost-node"] == "0"
            # A host-wide listing says it cannot be whole rather than leave node 1 out.
            r = c0.get("/v1/alarms")
            assert (r.status_code, error_code(r)) == (503, "owner_unavailable"), r.text
            assert "node 1 did not answer" in r.json()["error"]["message"]
        finally:
            os.kill(pids[1], signal.SIGCONT)
        r = c0.get(f"/v1/classes/cc/objects/{owners[1][0]}/verify")
        assert r.status_code == 200 and r.headers["x-dohost-node"] == "1"
        # The timed-out increment ran once after SIGCONT (it was delivered), never twice.
        assert r.text.split()[0] in ("1", "2"), r.text
    assert node_pids(server)[1] == pids[1]


def test_a_forwarded_request_whose_owner_dies_mid_flight_is_a_clear_503(
    server: ServerProcess,
) -> None:
    token = server.new_tenant()
    deploy(server, token, "call", "calltest.wasm")
    owners = owned_names(server, token, "call", 10, path="/ping", method="GET")
    victim = owners[1][0]
    pids = node_pids(server)
    import os
    import threading

    result: list[httpx.Response] = []
    with client_on_node(server, token, 0) as c0:

        def slow() -> None:
            result.append(c0.get(f"/v1/classes/call/objects/{victim}/spin_ms?ms=20000"))

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(1.0)  # the event is running on node 1 (it spins for 20 s)
        os.kill(pids[1], signal.SIGKILL)
        t.join(30)
    assert result, "no answer"
    r = result[0]
    assert (r.status_code, error_code(r)) == (503, "owner_unavailable"), r.text
    assert "may or may not have run" in r.json()["error"]["message"]


def test_object_calls_reach_the_owner_and_refuse_cross_node_cycles(
    server: ServerProcess,
) -> None:
    token = server.new_tenant()
    deploy(server, token, "call", "calltest.wasm")
    owners = owned_names(server, token, "call", 10, path="/ping", method="GET")
    a, b = owners[0][0], owners[1][0]
    with server.client(token) as c:
        r = c.post(f"/v1/classes/call/objects/{a}/call?class=call&name={b}&path=/whoami&method=GET")
        assert r.status_code == 200 and r.text.endswith(f" {b}"), r.text
        r = c.post(f"/v1/classes/call/objects/{a}/chain?hops=call:{b},call:{a}")
        assert r.text.startswith(f"-15 call_cycle call cycle: call/{a} → call/{b} → call/{a}"), (
            r.text
        )
        r = c.post(f"/v1/classes/call/objects/{b}/chain?hops=call:{a},call:{owners[1][1]}")
        assert r.text == "end", r.text


def test_objects_of_two_nodes_calling_each_other_at_once_get_call_cycle_not_a_timeout(
    server: ServerProcess,
) -> None:
    """A's event (node 0) calls B while B's event (node 1) calls A: each call carries its
    chain and leaves its wait-for edge visible before it goes, so the owner that sees
    the second call refuses it with call_cycle at once (when both cross at the same
    moment both may be refused); nothing waits for the forward timeout (call_failed)."""
    token = server.new_tenant()
    deploy(server, token, "call", "calltest.wasm")
    owners = owned_names(server, token, "call", 10, path="/ping", method="GET")
    a, b = owners[0][0], owners[1][0]
    # Both events busy-wait until `go` (wall clock), so both hold their objects before
    # either calls; the test checks they both run before `go` comes.
    go = int(time.time() * 1000) + 8000
    results: dict[str, str] = {}

    def run(me: str, other: str, owner: int) -> None:
        # On the owner's own connection: a relayed request would end at the forward
        # timeout (3 s here) while its event waits for `go`.
        with client_on_node(server, token, owner) as c:
            params = {"class": "call", "name": other, "path": "/append"}
            params |= {"query": f"v=from-{me}", "wait_until": str(go)}
            results[me] = c.post(f"/v1/classes/call/objects/{me}/call", params=params).text

    threads = [threading.Thread(target=run, args=job) for job in ((a, b, 0), (b, a, 1))]
    for t in threads:
        t.start()
    running = rf'^dohost_events_running\{{class="call",tenant="{server.names[token]}"\}} 2\.0$'
    server.wait_for_metric(running)
    assert time.time() * 1000 < go, "both events must run before they call (machine too busy)"
    for t in threads:
        t.join(60)
    texts = [results[a], results[b]]
    cycle = "-15 call_cycle call cycle between concurrent events"
    assert all(t == "ok" or t.startswith(cycle) for t in texts), texts
    assert any(t.startswith(cycle) for t in texts), texts
    assert all(f"call/{a}" in t and f"call/{b}" in t for t in texts if t != "ok"), texts
    with server.client(token) as c:
        for me, other in ((a, b), (b, a)):
            log = c.get(f"/v1/classes/call/objects/{other}/get", params={"key": "log"})
            # A call that went through appended once; a refused one never ran.
            expected = f"from-{me}\n" if results[me] == "ok" else ""
            assert (log.text if log.status_code == 200 else "") == expected


async def _stream_on_node(port: int, node: int) -> trio.SocketStream:
    """A TCP connection the kernel gave to `node` (asked with a keep-alive /healthz)."""
    for _ in range(200):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += await stream.receive_some(65536)
        if f"x-dohost-node: {node}\r\n".encode() in head:
            return stream
        await stream.aclose()
    raise AssertionError(f"no connection landed on node {node}")


async def test_a_websocket_to_another_nodes_object_is_spliced_through(
    server: ServerProcess,
) -> None:
    token = server.new_tenant("ws")
    deploy(server, token, "ws", "wstest.wasm")
    owners = owned_names(server, token, "ws", 10, path="/inits")
    room, owner = owners[1][0], 1
    port = int(server.url.rsplit(":", 1)[1])
    direct, relayed = Client(), Client()
    await direct.connect(port, f"/v1/classes/ws/objects/{room}/ws", token,
                         await _stream_on_node(port, owner))  # fmt: skip
    await relayed.connect(port, f"/v1/classes/ws/objects/{room}/ws", token,
                          await _stream_on_node(port, 1 - owner))  # fmt: skip
    assert direct.rejected is None and relayed.rejected is None
    assert await relayed.ask("echo:through node 0") == "through node 0"
    # One object, one set of connections: a broadcast from either reaches both.
    assert await relayed.ask("bcast::hello") == "hello"
    assert await relayed.recv() == "sent 2"
    assert await direct.recv() == "hello"
    assert await direct.ask("list") == await relayed.ask("list")
    got = await relayed.ask("close:4001")
    assert isinstance(got, CloseConnection) and got.code == 4001


def test_a_forwarded_request_is_never_forwarded_again(server: ServerProcess) -> None:
    """One hop at most: a node that gets a forwarded request (on its Unix socket) for an
    object it does not own answers 503 not_owner instead of passing it on."""
    token = server.new_tenant()
    deploy(server, token, "cc", "checksum_counter.wasm")
    owners = owned_names(server, token, "cc", 10, create=False)
    name = owners[1][0]
    request = (
        f"GET /v1/classes/cc/objects/{name}/verify HTTP/1.1\r\nhost: t\r\n"
        f"authorization: Bearer {token}\r\nx-dohost-forwarded: 1\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(server.data_dir / "run" / "node-0.sock"))
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
    head = data.split(b"\r\n\r\n")[0].decode().lower()
    assert head.startswith("http/1.1 503") and "x-dohost-error: not_owner" in head, head
    # The same request through the front door is served by its owner.
    with server.client(token) as c:
        r = c.get(f"/v1/classes/cc/objects/{name}/verify")
    assert r.status_code == 200 and r.headers["x-dohost-node"] == "1"

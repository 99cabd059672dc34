"""One object as of a time (`Host.restore_object`, `POST …/storage/restore`,
`dohost restore-object`) and fork, against real replica stores (a directory and
SeaweedFS): the state at three past times restored exactly, alarms included; a fork
answers with the old state under its new name while the source keeps its own; every
refusal has its code. Times come from a clock the test moves (the host's wall clock
stamps each change shipped to the replica)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dohost import Code, DohostError, Host, Request
from dohost.replica.store import ReplicaStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "conformance"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from api_helpers import ServerProcess
from conformance_helpers import Guest, deploy, module

T0 = 1_800_000_000_000  # ms: the test's clock starts here
FAR = T0 + 86_400_000  # an alarm that never fires during a test


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> float:
        return float(self.ms)

    def step(self, ms: int = 1000) -> int:
        self.ms += ms
        return self.ms


@pytest.fixture
async def world(tmp_path: Path, store: ReplicaStore) -> AsyncIterator[tuple[Host, Guest, Clock]]:
    clock = Clock()
    async with Host(
        tmp_path / "data", durability="os", workers=2, replica=store, wall_clock_ms=clock
    ) as host:
        yield host, await deploy(host, "c"), clock


async def value(g: Guest, key: str = "k", obj: str = "o") -> str | None:
    status, body = await g.get(key, obj)
    return body.decode() if status == 200 else None


async def test_state_at_three_times_restored_exactly_with_its_alarm(
    world: tuple[Host, Guest, Clock],
) -> None:
    host, g, clock = world
    times: list[int] = []
    assert await g.put("k", b"v1") == "0"
    assert await g.put("other", b"x") == "0"
    times.append(clock.step())  # state 1: k=v1, other=x, no alarm
    clock.step()
    assert await g.put("k", b"v2") == "0"
    assert await g.text("POST", f"/alarm_set?ms={FAR}") == "0"
    times.append(clock.step())  # state 2: k=v2, other=x, alarm FAR
    clock.step()
    assert await g.put("k", b"v3") == "0"
    assert await g.text("POST", "/delete?key=other") == "1"
    assert await g.text("POST", "/alarm_delete") == "0"
    times.append(clock.step())  # state 3: k=v3, no alarm
    clock.step()
    assert await g.put("k", b"v4") == "0"  # now: v4
    clock.step()

    # The object is active (its activation holds a cache): each restore replaces it.
    done = await host.restore_object("acme", "kvtest", "o", times[1])
    assert (done.keys, done.alarm, done.source_id == done.object_id) == (2, FAR, True)
    assert (await value(g), await value(g, "other")) == ("v2", "x")
    assert await g.text("GET", "/alarm_get") == str(FAR)
    assert [e.due_ms for e in host.alarm_index.entries("acme")] == [FAR]
    assert [due for _, due, _ in host.pending_alarms("acme")] == [FAR]

    clock.step()
    await host.restore_object("acme", "kvtest", "o", times[0])
    assert (await value(g), await value(g, "other")) == ("v1", "x")
    assert await g.text("GET", "/alarm_get") == "none"

    clock.step()
    await host.restore_object("acme", "kvtest", "o", times[2])
    assert (await value(g), await value(g, "other")) == ("v3", None)

    # A restore is itself a change in the history: restoring to just after it gives it.
    after_restore = clock.step()
    clock.step()
    await host.restore_object("acme", "kvtest", "o", times[1])
    await host.restore_object("acme", "kvtest", "o", after_restore)
    assert await value(g) == "v3"


async def test_fork_copies_the_old_state_and_leaves_the_source(
    world: tuple[Host, Guest, Clock],
) -> None:
    host, g, clock = world
    assert await g.put("k", b"old") == "0"
    assert await g.text("POST", f"/alarm_set?ms={FAR}") == "0"
    then = clock.step()
    clock.step()
    assert await g.put("k", b"new") == "0"
    clock.step()

    done = await host.restore_object("acme", "kvtest", "copy", then, source="o")
    assert (done.name, done.keys, done.alarm) == ("copy", 1, FAR)
    assert done.source_id == host.id_from_name("acme", "kvtest", "o").hex
    assert await value(g, obj="copy") == "old"
    assert await g.text("GET", "/alarm_get", obj="copy") == str(FAR)
    assert await value(g) == "new"  # the source keeps its current state
    assert await g.text("GET", "/alarm_get") == str(FAR)

    # The target must be new or empty: nothing of it changes otherwise.
    with pytest.raises(DohostError) as e:
        await host.restore_object("acme", "kvtest", "copy", then, source="o")
    assert e.value.code is Code.ALREADY_EXISTS
    assert await value(g, obj="copy") == "old"
    with pytest.raises(DohostError) as e:
        await host.restore_object("acme", "kvtest", "o", then, source="o")
    assert e.value.code is Code.INVALID_ARGUMENT
    # An emptied object is empty: a fork may go there.
    assert await g.text("POST", "/delete_all", obj="copy") == "0"
    clock.step()
    await host.restore_object("acme", "kvtest", "copy", clock.ms, source="o")
    assert await value(g, obj="copy") == "new"


async def test_refusals_have_their_codes(world: tuple[Host, Guest, Clock]) -> None:
    host, g, clock = world
    before = clock.step()
    clock.step()
    assert await g.put("k", b"v") == "0"
    clock.step()

    async def code(*args: object, **kw: object) -> Code:
        with pytest.raises(DohostError) as e:
            await host.restore_object(*args, **kw)  # type: ignore[arg-type]
        return e.value.code

    assert await code("acme", "kvtest", "o", clock.ms + 1) is Code.INVALID_ARGUMENT  # future
    assert await code("acme", "kvtest", "o", before) is Code.NOT_FOUND  # not written yet
    assert await code("acme", "kvtest", "never", clock.ms) is Code.NOT_FOUND
    assert await code("acme", "kvtest", "x", clock.ms, source="never") is Code.NOT_FOUND
    assert await code("acme", "nope", "o", clock.ms) is Code.UNKNOWN_CLASS
    await host.deploy("acme", "sql", module("c"), "sqlite")
    assert await code("acme", "sql", "o", clock.ms) is Code.NOT_SUPPORTED
    assert await value(g) == "v"  # nothing changed


async def test_without_a_replica_restore_is_refused(tmp_path: Path) -> None:
    async with Host(tmp_path / "data", durability="os") as host:
        g = await deploy(host, "c")
        assert await g.put("k", b"v") == "0"
        with pytest.raises(DohostError) as e:
            await host.restore_object("acme", "kvtest", "o", 0)
        assert e.value.code is Code.NO_REPLICA
        assert "--replica" in e.value.message


def test_http_api_client_and_cli(tmp_path: Path, file_store: ReplicaStore) -> None:
    """`dohost serve --replica --processes 2`: the route through `dohost.client` and the
    CLI, a scoped token's limits, the route's bad input."""
    import time

    from dohost.client import ApiError

    # Two nodes: each request reaches the node that owns the object written (a fork's
    # target), which reads the source's history from the store.
    server = ServerProcess(
        tmp_path / "data", "--replica", f"file://{tmp_path / 'replica'}", processes=2
    )
    try:
        token = server.new_tenant()
        with server.client(token) as c:
            assert c.put("/v1/classes/kvtest", content=module("c")).status_code == 201
            assert c.post("/v1/classes/kvtest/objects/o/put?key=k", content=b"v1").text == "0"
            # The host's clock is real here: wait until it has moved past this write.
            then = time.time_ns() // 1_000_000
            while time.time_ns() // 1_000_000 <= then:
                pass
            assert c.post("/v1/classes/kvtest/objects/o/put?key=k", content=b"v2").text == "0"
            for body, code in [
                (b"{}", "bad_request"),
                (b'{"at": true}', "bad_request"),
                (b'{"at": "yesterday"}', "invalid_argument"),
                (b'{"at": 1, "nope": 1}', "bad_request"),
                (b'{"at": 1, "from": "a", "from_id": "b"}', "bad_request"),
                (b'{"at": 1, "from_id": "00"}', "invalid_id"),
                (b"[1]", "bad_request"),
                (json.dumps({"at": then + 10**9}).encode(), "invalid_argument"),
            ]:
                r = c.post("/v1/classes/kvtest/objects/o/storage/restore", content=body)
                assert r.headers["x-dohost-error"] == code, (body, r.text)
            r = c.post("/v1/tokens", json={"classes": ["kvtest"], "read_only": True})
            read_only = r.json()["token"]
            r = c.post("/v1/tokens", json={"classes": ["other"]})
            other = r.json()["token"]
        from dohost.client import Client

        with Client(server.url, token) as client:
            done = client.restore_object("kvtest", "o", then, to="fork")
            assert (done.fork, done.keys, done.name) == (True, 1, "fork")
            assert client.fetch("kvtest", "fork", "/get?key=k").body == b"v1"
            assert client.fetch("kvtest", "o", "/get?key=k").body == b"v2"
            done = client.restore_object("kvtest", "o", then)
            assert (done.fork, done.at_ms) == (False, then)
            assert client.fetch("kvtest", "o", "/get?key=k").body == b"v1"
        for scoped, code in [(read_only, "forbidden"), (other, "unknown_class")]:
            with Client(server.url, scoped) as client, pytest.raises(ApiError) as e:
                client.restore_object("kvtest", "o", then)
            assert e.value.code == code

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "dohost.cli", "restore-object", *args,
                 "--url", server.url, "--token", token],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip

        r = cli("kvtest", "o", "--at", str(then), "--to", "fork2")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"forked kvtest object o as of {then} ms into fork2: 1 keys")
        r = cli("kvtest", "o", "--at", str(then), "--to", "fork2")
        assert r.returncode == 1 and r.stderr.startswith("error: already_exists:"), r.stderr
        r = cli("kvtest", "o", "--at", "soon")
        assert r.returncode == 2 and r.stderr.startswith("error: invalid_argument:"), r.stderr
    finally:
        assert server.stop() == 0


def test_serve_without_a_replica_says_so(tmp_path: Path) -> None:
    # With DOHOST_TEST_PROCESSES=2 the request is forwarded to the object's owner node.
    server = ServerProcess(tmp_path / "data")
    try:
        token = server.new_tenant()
        with server.client(token) as c:
            assert c.put("/v1/classes/kvtest", content=module("c")).status_code == 201
            r = c.post("/v1/classes/kvtest/objects/o/storage/restore", json={"at": 1})
            assert (r.status_code, r.headers["x-dohost-error"]) == (409, "no_replica")
    finally:
        assert server.stop() == 0


async def test_counter_sample_at_three_past_times_and_a_fork(
    world: tuple[Host, Guest, Clock], wasm: Any
) -> None:
    """The issue's "must show": the counter sample's state at three past times restored
    exactly as acknowledged then, and a fork answering with an old state under its new
    name while the original keeps its own."""
    host, _, clock = world
    await host.deploy("acme", "counter", wasm("counter"))

    async def call(obj: str, method: str, path: str) -> str:
        r = await host.fetch("acme", "counter", obj, Request(method, path, "", [], b""))
        assert r.status == 200, r.text
        return r.text

    acked: dict[int, str] = {}  # a time -> the count acknowledged by then
    for _ in range(3):
        for _ in range(2):
            count = await call("room", "POST", "/incr")
        acked[clock.step()] = count
        clock.step()
    current = await call("room", "POST", "/incr")
    clock.step()
    for at, count in acked.items():
        await host.restore_object("acme", "counter", "room", at)
        assert await call("room", "GET", "/") == count
    first = min(acked)
    done = await host.restore_object("acme", "counter", "room-then", first, source="room")
    assert done.name == "room-then"
    assert await call("room-then", "GET", "/") == acked[first] == "2"
    assert await call("room", "GET", "/") == acked[max(acked)] == "6"
    assert current == "7"

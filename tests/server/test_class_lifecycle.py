"""Class lifecycle on a real Host (MockClock time, real wasmtime and SQLite): versions
and rollback, deferred updates, and deleting or renaming a class with live objects,
pending alarms and an event in flight (the event finishes on the old class; the
operation waits for it; no object is left half-moved), on both storage backends."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import wasmtime
from trio.testing import MockClock

from dohost import Code, DohostError, Host, Request
from dohost.storage.system_db import SystemDb

ROOT = Path(__file__).resolve().parents[2]
WAT = (ROOT / "tests" / "fixtures" / "versioned_wait.wat").read_text()
V1 = bytes(wasmtime.wat2wasm(WAT))
V2 = bytes(wasmtime.wat2wasm(WAT.replace("body\\43v1", "body\\43v2")))
BASE = 1_800_000_000_000
BACKENDS = ["kv", "sqlite"]


def open_host(path: Path, clock: MockClock, **kw: Any) -> Host:
    return Host(
        path,
        durability="os",
        wall_clock_ms=lambda: BASE + clock.current_time() * 1000,
        alarm_jitter=lambda: 0.0,
        idle_timeout=10_000,  # only what a test does drops an activation
        **kw,
    )


@pytest.fixture
async def host(tmp_path: Path, mock_clock: MockClock) -> AsyncIterator[Host]:
    async with open_host(tmp_path / "data", mock_clock) as h:
        yield h


async def text(host: Host, cls: str, obj: str, method: str = "POST", body: bytes = b"") -> str:
    r = await host.fetch("acme", cls, obj, Request(method, "/", "", [], body))
    assert r.status == 200, r.text
    return r.text


async def kv(host: Host, cls: str, obj: str, path: str, body: bytes = b"") -> str:
    p, _, q = path.partition("?")
    r = await host.fetch("acme", cls, obj, Request("POST", p, q, [], body))
    assert r.status < 500, r.text
    return r.text


def now_ms(clock: MockClock) -> int:
    return int(BASE + clock.current_time() * 1000)


def wait_body(until_ms: int) -> bytes:
    return b"wait" + struct.pack("<q", until_ms)


async def until(cond: Any) -> None:
    for _ in range(10_000):
        if cond():
            return
        await trio.sleep(0)
    raise AssertionError("condition not reached")


# ------------------------------------------------------------------ versions and updates


async def test_versions_and_rollback(host: Host, tmp_path: Path) -> None:
    await host.deploy("acme", "ver", V1)
    await host.deploy("acme", "ver", V2)
    assert await text(host, "ver", "o") == "v21"
    vs = host.class_versions("acme", "ver")
    assert [(v.version, v.current) for v in vs] == [(1, False), (2, True)]
    info = await host.rollback("acme", "ver", 1)
    assert info.version == 3 and info.sha256 == vs[0].sha256
    assert await text(host, "ver", "o") == "v12"  # v1's code, the object's data kept
    assert [v.version for v in host.class_versions("acme", "ver")] == [1, 2, 3]

    with pytest.raises(DohostError) as e:
        await host.rollback("acme", "ver", 9)
    assert e.value.code is Code.UNKNOWN_VERSION and "1, 2, 3" in e.value.message
    # A version whose module bytes are gone (an operator pruned DATA/modules/).
    host.system.module_path(vs[1].sha256).unlink()
    with pytest.raises(DohostError) as e:
        await host.rollback("acme", "ver", 2)
    assert e.value.code is Code.UNKNOWN_VERSION and "no longer stored" in e.value.message
    assert host.class_info("acme", "ver").version == 3  # nothing changed
    with pytest.raises(DohostError) as e:
        await host.rollback("acme", "nope", 1)
    assert e.value.code is Code.UNKNOWN_CLASS


async def test_a_deferred_update_reaches_each_object_at_activation_or_deadline(
    host: Host, mock_clock: MockClock
) -> None:
    await host.deploy("acme", "ver", V1)
    assert await text(host, "ver", "live") == "v11"
    assert await text(host, "ver", "sleepy") == "v11"
    await host.deploy("acme", "ver", V2, update="deferred", max_delay_s=60)
    assert await text(host, "ver", "live") == "v12"  # its live activation keeps v1
    assert await text(host, "ver", "fresh") == "v21"  # a new activation runs v2
    # Hibernation: the next activation runs the new version.
    slot = host.supervisor.slot_for("acme", "ver", host.id_from_name("acme", "ver", "sleepy"))
    async with host.supervisor.forget("acme", "ver", slot.object_id):
        pass
    assert await text(host, "ver", "sleepy") == "v22"
    assert await text(host, "ver", "live") == "v13"
    mock_clock.jump(60)  # the maximum delay: every object's next event runs v2
    assert await text(host, "ver", "live") == "v24"
    # An immediate update (the default) reaches live activations at their next event.
    await host.deploy("acme", "ver", V1)
    assert await text(host, "ver", "live") == "v15"

    for bad in [{"update": "later"}, {"update": "deferred", "max_delay_s": -1}]:
        with pytest.raises(DohostError) as e:
            await host.deploy("acme", "ver", V2, **bad)
        assert e.value.code is Code.INVALID_ARGUMENT
    with pytest.raises(DohostError):
        await host.deploy("acme", "ver", V2, max_delay_s=5)  # a delay needs update=deferred


# ------------------------------------------------------------------ delete


@pytest.mark.parametrize("storage", BACKENDS)
async def test_delete_a_class_with_objects_and_pending_alarms(
    host: Host, mock_clock: MockClock, wasm: Any, storage: str
) -> None:
    await host.deploy("acme", "k", wasm("kvtest"), storage)
    await host.deploy("acme", "keep", wasm("kvtest"), storage)
    for obj in ("a", "b"):
        await kv(host, "k", obj, "/put?key=x", b"1")
        await kv(host, "k", obj, f"/alarm_set?ms={now_ms(mock_clock) + 1000}")
    await kv(host, "keep", "a", f"/alarm_set?ms={now_ms(mock_clock) + 1000}")
    old_id = host.id_from_name("acme", "k", "a")
    assert len(host.pending_alarms("acme", "k")) == 2

    assert await host.delete_class("acme", "k") == 2
    with pytest.raises(DohostError) as e:
        await kv(host, "k", "a", "/get?key=x")
    assert e.value.code is Code.UNKNOWN_CLASS
    assert host.pending_alarms("acme", "k") == []
    assert [e.class_name for e in host.alarm_index.entries("acme")] == ["keep"]
    mock_clock.jump(2)
    await host.alarms.settled()
    assert await kv(host, "keep", "a", "/get?key=__alarm_runs") != ""  # the other class's ran
    assert host.storage.list_objects("acme", "k", storage).objects == []
    assert host.system.class_versions("acme", "k") == []

    # The name is free again: a new class, new key, no old object reachable.
    await host.deploy("acme", "k", wasm("kvtest"), storage)
    assert host.class_info("acme", "k").version == 1
    assert host.id_from_name("acme", "k", "a") != old_id
    r = await host.fetch("acme", "k", "a", Request("GET", "/get", "key=x", [], b""))
    assert r.status == 404


# ------------------------------------------------------------------ rename


@pytest.mark.parametrize("storage", BACKENDS)
async def test_rename_keeps_objects_ids_and_alarms(
    host: Host, mock_clock: MockClock, wasm: Any, storage: str
) -> None:
    await host.deploy("acme", "k", wasm("kvtest"), storage)
    await host.deploy("acme", "k", wasm("kvtest") + b"\0\x07\x06custom", storage)  # a v2
    await kv(host, "k", "a", "/put?key=x", b"42")
    await kv(host, "k", "a", f"/alarm_set?ms={now_ms(mock_clock) + 1000}")
    ids = [o.object_id for o in host.storage.list_objects("acme", "k", storage).objects]
    named = host.id_from_name("acme", "k", "a")

    info = await host.rename_class("acme", "k", "k2")
    assert (info.name, info.version) == ("k2", 2)
    assert host.id_from_name("acme", "k2", "a") == named  # the class key moved with it
    assert [o.object_id for o in host.storage.list_objects("acme", "k2", storage).objects] == ids
    assert host.storage.list_objects("acme", "k", storage).objects == []
    assert await kv(host, "k2", "a", "/get?key=x") == "42"
    assert (
        await host.fetch("acme", "k2", named, Request("GET", "/get", "key=x", [], b""))
    ).text == "42"
    with pytest.raises(DohostError) as e:
        await kv(host, "k", "a", "/get?key=x")
    assert e.value.code is Code.UNKNOWN_CLASS
    assert [(e.class_name, e.object_id) for e in host.alarm_index.entries("acme")] == [
        ("k2", named.raw)
    ]
    mock_clock.jump(2)
    await host.alarms.settled()
    assert await kv(host, "k2", "a", "/get?key=__alarm_runs") != ""  # it fired, renamed
    assert [v.version for v in host.class_versions("acme", "k2")] == [1, 2]


async def test_rename_refuses_an_existing_name_and_bad_names(host: Host, wasm: Any) -> None:
    await host.deploy("acme", "k", wasm("kvtest"))
    await host.deploy("acme", "other", wasm("kvtest"))
    await kv(host, "k", "a", "/put?key=x", b"1")
    cases = [
        ("other", Code.ALREADY_EXISTS),
        ("Bad", Code.INVALID_NAME),
        ("k", Code.INVALID_ARGUMENT),
    ]
    for new, code in cases:
        with pytest.raises(DohostError) as e:
            await host.rename_class("acme", "k", new)
        assert e.value.code is code, new
    with pytest.raises(DohostError) as e:
        await host.rename_class("acme", "nope", "fresh")
    assert e.value.code is Code.UNKNOWN_CLASS
    assert await kv(host, "k", "a", "/get?key=x") == "1"  # nothing moved
    assert "not_found" in await kv(host, "other", "a", "/get?key=x")


@pytest.mark.parametrize("op", ["rename", "delete"])
@pytest.mark.parametrize("storage", BACKENDS)
async def test_an_event_in_flight_finishes_on_the_old_class_and_the_operation_waits(
    host: Host, mock_clock: MockClock, op: str, storage: str
) -> None:
    await host.deploy("acme", "ver", V1, storage)
    assert await text(host, "ver", "o") == "v11"
    done: dict[str, Any] = {}

    async def slow() -> None:
        done["slow"] = await text(host, "ver", "o", body=wait_body(now_ms(mock_clock) + 1000))

    async def queued() -> None:
        try:
            await text(host, "ver", "o")
        except DohostError as e:
            done["queued"] = e.code

    async def operate() -> None:
        if op == "rename":
            done["op"] = (await host.rename_class("acme", "ver", "ver2")).name
        else:
            done["op"] = await host.delete_class("acme", "ver")

    async with trio.open_nursery() as n:
        n.start_soon(slow)
        await until(lambda: host.supervisor.events_in_flight() == 1)
        n.start_soon(queued)
        await until(lambda: host.supervisor.events_in_flight() == 2)
        n.start_soon(operate)
        await trio.testing.wait_all_tasks_blocked()
        assert done == {}  # the event spins (worker thread); the operation waits for it
        with pytest.raises(DohostError) as e:
            await text(host, "ver", "o")  # a new event of the class: refused at once
        assert e.value.code is Code.UNKNOWN_CLASS
        mock_clock.jump(1)  # the slow event's deadline passes
    assert done["slow"] == "v12"  # it finished on the old class, with its write
    assert done["queued"] is Code.UNKNOWN_CLASS  # it found no class and touched nothing
    if op == "rename":
        assert done["op"] == "ver2"
        assert await text(host, "ver2", "o") == "v13"  # the event's write moved with it
    else:
        assert done["op"] == 1
        assert host.storage.list_objects("acme", "ver", storage).objects == []


async def test_an_interrupted_rename_is_finished_at_the_next_start(
    tmp_path: Path, mock_clock: MockClock, wasm: Any
) -> None:
    data = tmp_path / "data"
    async with open_host(data, mock_clock) as host:
        for cls, storage in (("k", "kv"), ("s", "sqlite")):
            await host.deploy("acme", cls, wasm("kvtest"), storage)
            await kv(host, cls, "a", "/put?key=x", b"7")
            await kv(host, cls, "a", f"/alarm_set?ms={now_ms(mock_clock) + 60_000}")
    # A stop right after the commit point: the rows (and the journal) renamed, nothing
    # moved yet.
    system = SystemDb(data)
    system.rename_class("acme", "k", "k2")
    system.rename_class("acme", "s", "s2")
    system.close()
    async with open_host(data, mock_clock) as host:
        assert host.system.pending_renames() == []
        for cls in ("k2", "s2"):
            assert await kv(host, cls, "a", "/get?key=x") == "7"
        assert sorted(e.class_name for e in host.alarm_index.entries("acme")) == ["k2", "s2"]
        assert sorted(e.class_name for e, _, _ in host.pending_alarms("acme")) == ["k2", "s2"]

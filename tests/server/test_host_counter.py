"""The counter sample through the embedded API, on both storage backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from dohost import Code, DohostError, Host, Request

BACKENDS = ["kv", "sqlite"]


async def call(
    host: Host,
    obj: str,
    method: str = "GET",
    path: str = "/",
    body: bytes = b"",
    cls: str = "counter",
) -> tuple[int, str]:
    r = await host.fetch("acme", cls, obj, Request(method, path, "", [], body))
    return r.status, r.text


@pytest.mark.parametrize("storage", BACKENDS)
async def test_counter_routes(host: Host, wasm: Any, storage: str) -> None:
    await host.deploy("acme", "counter", wasm("counter"), storage)
    assert await call(host, "a") == (200, "0")
    assert await call(host, "a", "POST", "/incr") == (200, "1")
    assert await call(host, "a", "POST", "/incr", b"41") == (200, "42")
    assert await call(host, "a", "POST", "/incr", b"-2") == (200, "40")
    assert (await call(host, "a", "POST", "/incr", b"x"))[0] == 400
    assert await call(host, "a") == (200, "40")
    assert await call(host, "b") == (200, "0")  # objects are independent
    assert (await call(host, "a", "GET", "/nope"))[0] == 404
    assert (await call(host, "a", "DELETE", "/incr"))[0] == 405
    assert await call(host, "a", "POST", "/reset") == (200, "0")
    assert await call(host, "a") == (200, "0")


@pytest.mark.parametrize("storage", BACKENDS)
async def test_200_concurrent_increments_then_restart(
    tmp_path: Path, wasm: Any, storage: str
) -> None:
    data = tmp_path / "data"
    async with Host(data, workers=2) as host:
        await host.deploy("acme", "counter", wasm("counter"), storage)
        results: list[int] = []

        async def incr() -> None:
            status, text = await call(host, "hot", "POST", "/incr")
            assert status == 200
            results.append(int(text))

        async with trio.open_nursery() as n:
            for _ in range(200):
                n.start_soon(incr)
        # Every increment got its own value: one event at a time, none lost.
        assert sorted(results) == list(range(1, 201))
        assert await call(host, "hot") == (200, "200")
    async with Host(data) as host:
        assert await call(host, "hot") == (200, "200")
        assert host.modules.compiles == 0  # the compiled module came from the disk cache


async def test_unknown_class_and_bad_names(host: Host, wasm: Any) -> None:
    with pytest.raises(DohostError) as ei:
        await call(host, "a", cls="nope")
    assert ei.value.code is Code.UNKNOWN_CLASS
    for tenant, cls in (("Bad", "counter"), ("acme", "../x"), ("acme", "")):
        with pytest.raises(DohostError) as ei:
            await host.deploy(tenant, cls, wasm("counter"))
        assert ei.value.code is Code.INVALID_NAME


async def test_ids_by_name_unique_and_forged(host: Host, wasm: Any) -> None:
    await host.deploy("acme", "counter", wasm("counter"))
    await host.deploy("acme", "other", wasm("counter"))
    by_name = host.id_from_name("acme", "counter", "x")
    await call(host, "x", "POST", "/incr")
    r = await host.fetch("acme", "counter", by_name, Request("GET", "/"))
    assert r.text == "1"  # the name and its id reach the same object
    uid = host.new_unique_id("acme", "counter")
    assert (await host.fetch("acme", "counter", uid, Request("POST", "/incr"))).text == "1"
    assert (
        await host.fetch(
            "acme", "counter", host.id_from_string("acme", "counter", uid.hex), Request("GET", "/")
        )
    ).text == "1"
    for bad in (host.new_unique_id("acme", "other"), type(uid)(bytes(32))):
        with pytest.raises(DohostError) as ei:
            await host.fetch("acme", "counter", bad, Request("GET", "/"))
        assert ei.value.code is Code.INVALID_ID


async def test_redeploy_same_bytes_is_not_a_new_version(host: Host, wasm: Any) -> None:
    a = await host.deploy("acme", "counter", wasm("counter"))
    b = await host.deploy("acme", "counter", wasm("counter"))
    assert a.version == b.version == 1
    c = await host.deploy("acme", "counter", wasm("kvtest"))
    assert c.version == 2
    with pytest.raises(DohostError) as ei:
        await host.deploy("acme", "counter", wasm("counter"), "sqlite")
    assert "storage backend cannot change" in ei.value.message


async def test_a_loop_of_read_only_fetches_lets_other_tasks_run(host: Host, wasm: Any) -> None:
    """A read-only event that ran inline awaits nothing; Host.fetch must still be a
    schedule point (trio's convention), or a caller looping on it starves every other
    task of the host (alarms, the idle reaper) and of the application."""
    await host.deploy("acme", "counter", wasm("counter"))
    assert await call(host, "a") == (200, "0")
    ticks = 0

    async def other() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await trio.lowlevel.checkpoint()
        start = ticks
        for _ in range(50):
            assert await call(host, "a") == (200, "0")
        assert ticks - start >= 25  # the other task ran between the fetches
        nursery.cancel_scope.cancel()

"""Bookmarks through every language's SDK (abi/README.md, "Bookmarks"): the same spec
against the C, Zig, Rust and AssemblyScript conformance guests, on a host with a
directory replica and a wall clock the test moves (it stamps every change the replica
gets). tests/replica/test_bookmarks.py covers the host's side further, SeaweedFS too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conformance_helpers import Guest, deploy

from dohost import Code, DohostError, Host
from dohost.replica.file_store import FileReplicaStore

T0 = 1_800_000_000_000


class World(Guest):
    ms: int = T0

    def step(self) -> int:
        self.ms += 1000
        return self.ms


@pytest.fixture
async def world(lang: str, tmp_path: Path) -> AsyncIterator[World]:
    w: World | None = None

    def clock() -> float:
        return float(w.ms if w is not None else T0)

    async with Host(
        tmp_path / "data",
        durability="os",
        replica=FileReplicaStore(str(tmp_path / "replica")),
        wall_clock_ms=clock,
    ) as host:
        guest = await deploy(host, lang)
        w = World(guest.host, guest.lang)
        yield w


async def value(w: World, key: str = "k") -> str | None:
    status, body = await w.get(key)
    return body.decode() if status == 200 else None


async def test_write_bookmark_write_restore_next_event_sees_the_old_state(world: World) -> None:
    w = world
    assert await w.put("k", b"v1") == "0"
    w.step()
    current = await w.text("GET", "/bookmark_current")
    assert current.startswith("b1-") and len(current) == 52
    assert current == await w.text("GET", f"/bookmark_for_time?ms={w.ms}")
    w.step()
    assert await w.put("k", b"v2") == "0"
    assert await w.put("new", b"x") == "0"
    w.step()
    assert await w.text("POST", "/bookmark_restore", current.encode()) == "0"
    assert (await value(w), await value(w, "new")) == ("v1", None)
    assert await w.text("GET", "/init_count") == "1"  # a new instance


async def test_bad_bookmarks_and_times(world: World) -> None:
    w = world
    assert await w.put("k", b"v1") == "0"
    w.step()
    good = await w.text("GET", "/bookmark_current")
    forged = good[:-1] + ("1" if good[-1] == "0" else "0")
    for bad in (forged, "b1-0", "hello"):
        text = await w.text("POST", "/bookmark_restore", bad.encode())
        assert text.startswith("-11 invalid_argument not a bookmark"), text
    assert (await w.text("GET", f"/bookmark_for_time?ms={w.ms + 1}")).startswith(
        "-11 invalid_argument"
    )
    assert (await w.text("GET", "/bookmark_for_time?ms=-5")).startswith("-11 invalid_argument")
    # A failed event's request is dropped with its writes.
    w.step()
    assert await w.put("k", b"v2") == "0"
    with pytest.raises(DohostError) as e:
        await w.req("POST", "/bookmark_restore?then_fail=1", good.encode())
    assert e.value.code is Code.OBJECT_ERROR
    assert (await value(w), await value(w, "fail")) == ("v2", None)


async def test_without_a_replica_each_import_answers_not_supported(
    lang: str, tmp_path: Path
) -> None:
    async with Host(tmp_path / "data", durability="os") as host:
        g = await deploy(host, lang)
        for method, path in [
            ("GET", "/bookmark_current"),
            ("GET", "/bookmark_for_time?ms=0"),
            ("POST", "/bookmark_restore"),
        ]:
            text = await g.text(method, path, b"b1-")
            assert text.startswith("-9 not_supported bookmarks need a replica"), (path, text)

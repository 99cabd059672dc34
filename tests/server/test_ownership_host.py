"""One owner per object, through the embedded Host: the data set lock between Hosts, a
data set made before partitions, and two nodes of one data set splitting its partitions
(NOT_OWNER, moving a partition with release/claim, alarms following it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import apsw
import pytest
from trio.testing import MockClock

from dohost import Code, DohostError, Host, Request
from dohost.storage.dataset_lock import DataSetLock
from dohost.storage.ownership_local import LocalOwnership
from dohost.storage.partition_count import PARTITIONS_FILE, partition_count

BACKENDS = ["kv", "sqlite"]
COUNT = 8
BASE = 1_800_000_000_000


async def incr(host: Host, obj: str, cls: str = "counter") -> str:
    r = await host.fetch("acme", cls, obj, Request("POST", "/incr", "", [], b""))
    assert r.status == 200, r.text
    return r.text


async def test_two_embedded_hosts_refuse_each_other(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with Host(data, durability="os", program="first-host"):
        with pytest.raises(DohostError) as e:
            async with Host(data, durability="os"):
                pass
        assert e.value.code is Code.DATA_IN_USE
        assert "first-host" in e.value.message and "\n" not in e.value.message
    async with Host(data, durability="os"):  # released when the first one closed
        pass


@pytest.mark.parametrize("storage", BACKENDS)
async def test_a_data_set_made_before_partitions_opens(
    tmp_path: Path, wasm: Any, storage: str
) -> None:
    data = tmp_path / "data"
    async with Host(data, durability="os") as host:
        await host.deploy("acme", "counter", wasm("counter"), storage)
        for name in ("a", "b", "c"):
            await incr(host, name)
        await incr(host, "a")
    # Make it look like a data set of the previous release: no PARTITIONS, no claims,
    # no lock file, no fence tables.
    for name in (PARTITIONS_FILE, "partitions.db", "partitions.lock", "dohost.lock"):
        (data / name).unlink()
    for db in data.glob("tenants/acme/**/*.db"):
        conn = apsw.Connection(str(db))
        conn.execute("DROP TABLE IF EXISTS fence; DROP TABLE IF EXISTS _dohost_fence")
        conn.close()
    async with Host(data, durability="os") as host:
        assert host.partitions == 4096
        assert await incr(host, "a") == "3"
        assert await incr(host, "c") == "2"
    assert (data / PARTITIONS_FILE).read_text() == "4096\n"


def names_by_partition(host: Host, cls: str = "counter") -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for i in range(200):
        name = f"obj-{i}"
        out.setdefault(host.partition_of(host.id_from_name("acme", cls, name)), []).append(name)
    return out


@asynccontextmanager
async def two_nodes(
    data: Path, wasm: Any, storage: str, **kw: Any
) -> AsyncIterator[tuple[Host, Host]]:
    """Two Hosts over one data set in this process, as `serve --processes 2` runs them:
    one data set lock (held here), each node with its own claims: even partitions to
    `a`, odd ones to `b`."""
    data.mkdir(parents=True)
    lock = DataSetLock.acquire(data, "test nodes")
    partition_count(data, COUNT)
    oa = LocalOwnership(data, "a", COUNT, durability="os")
    ob = LocalOwnership(data, "b", COUNT, durability="os")
    oa.claim(range(0, COUNT, 2))
    ob.claim(range(1, COUNT, 2))
    try:
        async with Host(data, durability="os", dataset_lock=lock, ownership=oa, **kw) as a:
            await a.deploy("acme", "counter", wasm("counter"), storage)
            await a.deploy("acme", "k", wasm("kvtest"), storage)
            async with Host(data, durability="os", dataset_lock=lock, ownership=ob, **kw) as b:
                yield a, b
    finally:
        oa.close()
        ob.close()
        lock.release()


@pytest.mark.parametrize("storage", BACKENDS)
async def test_nodes_serve_only_their_partitions_and_hand_one_over(
    tmp_path: Path, wasm: Any, storage: str
) -> None:
    async with two_nodes(tmp_path / "data", wasm, storage) as (a, b):
        assert set(a.serving()) == {0, 2, 4, 6} and set(b.serving()) == {1, 3, 5, 7}
        by_p = names_by_partition(a)
        mine, theirs = by_p[2][0], by_p[3][0]
        assert a.owns(a.id_from_name("acme", "counter", mine))
        assert not a.owns(a.id_from_name("acme", "counter", theirs))
        assert await incr(a, mine) == "1"
        assert await incr(b, theirs) == "1"
        for host, name in ((a, theirs), (b, mine)):
            with pytest.raises(DohostError) as e:
                await incr(host, name)
            assert e.value.code is Code.NOT_OWNER
            with pytest.raises(DohostError) as e:
                await host.delete_object("acme", "counter", name)
            assert e.value.code is Code.NOT_OWNER
        # hand partition 2 from a to b: b fences it, sees a's writes, a refuses it
        await incr(a, mine)
        await a.release([2])
        with pytest.raises(DohostError) as e:
            await incr(a, mine)
        assert e.value.code is Code.NOT_OWNER
        assert await b.claim([2]) == {2: 2}
        assert b.serving()[2] == 2
        assert await incr(b, mine) == "3"
        assert await incr(b, by_p[2][1]) == "1"
        # and back
        await b.release([2])
        assert await a.claim([2]) == {2: 3}
        assert await incr(a, mine) == "4"


async def test_alarms_follow_their_partition(
    tmp_path: Path, wasm: Any, mock_clock: MockClock
) -> None:
    kw: dict[str, Any] = {
        "wall_clock_ms": lambda: BASE + mock_clock.current_time() * 1000,
        "alarm_jitter": lambda: 0.0,
    }
    async with two_nodes(tmp_path / "data", wasm, "kv", **kw) as (a, b):
        by_p = names_by_partition(a, "k")
        obj = by_p[4][0]
        due = int(BASE + 5_000)
        r = await a.fetch("acme", "k", obj, Request("POST", "/alarm_set", f"ms={due}", [], b""))
        assert r.status == 200, r.text
        assert [e.object_id for e, _, _ in a.pending_alarms()] == [
            a.id_from_name("acme", "k", obj).raw
        ]
        assert b.pending_alarms() == []  # b loaded only its partitions' alarms
        await a.release([4])
        assert a.pending_alarms() == []
        await b.claim([4])
        assert len(b.pending_alarms()) == 1
        mock_clock.jump(6)
        await b.alarms.settled()
        await a.alarms.settled()
        r = await b.fetch("acme", "k", obj, Request("GET", "/get", "key=__alarm_runs", [], b""))
        assert r.status == 200 and r.text.splitlines() == [f"{due} 0 false"]

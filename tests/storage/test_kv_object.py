"""KvObjectStorage: the write-back cache, in-flight commits, activations that follow each
other, registration."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import GatedFsync, oid

from dohost.storage.api import Durability, ListOptions
from dohost.storage.kv_object import KvObjectStorage
from dohost.storage.kv_shard import KvShard


@pytest.fixture
def shard(tmp_path: Path, gated_fsync: GatedFsync) -> Iterator[KvShard]:
    s = KvShard(str(tmp_path / "shard-0.db"), Durability.FSYNC, fsync=gated_fsync)
    yield s
    gated_fsync.release.set()
    s.close()


def test_reads_see_earlier_events_still_in_flight(shard: KvShard, gated_fsync: GatedFsync) -> None:
    o = KvObjectStorage(shard, oid(1), "c")
    o.begin_event()
    o.put(b"a", b"1")
    o.put(b"b", b"2")
    gated_fsync.blocking = True
    t1 = o.commit_event()
    assert gated_fsync.entered.wait(10)
    o.begin_event()
    o.delete(b"a")
    o.put(b"c", b"3")
    t2 = o.commit_event()  # queued behind t1, which is held inside its fsync
    o.begin_event()
    assert not t1.done and not t2.done
    assert o.get(b"a") is None and o.get(b"b") == b"2" and o.get(b"c") == b"3"
    assert o.list(ListOptions()).entries == [(b"b", b"2"), (b"c", b"3")]
    assert o.commit_event() is t2  # no writes: the ticket of the last commit in flight
    gated_fsync.release.set()
    assert t1.wait(10) is None and t2.wait(10) is None


def test_a_new_activation_waits_for_the_previous_ones_commits(
    shard: KvShard, gated_fsync: GatedFsync
) -> None:
    o = KvObjectStorage(shard, oid(1), "c")
    o.begin_event()
    o.put(b"a", b"old")
    o.commit_event().wait(10)
    o.begin_event()
    o.put(b"a", b"new")
    gated_fsync.blocking = True
    t = o.commit_event()
    assert gated_fsync.entered.wait(10)
    o.close()  # the activation ends while its commit is in flight

    seen: list[bytes | None] = []
    o2 = KvObjectStorage(shard, oid(1), "c")
    reader = threading.Thread(target=lambda: seen.append(o2.get(b"a")))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive()  # blocked until the commit is durable
    gated_fsync.release.set()
    reader.join(10)
    assert t.done and seen == [b"new"]


def test_cached_reads_do_not_reach_the_shard(shard: KvShard) -> None:
    o = KvObjectStorage(shard, oid(1), "c")
    o.begin_event()
    o.put(b"a", b"1")
    o.commit_event().wait(10)
    o.begin_event()
    assert o.get(b"missing") is None  # now known to be absent
    shard.close()  # any read of the shard would now fail
    assert o.get(b"a") == b"1"
    assert o.get(b"missing") is None
    assert o.get_many([b"a", b"missing"]) == {b"a": b"1"}
    o.put(b"a", b"2")  # cached keys need no size lookup either
    assert o.delete(b"a") is True


def test_delete_all_makes_the_cache_complete(shard: KvShard) -> None:
    o = KvObjectStorage(shard, oid(1), "c")
    o.begin_event()
    o.put_many({b"a": b"1", b"b": b"2"})
    o.commit_event().wait(10)
    o2 = KvObjectStorage(shard, oid(1), "c")
    o2.begin_event()
    o2.delete_all()
    o2.put(b"x", b"9")
    shard.close()  # after delete_all, nothing needs the shard
    assert o2.get(b"a") is None and o2.get(b"x") == b"9"
    assert o2.list(ListOptions()).entries == [(b"x", b"9")]
    assert o2.delete(b"b") is False


def test_cache_is_dropped_when_over_budget_and_idle(shard: KvShard) -> None:
    o = KvObjectStorage(shard, oid(1), "c", cache_max_bytes=1000)
    o.begin_event()
    for i in range(20):
        o.put(b"k%02d" % i, b"x" * 100)
    o.commit_event().wait(10)
    o.begin_event()  # the cache is over budget and every write is on disk: start over
    assert o._cache == {}
    assert o.get(b"k05") == b"x" * 100
    assert len(o.list(ListOptions()).entries) == 20
    assert o.bytes_used == 20 * 103


def test_registration_is_part_of_the_first_commit(shard: KvShard) -> None:
    o = KvObjectStorage(shard, oid(1), "counter", "alice")
    o.begin_event()
    assert o.get(b"a") is None
    o.commit_event().wait(10)
    assert shard.object_row(oid(1)) is None  # reads alone create nothing
    o.begin_event()
    o.put(b"a", b"1")
    o.commit_event().wait(10)
    row = shard.object_row(oid(1))
    assert row is not None
    assert (row.class_name, row.name, row.bytes) == ("counter", "alice", 2)
    created = row.created_ms
    o.begin_event()
    o.put(b"bb", b"22")
    o.commit_event().wait(10)
    row = shard.object_row(oid(1))
    assert row is not None and row.bytes == 6 and row.created_ms == created


def test_objects_in_one_shard_are_isolated(shard: KvShard) -> None:
    a = KvObjectStorage(shard, oid(1, 1), "c")
    b = KvObjectStorage(shard, oid(1, 2), "c")
    for o, v in ((a, b"A"), (b, b"B")):
        o.begin_event()
        o.put_many({b"k": v, v: v})
        o.commit_event()
    shard.flush(10)
    a.begin_event()
    a.delete_all()
    a.commit_event().wait(10)
    b2 = KvObjectStorage(shard, oid(1, 2), "c")
    b2.begin_event()
    assert b2.list(ListOptions()).entries == [(b"B", b"B"), (b"k", b"B")]

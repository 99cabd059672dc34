"""KvShard: group commit, failures (through the fault-injection VFS and a failing fsync),
concurrent readers, close."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest
from storage_helpers import GatedFsync, oid

from dohost.core.errors import Code, DohostError
from dohost.storage.api import Durability, ListOptions
from dohost.storage.faultvfs import FaultVFS
from dohost.storage.kv_object import KvObjectStorage
from dohost.storage.kv_shard import KvShard


def event(o: KvObjectStorage, **puts: bytes) -> object:
    o.begin_event()
    for k, v in puts.items():
        o.put(k.encode(), v)
    return o.commit_event()


def test_group_commit_groups(tmp_path: Path, gated_fsync: GatedFsync) -> None:
    shard = KvShard(str(tmp_path / "s.db"), Durability.FSYNC, fsync=gated_fsync)
    try:
        objs = [KvObjectStorage(shard, oid(1, n), "c") for n in range(50)]
        gated_fsync.blocking = True
        first = event(objs[0], first=b"1")
        assert gated_fsync.entered.wait(10)  # the committer is now inside an fsync
        before = (shard.stats.batches, shard.stats.fsyncs)
        tickets = [first]
        for round_ in range(4):
            for o in objs:
                tickets.append(event(o, **{f"k{round_}": b"v"}))
        assert len(tickets) == 201
        gated_fsync.release.set()
        for t in tickets:
            assert t.wait(10) is None  # type: ignore[attr-defined]
        batches = shard.stats.batches - before[0]
        fsyncs = shard.stats.fsyncs - before[1]
        # the first batch, then the 200 events queued behind it: far fewer than 200
        assert batches <= 2, batches
        assert fsyncs <= 3, fsyncs
        assert shard.stats.largest_batch == 200
        o = KvObjectStorage(shard, oid(1, 7), "c")
        o.begin_event()
        assert [k for k, _ in o.list(ListOptions()).entries] == [b"k0", b"k1", b"k2", b"k3"]
    finally:
        gated_fsync.release.set()
        shard.close()


def test_group_commit_under_concurrent_writers(tmp_path: Path) -> None:
    shard = KvShard(str(tmp_path / "s.db"), Durability.FSYNC)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            o = KvObjectStorage(shard, oid(2, n), "c")
            for i in range(30):
                assert event(o, **{f"k{i:02d}": b"%d" % n}).wait(10) is None  # type: ignore[attr-defined]
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        assert shard.stats.write_sets == 16 * 30
        assert shard.stats.batches < shard.stats.write_sets
        for n in range(16):
            o = KvObjectStorage(shard, oid(2, n), "c")
            o.begin_event()
            assert len(o.list(ListOptions()).entries) == 30
    finally:
        shard.close()


def test_os_durability_never_fsyncs(tmp_path: Path) -> None:
    calls: list[int] = []
    shard = KvShard(str(tmp_path / "s.db"), Durability.OS, fsync=calls.append)
    o = KvObjectStorage(shard, oid(1), "c")
    assert event(o, a=b"1").wait(10) is None  # type: ignore[attr-defined]
    shard.close()
    assert calls == [] and shard.stats.fsyncs == 0 and shard.stats.batches == 1


def _fault_shard(tmp_path: Path, name: Callable[[str], str]) -> tuple[KvShard, FaultVFS]:
    vfs = FaultVFS(name("fault"))
    return KvShard(str(tmp_path / "s.db"), Durability.FSYNC, vfs=vfs.vfs_name), vfs


def test_failed_batch_fails_its_writers_and_the_shard_goes_on(
    tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    shard, vfs = _fault_shard(tmp_path, unique_name)
    try:
        a = KvObjectStorage(shard, oid(1, 1), "c")
        b = KvObjectStorage(shard, oid(1, 2), "c")
        assert event(a, x=b"1").wait(10) is None  # type: ignore[attr-defined]
        b.begin_event()
        b.get(b"warm")  # b's read connection and registry row are ready

        # Hold the committer inside the WAL write of a's next batch, queue more behind
        # it, then make that write fail.
        entered, release = threading.Event(), threading.Event()
        armed = [True]

        def hook(op: str, path: str) -> None:
            if op == "write" and path.endswith("-wal") and armed[0]:
                armed[0] = False
                entered.set()
                release.wait(10)
                raise apsw.IOError("injected: the disk went away")

        vfs.hook = hook
        t1 = event(a, x=b"2")
        assert entered.wait(10)
        t2 = event(a, y=b"3")  # same writer, queued behind the failing batch
        t3 = event(b, z=b"1")  # another object, queued too
        release.set()
        for t in (t1, t2):
            err = t.wait(10)  # type: ignore[attr-defined]
            assert isinstance(err, DohostError) and err.code is Code.STORAGE_ERROR
        assert t3.wait(10) is None  # type: ignore[attr-defined]
        assert "rolled back" in t1.error.message  # type: ignore[attr-defined]
        assert shard.stats.failed_batches == 1

        # a's activation is dead; a new one sees the last durable state
        with pytest.raises(DohostError) as e:
            a.begin_event()
        assert e.value.code is Code.STORAGE_ERROR
        failed = a.commit_event()
        assert failed.done and failed.error is not None
        a2 = KvObjectStorage(shard, oid(1, 1), "c")
        a2.begin_event()
        assert a2.get(b"x") == b"1" and a2.get(b"y") is None
        assert event(a2, y=b"4").wait(10) is None  # type: ignore[attr-defined]
        b2 = KvObjectStorage(shard, oid(1, 2), "c")
        b2.begin_event()
        assert b2.get(b"z") == b"1"
    finally:
        vfs.clear()
        shard.close()


def test_disk_full_fails_the_batch_only(tmp_path: Path, unique_name: Callable[[str], str]) -> None:
    shard, vfs = _fault_shard(tmp_path, unique_name)
    try:
        a = KvObjectStorage(shard, oid(1, 1), "c")
        vfs.fail("write", path_contains="-wal", error=apsw.FullError, count=1)
        err = event(a, x=b"1").wait(10)  # type: ignore[attr-defined]
        assert isinstance(err, DohostError) and err.code is Code.STORAGE_ERROR
        assert vfs.injected["write"] == 1
        a2 = KvObjectStorage(shard, oid(1, 1), "c")
        assert event(a2, x=b"2").wait(10) is None  # type: ignore[attr-defined]
        a3 = KvObjectStorage(shard, oid(1, 1), "c")
        a3.begin_event()
        assert a3.get(b"x") == b"2"
        assert shard.object_row(oid(1, 1)).bytes == 2  # type: ignore[union-attr]
    finally:
        vfs.clear()
        shard.close()


def test_failed_fsync_stops_writes_until_the_shard_heals(
    tmp_path: Path, gated_fsync: GatedFsync
) -> None:
    shard = KvShard(str(tmp_path / "s.db"), Durability.FSYNC, fsync=gated_fsync)
    try:
        a = KvObjectStorage(shard, oid(1, 1), "c")
        b = KvObjectStorage(shard, oid(1, 2), "c")
        assert event(a, x=b"1").wait(10) is None  # type: ignore[attr-defined]
        gated_fsync.error = OSError(errno.EIO, "injected EIO")
        err = event(a, x=b"2").wait(10)  # type: ignore[attr-defined]
        assert isinstance(err, DohostError) and err.code is Code.STORAGE_ERROR
        assert "checkpoint" in err.message
        assert shard.broken is not None
        # While fsync fails, healing fails too: every write fails, reads go on.
        err = event(b, y=b"1").wait(10)  # type: ignore[attr-defined]
        assert isinstance(err, DohostError) and err.code is Code.STORAGE_ERROR
        assert shard.get(oid(1, 1), b"x") is not None
        # Once fsync works, the next batch heals the shard first (checkpoint + fsyncs).
        gated_fsync.error = None
        b2 = KvObjectStorage(shard, oid(1, 2), "c")  # b's writer failed: a new activation
        assert event(b2, y=b"2").wait(10) is None  # type: ignore[attr-defined]
        assert shard.broken is None
        # The batch whose fsync failed had committed: its outcome was unknown, now durable.
        assert shard.get(oid(1, 1), b"x") == b"2"
        assert shard.get(oid(1, 2), b"y") == b"2"
    finally:
        shard.close()


def test_concurrent_readers_while_committing(tmp_path: Path) -> None:
    shard = KvShard(str(tmp_path / "s.db"), Durability.OS)
    w = KvObjectStorage(shard, oid(1, 0), "c")
    w.begin_event()
    w.put_many({b"k%03d" % i: b"v" for i in range(100)})
    w.commit_event().wait(10)
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                assert shard.get(oid(1, 0), b"k050") == b"v"
                rows = list(shard.scan(oid(1, 0), b"", None, False))
                assert len(rows) >= 100
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(50):
        event(w, **{f"n{i}": b"x"})
    shard.flush(10)
    stop.set()
    for t in threads:
        t.join()
    shard.close()
    assert not errors


def test_close_commits_whats_queued_and_is_idempotent(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    shard = KvShard(path, Durability.FSYNC)
    o = KvObjectStorage(shard, oid(1), "c")
    tickets = [event(o, **{f"k{i}": b"v"}) for i in range(20)]
    shard.close()
    shard.close()
    assert all(t.done and t.error is None for t in tickets)  # type: ignore[attr-defined]
    assert not os.path.exists(path + "-wal")  # checkpointed into the database
    assert not any(t.name.startswith("kv-committer") for t in threading.enumerate())
    late = event(o, k0=b"w")  # a cached key: only the commit needs the shard
    assert late.error is not None and late.error.code is Code.STORAGE_ERROR  # type: ignore[attr-defined]
    with pytest.raises(DohostError):
        shard.get(oid(1), b"k1")
    shard = KvShard(path, Durability.FSYNC)
    assert shard.get(oid(1), b"k19") == b"v"
    shard.close()

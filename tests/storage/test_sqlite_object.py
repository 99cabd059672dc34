"""SqliteObjectStorage and the WAL flusher: events as real transactions, lazy file creation,
grouped flushes, failures."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import apsw
import pytest
from storage_helpers import GatedFsync, oid

from dohost.core.errors import Code, DohostError
from dohost.storage.api import Durability, ListOptions
from dohost.storage.faultvfs import FaultVFS
from dohost.storage.sqlite_object import SqliteObjectStorage
from dohost.storage.wal_flusher import WalFlusher


@pytest.fixture
def flusher(gated_fsync: GatedFsync) -> Iterator[WalFlusher]:
    f = WalFlusher(Durability.FSYNC, fsync=gated_fsync)
    yield f
    gated_fsync.release.set()
    f.close()


def make(tmp_path: Path, flusher: WalFlusher, n: int = 1, **kw: object) -> SqliteObjectStorage:
    path = str(tmp_path / "sqlite" / "c" / f"{oid(n).hex()}.db")
    o = SqliteObjectStorage(path, oid(n), "c", f"obj{n}", flusher, **kw)  # type: ignore[arg-type]
    o.begin_event()
    return o


def test_reads_of_a_new_object_create_no_file(tmp_path: Path, flusher: WalFlusher) -> None:
    o = make(tmp_path, flusher)
    assert o.get(b"a") is None
    assert o.get_many([b"a"]) == {}
    assert o.list(ListOptions()).entries == []
    assert o.delete(b"a") is False
    o.delete_all()
    assert o.commit_event().done
    assert not os.path.exists(o.path)
    o.begin_event()
    o.put(b"a", b"1")
    assert os.path.exists(o.path)
    assert o.commit_event().wait(10) is None
    o.close()


def test_an_event_is_a_transaction(tmp_path: Path, flusher: WalFlusher) -> None:
    o = make(tmp_path, flusher)
    o.put(b"a", b"1")
    conn = o.connection
    assert not conn.get_autocommit()  # inside the event's transaction
    conn.execute("CREATE TABLE t(x)")
    conn.execute("INSERT INTO t VALUES (1)")
    assert o.commit_event().wait(10) is None

    o.begin_event()
    o.put(b"a", b"2")
    o.connection.execute("INSERT INTO t VALUES (2)")
    o.connection.execute("CREATE TABLE u(y)")
    assert o.get(b"a") == b"2"  # the event sees its own writes
    o.rollback_event()

    o.begin_event()
    assert o.get(b"a") == b"1"
    assert o.connection.execute("SELECT x FROM t").fetchall() == [(1,)]
    names = o.connection.execute("SELECT name FROM sqlite_schema WHERE type='table'").fetchall()
    assert ("u",) not in names
    o.commit_event()
    o.close()


def test_other_connections_see_only_committed_events(tmp_path: Path, flusher: WalFlusher) -> None:
    o = make(tmp_path, flusher)
    o.put(b"a", b"1")
    o.commit_event().wait(10)
    o.begin_event()
    o.put(b"a", b"2")
    other = apsw.Connection(o.path)
    assert other.execute("SELECT value FROM _dohost_kv").fetchall() == [(b"1",)]
    o.commit_event().wait(10)
    assert other.execute("SELECT value FROM _dohost_kv").fetchall() == [(b"2",)]
    meta = other.execute("SELECT class, name, kv_bytes FROM _dohost_meta").fetchall()
    assert meta == [("c", "obj1", 2)]
    other.close()
    o.close()


def test_read_only_events_need_no_flush(tmp_path: Path, flusher: WalFlusher) -> None:
    o = make(tmp_path, flusher)
    o.put(b"a", b"1")
    assert o.commit_event().wait(10) is None
    requests = flusher.stats.requests
    for _ in range(5):
        o.begin_event()
        assert o.get(b"a") == b"1"
        t = o.commit_event()
        assert t.done and t.error is None
    assert flusher.stats.requests == requests
    o.close()


def test_the_flusher_groups_many_objects(
    tmp_path: Path, flusher: WalFlusher, gated_fsync: GatedFsync
) -> None:
    objs = [make(tmp_path, flusher, n) for n in range(30)]
    for o in objs:
        o.put(b"init", b"1")
        assert o.commit_event().wait(10) is None
    gated_fsync.blocking = True
    objs[0].begin_event()
    objs[0].put(b"first", b"1")
    first = objs[0].commit_event()
    assert gated_fsync.entered.wait(10)  # the flusher is inside an fsync
    rounds, fsyncs = flusher.stats.rounds, flusher.stats.fsyncs
    tickets = []
    for i in range(3):
        for o in objs:
            o.begin_event()
            o.put(b"k%d" % i, b"v")
            tickets.append(o.commit_event())
    gated_fsync.release.set()
    assert first.wait(10) is None
    for t in tickets:
        assert t.wait(10) is None
    # 90 commits queued behind the held round: one more round, each file fsync'd once
    assert flusher.stats.rounds - rounds <= 2
    assert flusher.stats.fsyncs - fsyncs <= 1 + 30
    for o in objs:
        o.close()


def test_durable_across_reopen_and_new_files_sync_their_directory(
    tmp_path: Path, gated_fsync: GatedFsync
) -> None:
    flusher = WalFlusher(Durability.FSYNC, fsync=gated_fsync)
    o = make(tmp_path, flusher, fsync=gated_fsync)
    o.put_many({b"a": b"1", b"b": b"2"})
    assert o.commit_event().wait(10) is None
    assert flusher.stats.dir_fsyncs >= 1  # the new WAL file's directory entry
    assert gated_fsync.calls >= 4  # new db file, its directory, the WAL, its directory
    o.close()
    flusher.close()
    flusher = WalFlusher(Durability.FSYNC)
    o = make(tmp_path, flusher)
    assert o.list(ListOptions()).entries == [(b"a", b"1"), (b"b", b"2")]
    assert o.bytes_used == 4
    o.close()
    flusher.close()


def test_os_durability_resolves_at_once(tmp_path: Path) -> None:
    calls: list[int] = []
    flusher = WalFlusher(Durability.OS, fsync=calls.append)
    o = make(tmp_path, flusher)
    o.put(b"a", b"1")
    t = o.commit_event()
    assert t.done and t.error is None
    o.close()
    flusher.close()
    assert calls == []


def test_failed_commit_rolls_back_and_ends_the_activation(
    tmp_path: Path, flusher: WalFlusher, unique_name: Callable[[str], str]
) -> None:
    vfs = FaultVFS(unique_name("fault"))
    try:
        o = make(tmp_path, flusher, vfs=vfs.vfs_name)
        o.put(b"a", b"1")
        assert o.commit_event().wait(10) is None
        o.begin_event()
        o.put(b"a", b"2")
        vfs.fail("write", path_contains="-wal")
        t = o.commit_event()
        assert t.done and isinstance(t.error, DohostError)
        assert t.error.code is Code.STORAGE_ERROR
        vfs.clear()
        with pytest.raises(DohostError) as e:
            o.begin_event()
        assert e.value.code is Code.STORAGE_ERROR
        o.close()
        o = make(tmp_path, flusher, vfs=vfs.vfs_name)
        assert o.get(b"a") == b"1"
        o.close()
    finally:
        vfs.clear()


def test_failed_fsync_fails_this_object_only(
    tmp_path: Path, flusher: WalFlusher, gated_fsync: GatedFsync
) -> None:
    a = make(tmp_path, flusher, 1)
    b = make(tmp_path, flusher, 2)
    for o in (a, b):
        o.put(b"x", b"1")
        assert o.commit_event().wait(10) is None
        o.begin_event()
    a.put(b"x", b"2")
    gated_fsync.error = OSError(errno.EIO, "injected EIO")
    err = a.commit_event().wait(10)
    gated_fsync.error = None
    assert isinstance(err, DohostError) and err.code is Code.STORAGE_ERROR
    b.put(b"x", b"2")
    assert b.commit_event().wait(10) is None
    with pytest.raises(DohostError):
        a.begin_event()
    a.close()
    a = make(tmp_path, flusher, 1, fsync=gated_fsync)
    gated_fsync.error = OSError(errno.EIO, "injected EIO")
    with pytest.raises(DohostError) as e:
        a.get(b"x")  # opening heals first (checkpoint + fsyncs): it fails while fsync does
    assert e.value.code is Code.STORAGE_ERROR
    gated_fsync.error = None
    assert a.get(b"x") == b"2"  # healed: the commit whose fsync failed is durable now
    a.put(b"x", b"3")
    assert a.commit_event().wait(10) is None
    a.close()
    b.close()


def test_transaction_lost_mid_event_fails_the_rest_of_it(
    tmp_path: Path, flusher: WalFlusher, unique_name: Callable[[str], str]
) -> None:
    vfs = FaultVFS(unique_name("fault"))
    try:
        o = make(tmp_path, flusher, vfs=vfs.vfs_name, quota_bytes=10_000_000)
        o.put(b"a", b"1")
        assert o.commit_event().wait(10) is None
        o.begin_event()
        o.put(b"b", b"2")
        # A big value spills pages to the WAL during the statement; failing that write
        # makes SQLite give up on the whole transaction.
        vfs.fail("write", path_contains="-wal")
        with pytest.raises(DohostError) as e:
            o.put(b"c", os.urandom(1_500_000))
        vfs.clear()
        assert e.value.code is Code.STORAGE_ERROR
        if o._event_error is not None:  # SQLite abandoned the transaction
            with pytest.raises(DohostError):
                o.get(b"b")
            t = o.commit_event()
            assert t.error is not None
        else:  # SQLite kept the transaction: the statement alone was undone
            assert o.get(b"c") is None and o.get(b"b") == b"2"
            o.rollback_event()
        o.close()
        o = make(tmp_path, flusher, vfs=vfs.vfs_name)
        assert o.get(b"a") == b"1" and o.get(b"b") is None and o.get(b"c") is None
        o.close()
    finally:
        vfs.clear()

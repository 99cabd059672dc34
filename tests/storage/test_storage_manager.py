"""StorageManager: layout, shard choice, object listings, deletion, lifecycle."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from storage_helpers import oid

from dohost.core.errors import Code, DohostError
from dohost.storage.api import Backend, Durability, ListOptions
from dohost.storage.manager import StorageManager


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[StorageManager]:
    m = StorageManager(tmp_path, Durability.FSYNC)
    yield m
    m.close()


def write(m: StorageManager, backend: str, object_id: bytes, name: str | None, **kv: bytes) -> None:
    o = m.open_object("acme", "room", object_id, name, backend)
    o.begin_event()
    for k, v in kv.items():
        o.put(k.encode(), v)
    assert o.commit_event().wait(10) is None
    o.close()


def test_layout(tmp_path: Path, manager: StorageManager) -> None:
    write(manager, Backend.KV, oid(5), None, a=b"1")
    write(manager, Backend.SQLITE, oid(5), None, a=b"1")
    kv = tmp_path / "tenants" / "acme" / "kv"
    assert (kv / "SHARDS").read_text() == "4\n"
    assert (kv / "shard-1.db").exists()  # 5 % 4
    assert (tmp_path / "tenants" / "acme" / "sqlite" / "room" / f"{oid(5).hex()}.db").exists()


def test_the_shard_count_of_a_tenant_never_changes(tmp_path: Path) -> None:
    m = StorageManager(tmp_path, Durability.OS, shards_per_tenant=3)
    for n in range(6):
        write(m, Backend.KV, oid(n), f"o{n}", k=b"%d" % n)
    m.close()
    m = StorageManager(tmp_path, Durability.OS, shards_per_tenant=8)
    try:
        for n in range(6):
            assert m.object_entries("acme", "room", oid(n)).entries == [(b"k", b"%d" % n)]
        assert len(list((tmp_path / "tenants" / "acme" / "kv").glob("shard-*.db"))) == 3
    finally:
        m.close()


@pytest.mark.parametrize("backend", [Backend.KV, Backend.SQLITE])
def test_list_objects_pages_by_id(manager: StorageManager, backend: str) -> None:
    ids = sorted(oid(n * 7919 % 1000, n) for n in range(25))
    for i, object_id in enumerate(ids):
        write(manager, backend, object_id, f"n{i}" if i % 2 else None, k=b"v")
    o = manager.open_object("acme", "other-class", oid(1), None, backend)
    o.begin_event()
    o.put(b"k", b"v")
    o.commit_event().wait(10)
    o.close()
    seen = []
    after = None
    while True:
        page = manager.list_objects("acme", "room", backend, after=after, limit=10)
        seen += page.objects
        if page.next_after is None:
            break
        after = page.next_after
    assert [i.object_id for i in seen] == ids
    assert [i.name for i in seen] == [f"n{i}" if i % 2 else None for i in range(25)]
    assert all(i.class_name == "room" and i.created_ms for i in seen)
    if backend == Backend.KV:
        assert all(i.bytes == 2 for i in seen)
    assert manager.list_objects("nobody", "room", backend).objects == []
    assert manager.list_objects("acme", "empty", backend).objects == []


@pytest.mark.parametrize("backend", [Backend.KV, Backend.SQLITE])
def test_object_entries_paginate(manager: StorageManager, backend: str) -> None:
    write(manager, backend, oid(1), None, **{f"k{i:02d}": b"v%d" % i for i in range(30)})
    got = []
    opts = ListOptions(limit=7)
    while True:
        page = manager.object_entries("acme", "room", oid(1), backend, opts)
        got += page.entries
        if len(page.entries) < 7:
            break
        opts = ListOptions(start=page.entries[-1][0] + b"\x00", limit=7)
    assert got == [(b"k%02d" % i, b"v%d" % i) for i in range(30)]
    assert manager.object_entries("acme", "room", oid(2), backend).entries == []


@pytest.mark.parametrize("backend", [Backend.KV, Backend.SQLITE])
def test_delete_object(manager: StorageManager, backend: str) -> None:
    write(manager, backend, oid(1, 1), "a", k=b"1")
    write(manager, backend, oid(1, 2), "b", k=b"2")
    live = manager.open_object("acme", "room", oid(1, 1), "a", backend)
    with pytest.raises(DohostError) as e:
        manager.delete_object("acme", "room", oid(1, 1), backend)
    assert "active" in e.value.message
    live.close()
    manager.delete_object("acme", "room", oid(1, 1), backend)
    manager.delete_object("acme", "room", oid(1, 1), backend)  # nothing left: fine
    assert [i.name for i in manager.list_objects("acme", "room", backend).objects] == ["b"]
    assert manager.object_entries("acme", "room", oid(1, 1), backend).entries == []
    o = manager.open_object("acme", "room", oid(1, 1), "a", backend)
    o.begin_event()
    assert o.get(b"k") is None
    assert o.bytes_used == 0
    o.close()
    assert manager.object_entries("acme", "room", oid(1, 2), backend).entries == [(b"k", b"2")]


def test_bad_arguments(manager: StorageManager) -> None:
    cases: list[tuple[Callable[[], object], Code]] = [
        (lambda: manager.open_object("Bad!", "room", oid(1)), Code.INVALID_NAME),
        (lambda: manager.open_object("acme", "../x", oid(1)), Code.INVALID_NAME),
        (lambda: manager.open_object("acme", "room", b"short"), Code.INVALID_ID),
        (lambda: manager.open_object("acme", "room", oid(1), None, "disk"), Code.INVALID_ARGUMENT),
        (lambda: manager.list_objects("acme", "room", limit=0), Code.INVALID_ARGUMENT),
    ]
    for call, code in cases:
        with pytest.raises(DohostError) as e:
            call()
        assert e.value.code is code


def test_close_stops_every_thread_and_is_idempotent(tmp_path: Path) -> None:
    m = StorageManager(tmp_path, Durability.FSYNC)
    for n in range(8):
        write(m, Backend.KV, oid(n), None, k=b"v")
        write(m, Backend.SQLITE, oid(n), None, k=b"v")
    o = m.open_object("acme", "room", oid(1), None, Backend.SQLITE)
    o.begin_event()
    o.put(b"unfinished", b"x")  # an event still open at shutdown is dropped
    committed = m.open_object("acme", "room", oid(2), None, Backend.KV)
    committed.begin_event()
    committed.put(b"queued", b"x")
    t = committed.commit_event()  # handed over: close must still make it durable
    assert m.stats().shards_open == 4
    m.close()
    m.close()
    assert t.done and t.error is None
    names = {th.name for th in threading.enumerate()}
    assert not any(n.startswith(("kv-committer", "wal-flusher")) for n in names)
    with pytest.raises(DohostError) as e:
        m.open_object("acme", "room", oid(1))
    assert e.value.code is Code.SHUTTING_DOWN
    leftover = [p for p in tmp_path.rglob("*-wal")]
    assert leftover == []  # every WAL was checkpointed and removed
    m = StorageManager(tmp_path, Durability.FSYNC)
    assert m.object_entries("acme", "room", oid(1), Backend.SQLITE).entries == [(b"k", b"v")]
    assert (b"queued", b"x") in m.object_entries("acme", "room", oid(2)).entries
    m.close()


def test_stats(manager: StorageManager) -> None:
    for n in range(3):
        write(manager, Backend.KV, oid(n), None, k=b"v")
        write(manager, Backend.SQLITE, oid(n), None, k=b"v")
    s = manager.stats()
    assert s.durability == "fsync"
    assert s.kv_write_sets == 3 and s.kv_batches >= 1 and s.kv_fsyncs >= 1
    assert s.wal_requests == 3 and s.wal_fsyncs >= 1
    assert os.path.isdir(manager.data_dir)


def test_delete_tenant(tmp_path: Path, manager: StorageManager) -> None:
    for n in range(4):
        write(manager, Backend.KV, oid(n), None, k=b"v")
        write(manager, Backend.SQLITE, oid(n), None, k=b"v")
    live = manager.open_object("acme", "room", oid(9))
    with pytest.raises(DohostError):
        manager.delete_tenant("acme")
    live.close()
    other = manager.open_object("other", "room", oid(1))
    other.begin_event()
    other.put(b"k", b"v")
    other.commit_event().wait(10)
    other.close()
    manager.delete_tenant("acme")
    assert sorted(p.name for p in (tmp_path / "tenants").iterdir()) == ["other"]
    assert manager.list_objects("acme", "room").objects == []
    assert manager.list_objects("acme", "room", Backend.SQLITE).objects == []
    assert manager.object_entries("other", "room", oid(1)).entries == [(b"k", b"v")]
    write(manager, Backend.KV, oid(1), None, k=b"new")  # the tenant can start over
    assert manager.object_entries("acme", "room", oid(1)).entries == [(b"k", b"new")]

"""Replication end to end below the host: a real StorageManager whose kv shards hand
their committed batches to a Replicator, a real replica store (a directory, and
SeaweedFS), then `restore_kv` into a new directory compared with what was committed."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from dohost.core.errors import Code, DohostError
from dohost.core.partitions import partition_of
from dohost.core.replica_keys import parse_log_key, segment_key, start_key
from dohost.core.replica_log import decode_start
from dohost.replica.file_store import FileReplicaStore
from dohost.replica.replicator import Replicator
from dohost.replica.restore import restore_kv
from dohost.replica.store import ReplicaStore
from dohost.storage.alarm_index import AlarmIndex
from dohost.storage.api import ListOptions
from dohost.storage.manager import StorageManager

PARTITIONS = 16


def oid(n: int) -> bytes:
    return n.to_bytes(4, "big") * 8


@dataclass
class Clock:
    ms: int = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


@dataclass
class World:
    """A data set being written, with the truth of what was committed."""

    manager: StorageManager
    replicator: Replicator
    clock: Clock
    registry: CollectorRegistry
    truth: dict[tuple[str, bytes], tuple[dict[bytes, bytes], int | None]] = field(
        default_factory=dict
    )

    def event(self, tenant: str, n: int, edit: Callable[..., None]) -> None:
        """One committed event on object n of `tenant` (class Counter)."""
        obj = self.manager.open_object(tenant, "counter", oid(n), f"obj-{n}")
        try:
            obj.begin_event()
            edit(obj)
            err = obj.commit_event().wait(10)
            assert err is None, err
            rows = {k: v for k, v in obj.list(ListOptions()).entries}
            self.truth[(tenant, oid(n))] = (rows, obj.get_alarm())
        finally:
            obj.close()
        self.clock.ms += 1000

    def close(self) -> None:
        self.manager.close()
        self.replicator.close()

    def metric(self, name: str) -> float:
        value = self.registry.get_sample_value(name)
        return 0.0 if value is None else value


def make_world(data: Path, store: ReplicaStore, epoch: int = 1, **kw: object) -> World:
    clock = Clock()
    registry = CollectorRegistry()
    rep = Replicator(
        store,
        partitions=PARTITIONS,
        epoch_of=lambda p: epoch,
        wall_clock_ms=clock,
        registry=registry,
        **kw,  # type: ignore[arg-type]
    )
    manager = StorageManager(data, "os", on_kv_commit=rep.committed)
    return World(manager, rep, clock, registry)


@pytest.fixture
def world(tmp_path: Path, store: ReplicaStore) -> Iterator[World]:
    w = make_world(tmp_path / "data", store)
    yield w
    w.close()


def restored(
    path: Path, tenants: list[str]
) -> dict[tuple[str, bytes], tuple[dict[bytes, bytes], int | None]]:
    """Every kv object of `tenants` in a data directory, with its alarm."""
    manager = StorageManager(path, "os")
    out = {}
    try:
        for tenant in tenants:
            for row in manager.list_objects(tenant, "counter", limit=1000).objects:
                obj = manager.open_object(tenant, "counter", row.object_id)
                out[(tenant, row.object_id)] = (
                    dict(obj.list(ListOptions()).entries),
                    obj.get_alarm(),
                )
                obj.close()
    finally:
        manager.close()
    return out


def live(truth: dict[tuple[str, bytes], tuple[dict[bytes, bytes], int | None]]) -> dict:
    return {k: v for k, v in truth.items() if v[0] or v[1] is not None}


def write_workload(w: World) -> None:
    for n in range(12):
        for tenant in ("acme", "globex"):
            w.event(tenant, n, lambda o, n=n: o.put(b"count", str(n).encode()))
    w.event("acme", 1, lambda o: (o.put(b"a", b"1"), o.put(b"b", b"2"), o.delete(b"count")))
    w.event("acme", 2, lambda o: o.set_alarm(1_800_000_000_000))
    w.event("acme", 3, lambda o: (o.delete_all(), o.put(b"after-clear", b"x")))
    w.event(
        "globex", 4, lambda o: (o.set_alarm(1_800_000_000_500), o.put(b"big", os.urandom(70_000)))
    )
    w.event("globex", 4, lambda o: o.set_alarm(None))
    w.event("globex", 5, lambda o: o.set_alarm(1_800_000_000_900))


def test_restore_brings_back_every_committed_object_and_alarm(world: World, tmp_path: Path) -> None:
    write_workload(world)
    world.manager.delete_object("acme", "counter", oid(7))  # a drop is replicated too
    world.truth.pop(("acme", oid(7)))
    assert world.replicator.flush(60)
    assert world.metric("dohost_replica_pending_changes") == 0
    assert world.metric("dohost_replica_lag_seconds") == 0
    assert world.metric("dohost_replica_segments_uploaded_total") >= 1
    assert world.metric("dohost_replica_upload_failures_total") == 0

    report = restore_kv(world.replicator.store, tmp_path / "restored", now_ms=world.clock.ms)
    assert report.ignored == []
    assert restored(tmp_path / "restored", ["acme", "globex"]) == live(world.truth)
    assert report.objects == len(live(world.truth)) and report.alarms == 2
    index = AlarmIndex(tmp_path / "restored" / "alarms.db")
    try:
        assert sorted((e.tenant, e.object_id, e.due_ms) for e in index.entries()) == [
            ("acme", oid(2), 1_800_000_000_000),
            ("globex", oid(5), 1_800_000_000_900),
        ]
    finally:
        index.close()


def test_point_in_time_restore(world: World, tmp_path: Path) -> None:
    world.event("acme", 1, lambda o: o.put(b"v", b"1"))
    t1, at_t1 = world.clock.ms - 1, dict(world.truth)
    world.event("acme", 1, lambda o: o.put(b"v", b"2"))
    world.event("acme", 2, lambda o: o.put(b"w", b"x"))
    t2, at_t2 = world.clock.ms - 1, dict(world.truth)
    world.event("acme", 1, lambda o: o.delete(b"v"))
    assert world.replicator.flush(60)
    store = world.replicator.store
    for i, (at, expect) in enumerate([(t1, at_t1), (t2, at_t2), (None, world.truth)]):
        restore_kv(store, tmp_path / f"r{i}", now_ms=world.clock.ms, at_ms=at)
        assert restored(tmp_path / f"r{i}", ["acme"]) == live(expect), at
    with pytest.raises(DohostError) as info:
        restore_kv(store, tmp_path / "future", now_ms=world.clock.ms, at_ms=world.clock.ms + 1)
    assert info.value.code is Code.INVALID_ARGUMENT and "future" in info.value.message


def test_a_new_epoch_starts_where_the_replica_ends(
    tmp_path: Path, file_store: FileReplicaStore
) -> None:
    first = make_world(tmp_path / "data", file_store, epoch=1)
    first.event("acme", 1, lambda o: o.put(b"k", b"1"))
    first.event("acme", 1, lambda o: o.put(b"k", b"2"))
    assert first.replicator.flush(30)
    first.close()
    p = partition_of(oid(1), PARTITIONS)
    epoch1 = [
        k for k in map(parse_log_key, file_store.list(f"p{p:05d}/")) if k and k.kind == "segment"
    ]
    second = make_world(tmp_path / "data", file_store, epoch=2)  # the next claim
    second.truth = first.truth
    second.event("acme", 1, lambda o: o.put(b"k", b"3"))
    assert second.replicator.flush(30)
    second.close()
    start = decode_start(file_store.get(start_key(p, 2)), p, 2, "start")
    assert start.base == (1, max(k.seq for k in epoch1))
    restore_kv(file_store, tmp_path / "restored", now_ms=second.clock.ms)
    assert restored(tmp_path / "restored", ["acme"]) == live(second.truth)


def test_a_failing_store_delays_shipping_without_stopping_commits(tmp_path: Path) -> None:
    blocker = tmp_path / "replica"
    blocker.write_bytes(b"a file where the replica directory should be")
    store = FileReplicaStore(str(blocker))
    w = make_world(tmp_path / "data", store, sleep=lambda s: time.sleep(min(s, 0.01)))
    try:
        for n in range(5):
            w.event("acme", n, lambda o, n=n: o.put(b"n", bytes([n])))  # commits go on
        assert not w.replicator.flush(0.5)
        assert w.metric("dohost_replica_upload_failures_total") >= 1
        assert w.metric("dohost_replica_pending_changes") == 5
        assert w.metric("dohost_replica_lag_seconds") >= 4  # the oldest waits since 5 events
        assert w.replicator.last_error is not None
        assert w.replicator.last_error.code is Code.REPLICA_UNAVAILABLE
        blocker.unlink()  # the store comes back
        assert w.replicator.flush(30)
        assert w.metric("dohost_replica_pending_changes") == 0
    finally:
        w.close()
    restore_kv(store, tmp_path / "restored", now_ms=w.clock.ms)
    assert restored(tmp_path / "restored", ["acme"]) == live(w.truth)


def test_another_writer_of_the_same_epoch_fences_that_partition_only(
    tmp_path: Path, file_store: FileReplicaStore
) -> None:
    taken = partition_of(oid(1), PARTITIONS)
    other = partition_of(oid(2), PARTITIONS)
    assert taken != other
    w = make_world(tmp_path / "data", file_store)
    try:
        w.event("acme", 2, lambda o: o.put(b"k", b"v"))  # starts epoch 1 of `other`...
        assert w.replicator.flush(30)
        # ...while another writer claims to be epoch 1 of `taken` first
        file_store.put_new(start_key(taken, 1), b"not ours")
        w.event("acme", 1, lambda o: o.put(b"k", b"v"))
        w.event("acme", 2, lambda o: o.put(b"k", b"w"))
        assert w.replicator.flush(30)
        assert w.metric("dohost_replica_fenced_partitions_total") == 1
        assert w.replicator.last_error is not None and w.replicator.last_error.code is Code.FENCED
        assert file_store.list(segment_key(taken, 1, 1)) == []
        assert len(file_store.list(f"p{other:05d}/e00000000000000000001/s0")) == 2
    finally:
        w.close()


def test_a_corrupted_segment_stops_restore_naming_it(world: World, tmp_path: Path) -> None:
    world.event("acme", 1, lambda o: o.put(b"k", b"v"))
    assert world.replicator.flush(30)
    store = world.replicator.store
    p = partition_of(oid(1), PARTITIONS)
    key = segment_key(p, 1, 1)
    data = store.get(key)
    store.delete(key)
    store.put_new(key, data[:-3])  # cut short
    with pytest.raises(DohostError) as info:
        restore_kv(store, tmp_path / "restored", now_ms=world.clock.ms)
    assert info.value.code is Code.REPLICA_CORRUPT
    assert key in info.value.message and "truncated" in info.value.message


def test_restore_refuses_a_non_empty_directory_and_an_empty_replica(
    tmp_path: Path, file_store: FileReplicaStore
) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "something").write_bytes(b"")
    with pytest.raises(DohostError) as info:
        restore_kv(file_store, tmp_path / "busy", now_ms=0)
    assert info.value.code is Code.ALREADY_EXISTS and "not empty" in info.value.message
    with pytest.raises(DohostError) as info:
        restore_kv(file_store, tmp_path / "new", now_ms=0)
    assert info.value.code is Code.NOT_FOUND and "no dohost replica" in info.value.message
    assert not (tmp_path / "new").exists()


def test_an_older_epochs_late_segments_are_ignored_on_restore(
    tmp_path: Path, store: ReplicaStore
) -> None:
    """The old owner keeps shipping after a new claim started (it has not noticed yet):
    its late segment is in the store, and restore leaves it out and names it."""
    old = make_world(tmp_path / "old", store, epoch=1)
    new = make_world(tmp_path / "new", store, epoch=2)
    try:
        old.event("acme", 1, lambda o: o.put(b"k", b"1"))
        old.event("acme", 1, lambda o: o.put(b"k", b"2"))
        assert old.replicator.flush(30)
        new.event("acme", 1, lambda o: (o.put(b"k", b"2"), o.put(b"j", b"1")))  # new owner
        assert new.replicator.flush(30)
        old.event("acme", 1, lambda o: o.put(b"k", b"late"))  # never acknowledged in sync mode
        assert old.replicator.flush(30)
    finally:
        old.close()
        new.close()
    p = partition_of(oid(1), PARTITIONS)
    start = decode_start(store.get(start_key(p, 2)), p, 2, "start")
    assert start.base is not None and start.base[0] == 1
    late = segment_key(p, 1, start.base[1] + 1)
    assert store.get(late)  # the late segment is there...
    report = restore_kv(store, tmp_path / "restored", now_ms=new.clock.ms + 10_000)
    assert report.ignored == [late]  # ...and left out
    assert restored(tmp_path / "restored", ["acme"]) == {
        ("acme", oid(1)): ({b"k": b"2", b"j": b"1"}, None)
    }


def test_what_waits_for_a_failing_store_is_bounded_and_the_log_stays_a_prefix(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "replica"
    blocker.write_bytes(b"a file where the replica directory should be")
    store = FileReplicaStore(str(blocker))
    w = make_world(
        tmp_path / "data",
        store,
        sleep=lambda s: time.sleep(min(s, 0.01)),
        max_pending_bytes=3 * (128 + 1 + 1000),
    )
    try:
        for n in range(3):  # three changes of object 1 fit...
            w.event("acme", 1, lambda o, n=n: o.put(bytes([n]), b"x" * 1000))
        shipped_state = dict(w.truth)
        w.event("acme", 1, lambda o: o.put(b"too", b"x" * 1000))  # ...the fourth does not
        w.event("acme", 1, lambda o: o.put(b"later", b"y"))  # nor anything after it
        assert w.metric("dohost_replica_overflowed_partitions_total") == 1
        assert w.metric("dohost_replica_pending_changes") == 3
        assert w.metric("dohost_replica_pending_bytes") <= 3 * (128 + 1 + 1000)
        blocker.unlink()
        assert w.replicator.flush(30)
        assert w.metric("dohost_replica_pending_bytes") == 0
    finally:
        w.close()
    restore_kv(store, tmp_path / "restored", now_ms=w.clock.ms)
    assert restored(tmp_path / "restored", ["acme"]) == live(shipped_state)


def test_an_epoch_started_at_its_restore_leaves_out_a_segment_landing_before_its_first_commit(
    tmp_path: Path, store: ReplicaStore
) -> None:
    """A cluster node starts its epoch right after restoring (`start_epoch`, naming what
    it restored): the old owner's late segment, uploaded after that but before the new
    owner's first commit, is outside the history (a start written lazily at the first
    commit would have counted it)."""
    old = make_world(tmp_path / "old", store, epoch=1)
    new = make_world(tmp_path / "new", store, epoch=2)
    p = partition_of(oid(1), PARTITIONS)
    try:
        old.event("acme", 1, lambda o: o.put(b"k", b"1"))
        assert old.replicator.flush(30)
        new.replicator.start_epoch(p, 2, (1, 1))  # restored e1/s1
        old.event("acme", 1, lambda o: o.put(b"k", b"late"))  # lands before the new commit
        assert old.replicator.flush(30)
        new.event("acme", 1, lambda o: o.put(b"j", b"1"))
        assert new.replicator.flush(30)
    finally:
        old.close()
        new.close()
    late = segment_key(p, 1, 2)
    assert store.get(late)
    start = decode_start(store.get(start_key(p, 2)), p, 2, "start")
    assert start.base == (1, 1)
    report = restore_kv(store, tmp_path / "restored", now_ms=new.clock.ms + 10_000)
    assert report.ignored == [late]
    # (The new owner's own storage never had k=1: this world did not restore it.)
    assert restored(tmp_path / "restored", ["acme"]) == {
        ("acme", oid(1)): ({b"k": b"1", b"j": b"1"}, None)
    }


class AnswerLost:
    """A real file store whose next writes land but answer as failures (the connection
    dropped after the request reached the store): fault injection, as storage/faultvfs.py."""

    def __init__(self, inner: FileReplicaStore, lose: int) -> None:
        self.inner = inner
        self.description = inner.description
        self.lose = lose
        self.lost: list[str] = []

    def put_new(self, key: str, data: bytes) -> None:
        self.inner.put_new(key, data)
        if self.lose > 0 and not key.startswith("FORMAT"):
            self.lose -= 1
            self.lost.append(key)
            raise DohostError(Code.REPLICA_UNAVAILABLE, f"writing {key!r}: connection reset")

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def list(self, prefix: str) -> list[str]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


def test_a_write_whose_answer_was_lost_is_not_another_writer(
    tmp_path: Path, file_store: FileReplicaStore
) -> None:
    """The start record and the first segment land but their answers are lost: the
    retries find our own bytes there and go on; the partition is not fenced."""
    store = AnswerLost(file_store, lose=2)
    w = make_world(tmp_path / "data", store, sleep=lambda s: None)  # type: ignore[arg-type]
    try:
        w.event("acme", 1, lambda o: o.put(b"k", b"1"))
        w.event("acme", 1, lambda o: o.put(b"k", b"2"))
        assert w.replicator.flush(30)
        assert [k.rsplit("/", 1)[1] for k in store.lost] == ["start", f"s{1:020d}"]
        assert w.metric("dohost_replica_fenced_partitions_total") == 0
        assert w.metric("dohost_replica_upload_failures_total") == 2
    finally:
        w.close()
    restore_kv(file_store, tmp_path / "restored", now_ms=w.clock.ms)
    assert restored(tmp_path / "restored", ["acme"]) == live(w.truth)

"""Snapshots, retention and resync of a partition's replica log.

- Maintenance (`Replicator.maintain`, an injected clock): periodic snapshots from the
  store, retention of the PITR window; restore = snapshot + replay, exact at past times
  inside the window, refused before it.
- Resync: a partition whose replica lacks local changes (a run without a replica, a
  replica configured on an existing data set, a crash before shipping) starts its next
  epoch from a snapshot of the local state, so the replica is complete again; a clean
  stop needs none.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from test_host_replica import ServerProcess, fetch
from test_replica_gate import break_store, mend_store
from test_replicator import PARTITIONS, live, make_world, oid, restored

from dohost import Host
from dohost.core.errors import Code, DohostError
from dohost.core.partitions import partition_of
from dohost.core.replica_keys import parse_log_key
from dohost.replica.file_store import FileReplicaStore
from dohost.replica.maintenance import DAY_MS, MaintenancePolicy
from dohost.replica.restore import restore_kv
from dohost.replica.store import ReplicaStore
from dohost.storage.manager import StorageManager

HOUR_MS = 3_600_000


def kinds(store: ReplicaStore) -> dict[str, int]:
    out: dict[str, int] = {}
    for key in store.list(""):
        parsed = parse_log_key(key)
        if parsed is not None:
            out[parsed.kind] = out.get(parsed.kind, 0) + 1
    return out


def test_snapshots_and_retention_keep_the_window_restorable(
    tmp_path: Path, store: ReplicaStore
) -> None:
    policy = MaintenancePolicy(retention_ms=10 * DAY_MS, snapshot_every_ms=DAY_MS)
    w = make_world(tmp_path / "data", store, policy=policy, maintain_every_s=None)
    day0 = w.clock.ms
    try:
        truths = []
        for day in (0, 2, 13):
            w.clock.ms = day0 + day * DAY_MS
            for n in range(4):
                w.event("acme", n, lambda o, n=n, day=day: o.put(b"v", f"{n}@{day}".encode()))
            w.event("acme", 9, lambda o, day=day: o.put(f"k{day}".encode(), b"x"))
            truths.append((w.clock.ms - 1, dict(w.truth)))
            assert w.replicator.flush(60)
            w.replicator.maintain(w.clock.ms + HOUR_MS)
        parts = len({partition_of(oid(n), PARTITIONS) for n in (0, 1, 2, 3, 9)})
        # Day 0 is too young for a snapshot (a day each); days 2 and 13 get one.
        assert w.metric("dohost_replica_snapshots_total") == 2 * parts
        # Day 13's pass: the window starts at day 3; the day-2 snapshot is the base of
        # its oldest time, so every segment up to day 2 goes.
        assert w.metric("dohost_replica_deleted_objects_total") > 0
        assert kinds(store)["snapshot"] == 2 * parts
        now = w.clock.ms + HOUR_MS
        for i, (at, truth) in enumerate(truths[1:]):
            restore_kv(store, tmp_path / f"r{i}", now_ms=now, at_ms=at)
            assert restored(tmp_path / f"r{i}", ["acme"]) == live(truth)
        restore_kv(store, tmp_path / "newest", now_ms=now)
        assert restored(tmp_path / "newest", ["acme"]) == live(w.truth)
        with pytest.raises(DohostError) as info:
            restore_kv(store, tmp_path / "old", now_ms=now, at_ms=truths[0][0])
        assert info.value.code is Code.INVALID_ARGUMENT
        assert "before the retention window" in info.value.message
    finally:
        w.close()


def test_a_snapshot_is_due_after_many_segments(
    tmp_path: Path, file_store: FileReplicaStore
) -> None:
    policy = MaintenancePolicy(snapshot_every_ms=100 * DAY_MS, snapshot_after_segments=5)
    w = make_world(tmp_path / "data", file_store, policy=policy, maintain_every_s=None)
    try:
        w.event("acme", 1, lambda o: o.put(b"v", b"0"))
        assert w.replicator.flush(60)
        w.replicator.maintain()  # one segment, a fresh partition: not due
        for i in range(3):
            w.event("acme", 1, lambda o, i=i: o.put(b"v", str(i).encode()))
            assert w.replicator.flush(60)
        w.replicator.maintain()  # 4 segments: not due
        assert w.metric("dohost_replica_snapshots_total") == 0
        for i in range(5):
            w.event("acme", 1, lambda o, i=i: o.put(b"v", str(i).encode()))
            assert w.replicator.flush(60)
        w.replicator.maintain()  # 9 segments: due
        assert w.metric("dohost_replica_snapshots_total") == 1
        assert 0 < w.metric("dohost_replica_snapshot_age_seconds") < 3600
        restore_kv(file_store, tmp_path / "r", now_ms=w.clock.ms)
        assert restored(tmp_path / "r", ["acme"]) == live(w.truth)
    finally:
        w.close()


async def counter_values(host: Host, objects: list[str]) -> dict[str, str]:
    return {obj: (await fetch(host, "counter", obj))[1] for obj in objects}


async def test_a_run_without_the_replica_is_resynced(
    tmp_path: Path, file_store: FileReplicaStore, wasm: Any
) -> None:
    data = tmp_path / "data"

    def replica() -> FileReplicaStore:
        return FileReplicaStore(file_store.root)

    async with Host(data, durability="os", workers=2, replica=replica()) as host:
        await host.deploy("acme", "counter", wasm("counter"))
        for obj in ("a", "b"):
            assert (await fetch(host, "counter", obj, "POST", "/incr"))[0] == 200
    assert kinds(file_store).get("snapshot", 0) == 0  # a new data set: nothing to resync
    # A clean stop: the next replicated run needs no snapshot.
    async with Host(data, durability="os", workers=2, replica=replica()) as host:
        assert (await fetch(host, "counter", "a", "POST", "/incr"))[1] == "2"
    assert kinds(file_store).get("snapshot", 0) == 0
    # A run without the replica: its increments are not shipped...
    async with Host(data, durability="os", workers=2) as host:
        for obj in ("a", "b", "c"):
            assert (await fetch(host, "counter", obj, "POST", "/incr"))[0] == 200
    # ...so the next replicated run resyncs, before and whether or not it writes.
    async with Host(data, durability="os", workers=2, replica=replica()) as host:
        expect = await counter_values(host, ["a", "b", "c"])
        assert host.replicator is not None and host.replicator.flush(60)
    assert expect == {"a": "3", "b": "2", "c": "1"}
    assert kinds(file_store)["snapshot"] >= 1
    restore_kv(file_store, tmp_path / "restored", now_ms=10**13 - 1)
    manager = StorageManager(tmp_path / "restored", "os")
    try:
        got = {
            row.name: manager.open_object("acme", "counter", row.object_id).get(b"count")
            for row in manager.list_objects("acme", "counter").objects
        }
    finally:
        manager.close()
    assert got == {k: v.encode() for k, v in expect.items()}


def test_serve_killed_before_shipping_resyncs_at_restart(tmp_path: Path, wasm: Any) -> None:
    """`--replica-sync off`, the store broken, SIGKILL: the acknowledged increments are
    only local. The restarted server resyncs them, and a restore of the replica alone
    brings every one back."""
    root = tmp_path / "replica"
    root.mkdir()
    args = ("--replica", f"file://{root}", "--replica-sync", "off")
    server = ServerProcess(tmp_path / "data", *args, processes=1)
    token = server.new_tenant()
    with server.client(token) as c:
        assert c.put("/v1/classes/counter", content=wasm("counter")).status_code == 201
        assert c.post("/v1/classes/counter/objects/a/incr").text == "1"
        server.wait_for_metric(r"^dohost_replica_segments_uploaded_total [1-9]")
        aside = break_store(root)
        for obj in ("a", "b"):
            assert c.post(f"/v1/classes/counter/objects/{obj}/incr").status_code == 200
    server.stop(signal.SIGKILL)
    mend_store(root, aside)
    server = ServerProcess(tmp_path / "data", *args, processes=1)
    try:
        server.wait_for_metric(r"^dohost_replica_snapshots_total [1-9]")
    finally:
        assert server.stop() == 0
    restore_kv(FileReplicaStore(str(root)), tmp_path / "restored", now_ms=10**13 - 1)
    (name,) = os.listdir(tmp_path / "restored" / "tenants")
    manager = StorageManager(tmp_path / "restored", "os")
    try:
        got = {
            row.name: manager.open_object(name, "counter", row.object_id).get(b"count")
            for row in manager.list_objects(name, "counter").objects
        }
    finally:
        manager.close()
    assert got == {"a": b"2", "b": b"1"}


def test_restore_one_partition_into_a_live_data_directory(
    tmp_path: Path, file_store: FileReplicaStore
) -> None:
    """What a node taking over a partition does (failover): the partition's objects
    become the replica's, others are untouched, local objects the replica lacks go."""
    from dohost.replica.restore import restore_partition
    from dohost.storage.alarm_index import AlarmIndex

    w = make_world(tmp_path / "data", file_store, maintain_every_s=None)
    try:
        for n in range(8):
            w.event(
                "acme", n, lambda o, n=n: (o.put(b"v", str(n).encode()), o.set_alarm(10**12 + n))
            )
        assert w.replicator.flush(60)
    finally:
        w.close()
    target = partition_of(oid(3), PARTITIONS)
    assert partition_of(oid(3 + PARTITIONS), PARTITIONS) == target
    other = tmp_path / "other"
    other.mkdir()
    manager = StorageManager(other, "os")
    alarms = AlarmIndex(other / "alarms.db")
    try:
        stale = manager.open_object("acme", "counter", oid(3 + 16), "stale")
        stale.begin_event()
        stale.put(b"v", b"stale")
        assert stale.commit_event().wait(10) is None
        stale.close()
        report = restore_partition(file_store, manager, alarms, target)
        names = {
            row.name: manager.open_object("acme", "counter", row.object_id).get(b"v")
            for row in manager.list_objects("acme", "counter").objects
        }
        assert names == {"obj-3": b"3"} and report.objects == 1 and report.alarms == 1
        assert [e.due_ms for e in alarms.entries()] == [10**12 + 3]
    finally:
        alarms.close()
        manager.close()

"""Restore throughput from a replica store, and the time to restore one object whose
history is 10,000 log records (issue 18: target ≤ 1 s), whole (`restore_kv`) and as
`restore-object` reads it (`object_state_at`).

Writes through a real StorageManager whose kv shards hand their batches to a Replicator
(durability "os": the local fsync is not what is measured), waits until everything is
shipped, then times `restore_kv` into a new directory. Runs against a directory
(`file://`) and against SeaweedFS on loopback (tests/replica/seaweedfs_server.py).

    python bench/replica_restore.py [--objects 2000] [--records 10000] [--store file,s3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_REPO / "host"))
sys.path.insert(0, str(_REPO / "tests" / "replica"))

from seaweedfs_server import start_seaweedfs  # noqa: E402

from dohost.core.partitions import partition_of  # noqa: E402
from dohost.replica.file_store import FileReplicaStore  # noqa: E402
from dohost.replica.object_history import object_state_at  # noqa: E402
from dohost.replica.replicator import Replicator  # noqa: E402
from dohost.replica.restore import restore_kv  # noqa: E402
from dohost.replica.store import ReplicaStore  # noqa: E402
from dohost.storage.manager import StorageManager  # noqa: E402


def write(store: ReplicaStore, data: Path, objects: int, events_per_object: int) -> float:
    """Write `objects` objects, `events_per_object` committed events each (events of many
    objects in flight at once, so the shards group-commit); returns the seconds until
    everything was in the replica store."""
    rep = Replicator(store, partitions=4096, epoch_of=lambda p: 1)
    manager = StorageManager(data, "os", on_kv_commit=rep.committed)
    t0 = time.perf_counter()
    try:
        opened = [
            manager.open_object("bench", "counter", (i + 1).to_bytes(4, "big") * 8, f"o{i}")
            for i in range(objects)
        ]
        for n in range(events_per_object):
            tickets = []
            for obj in opened:
                obj.begin_event()
                obj.put(b"count", str(n).encode())
                obj.put(f"k{n % 16}".encode(), os.urandom(32))
                tickets.append(obj.commit_event())
            for t in tickets:
                assert t.wait(60) is None
        for obj in opened:
            obj.close()
        assert rep.flush(600), "not shipped in 10 minutes"
        return time.perf_counter() - t0
    finally:
        manager.close()
        rep.close()


def timed_restore(store: ReplicaStore, into: Path) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    report = restore_kv(store, into, now_ms=time.time_ns() // 1_000_000, durability="os")
    return time.perf_counter() - t0, report.objects, report.segments


def run(
    label: str, make_store: Callable[[str], ReplicaStore], work: Path, args: argparse.Namespace
) -> None:
    store_many = make_store("many")
    ship = write(store_many, work / f"{label}-many", args.objects, 3)
    took, objects, segments = timed_restore(store_many, work / f"{label}-many-restored")
    print(
        f"{label}: {args.objects} objects x 3 events shipped in {ship:.1f} s; restored "
        f"{objects} objects from {segments} segments in {took:.2f} s = {objects / took:,.0f} objects/s"
    )
    store_one = make_store("one")
    ship = write(store_one, work / f"{label}-one", 1, args.records)
    took, objects, segments = timed_restore(store_one, work / f"{label}-one-restored")
    print(
        f"{label}: one object, {args.records} records ({segments} segments, shipped in "
        f"{ship:.1f} s): restored in {took:.2f} s"
    )
    # restore-object's read (Host.restore_object, bookmarks): only the object's partition
    # is listed and replayed, only its own changes applied.
    oid = (1).to_bytes(4, "big") * 8
    now = time.time_ns() // 1_000_000
    t0 = time.perf_counter()
    state = object_state_at(store_one, partition_of(oid, 4096), "bench", oid, now, now)
    took = time.perf_counter() - t0
    assert state is not None and state.rows[b"count"] == str(args.records - 1).encode()
    print(f"{label}: restore-object's read of that object: {took:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--store", default="file,s3")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} (1 min)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "file" in args.store:
            run("file", lambda name: FileReplicaStore(str(work / f"replica-{name}")), work, args)
        if "s3" in args.store:
            server = start_seaweedfs(work / "seaweedfs", "bench")
            try:
                run("s3", lambda name: server.store("bench", name), work, args)
            finally:
                server.stop()


if __name__ == "__main__":
    main()

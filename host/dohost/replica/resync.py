"""Which partitions' replicas are complete, and the snapshots that make the others
complete again (the resync).

A partition's replica is complete when it holds every change its local copy holds. That
is so after a clean stop that shipped everything, and never sure after a crash (a
change committed locally but not yet uploaded, acknowledged or not), an overflow, a run
without `--replica`, or when a replica is first configured for an existing data set.

`DATA/replica.db` remembers, per partition, the store it was completely shipped to: a
row is written by a clean stop (`CleanMarks.mark`) and taken away (durably) by the next
start before it serves anything (`take`), so a crash leaves no row. At start, every
held partition without a row for this store is *dirty*: its kv objects are read from
the local copy before anything is served (storage/kv_scan.py), and the replicator
uploads them as a snapshot at (epoch, 0) right after the epoch's start record, before
any segment of the epoch. Restore then uses that snapshot for any time after it; what
lies before it stays as complete as it was shipped.

Every start of a host removes the rows (`take_all` when it runs without a replica), so a
run without `--replica` makes the next replicated run resync.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import apsw

from dohost.core.partitions import partition_of
from dohost.core.replica_log import ObjectState, PartitionState
from dohost.storage.kv_scan import scan_kv_objects

CLEAN_DB = "replica.db"
_SCHEMA = "CREATE TABLE IF NOT EXISTS clean(partition INTEGER PRIMARY KEY, store TEXT NOT NULL)"


class CleanMarks:
    """`DATA/replica.db`: partition -> the store it was completely shipped to."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self._db = apsw.Connection(str(Path(data_dir) / CLEAN_DB))
        self._db.setbusytimeout(10_000)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a take is on disk before serving
        self._db.execute(_SCHEMA)

    def take(self, partitions: Iterable[int], store: str) -> set[int]:
        """The partitions (of these) marked clean for `store`; their marks are removed."""
        wanted = sorted(set(partitions))
        with self._db:
            clean = {
                int(p)
                for (p,) in self._db.execute("SELECT partition FROM clean WHERE store=?", (store,))
            }
            self._db.executemany("DELETE FROM clean WHERE partition=?", ((p,) for p in wanted))
        return clean.intersection(wanted)

    def mark(self, partitions: Iterable[int], store: str) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO clean(partition, store) VALUES(?, ?)",
                ((p, store) for p in partitions),
            )

    def close(self) -> None:
        self._db.close()


def forget_clean(data_dir: str | os.PathLike[str], partitions: Iterable[int]) -> None:
    """A host starting without a replica: its commits will not be shipped."""
    if not (Path(data_dir) / CLEAN_DB).exists():
        return
    marks = CleanMarks(data_dir)
    try:
        marks.take(partitions, "")
    finally:
        marks.close()


def local_partitions(
    data_dir: str | os.PathLike[str], partitions: int, wanted: set[int]
) -> dict[int, PartitionState]:
    """The kv objects of the `wanted` partitions, as the local copy holds them."""
    out: dict[int, PartitionState] = {}
    if not wanted:
        return out
    for tenant, obj in scan_kv_objects(
        data_dir, lambda oid: partition_of(oid, partitions) in wanted
    ):
        state = out.setdefault(partition_of(obj.object_id, partitions), {})
        state[(tenant, obj.object_id)] = ObjectState(
            obj.class_name, obj.name, obj.created_ms, dict(obj.rows), obj.alarm
        )
    return out

"""`dohost restore`: rebuild the kv objects of a data set from its replica log.

For each partition in the store: follow its start records to its history
(core/replica_chain.py), load the snapshot the plan names (if any), replay the segments
after it (with `--at`, the changes committed at or before that time), then write every
object whole into a new data directory through the storage manager (group-committed)
and every pending alarm into the host-wide alarm index, so that the alarms fire when the
restored data set is served.

A damaged object stops the restore with `replica_corrupt` naming it; a hole in the
acknowledged history likewise. The target must be a new or empty directory, so a restore
can never mix with live data.

The catalog (tenants, tokens, classes, versions, modules: replica/catalog.py) is
restored first when the store holds one, so the directory serves as it is. Not yet
(issue 18): sqlite objects are not replicated.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dohost.core.errors import Code, DohostError
from dohost.core.replica_chain import (
    PartitionListing,
    Position,
    check_restore_time,
    follow_chain,
    plan_restore,
)
from dohost.core.replica_keys import (
    FORMAT_KEY,
    LogKey,
    parse_log_key,
    partition_prefix,
    segment_key,
    start_key,
)
from dohost.core.replica_log import (
    PartitionState,
    apply_change,
    decode_format,
    decode_segment,
    decode_snapshot,
    decode_start,
)
from dohost.replica.catalog import restore_catalog
from dohost.replica.store import ReplicaStore
from dohost.storage.alarm_index import AlarmEntry, AlarmIndex
from dohost.storage.api import Backend, Durability
from dohost.storage.manager import RestoredKvObject, StorageManager
from dohost.storage.partition_count import partition_count

READ_THREADS = 8  # concurrent store reads (S3 round trips dominate a restore)


@dataclass
class RestoreReport:
    partitions: int = 0  # partitions with a history
    objects: int = 0
    alarms: int = 0
    segments: int = 0  # segments read
    changes: int = 0  # changes applied
    ends: dict[int, Position | None] = field(default_factory=dict)  # partition -> last position
    ignored: list[str] = field(default_factory=list)  # segments not in any history
    last_committed_ms: int = 0  # the commit time of the last change applied
    catalog: bool = False  # the system database was restored
    modules: int = 0


def rebuild_partition(
    store: ReplicaStore,
    partition: int,
    keys: list[LogKey],
    at_ms: int | None,
    only: tuple[str, bytes] | None = None,
) -> tuple[PartitionState, RestoreReport]:
    """The partition's objects as of its newest state, or as of `at_ms`; with `only`
    (tenant, object id), that object alone (restore-object, bookmarks)."""
    report = RestoreReport()
    listing = PartitionListing.of(partition, keys)
    starts = {
        e: decode_start(store.get(start_key(partition, e)), partition, e, start_key(partition, e))
        for e in listing.start_epochs
    }
    plan = plan_restore(listing, follow_chain(listing, starts), at_ms)
    report.ignored += plan.ignored
    report.ends[partition] = plan.end
    report.partitions = 0 if plan.end is None else 1
    state: PartitionState = {}
    if plan.snapshot is not None and plan.snapshot_key is not None:
        epoch, seq = plan.snapshot
        state = decode_snapshot(
            store.get(plan.snapshot_key), partition, epoch, seq, plan.snapshot_key
        ).objects
        if only is not None:
            state = {only: state[only]} if only in state else {}
    keys_in_order = [segment_key(partition, epoch, seq) for epoch, seq in plan.segments]
    # One object (restore-object, bookmarks) reads one partition: its segments are
    # fetched on a few threads ahead of the replay (a whole restore already reads its
    # partitions in parallel), in order; what an early stop leaves is cancelled.
    pool = ThreadPoolExecutor(READ_THREADS) if only is not None and keys_in_order else None
    fetched = (
        pool.map(store.get, keys_in_order) if pool is not None else map(store.get, keys_in_order)
    )
    try:
        for (epoch, seq), key, data in zip(plan.segments, keys_in_order, fetched, strict=True):
            segment = decode_segment(data, partition, epoch, seq, key)
            report.segments += 1
            for change in segment.changes:
                if at_ms is not None and change.committed_ms > at_ms:
                    return state, report
                if only is not None and (change.tenant, change.object_id) != only:
                    continue
                apply_change(state, change)
                report.changes += 1
                report.last_committed_ms = max(report.last_committed_ms, change.committed_ms)
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    return state, report


def restore_kv(
    store: ReplicaStore,
    data_dir: Path,
    *,
    now_ms: int,
    at_ms: int | None = None,
    durability: str = Durability.FSYNC,
    catalog: bool = True,
) -> RestoreReport:
    """Rebuild the replica's data set (as of `at_ms`, or newest) in the new directory
    `data_dir`: the catalog (system database and modules, if the store holds one and
    `catalog`), the kv objects and their alarms."""
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise DohostError(
            Code.ALREADY_EXISTS,
            f"{data_dir} is not empty: restore only into a new or empty directory, so "
            "restored data never mixes with other data",
        )
    if at_ms is not None:
        check_restore_time(at_ms, now_ms)
    try:
        partitions = decode_format(store.get(FORMAT_KEY), FORMAT_KEY)
    except DohostError as e:
        if e.code is Code.NOT_FOUND:
            raise DohostError(
                Code.NOT_FOUND, f"there is no dohost replica at {store.description}"
            ) from None
        raise
    by_partition: dict[int, list[LogKey]] = defaultdict(list)
    for key in store.list(""):
        parsed = parse_log_key(key)
        if parsed is not None and parsed.partition < partitions:
            by_partition[parsed.partition].append(parsed)
    report = RestoreReport()
    by_tenant: dict[str, list[RestoredKvObject]] = defaultdict(list)
    alarms: list[AlarmEntry] = []
    # Partitions are independent: read them on a few threads (a store round trip each
    # read), then merge in partition order.
    with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="dohost-restore") as pool:
        rebuilt = pool.map(
            lambda p: rebuild_partition(store, p, by_partition[p], at_ms), sorted(by_partition)
        )
        for state, part in rebuilt:
            report.partitions += part.partitions
            report.segments += part.segments
            report.changes += part.changes
            report.ends.update(part.ends)
            report.ignored += part.ignored
            for (tenant, oid), obj in sorted(state.items()):
                if not obj.rows and obj.alarm is None:
                    continue  # emptied: to its guest the same as never written
                by_tenant[tenant].append(
                    RestoredKvObject(
                        oid, obj.class_name, obj.name, obj.created_ms, obj.rows, obj.alarm
                    )
                )
                if obj.alarm is not None:
                    alarms.append(
                        AlarmEntry(tenant, obj.class_name, oid, obj.name, Backend.KV, obj.alarm)
                    )
    data_dir.mkdir(parents=True, exist_ok=True)
    # The data set keeps the replica's partition count (objects keep their partitions).
    partition_count(data_dir, partitions)
    if catalog:
        try:
            report.modules = restore_catalog(store, data_dir, at_ms)
            report.catalog = True
        except DohostError as e:
            if e.code is not Code.NOT_FOUND:
                raise
    manager = StorageManager(data_dir, durability)
    try:
        for tenant, objects in sorted(by_tenant.items()):
            manager.write_restored_kv(tenant, objects)
            report.objects += len(objects)
    finally:
        manager.close()
    if alarms:
        index = AlarmIndex(data_dir / "alarms.db", durability)
        try:
            for entry in alarms:
                index.upsert_durable(entry)
        finally:
            index.close()
    report.alarms = len(alarms)
    return report


def restore_partition(
    store: ReplicaStore,
    manager: StorageManager,
    alarms: AlarmIndex,
    partition: int,
    *,
    at_ms: int | None = None,
) -> RestoreReport:
    """Make one partition's kv objects in a live data directory what the replica holds
    (its newest state, or as of `at_ms`): each replicated object is written whole, and
    the local objects of the partition the replica does not hold are deleted. For a node
    taking over a partition (failover: the caller holds its claim and serves none of its
    objects yet); `manager` and `alarms` are that node's storage and alarm index."""
    from dohost.core.partitions import partition_of
    from dohost.storage.kv_scan import scan_kv_objects

    partitions = decode_format(store.get(FORMAT_KEY), FORMAT_KEY)
    keys = [k for k in map(parse_log_key, store.list(partition_prefix(partition))) if k is not None]
    state, report = rebuild_partition(store, partition, keys, at_ms)
    kept = {ident for ident, obj in state.items() if obj.rows or obj.alarm is not None}
    for tenant, obj in scan_kv_objects(
        manager.data_dir, lambda oid: partition_of(oid, partitions) == partition
    ):
        if (tenant, obj.object_id) not in kept:
            manager.delete_object(tenant, obj.class_name, obj.object_id)
    by_tenant: dict[str, list[RestoredKvObject]] = defaultdict(list)
    for (tenant, oid), o in sorted(state.items()):
        if (tenant, oid) in kept:
            by_tenant[tenant].append(
                RestoredKvObject(oid, o.class_name, o.name, o.created_ms, o.rows, o.alarm)
            )
            if o.alarm is not None:
                alarms.upsert_durable(
                    AlarmEntry(tenant, o.class_name, oid, o.name, Backend.KV, o.alarm)
                )
                report.alarms += 1
    for tenant, objects in sorted(by_tenant.items()):
        manager.write_restored_kv(tenant, objects)
        report.objects += len(objects)
    return report

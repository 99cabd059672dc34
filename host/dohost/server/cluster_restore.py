"""A cluster node restores the partitions it just claimed from the replica store, before
it serves them (server/cluster.py calls this through `Host.claim(before_serving=...)`).

The replica store is the truth of a moved partition: the old owner acknowledged nothing
before its segment was in the store and its lease re-checked (the synchronous output
gate, docs/replication.md). For each claimed partition: follow its chain and replay it
(replica/restore.py's `rebuild_partition`), write every object whole into this node's
storage under the new claim's epoch (fenced like any commit), put their pending alarms
in the alarm index, and delete the local objects of those partitions that the history
does not have (a stale copy from an earlier ownership of this node). kv objects only:
sqlite-backed objects are not replicated yet (issue 18).

The new epoch's start record is written right after the restore, naming the last
(epoch, seq) restored: a segment the old owner uploads later (it can only be one it
never acknowledged, its lease having lapsed) is outside the history for good. (For a
partition with no history yet, the start is written at the first commit as usual.)

Costs, known: the restored objects are written as new changes, so they are shipped
again as the first segment of the new epoch (whole objects: replaying them is harmless);
finding stale local objects lists every local kv object once per claim pass.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dohost.core.partitions import partition_of
from dohost.core.replica_keys import parse_log_key, partition_prefix
from dohost.replica.restore import rebuild_partition
from dohost.replica.store import ReplicaStore
from dohost.storage.alarm_index import AlarmEntry
from dohost.storage.api import Backend
from dohost.storage.manager import RestoredKvObject

if TYPE_CHECKING:
    from dohost.server.host import Host

log = logging.getLogger("dohost.cluster")

LIST_PAGE = 1000


@dataclass
class Restored:
    partitions: int = 0
    objects: int = 0
    alarms: int = 0
    stale: int = 0  # local objects the history does not have, deleted


def restore_claimed(host: Host, store: ReplicaStore, claimed: dict[int, int]) -> Restored:
    """(Blocking.) Make this node's storage of the `claimed` partitions (partition ->
    new epoch) what their replica history says."""
    out = Restored()
    count = host.partitions
    keep: set[tuple[str, bytes]] = set()
    by_tenant: dict[str, list[RestoredKvObject]] = defaultdict(list)
    alarms: list[AlarmEntry] = []
    for p in sorted(claimed):
        keys = [k for k in map(parse_log_key, store.list(partition_prefix(p))) if k is not None]
        if not keys:
            continue
        state, report = rebuild_partition(store, p, keys, None)
        out.partitions += report.partitions
        if host.replicator is not None:
            # The new epoch's start names exactly what was restored, before anything of
            # it is written (see the module doc).
            host.replicator.start_epoch(p, claimed[p], report.ends.get(p))
        for (tenant, oid), obj in sorted(state.items()):
            if not obj.rows and obj.alarm is None:
                continue
            keep.add((tenant, oid))
            by_tenant[tenant].append(
                RestoredKvObject(oid, obj.class_name, obj.name, obj.created_ms, obj.rows, obj.alarm)
            )
            if obj.alarm is not None:
                alarms.append(
                    AlarmEntry(tenant, obj.class_name, oid, obj.name, Backend.KV, obj.alarm)
                )

    def fence(oid: bytes) -> tuple[int, int]:
        p = partition_of(oid, count)
        return p, claimed[p]

    for entry in alarms:  # the index first: it is a superset of the objects' alarms
        host.alarm_index.upsert_durable(entry)
    for tenant, objects in sorted(by_tenant.items()):
        host.storage.write_restored_kv(tenant, objects, fence)
        out.objects += len(objects)
    out.alarms = len(alarms)
    out.stale = _delete_stale(host, set(claimed), keep)
    if out.objects or out.stale:
        log.info(
            "restored %d objects (%d alarms) of %d partitions from the replica; deleted %d "
            "stale local objects",
            out.objects,
            out.alarms,
            len(claimed),
            out.stale,
        )
    return out


def _delete_stale(host: Host, partitions: set[int], keep: set[tuple[str, bytes]]) -> int:
    deleted = 0
    for row in host.system.classes():
        if row.storage != Backend.KV:
            continue
        after: bytes | None = None
        while True:
            page = host.storage.list_objects(row.tenant, row.name, after=after, limit=LIST_PAGE)
            for info in page.objects:
                oid = info.object_id
                if (
                    partition_of(oid, host.partitions) in partitions
                    and (row.tenant, oid) not in keep
                ):
                    host.storage.delete_object(row.tenant, row.name, oid)
                    deleted += 1
            if page.next_after is None:
                break
            after = page.next_after
    return deleted

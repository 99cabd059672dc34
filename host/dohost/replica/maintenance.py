"""Periodic snapshots and log retention of the partitions a node ships.

For each partition, from the replica store itself (so a snapshot holds exactly the
history before it, whatever the local copy did since):
- **Snapshot** when segments follow the newest snapshot on the chain and that snapshot
  (else the history's first start record) is older than `snapshot_every_ms`, or
  `snapshot_after_segments` of them wait: rebuild the partition as restore does, upload the state at the history's end
  (epoch, seq), stamped with the newest commit time it holds. It is uploaded only after
  every segment it covers is in the store (they were read from it), as the chain's
  planning assumes (core/replica_chain.py).
- **Retention**: delete what no restore inside the window (`retention_ms`, the PITR
  window: 30 days by default) needs (`plan_retention`): the segments and snapshots before
  the newest snapshot taken at or before the window's start. Start records stay.

Times come from the caller (`now_ms`), so tests drive it with an injected clock.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from dohost.core.replica_chain import PartitionListing, follow_chain, plan_restore, plan_retention
from dohost.core.replica_keys import parse_log_key, partition_prefix, snapshot_key, start_key
from dohost.core.replica_log import Snapshot, decode_start, encode_snapshot
from dohost.replica.restore import rebuild_partition
from dohost.replica.store import ReplicaKeyExists, ReplicaStore

DAY_MS = 86_400_000
RETENTION_MS = 30 * DAY_MS  # Durable Objects keep 30 days of point-in-time recovery
SNAPSHOT_EVERY_MS = 3_600_000
SNAPSHOT_AFTER_SEGMENTS = 1_000


@dataclass(frozen=True, slots=True)
class MaintenancePolicy:
    retention_ms: int = RETENTION_MS
    snapshot_every_ms: int = SNAPSHOT_EVERY_MS
    snapshot_after_segments: int = SNAPSHOT_AFTER_SEGMENTS


@dataclass
class PartitionMaintenance:
    """What one pass did to one partition."""

    snapshot: str | None = None  # the key of the snapshot written
    newest_snapshot_ms: int | None = None  # after this pass
    deleted: int = 0


def maintain_partition(
    store: ReplicaStore, partition: int, now_ms: int, policy: MaintenancePolicy
) -> PartitionMaintenance:
    done = PartitionMaintenance()
    keys = [k for k in map(parse_log_key, store.list(partition_prefix(partition))) if k]
    listing = PartitionListing.of(partition, keys)
    starts = {
        e: decode_start(store.get(start_key(partition, e)), partition, e, start_key(partition, e))
        for e in listing.start_epochs
    }
    chain = follow_chain(listing, starts)
    plan = plan_restore(listing, chain)
    newest = listing.snapshots[plan.snapshot] if plan.snapshot is not None else None
    done.newest_snapshot_ms = newest
    # Due when many segments follow the newest snapshot, or when it (else the history's
    # first start record) is a snapshot period old: retention can then drop what lies
    # before it.
    since = (
        newest
        if newest is not None
        else min((s.written_ms for s in starts.values()), default=now_ms)
    )
    due = plan.segments and (
        now_ms - since >= policy.snapshot_every_ms
        or len(plan.segments) >= policy.snapshot_after_segments
    )
    if due and plan.end is not None:
        state, report = rebuild_partition(store, partition, keys, None)
        taken = max(report.last_committed_ms, newest or 0)
        epoch, seq = plan.end
        key = snapshot_key(partition, epoch, seq, taken)
        # Already there: an earlier pass wrote it (its answer lost), the same state.
        with contextlib.suppress(ReplicaKeyExists):
            store.put_new(key, encode_snapshot(Snapshot(partition, epoch, seq, taken, state)))
        listing.snapshots[(epoch, seq)] = taken
        done.snapshot, done.newest_snapshot_ms = key, taken
    for key in plan_retention(listing, chain, now_ms, policy.retention_ms):
        store.delete(key)
        done.deleted += 1
    return done

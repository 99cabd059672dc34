"""One object's state as of a time, read from the replica log (restore-object, fork and
guests' bookmarks).

Only the object's partition is listed and read: its history is followed as a whole
restore follows it (core/replica_chain.py: start records, the newest snapshot at or
before the time, then the segments after it), and only the object's own changes are
replayed (`restore.rebuild_partition(..., only=...)`).
"""

from __future__ import annotations

from dohost.core.replica_chain import check_restore_time
from dohost.core.replica_keys import LogKey, parse_log_key, partition_prefix
from dohost.core.replica_log import ObjectState
from dohost.replica.restore import rebuild_partition
from dohost.replica.store import ReplicaStore


def object_state_at(
    store: ReplicaStore,
    partition: int,
    tenant: str,
    object_id: bytes,
    at_ms: int,
    now_ms: int,
) -> ObjectState | None:
    """The kv object's rows and alarm as committed at or before `at_ms`; None if the
    replica holds no state of it then (never written, or deleted, by that time).

    INVALID_ARGUMENT for a time in the future or before what the store keeps;
    REPLICA_CORRUPT / REPLICA_UNAVAILABLE as the store answers."""
    check_restore_time(at_ms, now_ms)
    keys: list[LogKey] = []
    for key in store.list(partition_prefix(partition)):
        parsed = parse_log_key(key)
        if parsed is not None and parsed.partition == partition:
            keys.append(parsed)
    state, _ = rebuild_partition(store, partition, keys, at_ms, only=(tenant, object_id))
    obj = state.get((tenant, object_id))
    if obj is None or (not obj.rows and obj.alarm is None):
        return None
    return obj

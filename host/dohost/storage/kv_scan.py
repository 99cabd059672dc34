"""Read every kv object of a data directory whole, straight from the shard files: what a
replica's resync snapshot holds (replica/resync.py), and what a restore wrote.

Each shard is read in one read transaction (a consistent view of that shard even while
other processes of `serve --processes N` write theirs). Objects are yielded shard by
shard; `keep(object_id)` chooses which (a node keeps its own partitions' objects).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import apsw

from dohost.storage.kv_shard import BUSY_TIMEOUT_MS
from dohost.storage.manager import RestoredKvObject


def _shard_files(data_dir: Path) -> Iterator[tuple[str, str]]:
    tenants = data_dir / "tenants"
    if not tenants.is_dir():
        return
    for tenant in sorted(os.listdir(tenants)):
        kv = tenants / tenant / "kv"
        if not kv.is_dir():
            continue
        for name in sorted(os.listdir(kv)):
            if name.startswith("shard-") and name.endswith(".db"):
                yield tenant, str(kv / name)


def scan_kv_objects(
    data_dir: str | os.PathLike[str], keep: Callable[[bytes], bool] = lambda oid: True
) -> Iterator[tuple[str, RestoredKvObject]]:
    """(tenant, object) for every kv object with rows or an alarm whose id `keep`s."""
    for tenant, path in _shard_files(Path(data_dir)):
        # Read-write (nothing is written): a read-only connection cannot open a WAL database
        # whose -shm file is missing.
        conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE)
        try:
            conn.setbusytimeout(BUSY_TIMEOUT_MS)
            conn.execute("BEGIN")
            registry = {
                bytes(oid): (str(cls), name, int(created or 0))
                for oid, cls, name, created in conn.execute(
                    "SELECT object_id, class, name, created_ms FROM objects"
                )
                if keep(bytes(oid))
            }
            rows: dict[bytes, dict[bytes, bytes]] = {}
            for oid, key, value in conn.execute("SELECT object_id, key, value FROM kv"):
                if bytes(oid) in registry:
                    rows.setdefault(bytes(oid), {})[bytes(key)] = bytes(value)
            alarms = {
                bytes(oid): int(due)
                for oid, due in conn.execute("SELECT object_id, due_ms FROM alarms")
                if bytes(oid) in registry
            }
            conn.execute("COMMIT")
        finally:
            conn.close()
        for oid, (cls, name, created) in registry.items():
            if oid in rows or oid in alarms:
                yield (
                    tenant,
                    RestoredKvObject(oid, cls, name, created, rows.get(oid, {}), alarms.get(oid)),
                )

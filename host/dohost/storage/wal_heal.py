"""Healing a WAL after a failed fsync: the one recovery both backends use (kv shards
before their next batch, sqlite-backed objects when they reopen; ARCHITECTURE.md, "A
failed fsync is healed, not ignored").

A failed fsync leaves unknown which WAL frames reached the disk (Linux may even mark the
failed pages clean), so another fsync of the WAL proves nothing about them. A TRUNCATE
checkpoint instead copies every committed frame into the database file (SQLite syncs the
WAL before and the database after, through the VFS) and empties the WAL; our own fsync
of the database and of the emptied WAL then proves the device takes writes again. A
restart would give no more: its recovery reads the same WAL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dohost.storage.fsutil import Fsync, fsync_path


def heal_wal(conn: Any, db_path: str, fsync: Fsync | None, sync_wal: Callable[[], None]) -> bool:
    """Checkpoint the WAL of `conn` into `db_path` and make both durable (`fsync` the
    database unless None; `sync_wal` the WAL, as the caller syncs it). False when a
    reader held an old snapshot and the checkpoint could not finish: try again later.
    apsw.Error and OSError propagate: the storage stays broken."""
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0]
    if busy:
        return False
    if fsync is not None:
        fsync_path(db_path, fsync)
    sync_wal()
    return True

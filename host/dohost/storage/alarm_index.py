"""The host-wide alarm index: which object's alarm is due when (`DATA/alarms.db`).

The index is a **superset of the truth** (DESIGN.md, "Alarms"): an entry is written,
durably, *before* the commit of the event that set the alarm, so an alarm whose event
committed is always in the index, even after a crash between the two writes. The
object's own record is the truth: when an entry fires, the object's storage is asked
whether it still has that alarm. Entries are removed lazily (no fsync): a removal lost
in a crash only causes one extra check.

Durable upserts from many threads share fsyncs: the first caller to find no flush in
progress becomes the leader, writes every pending entry in one transaction, and wakes
the others (leader/follower group commit).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import apsw

from dohost.core.errors import Code, DohostError
from dohost.storage.api import Durability

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms(
    tenant TEXT NOT NULL,
    class TEXT NOT NULL,
    object_id BLOB NOT NULL,
    name TEXT,
    backend TEXT NOT NULL,
    due_ms INTEGER NOT NULL,
    next_ms INTEGER NOT NULL,
    retry_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(tenant, class, object_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alarms_next ON alarms(next_ms);
"""

AlarmKey = tuple[str, str, bytes]
REMOVAL_BATCH = 512  # queued removals applied together


@dataclass(frozen=True, slots=True)
class AlarmEntry:
    tenant: str
    class_name: str
    object_id: bytes
    name: str | None
    backend: str
    due_ms: int  # the time the alarm was set for (what the object's own record holds)
    next_ms: int = -1  # when it fires next (later than due_ms while retrying); -1: due_ms
    retry_count: int = 0

    def __post_init__(self) -> None:
        if self.next_ms < 0:
            object.__setattr__(self, "next_ms", self.due_ms)

    @property
    def key(self) -> AlarmKey:
        return (self.tenant, self.class_name, self.object_id)


class AlarmIndex:
    def __init__(self, path: Path, durability: str = Durability.FSYNC) -> None:
        self._db = apsw.Connection(str(path))
        self._db.setbusytimeout(5000)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: each index transaction is fsync'd when it commits (the leader's batch).
        self._db.execute(
            "PRAGMA synchronous=" + ("FULL" if durability == Durability.FSYNC else "OFF")
        )
        with self._db:
            self._db.execute(SCHEMA)
        # A second connection for the lazy writes (removals, retry notes): no fsync.
        self._lazy = apsw.Connection(str(path))
        self._lazy.setbusytimeout(5000)
        self._lazy.execute("PRAGMA synchronous=OFF")
        # Removals wait here and are applied in one transaction (flush_removals): the
        # alarm loop fires thousands per second and must not write the db for each.
        self._removals: dict[AlarmKey, int | None] = {}
        self._lock = threading.Lock()  # serializes use of the connections
        self._cv = threading.Condition(threading.Lock())
        self._pending: dict[AlarmKey, AlarmEntry] = {}
        self._flushing = False
        self._next_batch = 0
        self._done_batch = -1
        self._errors: dict[int, DohostError] = {}
        self.batches = 0  # for tests and metrics

    def close(self) -> None:
        self.flush_removals()
        with self._lock:
            self._lazy.close()
            self._db.close()

    def upsert_durable(self, entry: AlarmEntry) -> None:
        """Record `entry` and return once it is durable (raises STORAGE_ERROR if not)."""
        with self._lock:
            # A queued removal of this object's previous entry (possibly due at the very
            # same ms) must not delete the new one.
            self._removals.pop(entry.key, None)
        with self._cv:
            self._pending[entry.key] = entry
            mine = self._next_batch
            while self._done_batch < mine:
                if self._flushing:
                    self._cv.wait()
                    continue
                self._flushing = True
                batch, self._pending = self._pending, {}
                number = self._next_batch
                self._next_batch += 1
                self._cv.release()
                error: DohostError | None = None
                try:
                    self._write(list(batch.values()))
                except apsw.Error as e:
                    error = DohostError(
                        Code.STORAGE_ERROR, f"the alarm index could not be written: {e}"
                    )
                finally:
                    self._cv.acquire()
                    self._flushing = False
                    self._done_batch = number
                    if error is not None:
                        self._errors[number] = error
                    self._cv.notify_all()
            error = self._errors.get(mine)
        if error is not None:
            raise error

    def _write(self, entries: list[AlarmEntry]) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO alarms(tenant, class, object_id, name, backend, due_ms,"
                " next_ms, retry_count) VALUES(?,?,?,?,?,?,?,0)",
                [
                    (e.tenant, e.class_name, e.object_id, e.name, e.backend, e.due_ms, e.due_ms)
                    for e in entries
                ],
            )
        self.batches += 1

    def record_retry(self, key: AlarmKey, due_ms: int, next_ms: int, retry_count: int) -> None:
        """Remember a scheduled retry (no fsync: losing it only restarts the count)."""
        tenant, cls, oid = key
        with self._lock, self._lazy:
            self._lazy.execute(
                "UPDATE alarms SET next_ms=?, retry_count=?"
                " WHERE tenant=? AND class=? AND object_id=? AND due_ms=?",
                (next_ms, retry_count, tenant, cls, oid, due_ms),
            )

    def remove(self, key: AlarmKey, due_ms: int | None = None) -> None:
        """Forget an entry (only the one due at `due_ms`, when given: a newer one stays).
        Lazy: queued until flush_removals (a lost removal only costs one extra check)."""
        with self._lock:
            self._removals[key] = due_ms
            n = len(self._removals)
        if n >= REMOVAL_BATCH:
            self.flush_removals()

    def flush_removals(self) -> None:
        with self._lock:
            removals, self._removals = self._removals, {}
            if not removals:
                return
            with self._lazy:
                for (tenant, cls, oid), due_ms in removals.items():
                    if due_ms is None:
                        self._lazy.execute(
                            "DELETE FROM alarms WHERE tenant=? AND class=? AND object_id=?",
                            (tenant, cls, oid),
                        )
                    else:
                        self._lazy.execute(
                            "DELETE FROM alarms WHERE tenant=? AND class=? AND object_id=? AND due_ms=?",
                            (tenant, cls, oid, due_ms),
                        )

    def rename_class(self, tenant: str, old: str, new: str) -> None:
        """Entries of class `old` now belong to `new` (durably: they are the superset
        that keeps alarms from being lost). Idempotent."""
        self.flush_removals()
        with self._lock, self._db:
            # OR REPLACE: stale entries left under the new name (a deleted class's)
            # must not block the move; the moved ones are the truth.
            self._db.execute(
                "UPDATE OR REPLACE alarms SET class=? WHERE tenant=? AND class=?",
                (new, tenant, old),
            )

    def remove_tenant(self, tenant: str, class_name: str | None = None) -> None:
        with self._lock, self._db:
            if class_name is None:
                self._db.execute("DELETE FROM alarms WHERE tenant=?", (tenant,))
            else:
                self._db.execute(
                    "DELETE FROM alarms WHERE tenant=? AND class=?", (tenant, class_name)
                )

    def entries(self, tenant: str | None = None, class_name: str | None = None) -> list[AlarmEntry]:
        """Every entry, earliest first (optionally of one tenant / class)."""
        self.flush_removals()
        with self._lock:
            return _entries(self._db, tenant, class_name)


def _entries(conn: apsw.Connection, tenant: str | None, class_name: str | None) -> list[AlarmEntry]:
    q = "SELECT tenant, class, object_id, name, backend, due_ms, next_ms, retry_count FROM alarms"
    args: list[str] = []
    conds = []
    if tenant is not None:
        conds.append("tenant=?")
        args.append(tenant)
    if class_name is not None:
        conds.append("class=?")
        args.append(class_name)
    if conds:
        q += " WHERE " + " AND ".join(conds)
    q += " ORDER BY next_ms, tenant, class, object_id"
    rows = conn.execute(q, args).fetchall()
    return [AlarmEntry(*r) for r in rows]  # type: ignore[arg-type]


def read_entries(
    path: Path, tenant: str | None = None, class_name: str | None = None
) -> list[AlarmEntry]:
    """The entries of an alarm index, read through a read-only connection: safe beside a
    running host (WAL readers never block its writers, nor write anything)."""
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.CantOpenError as e:
        raise DohostError(Code.NOT_FOUND, f"cannot open {path}: {e}") from e
    try:
        conn.setbusytimeout(5000)
        return _entries(conn, tenant, class_name)
    except apsw.Error as e:
        raise DohostError(Code.STORAGE_ERROR, f"cannot read {path}: {e}") from e
    finally:
        conn.close()

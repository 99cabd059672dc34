"""`ObjectStorage` of one activation of a `sqlite`-backend object: one database file.

The file is created on the first write (reads of an object that has no file answer "empty"
without creating one), with an fsync of the file and of its directory. Its KV data live in
`_dohost_kv`; `_dohost_meta` holds the object's id, class, name, creation time and the sum
of len(key)+len(value) of its KV data (for the quota).

An event is a real SQLite transaction on the object's own connection, opened by the
event's first storage call (or by `.connection`, through which SQL runs in the same
transaction). `commit_event` commits without an fsync (WAL, `synchronous=NORMAL`) and asks
the shared `WalFlusher` to make the commit durable; its ticket resolves after the fsync.
`rollback_event` rolls the transaction back.

If SQLite itself abandons the transaction in the middle of an event (it may on I/O errors
or a full disk), the event's earlier writes are gone: every later call of that event, and
its commit, report STORAGE_ERROR. After a failed commit or flush the instance refuses new
events: the activation must be discarded and the object reloaded. After a failed fsync
(the flusher marks the WAL path failed) the reload first heals the file (`_heal`).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import apsw

from dohost.core.errors import Code, DohostError
from dohost.core.limits import LIST_MAX_BYTES, LIST_MAX_ENTRIES, EventLimits
from dohost.storage.api import CommitTicket, Durability, ListOptions, ListResult, storage_error
from dohost.storage.fencing import NO_FENCE, Claims, claim_lost, fenced
from dohost.storage.fsutil import Fsync, ensure_dir, fsync_dir, fsync_path, sync_data
from dohost.storage.list_range import KeyRange, collect
from dohost.storage.sql_exec import GuestSql, SqlResult, SqlValue, TransactionLost
from dohost.storage.validate import check_count, check_entry, check_key, quota_exceeded
from dohost.storage.wal_flusher import WalFlusher
from dohost.storage.wal_heal import heal_wal

_log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
CACHE_KIB = 1024  # page cache per object connection; many objects are open at once

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS _dohost_kv(key BLOB PRIMARY KEY, value BLOB NOT NULL)"
    " WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS _dohost_meta("
    " id INTEGER PRIMARY KEY CHECK (id = 0), object_id BLOB NOT NULL, class TEXT NOT NULL,"
    " name TEXT, created_ms INTEGER NOT NULL, kv_bytes INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS _dohost_alarm("
    " id INTEGER PRIMARY KEY CHECK (id = 0), due_ms INTEGER NOT NULL)",
)
# The largest claim epoch that has opened this object (storage/fencing.py).
_FENCE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS _dohost_fence("
    " id INTEGER PRIMARY KEY CHECK (id = 0), partition INTEGER NOT NULL, epoch INTEGER NOT NULL)"
)
_FENCE_GET = "SELECT epoch FROM _dohost_fence WHERE id=0"
_FENCE_SET = "INSERT OR REPLACE INTO _dohost_fence(id, partition, epoch) VALUES(0,?,?)"
META_SELECT = "SELECT object_id, class, name, created_ms, kv_bytes FROM _dohost_meta WHERE id=0"
_META_INSERT = (
    "INSERT OR IGNORE INTO _dohost_meta(id, object_id, class, name, created_ms, kv_bytes)"
    " VALUES(0,?,?,?,?,0)"
)
_META_NAME = "UPDATE _dohost_meta SET name=? WHERE id=0 AND name IS NULL"
_META_BYTES = "UPDATE _dohost_meta SET kv_bytes=? WHERE id=0"
_GET = "SELECT value FROM _dohost_kv WHERE key=?"
_SIZE = "SELECT length(value) FROM _dohost_kv WHERE key=?"
_UPSERT = (
    "INSERT INTO _dohost_kv(key, value) VALUES(?,?)"
    " ON CONFLICT(key) DO UPDATE SET value=excluded.value"
)
_DELETE = "DELETE FROM _dohost_kv WHERE key=? RETURNING length(value)"
_DELETE_ALL = "DELETE FROM _dohost_kv"
_ALARM_GET = "SELECT due_ms FROM _dohost_alarm WHERE id=0"
_ALARM_SET = "INSERT OR REPLACE INTO _dohost_alarm(id, due_ms) VALUES(0,?)"
_ALARM_DELETE = "DELETE FROM _dohost_alarm"
_SCAN = {
    (False, False): "SELECT key, value FROM _dohost_kv WHERE key>=? ORDER BY key LIMIT ?",
    (False, True): "SELECT key, value FROM _dohost_kv WHERE key>=? ORDER BY key DESC LIMIT ?",
    (True, False): (
        "SELECT key, value FROM _dohost_kv WHERE key>=? AND key<? ORDER BY key LIMIT ?"
    ),
    (True, True): (
        "SELECT key, value FROM _dohost_kv WHERE key>=? AND key<? ORDER BY key DESC LIMIT ?"
    ),
}


@functools.lru_cache(maxsize=256)
def _marks(n: int) -> str:
    return ",".join("?" * n)


class SqliteObjectStorage:
    """Storage of one object in its own SQLite file, for one activation."""

    def __init__(
        self,
        path: str,
        object_id: bytes,
        class_name: str,
        name: str | None,
        flusher: WalFlusher,
        *,
        quota_bytes: int = EventLimits().object_storage_bytes,
        vfs: str | None = None,
        fsync: Fsync = sync_data,
        list_max_entries: int = LIST_MAX_ENTRIES,
        list_max_bytes: int = LIST_MAX_BYTES,
        fence: tuple[int, int] = NO_FENCE,
        claims: Claims | None = None,
    ) -> None:
        """`fence`: (partition, epoch) of the claim this activation writes under, and
        `claims` the backend that holds it (storage/fencing.py); none: no fencing."""
        self.path = os.path.abspath(path)
        self._fence = fence if claims is not None else NO_FENCE
        self._claims = claims
        self.wal_path = self.path + "-wal"
        self._oid = object_id
        self._class = class_name
        self._name = name
        self._flusher = flusher
        self._quota = quota_bytes
        self._vfs = vfs
        self._fsync = fsync
        self._list_max_entries = list_max_entries
        self._list_max_bytes = list_max_bytes

        self._conn: Any = None
        self._exists: bool | None = None  # known state of the file before we open it
        self._in_txn = False
        self._used = 0  # sum of len(key)+len(value), this event's writes included
        self._event_start_bytes = 0
        self._event_error: DohostError | None = None  # the event's transaction was lost
        self._broken: DohostError | None = None  # a commit failed: refuse new events
        self._last_ticket = CommitTicket.completed()
        self._closed = False
        self._sql: GuestSql | None = None  # guest SQL on the connection, once used

    # ------------------------------------------------------------------ properties

    @property
    def object_id(self) -> bytes:
        return self._oid

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def bytes_used(self) -> int:
        """Sum of len(key)+len(value) of the KV data, this event's writes included."""
        self._open(create=False)
        return self._used

    @property
    def connection(self) -> Any:
        """The object's apsw connection, inside the current event's transaction (the file
        is created if needed). SQL run on it commits or rolls back with the event."""
        conn = self._txn(create=True)
        assert conn is not None
        return conn

    # ------------------------------------------------------------------- internals

    def _closed_error(self) -> DohostError:
        return storage_error("this object's storage was closed (its activation ended)")

    def _open(self, create: bool) -> Any:
        """The connection, opened on first use; None if the file does not exist and
        `create` is false."""
        if self._conn is not None:
            return self._conn
        if self._closed:
            raise self._closed_error()
        if self._exists is None:
            self._exists = os.path.exists(self.path)
        if not self._exists and not create:
            return None
        is_new = not self._exists
        durable = self._flusher.durability == Durability.FSYNC
        d = os.path.dirname(self.path)
        try:
            if is_new:
                ensure_dir(d, self._fsync)
            conn = apsw.Connection(
                self.path,
                flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE,
                vfs=self._vfs,
            )
            try:
                conn.setbusytimeout(BUSY_TIMEOUT_MS)
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchall()
                if mode != [("wal",)]:
                    raise storage_error(f"{self.path} could not enter WAL mode ({mode})")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
                page_size = _int(conn, "PRAGMA page_size")
                # A backstop on the file's size, SQL tables included (KV writes meet the
                # exact byte quota first): room for b-tree overhead over the KV quota.
                conn.execute(f"PRAGMA max_page_count={2 * self._quota // page_size + 256}")
                for stmt in SCHEMA:
                    conn.execute(stmt)
                conn.execute(_META_INSERT, (self._oid, self._class, self._name, _now_ms()))
                if self._name is not None:
                    conn.execute(_META_NAME, (self._name,))
                self._used = _int(conn, "SELECT kv_bytes FROM _dohost_meta")
                if self._fence[0] >= 0:
                    self._write_fence(conn)
                if self._flusher.failed(self.wal_path) is not None:
                    self._heal(conn)
            except BaseException:
                conn.close(True)
                raise
            if is_new and durable:
                fsync_path(self.path, self._fsync)
                fsync_dir(d, self._fsync)
        except apsw.Error as e:
            raise storage_error(f"cannot open the database of this object ({e})") from e
        except OSError as e:
            raise storage_error(f"cannot create the database of this object ({e})") from e
        self._exists = True
        self._conn = conn
        self._event_start_bytes = self._used
        return conn

    def _write_fence(self, conn: Any) -> None:
        """(At open, before any read of the object.) Raise the object's fence to this
        activation's epoch; FENCED if a newer owner has already opened it."""
        p, epoch = self._fence
        conn.execute(_FENCE_SCHEMA)
        row = conn.execute(_FENCE_GET).fetchone()
        stored = None if row is None else int(row[0])
        if stored is not None and stored > epoch:
            raise fenced(p, epoch, stored)
        if stored != epoch:
            conn.execute(_FENCE_SET, (p, epoch))

    def _check_fence(self, conn: Any) -> DohostError | None:
        """(Inside the event's write transaction, before COMMIT.) FENCED unless this
        node still holds the claim and the object's fence is still its epoch."""
        p, epoch = self._fence
        claims = self._claims
        assert claims is not None
        if not claims.valid() or claims.epoch_of(p) != epoch:
            return claim_lost(p, epoch)
        row = conn.execute(_FENCE_GET).fetchone()
        stored = None if row is None else int(row[0])
        return None if stored == epoch else fenced(p, epoch, stored)

    def _heal(self, conn: Any) -> None:
        """The last fsync of this object's WAL failed: make every committed write durable
        another way (storage/wal_heal.py), and only then let the flusher accept this path
        again. Raises STORAGE_ERROR while it cannot; the next open tries again."""

        def sync_wal() -> None:
            if os.path.exists(self.wal_path):
                fsync_path(self.wal_path, self._fsync)

        try:
            healed = heal_wal(conn, self.path, self._fsync, sync_wal)
        except OSError as e:
            raise storage_error(
                f"this object's last fsync failed and fsync still fails ({e}); it accepts "
                "no writes until the storage works again"
            ) from e
        if not healed:
            raise storage_error(
                "this object's last fsync failed and its WAL could not be checkpointed "
                "(another connection reads it); retry"
            )
        self._flusher.recovered(self.wal_path)
        _log.warning("%s healed after a failed fsync: writing again", self.path)

    def _txn(self, create: bool) -> Any:
        """The connection inside the event's transaction (begun on first use); None if the
        object has no file and `create` is false."""
        if self._in_txn:
            return self._conn
        if self._event_error is not None:
            raise self._event_error
        conn = self._open(create)
        if conn is None:
            return None
        try:
            conn.execute("BEGIN")
        except apsw.Error as e:
            raise storage_error(f"cannot begin a transaction: {e}") from e
        self._in_txn = True
        return conn

    def _error(self, e: apsw.Error) -> DohostError:
        """The DohostError for an SQLite failure inside the event."""
        conn = self._conn
        if self._in_txn and conn is not None and conn.get_autocommit():
            # SQLite abandoned the whole transaction: the event's earlier writes are gone.
            self._in_txn = False
            self._used = self._event_start_bytes
            self._event_error = storage_error(
                f"the storage failed ({e}) and this event's writes were lost; the event "
                "must be rolled back"
            )
            return self._event_error
        if isinstance(e, apsw.FullError) and self._at_page_limit():
            return DohostError(
                Code.QUOTA_EXCEEDED,
                f"the object's database reached its size limit ({e}); delete data first",
            )
        return storage_error(f"the storage failed: {e}")

    def _at_page_limit(self) -> bool:
        try:
            conn = self._conn
            return _int(conn, "PRAGMA page_count") + 8 >= _int(conn, "PRAGMA max_page_count")
        except apsw.Error:
            return False

    def _sizes(self, conn: Any, keys: list[bytes]) -> dict[bytes, int]:
        """len(key)+len(value) of those `keys` that exist."""
        sql = f"SELECT key, length(value) FROM _dohost_kv WHERE key IN ({_marks(len(keys))})"
        return {k: len(k) + n for k, n in conn.execute(sql, keys)}

    # ------------------------------------------------------------------- ObjectStorage

    def begin_event(self) -> None:
        if self._closed:
            raise self._closed_error()
        err = self._broken or self._last_ticket.error
        if err is not None:
            raise storage_error(
                f"an earlier commit of this object failed ({err.message}); its activation "
                "must be discarded and the object reloaded"
            )
        if self._in_txn or self._event_error is not None:
            _log.warning("begin_event with an unfinished event; rolling it back")
            self.rollback_event()

    def get(self, key: bytes) -> bytes | None:
        check_key(key)
        conn = self._txn(create=False)
        if conn is None:
            return None
        try:
            row = conn.execute(_GET, (key,)).fetchone()
        except apsw.Error as e:
            raise self._error(e) from e
        return None if row is None else row[0]  # type: ignore[no-any-return]

    def get_many(self, keys: list[bytes]) -> dict[bytes, bytes]:
        check_count(keys)
        for k in keys:
            check_key(k)
        if not keys:
            return {}
        conn = self._txn(create=False)
        if conn is None:
            return {}
        unique = list(dict.fromkeys(keys))
        sql = f"SELECT key, value FROM _dohost_kv WHERE key IN ({_marks(len(unique))})"
        try:
            return dict(conn.execute(sql, unique))
        except apsw.Error as e:
            raise self._error(e) from e

    def put(self, key: bytes, value: bytes) -> None:
        check_entry(key, value)
        conn = self._txn(create=True)
        try:
            row = conn.execute(_SIZE, (key,)).fetchone()
            delta = len(key) + len(value) - (0 if row is None else len(key) + row[0])
            if delta > 0 and self._used + delta > self._quota:
                raise quota_exceeded(self._used, delta, self._quota)
            conn.execute(_UPSERT, (key, value))
        except apsw.Error as e:
            raise self._error(e) from e
        self._used += delta

    def put_many(self, entries: dict[bytes, bytes]) -> None:
        check_count(entries)
        for k, v in entries.items():
            check_entry(k, v)
        if not entries:
            return
        conn = self._txn(create=True)
        try:
            sizes = self._sizes(conn, list(entries))
            delta = sum(len(k) + len(v) - sizes.get(k, 0) for k, v in entries.items())
            if delta > 0 and self._used + delta > self._quota:
                raise quota_exceeded(self._used, delta, self._quota)
            # all or nothing, also if SQLite fails half way
            conn.execute("SAVEPOINT dohost_put_many")
            try:
                conn.executemany(_UPSERT, list(entries.items()))
            except BaseException:
                if not conn.get_autocommit():
                    conn.execute("ROLLBACK TO dohost_put_many")
                    conn.execute("RELEASE dohost_put_many")
                raise
            conn.execute("RELEASE dohost_put_many")
        except apsw.Error as e:
            raise self._error(e) from e
        self._used += delta

    def delete(self, key: bytes) -> bool:
        check_key(key)
        conn = self._txn(create=False)
        if conn is None:
            return False
        try:
            rows = conn.execute(_DELETE, (key,)).fetchall()
        except apsw.Error as e:
            raise self._error(e) from e
        if not rows:
            return False
        self._used -= len(key) + rows[0][0]
        return True

    def delete_many(self, keys: list[bytes]) -> int:
        check_count(keys)
        for k in keys:
            check_key(k)
        if not keys:
            return 0
        conn = self._txn(create=False)
        if conn is None:
            return 0
        unique = list(dict.fromkeys(keys))
        sql = (
            f"DELETE FROM _dohost_kv WHERE key IN ({_marks(len(unique))})"
            " RETURNING key, length(value)"
        )
        try:
            rows = conn.execute(sql, unique).fetchall()
        except apsw.Error as e:
            raise self._error(e) from e
        for k, n in rows:
            self._used -= len(k) + n
        return len(rows)

    def delete_all(self) -> None:
        conn = self._txn(create=False)
        if conn is None:
            return
        try:
            conn.execute(_DELETE_ALL)
            conn.execute(_ALARM_DELETE)
        except apsw.Error as e:
            raise self._error(e) from e
        self._used = 0

    def get_alarm(self) -> int | None:
        conn = self._txn(create=False)
        if conn is None:
            return None
        try:
            row = conn.execute(_ALARM_GET).fetchone()
        except apsw.Error as e:
            raise self._error(e) from e
        return None if row is None else int(row[0])

    def set_alarm(self, due_ms: int | None) -> None:
        conn = self._txn(create=due_ms is not None)
        if conn is None:
            return  # deleting the alarm of an object that has no file: nothing to do
        try:
            if due_ms is None:
                conn.execute(_ALARM_DELETE)
            else:
                conn.execute(_ALARM_SET, (due_ms,))
        except apsw.Error as e:
            raise self._error(e) from e

    def list(self, opts: ListOptions) -> ListResult:
        rng = KeyRange.from_options(opts)
        conn = self._txn(create=False)
        if conn is None or rng.empty:
            return ListResult([], False)
        cap = self._list_max_entries
        # one row past the cap tells whether the cap stopped the listing
        sql_limit = rng.limit if 0 < rng.limit <= cap else cap + 1
        sql = _SCAN[(rng.hi is not None, rng.reverse)]
        params = (rng.lo, sql_limit) if rng.hi is None else (rng.lo, rng.hi, sql_limit)
        try:
            cur = conn.execute(sql, params)
            try:
                return collect(cur, rng.limit, cap, self._list_max_bytes)
            finally:
                cur.close()
        except apsw.Error as e:
            raise self._error(e) from e

    def sql_exec(self, sql: str, params: Sequence[SqlValue], deadline: float) -> SqlResult:
        """Run one guest statement in the event's transaction (storage/sql_exec.py);
        `deadline` is a time.perf_counter() value. Creates the file if needed."""
        conn = self._txn(create=True)
        if self._sql is None or self._sql.conn is not conn:
            self._sql = GuestSql(conn)
        try:
            return self._sql.run(sql, params, deadline)
        except TransactionLost as e:
            if isinstance(e.cause, apsw.Error):
                self._error(e.cause)  # the event's writes are gone: later calls fail
            raise
        except apsw.Error as e:
            raise self._error(e) from e

    def rollback_event(self) -> None:
        if self._in_txn:
            self._in_txn = False
            if self._sql is not None:
                self._sql.forget_schema()  # a dropped trigger may be back
            try:
                if not self._conn.get_autocommit():
                    self._conn.execute("ROLLBACK")
            except apsw.Error as e:
                self._broken = storage_error(f"rolling back an event failed: {e}")
                _log.error("%s: %s", self.path, self._broken)
        self._event_error = None
        self._used = self._event_start_bytes

    def commit_event(self) -> CommitTicket:
        if self._event_error is not None:
            err = self._event_error
            self.rollback_event()
            return CommitTicket.failed(err)
        if not self._in_txn:
            return self._last_ticket
        conn = self._conn
        wrote = conn.txn_state() == apsw.SQLITE_TXN_WRITE
        try:
            if wrote and self._fence[0] >= 0:
                refused = self._check_fence(conn)
                if refused is not None:
                    self.rollback_event()
                    self._broken = refused
                    return CommitTicket.failed(refused)
            if wrote and self._used != self._event_start_bytes:
                conn.execute(_META_BYTES, (self._used,))
            conn.execute("COMMIT")
        except apsw.Error as e:
            err = storage_error(f"commit failed ({e}); the event was rolled back")
            self.rollback_event()
            self._broken = err
            return CommitTicket.failed(err)
        self._in_txn = False
        self._event_start_bytes = self._used
        if not wrote:  # a read-only event is as durable as the last commit
            return self._last_ticket
        self._last_ticket = self._flusher.request(self.wal_path)
        return self._last_ticket

    def close(self) -> None:
        """Roll back an unfinished event and close the connection. Idempotent."""
        if self._closed:
            return
        if self._in_txn:
            self.rollback_event()
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                # As the last connection, this checkpoints the WAL into the database
                # (fsyncing both) and removes it.
                conn.close(True)
            except apsw.Error:
                _log.warning("closing %s failed", self.path, exc_info=True)


def _int(conn: Any, sql: str) -> int:
    """The single integer an SQL statement returns."""
    v = conn.execute(sql).fetchall()[0][0]
    if not isinstance(v, int):
        raise storage_error(f"{sql!r} returned {v!r}, not an integer")
    return v


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# ------------------------------------------------------------- read-only access (admin)


def _open_existing(path: str, vfs: str | None) -> Any:
    """A query-only connection to an existing object file (never creates one)."""
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE, vfs=vfs)
    conn.setbusytimeout(BUSY_TIMEOUT_MS)
    conn.execute("PRAGMA query_only=1")
    return conn


def read_meta(path: str, vfs: str | None = None) -> tuple[str | None, int | None, int] | None:
    """(name, created_ms, database bytes) of the object file at `path`; None if it does
    not exist. Reads only: it never waits for an activation's open transaction."""
    try:
        conn = _open_existing(path, vfs)
    except apsw.CantOpenError:
        return None
    try:
        try:
            row = conn.execute("SELECT name, created_ms FROM _dohost_meta WHERE id=0").fetchone()
        except apsw.SQLError:
            row = None  # the file exists but its first commit never happened
        pages = conn.execute("PRAGMA page_count").fetchall()[0][0]
        page_size = _int(conn, "PRAGMA page_size")
    except apsw.Error as e:
        raise storage_error(f"cannot read {path}: {e}") from e
    finally:
        conn.close(True)
    name, created_ms = row if row is not None else (None, None)
    return name, created_ms, pages * page_size


def read_entries(
    path: str,
    opts: ListOptions,
    vfs: str | None = None,
    *,
    max_entries: int = LIST_MAX_ENTRIES,
    max_bytes: int = LIST_MAX_BYTES,
) -> ListResult:
    """kv_list over the committed KV data of the object file at `path` (read-only)."""
    rng = KeyRange.from_options(opts)
    if rng.empty:
        return ListResult([], False)
    try:
        conn = _open_existing(path, vfs)
    except apsw.CantOpenError:
        return ListResult([], False)
    sql_limit = rng.limit if 0 < rng.limit <= max_entries else max_entries + 1
    sql = _SCAN[(rng.hi is not None, rng.reverse)]
    params = (rng.lo, sql_limit) if rng.hi is None else (rng.lo, rng.hi, sql_limit)
    try:
        return collect(conn.execute(sql, params), rng.limit, max_entries, max_bytes)
    except apsw.SQLError:
        return ListResult([], False)  # created, but no KV table yet
    except apsw.Error as e:
        raise storage_error(f"cannot read {path}: {e}") from e
    finally:
        conn.close(True)

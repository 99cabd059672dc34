"""One shard of the `kv` backend: a SQLite file holding the rows of many objects.

Reads are served on the caller's thread, each thread with its own read connection (WAL lets
them run beside the writer; apsw releases the GIL inside SQLite). Writes never run on the
caller's thread: `submit` queues a `WriteSet` for the shard's single **committer thread**,
which takes everything queued, applies it in one transaction, fsyncs the WAL once and only
then resolves the tickets. Events of many objects thus share one fsync (group commit), and
no guest ever holds the shard's write lock.

Durability: WAL with `synchronous=NORMAL` (SQLite does not fsync at commit), plus an
explicit fsync of the `-wal` file after each batch in `Durability.FSYNC` mode. The first
fsync of a newly created WAL file also fsyncs its directory, so that the file itself
survives a power loss. In `Durability.OS` mode nothing is fsync'd.

Failures: a batch that fails (I/O error, disk full) is rolled back and every ticket in it
resolves with STORAGE_ERROR; the writers of those write sets are marked failed, so their
write sets already queued behind fail too, and the shard goes on serving other objects. A
failed fsync is different: what reached the disk is unknown, so the shard refuses writes
(reads continue) until it has made everything committed durable another way: before each
later batch it tries a TRUNCATE checkpoint (every committed frame of the WAL copied into
the database file) followed by an fsync of the database and of the emptied WAL; once that
succeeds the shard writes again (see `_heal`). The batch whose fsync failed may thus
become durable although its events were told it failed: their outcome was unknown.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, NamedTuple

import apsw

from dohost.core.errors import DohostError
from dohost.core.partitions import progressions
from dohost.storage.api import CommitTicket, Durability, resolving_together, storage_error
from dohost.storage.busy_wait import set_short_busy_wait
from dohost.storage.fencing import Claims, claim_lost, fenced
from dohost.storage.fsutil import Fsync, ensure_dir, fsync_dir, fsync_path, sync_data
from dohost.storage.wal_heal import heal_wal
from dohost.storage.write_set import ALARM_UNCHANGED, WriteSet

_log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv("
    " object_id BLOB NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,"
    " PRIMARY KEY(object_id, key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS objects("
    " object_id BLOB PRIMARY KEY, class TEXT NOT NULL, name TEXT,"
    " bytes INTEGER NOT NULL, created_ms INTEGER)",
    # list_objects pages through one class by object id
    "CREATE INDEX IF NOT EXISTS objects_by_class ON objects(class, object_id)",
    # each object's one alarm (the host-wide alarm index is only a superset of these)
    "CREATE TABLE IF NOT EXISTS alarms(object_id BLOB PRIMARY KEY, due_ms INTEGER NOT NULL)"
    " WITHOUT ROWID",
    # the largest claim epoch that has touched each partition (storage/fencing.py)
    "CREATE TABLE IF NOT EXISTS fence(partition INTEGER PRIMARY KEY, epoch INTEGER NOT NULL)",
)
# Raise the fence of an arithmetic run of partitions (first, last, step) to one epoch,
# never lowering it; then find the partitions of the run it did not reach (newer epochs).
_FENCE_RAISE = (
    "WITH RECURSIVE s(p) AS (SELECT ?1 UNION ALL SELECT p + ?3 FROM s WHERE p + ?3 <= ?2)"
    " INSERT INTO fence(partition, epoch) SELECT p, ?4 FROM s WHERE true"
    " ON CONFLICT(partition) DO UPDATE SET epoch=excluded.epoch WHERE excluded.epoch > fence.epoch"
)
_FENCE_REFUSED = (
    "SELECT partition FROM fence"
    " WHERE partition BETWEEN ?1 AND ?2 AND (partition - ?1) % ?3 = 0 AND epoch != ?4"
)
_FENCE_GET = "SELECT epoch FROM fence WHERE partition=?"
_ALARM_GET = "SELECT due_ms FROM alarms WHERE object_id=?"
_ALARM_SET = "INSERT OR REPLACE INTO alarms(object_id, due_ms) VALUES(?,?)"
_ALARM_DELETE = "DELETE FROM alarms WHERE object_id=?"

_GET = "SELECT value FROM kv WHERE object_id=? AND key=?"
_SIZE = "SELECT length(value) FROM kv WHERE object_id=? AND key=?"
_UPSERT_ROW = (
    "INSERT INTO kv(object_id, key, value) VALUES(?,?,?)"
    " ON CONFLICT(object_id, key) DO UPDATE SET value=excluded.value"
)
_DELETE_ROW = "DELETE FROM kv WHERE object_id=? AND key=?"
_DELETE_ROWS = "DELETE FROM kv WHERE object_id=?"
# Registration is part of the first commit: an insert, never a file create. Later commits
# only update the byte count (and fill in a name learned late).
_UPSERT_OBJECT = (
    "INSERT INTO objects(object_id, class, name, bytes, created_ms) VALUES(?,?,?,?,?)"
    " ON CONFLICT(object_id) DO UPDATE SET bytes=excluded.bytes,"
    " name=coalesce(objects.name, excluded.name)"
)
_DELETE_OBJECT = "DELETE FROM objects WHERE object_id=?"
_OBJECT_ROW = "SELECT object_id, class, name, bytes, created_ms FROM objects WHERE object_id=?"
# One sequential pass over the registry (NOT INDEXED: through objects_by_class every row
# would cost a lookup of its bytes in the table, ~5x slower at 10^5 objects).
_CLASS_USAGE = "SELECT class, count(*), sum(bytes) FROM objects NOT INDEXED GROUP BY class"
_CLASS_SIZES = "SELECT class, object_id, bytes FROM objects NOT INDEXED"
_OBJECTS_OF_CLASS = (
    "SELECT object_id, class, name, bytes, created_ms FROM objects"
    " WHERE class=? AND object_id>? ORDER BY object_id LIMIT ?"
)

# scan statements by (bounded above, reverse)
_SCAN = {
    (False, False): "SELECT key, value FROM kv WHERE object_id=? AND key>=? ORDER BY key",
    (False, True): "SELECT key, value FROM kv WHERE object_id=? AND key>=? ORDER BY key DESC",
    (True, False): (
        "SELECT key, value FROM kv WHERE object_id=? AND key>=? AND key<? ORDER BY key"
    ),
    (True, True): (
        "SELECT key, value FROM kv WHERE object_id=? AND key>=? AND key<? ORDER BY key DESC"
    ),
}


@functools.lru_cache(maxsize=256)
def _in_sql(columns: str, n: int) -> str:
    marks = ",".join("?" * n)
    return f"SELECT {columns} FROM kv WHERE object_id=? AND key IN ({marks})"


class ObjectRow(NamedTuple):
    """An object's registry row."""

    object_id: bytes
    class_name: str
    name: str | None
    bytes: int
    created_ms: int | None


@dataclass
class ShardStats:
    """Counters of one shard's committer (written by that thread only)."""

    batches: int = 0  # committed transactions
    write_sets: int = 0  # write sets committed (events)
    fsyncs: int = 0
    failed_batches: int = 0
    failed_write_sets: int = 0
    largest_batch: int = 0
    commit_seconds: float = 0.0  # time in SQLite applying and committing batches
    fsync_seconds: float = 0.0


class _FenceRequest:
    """A fence write handed to the committer thread (`KvShard.fence`)."""

    def __init__(self, epochs: dict[int, int]) -> None:
        self.epochs = epochs
        self._done = threading.Event()
        self._result: list[int] = []
        self._error: BaseException | None = None

    def run(self, shard: KvShard) -> None:
        try:
            self._result = shard._write_fences(self.epochs)
        except BaseException as e:
            self._error = e
        self._done.set()

    def wait(self, timeout: float | None) -> list[int]:
        if not self._done.wait(timeout):
            raise TimeoutError("the fence write did not complete in time")
        if self._error is not None:
            raise self._error
        return self._result


class KvShard:
    """One shard file: thread-safe reads, writes through the committer thread."""

    def __init__(
        self,
        path: str,
        durability: str = Durability.FSYNC,
        *,
        vfs: str | None = None,
        fsync: Fsync = sync_data,
        max_batch_write_sets: int = 4096,
        max_batch_bytes: int = 64 * 1024 * 1024,
        claims: Claims | None = None,
        on_commit: Callable[[list[WriteSet]], None] | None = None,
        replica_gate: bool = False,
    ) -> None:
        """With `claims`, every write set is fenced (storage/fencing.py): the shard
        writes the epochs of the partitions held at open, before any read.
        `on_commit` is called on the committer thread with each batch's write sets
        once they are durable (replication, replica/replicator.py); it must be quick.
        `replica_gate`: `on_commit` resolves the tickets of the write sets it is given
        (a synchronous replica's output gate: an event is acknowledged once its changes
        are in the replica store); failed write sets still resolve here."""
        if durability not in (Durability.FSYNC, Durability.OS):
            raise ValueError(f"unknown durability {durability!r}")
        self.path = os.path.abspath(path)
        self.durability = durability
        self.stats = ShardStats()
        self._dir = os.path.dirname(self.path)
        self._wal_path = self.path + "-wal"
        self._vfs = vfs
        self._fsync = fsync
        self._max_batch = max_batch_write_sets
        self._max_batch_bytes = max_batch_bytes
        self._on_commit = on_commit
        self._gated = replica_gate and on_commit is not None

        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._queue: collections.deque[WriteSet] = collections.deque()
        self._inflight: dict[bytes, CommitTicket] = {}  # object id -> its last queued ticket
        self._last: CommitTicket | None = None
        self._closing = False
        self._closed = False
        self._broken: DohostError | None = None
        self._fsync_failed = False  # _broken by a failed fsync: _heal may clear it
        self._local = threading.local()
        self._readers: list[Any] = []
        self._wal_fd: int | None = None
        self._wal_ino = -1
        self._claims = claims
        self._fence: dict[int, int] = {}  # fence rows as last read (see _check_fence)
        self._fence_version = -1  # PRAGMA data_version when _fence was read
        self._fence_requests: list[_FenceRequest] = []
        self.refused: list[int] = []  # partitions whose fence at open found a newer epoch

        ensure_dir(self._dir, fsync)
        is_new = not os.path.exists(self.path)
        try:
            self._db = self._connect()
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchall()
            if mode != [("wal",)]:
                raise storage_error(f"kv shard {self.path} could not enter WAL mode ({mode})")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for stmt in _SCHEMA:
                self._db.execute(stmt)
            if is_new and durability == Durability.FSYNC:
                fsync_path(self.path, fsync)
                fsync_dir(self._dir, fsync)
            if claims is not None:
                self.refused = self._write_fences(claims.held(), sync=False)
            self._sync_wal()  # the schema, and the directory entry of a new WAL file
        except (apsw.Error, OSError, DohostError) as e:
            db = getattr(self, "_db", None)
            if db is not None:
                db.close(True)
            if isinstance(e, DohostError):
                raise
            raise storage_error(f"cannot open kv shard {self.path}: {e}") from e
        self._thread = threading.Thread(
            target=self._run, name=f"kv-committer:{os.path.basename(self.path)}", daemon=True
        )
        self._thread.start()

    # ----------------------------------------------------------------- connections

    def _connect(self) -> Any:
        conn = apsw.Connection(
            self.path,
            flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE,
            vfs=self._vfs,
        )
        set_short_busy_wait(conn, BUSY_TIMEOUT_MS)  # other nodes' committers: storage/busy_wait.py
        return conn

    def _reader(self) -> Any:
        """This thread's read connection (opened on first use)."""
        try:
            return self._local.conn
        except AttributeError:
            pass
        conn = self._connect()
        conn.execute("PRAGMA query_only=1")
        with self._lock:
            if self._closed:
                conn.close()
                raise self._closed_error()
            self._readers.append(conn)
        self._local.conn = conn
        return conn

    def _closed_error(self) -> DohostError:
        return storage_error(f"kv shard {self.path} is closed")

    def _read_error(self, e: Exception) -> DohostError:
        return storage_error(f"reading kv shard {self.path} failed: {e}")

    # ----------------------------------------------------------------------- reads

    def get(self, object_id: bytes, key: bytes) -> bytes | None:
        if self._closed:
            raise self._closed_error()
        try:
            row = self._reader().execute(_GET, (object_id, key)).fetchone()
        except apsw.Error as e:
            raise self._read_error(e) from e
        return None if row is None else row[0]  # type: ignore[no-any-return]

    def get_many(self, object_id: bytes, keys: list[bytes]) -> dict[bytes, bytes]:
        """Values of those `keys` that exist."""
        if not keys:
            return {}
        if self._closed:
            raise self._closed_error()
        try:
            cur = self._reader().execute(_in_sql("key, value", len(keys)), (object_id, *keys))
            return dict(cur)
        except apsw.Error as e:
            raise self._read_error(e) from e

    def value_size(self, object_id: bytes, key: bytes) -> int | None:
        """len(value) of `key`, or None if absent (reads no value pages)."""
        if self._closed:
            raise self._closed_error()
        try:
            row = self._reader().execute(_SIZE, (object_id, key)).fetchone()
        except apsw.Error as e:
            raise self._read_error(e) from e
        return None if row is None else row[0]  # type: ignore[no-any-return]

    def value_sizes(self, object_id: bytes, keys: list[bytes]) -> dict[bytes, int]:
        """len(value) of those `keys` that exist."""
        if not keys:
            return {}
        if self._closed:
            raise self._closed_error()
        try:
            cur = self._reader().execute(
                _in_sql("key, length(value)", len(keys)), (object_id, *keys)
            )
            return dict(cur)
        except apsw.Error as e:
            raise self._read_error(e) from e

    def scan(
        self, object_id: bytes, lo: bytes, hi: bytes | None, reverse: bool
    ) -> Generator[tuple[bytes, bytes], None, None]:
        """Rows with lo <= key < hi in key order (descending if `reverse`).

        A generator: close it (or exhaust it) so that its read transaction ends.
        """
        if self._closed:
            raise self._closed_error()
        sql = _SCAN[(hi is not None, reverse)]
        params = (object_id, lo) if hi is None else (object_id, lo, hi)
        try:
            cur = self._reader().execute(sql, params)
        except apsw.Error as e:
            raise self._read_error(e) from e
        try:
            while True:
                try:
                    row = next(cur)
                except StopIteration:
                    return
                except apsw.Error as e:
                    raise self._read_error(e) from e
                yield row
        finally:
            cur.close()

    def object_row(self, object_id: bytes) -> ObjectRow | None:
        if self._closed:
            raise self._closed_error()
        try:
            row = self._reader().execute(_OBJECT_ROW, (object_id,)).fetchone()
        except apsw.Error as e:
            raise self._read_error(e) from e
        return None if row is None else ObjectRow(*row)

    def get_alarm(self, object_id: bytes) -> int | None:
        """The object's committed alarm (ms since the epoch), or None."""
        if self._closed:
            raise self._closed_error()
        try:
            row = self._reader().execute(_ALARM_GET, (object_id,)).fetchone()
        except apsw.Error as e:
            raise self._read_error(e) from e
        return None if row is None else int(row[0])

    def rename_class(self, old: str, new: str) -> int:
        """Move the registry rows of class `old` to `new` in one durable transaction
        (objects' keys and alarms are keyed by id alone, so they follow). Idempotent.
        On its own connection with synchronous=FULL: no event of either class may be in
        flight (the host holds the class), and the committer's batches of other objects
        wait on the busy timeout as for any writer."""
        if self._closed:
            raise self._closed_error()
        conn = self._connect()
        try:
            conn.execute("PRAGMA synchronous=FULL")
            with conn:
                conn.execute("UPDATE objects SET class=? WHERE class=?", (new, old))
                return int(conn.changes())
        except apsw.Error as e:
            raise storage_error(f"renaming class rows in {self.path} failed: {e}") from e
        finally:
            conn.close()

    def class_usage(self, owns: Callable[[bytes], bool] | None = None) -> dict[str, list[int]]:
        """class -> [objects, bytes] of the registry rows (those `owns` accepts): one
        aggregate query, not one Python object per stored object."""
        if self._closed:
            raise self._closed_error()
        try:
            if owns is None:
                return {c: [int(n), int(b)] for c, n, b in self._reader().execute(_CLASS_USAGE)}
            out: dict[str, list[int]] = {}
            for c, oid, b in self._reader().execute(_CLASS_SIZES):
                if owns(oid):
                    u = out.setdefault(c, [0, 0])
                    u[0] += 1
                    u[1] += b
            return out
        except apsw.Error as e:
            raise self._read_error(e) from e

    def list_objects(self, class_name: str, after: bytes, limit: int) -> list[ObjectRow]:
        """Registry rows of `class_name` with object_id > `after`, by object id."""
        if self._closed:
            raise self._closed_error()
        try:
            cur = self._reader().execute(_OBJECTS_OF_CLASS, (class_name, after, limit))
            return [ObjectRow(*row) for row in cur]
        except apsw.Error as e:
            raise self._read_error(e) from e

    # --------------------------------------------------------------------- writes

    def submit(self, ws: WriteSet) -> CommitTicket:
        """Queue `ws` for the committer; its ticket resolves once it is durable (or failed)."""
        with self._cv:
            if not self._closing:
                self._queue.append(ws)
                self._inflight[ws.object_id] = ws.ticket
                self._last = ws.ticket
                self._cv.notify()
                return ws.ticket
        ws.ticket.resolve(self._closed_error())
        return ws.ticket

    def inflight(self, object_id: bytes) -> CommitTicket | None:
        """The ticket of the object's last write set not yet resolved, if any."""
        return self._inflight.get(object_id)

    def wait_idle(self, object_id: bytes, timeout: float | None = None) -> None:
        """Block until every write set of `object_id` queued so far has resolved."""
        t = self._inflight.get(object_id)
        if t is not None:
            t.wait(timeout)

    def flush(self, timeout: float | None = None) -> DohostError | None:
        """Block until everything queued so far is committed; the last one's error."""
        with self._lock:
            t = self._last
        return None if t is None else t.wait(timeout)

    @property
    def broken(self) -> DohostError | None:
        """Set after a failed fsync: the shard accepts no more writes."""
        return self._broken

    # ------------------------------------------------------------------ committer

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._fence_requests and not self._closing:
                    self._cv.wait()
                fences, self._fence_requests = self._fence_requests, []
                if not self._queue and not fences:
                    return  # closing, and everything queued was committed
                batch = self._take_batch() if self._queue else []
            for req in fences:
                req.run(self)
            if not batch:
                continue
            try:
                self._commit(batch)
            except BaseException as e:  # never leave a ticket hanging, never die silently
                _log.exception("kv committer of %s failed", self.path)
                err = storage_error(f"kv committer of {self.path} failed: {e!r}")
                for ws in batch:
                    ws.writer.error = ws.writer.error or err
                    ws.ticket.resolve(err)

    def _take_batch(self) -> list[WriteSet]:
        q = self._queue
        if len(q) == 1:
            return [q.popleft()]
        batch: list[WriteSet] = []
        size = 0
        while q and len(batch) < self._max_batch:
            if batch and size > self._max_batch_bytes:
                break
            ws = q.popleft()
            size += ws.payload_bytes()
            batch.append(ws)
        return batch

    def _commit(self, batch: list[WriteSet]) -> None:
        # Write sets of a writer whose earlier commit failed are not applied: they may
        # depend on the writes that were lost.
        live = [ws for ws in batch if ws.writer.error is None]
        if self._fsync_failed and live:
            self._heal()
        error = self._broken
        if error is None and live:
            t0 = time.perf_counter()
            try:
                self._apply_batch(live)
            except Exception as e:
                self._rollback()
                error = storage_error(
                    f"commit to kv shard {self.path} failed: {e}; the events were rolled back"
                )
                self.stats.failed_batches += 1
                _log.warning("%s", error)
            else:
                t1 = time.perf_counter()
                self.stats.commit_seconds += t1 - t0
                try:
                    self._sync_wal()
                except OSError as e:
                    error = storage_error(
                        f"fsync of {self._wal_path} failed: {e}; what reached the disk is "
                        "unknown, so this shard accepts no writes until a checkpoint and "
                        "fsync succeed (tried again before each commit)"
                    )
                    self._broken = error
                    self._fsync_failed = True
                    _log.error("%s", error)
                self.stats.fsync_seconds += time.perf_counter() - t1
                if error is None:
                    self.stats.batches += 1
                    self.stats.write_sets += len(live)
                    self.stats.largest_batch = max(self.stats.largest_batch, len(live))
        if error is not None:
            # Mark every writer before any ticket resolves, so that a callback that reacts
            # to the failure already sees its writer as failed.
            for ws in live:
                ws.writer.error = error
        with self._lock:
            for ws in batch:
                if self._inflight.get(ws.object_id) is ws.ticket:
                    del self._inflight[ws.object_id]
        gated = self._gated
        with resolving_together():  # one loop wake-up for the batch
            for ws in batch:
                err = ws.writer.error
                if err is not None:
                    self.stats.failed_write_sets += 1
                    ws.ticket.resolve(err)
                elif not gated:
                    ws.ticket.resolve(None)
        if self._on_commit is not None and error is None:
            done = [ws for ws in live if ws.writer.error is None]
            if done:
                try:
                    self._on_commit(done)
                except Exception as e:
                    _log.exception("the commit hook of %s failed", self.path)
                    if gated:  # never leave a gated ticket hanging
                        hook_error = storage_error(f"the replica hook failed: {e!r}")
                        for ws in done:
                            ws.ticket.resolve(hook_error)

    def _apply_batch(self, live: list[WriteSet]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        claims = self._claims
        valid = True
        if claims is not None:
            # Fence rows change only by a commit, ours (cached as written) or another
            # process's (which changes data_version): re-read them only then.
            version = db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._fence_version:
                self._fence.clear()
                self._fence_version = version
            valid = claims.valid()
        for ws in live:
            if ws.partition >= 0 and claims is not None:
                if ws.writer.error is None:  # (an earlier write set of its writer failed)
                    ws.writer.error = self._check_fence(ws, claims, valid)
                if ws.writer.error is not None:
                    continue
            oid = ws.object_id
            if ws.clear or ws.drop:
                db.execute(_DELETE_ROWS, (oid,))
            if ws.drop:
                db.execute(_DELETE_OBJECT, (oid,))
                db.execute(_ALARM_DELETE, (oid,))
                continue
            if ws.alarm is not ALARM_UNCHANGED:
                if ws.alarm is None:
                    db.execute(_ALARM_DELETE, (oid,))
                else:
                    db.execute(_ALARM_SET, (oid, ws.alarm))
            puts = ws.puts
            if len(puts) == 1:
                ((k, v),) = puts.items()
                if v is None:
                    db.execute(_DELETE_ROW, (oid, k))
                else:
                    db.execute(_UPSERT_ROW, (oid, k, v))
            elif puts:
                rows = [(oid, k, v) for k, v in puts.items() if v is not None]
                if rows:
                    db.executemany(_UPSERT_ROW, rows)
                if len(rows) != len(puts):
                    db.executemany(_DELETE_ROW, [(oid, k) for k, v in puts.items() if v is None])
            if ws.update_registry or ws.clear:
                db.execute(
                    _UPSERT_OBJECT, (oid, ws.class_name, ws.name, ws.bytes_after, ws.created_ms)
                )
        db.execute("COMMIT")

    def _check_fence(self, ws: WriteSet, claims: Claims, valid: bool) -> DohostError | None:
        """(Committer, inside the batch's write transaction.) FENCED unless this node
        still holds the write set's claim and the shard's fence is still its epoch."""
        p, epoch = ws.partition, ws.epoch
        if not valid or claims.epoch_of(p) != epoch:
            return claim_lost(p, epoch)
        stored = self._fence.get(p)
        if stored is None:
            row = self._db.execute(_FENCE_GET, (p,)).fetchone()
            if row is not None:
                stored = self._fence[p] = int(row[0])
        return None if stored == epoch else fenced(p, epoch, stored)

    def _write_fences(self, epochs: dict[int, int], sync: bool = True) -> list[int]:
        """(Committer connection.) Raise the fence of each partition to its epoch,
        unless a larger one is stored; returns the partitions so refused."""
        if not epochs:
            return []
        db = self._db
        by_epoch: dict[int, list[int]] = {}
        for p, e in epochs.items():
            by_epoch.setdefault(e, []).append(p)
        runs = [(*run, e) for e, ps in by_epoch.items() for run in progressions(ps)]
        refused: list[int] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for run in runs:
                db.execute(_FENCE_RAISE, run)
            for run in runs:
                refused.extend(p for (p,) in db.execute(_FENCE_REFUSED, run))
            db.execute("COMMIT")
            if sync:
                self._sync_wal()
        except (apsw.Error, OSError) as e:
            self._rollback()
            raise storage_error(f"cannot write the fence of kv shard {self.path}: {e}") from e
        self._fence.clear()  # read again as commits need them
        return sorted(refused)

    def fence(self, epochs: dict[int, int], timeout: float | None = None) -> list[int]:
        """Write newly claimed partitions' epochs into this shard (through the
        committer, after what is queued); returns the partitions refused because a
        newer epoch is stored. Blocking."""
        req = _FenceRequest(epochs)
        with self._cv:
            if self._closing:
                raise self._closed_error()
            self._fence_requests.append(req)
            self._cv.notify()
        return req.wait(timeout)

    def _heal(self) -> None:
        """After a failed fsync: make every committed write durable another way
        (storage/wal_heal.py), and if that succeeds, accept writes again. Failures (or a
        reader holding an old snapshot) leave the shard broken, to be tried again before
        the next batch."""
        durable = self.durability == Durability.FSYNC
        try:
            if not heal_wal(self._db, self.path, self._fsync if durable else None, self._sync_wal):
                return
        except (apsw.Error, OSError) as e:
            _log.warning("kv shard %s is still broken: %s", self.path, e)
            return
        _log.warning("kv shard %s healed after a failed fsync: writing again", self.path)
        self._broken = None
        self._fsync_failed = False

    def _rollback(self) -> None:
        try:
            if not self._db.get_autocommit():
                self._db.execute("ROLLBACK")
        except apsw.Error as e:
            # The connection is in an unknown state: stop writing through it.
            self._broken = storage_error(
                f"kv shard {self.path} could not roll back a failed commit ({e}); it accepts "
                "no more writes until the host restarts"
            )
            _log.error("%s", self._broken)

    def _sync_wal(self) -> None:
        """fsync the WAL file (FSYNC mode); a new WAL file's directory too."""
        if self.durability != Durability.FSYNC:
            return
        try:
            ino = os.stat(self._wal_path).st_ino
        except FileNotFoundError:
            return  # nothing was ever written through the WAL
        if self._wal_fd is None or ino != self._wal_ino:
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None
            fd = os.open(self._wal_path, os.O_RDONLY | os.O_CLOEXEC)
            self._wal_fd = fd
            self._wal_ino = os.fstat(fd).st_ino
            fsync_dir(self._dir, self._fsync)
        self._fsync(self._wal_fd)
        self.stats.fsyncs += 1

    # ---------------------------------------------------------------------- close

    def close(self) -> None:
        """Commit what is queued, stop the committer, close every connection. Idempotent."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            readers, self._readers = self._readers, []
        for conn in readers:
            try:
                conn.close(True)
            except apsw.Error:
                _log.warning("closing a reader of %s failed", self.path, exc_info=True)
        try:
            # The last connection to close checkpoints the WAL into the database (fsyncing
            # both) and removes it.
            self._db.close(True)
        except apsw.Error:
            _log.warning("closing kv shard %s failed", self.path, exc_info=True)
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None

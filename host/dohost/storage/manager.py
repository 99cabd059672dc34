"""`StorageManager`: the storage of every tenant under one data directory.

Layout of the data directory:

    tenants/<tenant>/kv/SHARDS                         the tenant's shard count (fixed once written)
    tenants/<tenant>/kv/shard-<n>.db                   kv backend: rows of many objects
    tenants/<tenant>/sqlite/<class>/<object_id_hex>.db sqlite backend: one file per object

The manager opens shards lazily (each with its committer thread), hands out one
`ObjectStorage` per activation, lists a class's objects and an object's entries for
operators, deletes objects, and stops every thread on `close`. An object's shard is a
stable function of its id (its first four bytes, modulo the tenant's shard count); the
count is written to `SHARDS` on the tenant's first use so that a different setting later
cannot move objects away from their rows.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from heapq import merge
from typing import TypeAlias

from dohost.core.errors import Code, DohostError
from dohost.core.limits import LIST_MAX_BYTES, LIST_MAX_ENTRIES, EventLimits
from dohost.core.names import check_name
from dohost.storage.api import Backend, Durability, ListOptions, ListResult
from dohost.storage.fencing import NO_FENCE, Claims, epoch_for
from dohost.storage.fsutil import Fsync, ensure_dir, fsync_dir, sync_data, write_file_durably
from dohost.storage.kv_object import DEFAULT_CACHE_BYTES, KvObjectStorage
from dohost.storage.kv_shard import KvShard, ObjectRow
from dohost.storage.list_range import KeyRange, collect
from dohost.storage.sqlite_object import SqliteObjectStorage, read_entries, read_meta
from dohost.storage.wal_flusher import WalFlusher
from dohost.storage.write_set import WriterState, WriteSet

_log = logging.getLogger(__name__)

OBJECT_ID_BYTES = 32
SHARDS_FILE = "SHARDS"
_SQLITE_FILE = re.compile(r"[0-9a-f]{64}\.db")

AnyObjectStorage: TypeAlias = KvObjectStorage | SqliteObjectStorage


@dataclass(frozen=True)
class ObjectInfo:
    object_id: bytes
    class_name: str
    name: str | None
    bytes: int  # kv: sum of len(key)+len(value); sqlite: size of the database file
    created_ms: int | None


@dataclass(frozen=True)
class ObjectPage:
    objects: list[ObjectInfo]
    next_after: bytes | None  # pass as `after` for the next page; None on the last page


@dataclass(frozen=True)
class StorageStats:
    durability: str
    shards_open: int
    kv_batches: int  # committed transactions, all shards
    kv_write_sets: int  # events committed
    kv_fsyncs: int
    kv_failed_batches: int
    wal_rounds: int
    wal_requests: int
    wal_fsyncs: int
    wal_failures: int


def check_object_id(object_id: bytes) -> bytes:
    if not isinstance(object_id, bytes) or len(object_id) != OBJECT_ID_BYTES:
        raise DohostError(
            Code.INVALID_ID, f"an object id is {OBJECT_ID_BYTES} bytes (64 hex characters)"
        )
    return object_id


def _check_backend(backend: str) -> None:
    if backend not in (Backend.KV, Backend.SQLITE):
        raise DohostError(
            Code.INVALID_ARGUMENT,
            f"unknown storage backend {backend!r}: use {Backend.KV!r} or {Backend.SQLITE!r}",
        )


@dataclass(frozen=True, slots=True)
class RestoredKvObject:
    """A whole kv object as a restore rebuilt it (`StorageManager.write_restored_kv`)."""

    object_id: bytes
    class_name: str
    name: str | None
    created_ms: int
    rows: dict[bytes, bytes]
    alarm: int | None


class StorageManager:
    """Every tenant's storage under `data_dir`. Thread-safe."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        durability: str = Durability.FSYNC,
        *,
        shards_per_tenant: int = 4,
        object_quota_bytes: int = EventLimits().object_storage_bytes,
        cache_max_bytes: int = DEFAULT_CACHE_BYTES,
        vfs: str | None = None,
        fsync: Fsync = sync_data,
        list_max_entries: int = LIST_MAX_ENTRIES,
        list_max_bytes: int = LIST_MAX_BYTES,
        claims: Claims | None = None,
        on_kv_commit: Callable[[str, list[WriteSet]], None] | None = None,
        kv_commit_gate: bool = False,
    ) -> None:
        """With `claims` (an ownership backend), every object's writes are fenced by
        the epoch of its partition's claim (storage/fencing.py), and opening an object
        whose partition is not held fails with NOT_OWNER.
        `on_kv_commit(tenant, write_sets)` sees every kv batch once it is durable
        (KvShard's `on_commit`): the replicator's hook; with `kv_commit_gate` it also
        resolves their tickets (KvShard's `replica_gate`: a sync replica)."""
        if durability not in (Durability.FSYNC, Durability.OS):
            raise ValueError(f"unknown durability {durability!r}")
        if shards_per_tenant < 1:
            raise ValueError("shards_per_tenant must be at least 1")
        self.data_dir = os.path.abspath(os.fspath(data_dir))
        self.durability = durability
        self._shards_per_tenant = shards_per_tenant
        self._quota = object_quota_bytes
        self._cache_max = cache_max_bytes
        self._vfs = vfs
        self._fsync = fsync
        self._list_max_entries = list_max_entries
        self._list_max_bytes = list_max_bytes
        self._on_kv_commit = on_kv_commit
        self._kv_commit_gate = kv_commit_gate
        self._lock = threading.Lock()
        self._shard_counts: dict[str, int] = {}
        self._shards: dict[tuple[str, int], KvShard] = {}
        self._live: weakref.WeakValueDictionary[tuple[str, str, bytes], AnyObjectStorage] = (
            weakref.WeakValueDictionary()
        )
        self._flusher = WalFlusher(durability, fsync=fsync)
        self._closed = False
        self.claims = claims

    # ---------------------------------------------------------------------- paths

    def tenant_dir(self, tenant: str) -> str:
        return os.path.join(self.data_dir, "tenants", check_name("tenant", tenant))

    def kv_dir(self, tenant: str) -> str:
        return os.path.join(self.tenant_dir(tenant), "kv")

    def sqlite_dir(self, tenant: str, class_name: str) -> str:
        return os.path.join(self.tenant_dir(tenant), "sqlite", check_name("class", class_name))

    def sqlite_path(self, tenant: str, class_name: str, object_id: bytes) -> str:
        return os.path.join(
            self.sqlite_dir(tenant, class_name), check_object_id(object_id).hex() + ".db"
        )

    # ---------------------------------------------------------------------- shards

    def _check_open(self) -> None:
        if self._closed:
            raise DohostError(Code.SHUTTING_DOWN, "the storage is closed")

    def _shard_count(self, tenant: str, create: bool) -> int | None:
        n = self._shard_counts.get(tenant)
        if n is not None:
            return n
        kv_dir = self.kv_dir(tenant)
        path = os.path.join(kv_dir, SHARDS_FILE)
        try:
            with open(path, "rb") as f:
                n = int(f.read().strip())
        except FileNotFoundError:
            if not create:
                return None
            ensure_dir(kv_dir, self._fsync)
            n = self._shards_per_tenant
            write_file_durably(path, f"{n}\n".encode(), self._fsync)
        except ValueError as e:
            raise DohostError(Code.INTERNAL, f"{path} is damaged: {e}") from e
        if n != self._shards_per_tenant:
            _log.info("tenant %s keeps its %d kv shards (configured: %d)", tenant, n,
                      self._shards_per_tenant)  # fmt: skip
        self._shard_counts[tenant] = n
        return n

    def _shard_at(self, tenant: str, index: int) -> KvShard:
        shard = self._shards.get((tenant, index))
        if shard is not None:
            return shard
        with self._lock:
            self._check_open()
            shard = self._shards.get((tenant, index))
            if shard is None:
                path = os.path.join(self.kv_dir(tenant), f"shard-{index}.db")
                hook = self._on_kv_commit
                shard = KvShard(
                    path,
                    self.durability,
                    vfs=self._vfs,
                    fsync=self._fsync,
                    claims=self.claims,
                    on_commit=None if hook is None else functools.partial(hook, tenant),
                    replica_gate=self._kv_commit_gate,
                )
                if shard.refused:
                    _log.warning("%s: newer claims exist for partitions %s", path, shard.refused)
                self._shards[(tenant, index)] = shard
            return shard

    def _shard_for(self, tenant: str, object_id: bytes, create: bool) -> KvShard | None:
        with self._lock:
            n = self._shard_count(tenant, create)
        if n is None:
            return None
        index = int.from_bytes(object_id[:4], "big") % n
        if not create and (tenant, index) not in self._shards:
            path = os.path.join(self.kv_dir(tenant), f"shard-{index}.db")
            if not os.path.exists(path):
                return None
        return self._shard_at(tenant, index)

    # ---------------------------------------------------------------------- objects

    def open_object(
        self,
        tenant: str,
        class_name: str,
        object_id: bytes,
        name: str | None = None,
        backend: str = Backend.KV,
    ) -> AnyObjectStorage:
        """The storage of one object for one activation. Close it when the activation
        ends; its committed writes still reach the disk."""
        self._check_open()
        check_name("class", class_name)
        check_object_id(object_id)
        _check_backend(backend)
        fence = NO_FENCE if self.claims is None else epoch_for(self.claims, object_id)
        obj: AnyObjectStorage
        if backend == Backend.KV:
            shard = self._shard_for(tenant, object_id, create=True)
            assert shard is not None
            obj = KvObjectStorage(
                shard,
                object_id,
                class_name,
                name,
                quota_bytes=self._quota,
                cache_max_bytes=self._cache_max,
                list_max_entries=self._list_max_entries,
                list_max_bytes=self._list_max_bytes,
                fence=fence,
            )
        else:
            obj = SqliteObjectStorage(
                self.sqlite_path(tenant, class_name, object_id),
                object_id,
                class_name,
                name,
                self._flusher,
                quota_bytes=self._quota,
                vfs=self._vfs,
                fsync=self._fsync,
                list_max_entries=self._list_max_entries,
                list_max_bytes=self._list_max_bytes,
                fence=fence,
                claims=self.claims,
            )
        with self._lock:
            self._live[(tenant, class_name, object_id)] = obj
        return obj

    def list_objects(
        self,
        tenant: str,
        class_name: str,
        backend: str = Backend.KV,
        *,
        after: bytes | None = None,
        limit: int = 100,
    ) -> ObjectPage:
        """Objects of a class that have stored something, by object id, from after
        `after`. Names are those the objects were first committed with."""
        self._check_open()
        check_name("class", class_name)
        _check_backend(backend)
        if limit < 1:
            raise DohostError(Code.INVALID_ARGUMENT, "limit must be at least 1")
        if backend == Backend.KV:
            found = self._list_kv_objects(tenant, class_name, after or b"", limit + 1)
        else:
            found = self._list_sqlite_objects(tenant, class_name, after, limit + 1)
        if len(found) > limit:
            return ObjectPage(found[:limit], found[limit - 1].object_id)
        return ObjectPage(found, None)

    def kv_usage(
        self, tenant: str, owns: Callable[[bytes], bool] | None = None
    ) -> dict[str, tuple[int, int]]:
        """class -> (objects, bytes) the tenant's kv-backed classes have stored (the
        objects `owns` accepts), from its shards' registry rows: SQLite counts, the host
        makes no object per row (restart time stays near flat in stored objects)."""
        self._check_open()
        with self._lock:
            count = self._shard_count(tenant, create=False)
        out: dict[str, list[int]] = {}
        for i in range(count or 0):
            if (tenant, i) not in self._shards and not os.path.exists(
                os.path.join(self.kv_dir(tenant), f"shard-{i}.db")
            ):
                continue
            for cls, (n, b) in self._shard_at(tenant, i).class_usage(owns).items():
                u = out.setdefault(cls, [0, 0])
                u[0] += n
                u[1] += b
        return {cls: (n, b) for cls, (n, b) in out.items()}

    def kv_object_size(self, tenant: str, class_name: str, object_id: bytes) -> int | None:
        """The committed size of a kv-backed object of `class_name` (None: it has stored
        nothing). Does not wait for the object's queued commits: for objects that have
        none (no event of theirs ran in this process)."""
        self._check_open()
        shard = self._shard_for(tenant, object_id, create=False)
        if shard is None:
            return None
        row = shard.object_row(object_id)
        return None if row is None or row.class_name != class_name else row.bytes

    def _list_kv_objects(
        self, tenant: str, class_name: str, after: bytes, n: int
    ) -> list[ObjectInfo]:
        with self._lock:
            count = self._shard_count(tenant, create=False)
        if count is None:
            return []
        per_shard: list[list[ObjectRow]] = []
        for i in range(count):
            if (tenant, i) not in self._shards and not os.path.exists(
                os.path.join(self.kv_dir(tenant), f"shard-{i}.db")
            ):
                continue
            per_shard.append(self._shard_at(tenant, i).list_objects(class_name, after, n))
        rows = list(merge(*per_shard))[:n]  # rows are tuples led by the object id
        return [ObjectInfo(r.object_id, r.class_name, r.name, r.bytes, r.created_ms) for r in rows]

    def _list_sqlite_objects(
        self, tenant: str, class_name: str, after: bytes | None, n: int
    ) -> list[ObjectInfo]:
        d = self.sqlite_dir(tenant, class_name)
        try:
            files = sorted(f for f in os.listdir(d) if _SQLITE_FILE.fullmatch(f))
        except FileNotFoundError:
            return []
        after_name = after.hex() + ".db" if after is not None else ""
        out: list[ObjectInfo] = []
        for f in files:
            if f <= after_name:
                continue
            meta = read_meta(os.path.join(d, f), self._vfs)
            if meta is None:
                continue  # deleted meanwhile
            name, created_ms, size = meta
            out.append(ObjectInfo(bytes.fromhex(f[:64]), class_name, name, size, created_ms))
            if len(out) >= n:
                break
        return out

    def object_entries(
        self,
        tenant: str,
        class_name: str,
        object_id: bytes,
        backend: str = Backend.KV,
        opts: ListOptions = ListOptions(),  # noqa: B008 (frozen, so sharing is safe)
    ) -> ListResult:
        """An object's committed keys and values, paginated like kv_list (continue with
        `start` past the last key while `more` is set)."""
        self._check_open()
        check_name("class", class_name)
        check_object_id(object_id)
        _check_backend(backend)
        if backend == Backend.SQLITE:
            return read_entries(
                self.sqlite_path(tenant, class_name, object_id),
                opts,
                self._vfs,
                max_entries=self._list_max_entries,
                max_bytes=self._list_max_bytes,
            )
        rng = KeyRange.from_options(opts)
        shard = self._shard_for(tenant, object_id, create=False)
        if shard is None or rng.empty:
            return ListResult([], False)
        shard.wait_idle(object_id)
        with closing(shard.scan(object_id, rng.lo, rng.hi, rng.reverse)) as rows:
            return collect(rows, rng.limit, self._list_max_entries, self._list_max_bytes)

    def delete_object(
        self,
        tenant: str,
        class_name: str,
        object_id: bytes,
        backend: str = Backend.KV,
        *,
        unfenced: bool = False,
    ) -> None:
        """Delete every key of an object, its registry row and (sqlite) its file; returns
        once that is durable. The object must have no live activation. `unfenced`: for
        deleting a whole class or tenant, whatever partitions its objects are in (the
        class has left the registry first); otherwise the object's partition must be
        held (NOT_OWNER) and the delete is fenced like any commit."""
        self._check_open()
        check_name("class", class_name)
        check_object_id(object_id)
        _check_backend(backend)
        live = self._live.get((tenant, class_name, object_id))
        if live is not None and not live.closed:
            raise DohostError(
                Code.INVALID_ARGUMENT,
                f"object {object_id.hex()} is active; end its activation before deleting it",
            )
        fence = NO_FENCE if self.claims is None or unfenced else epoch_for(self.claims, object_id)
        if backend == Backend.KV:
            shard = self._shard_for(tenant, object_id, create=False)
            if shard is None:
                return
            ws = WriteSet(
                partition=fence[0],
                epoch=fence[1],
                object_id=object_id,
                class_name=class_name,
                name=None,
                created_ms=0,
                clear=True,
                puts={},
                bytes_after=0,
                writer=WriterState(),
                drop=True,
            )
            err = shard.submit(ws).wait()
            if err is not None:
                raise err
            return
        path = self.sqlite_path(tenant, class_name, object_id)
        removed = False
        for p in (path + "-wal", path + "-shm", path):
            try:
                os.remove(p)
                removed = True
            except FileNotFoundError:
                pass
        self._flusher.forget(path + "-wal")
        if removed and self.durability == Durability.FSYNC:
            fsync_dir(os.path.dirname(path), self._fsync)

    def rename_class(self, tenant: str, old: str, new: str) -> None:
        """Move class `old`'s objects to class `new`, durably, keeping their ids and data:
        kv registry rows are updated in every shard of the tenant; the sqlite class
        directory is renamed (one atomic rename). Idempotent, so an interrupted rename is
        finished by calling it again. No object of the class may be live."""
        self._check_open()
        check_name("class", old)
        check_name("class", new)
        with self._lock:
            busy = [k for k, o in self._live.items() if k[:2] == (tenant, old) and not o.closed]
        if busy:
            raise DohostError(
                Code.INVALID_ARGUMENT,
                f"class {old} has {len(busy)} active objects; end their activations first",
            )
        count = self._shard_count(tenant, create=False)
        for i in range(count or 0):
            self._shard_at(tenant, i).rename_class(old, new)
        src, dst = self.sqlite_dir(tenant, old), self.sqlite_dir(tenant, new)
        if os.path.isdir(src):
            if os.path.isdir(dst) and not os.listdir(dst):
                os.rmdir(dst)  # an empty directory left by a class of that name once
            try:
                os.rename(src, dst)
            except FileNotFoundError:
                # Another node of the data set finished the same rename first (nodes
                # finish interrupted renames at start, and after a node died mid-rename).
                if not os.path.isdir(dst):
                    raise
            if self.durability == Durability.FSYNC:
                fsync_dir(os.path.dirname(src), self._fsync)

    def write_restored_kv(
        self,
        tenant: str,
        objects: list[RestoredKvObject],
        fence: Callable[[bytes], tuple[int, int]] | None = None,
    ) -> None:
        """Write whole kv objects of `tenant` (a restore from a replica): each object's
        rows, registry row and alarm replace what it had; returns once all are durable.
        Submitted together, so the shards group-commit them. `fence`: the (partition,
        epoch) each object is written under (a node restoring partitions it just claimed,
        server/cluster_restore.py); without, unfenced (a new data directory)."""
        self._check_open()
        tickets = []
        for obj in objects:
            check_object_id(obj.object_id)
            shard = self._shard_for(tenant, obj.object_id, create=True)
            assert shard is not None
            ws = WriteSet(
                object_id=obj.object_id,
                class_name=obj.class_name,
                name=obj.name,
                created_ms=obj.created_ms,
                clear=True,
                puts=dict(obj.rows),
                bytes_after=sum(len(k) + len(v) for k, v in obj.rows.items()),
                writer=WriterState(),
                alarm=obj.alarm,
            )
            if fence is not None:
                ws.partition, ws.epoch = fence(obj.object_id)
            tickets.append(shard.submit(ws))
        for ticket in tickets:
            err = ticket.wait()
            if err is not None:
                raise err

    def delete_tenant(self, tenant: str) -> None:
        """Delete every object of a tenant (both backends) and its directory, durably.
        None of its objects may have a live activation."""
        self._check_open()
        tdir = self.tenant_dir(tenant)
        with self._lock:
            busy = [k for k, o in self._live.items() if k[0] == tenant and not o.closed]
            if busy:
                raise DohostError(
                    Code.INVALID_ARGUMENT,
                    f"tenant {tenant} has {len(busy)} active objects; end their activations "
                    "before deleting it",
                )
            shards = [s for k, s in self._shards.items() if k[0] == tenant]
            for k in [k for k in self._shards if k[0] == tenant]:
                del self._shards[k]
            self._shard_counts.pop(tenant, None)
        for shard in shards:
            shard.close()
        if not os.path.isdir(tdir):
            return
        # Rename first: a crash half way through leaves no half-deleted tenant behind,
        # only a directory that the next call (or an operator) can remove.
        parent = os.path.dirname(tdir)
        doomed = os.path.join(parent, f".deleted-{tenant}-{time.time_ns()}")
        os.rename(tdir, doomed)
        if self.durability == Durability.FSYNC:
            fsync_dir(parent, self._fsync)
        shutil.rmtree(doomed, ignore_errors=True)
        for name in os.listdir(parent):  # leftovers of earlier interrupted deletions
            if name.startswith(".deleted-"):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)

    # ---------------------------------------------------------------------- lifecycle

    def fence(self, epochs: dict[int, int]) -> list[int]:
        """Newly claimed partitions: write their epochs into every open kv shard
        (shards opened later write them at open), before any object of them is read.
        Returns the partitions refused because a newer epoch is stored somewhere.
        (sqlite objects fence themselves when opened.) Blocking."""
        with self._lock:
            # Under the lock: a shard opening now either is listed here or reads the
            # claims (already updated by the caller) when it opens.
            shards = list(self._shards.values())
        refused: set[int] = set()
        for shard in shards:
            refused.update(shard.fence(epochs))
        return sorted(refused)

    def flush(self, timeout: float | None = None) -> None:
        """Block until every commit handed over so far has resolved."""
        for shard in list(self._shards.values()):
            shard.flush(timeout)
        self._flusher.flush(timeout)

    def stats(self) -> StorageStats:
        shards = list(self._shards.values())
        fl = self._flusher.stats
        return StorageStats(
            durability=self.durability,
            shards_open=len(shards),
            kv_batches=sum(s.stats.batches for s in shards),
            kv_write_sets=sum(s.stats.write_sets for s in shards),
            kv_fsyncs=sum(s.stats.fsyncs for s in shards),
            kv_failed_batches=sum(s.stats.failed_batches for s in shards),
            wal_rounds=fl.rounds,
            wal_requests=fl.requests,
            wal_fsyncs=fl.fsyncs,
            wal_failures=fl.failures,
        )

    def close(self) -> None:
        """Close live object storages (dropping unfinished events), commit and fsync what
        is pending, stop every thread and close every connection. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            live = list(self._live.values())
            shards = list(self._shards.values())
        for obj in live:
            try:
                obj.close()
            except Exception:
                _log.warning("closing object storage failed", exc_info=True)
        for shard in shards:
            shard.close()
        self._flusher.close()

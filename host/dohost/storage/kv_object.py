"""`ObjectStorage` of one activation of a `kv`-backend object, over a `KvShard`.

A write-back cache serves every key this activation has read or written from memory (a
cached get is one dict lookup). The cache maps key -> value, or -> None when the key is
known to be absent; after `delete_all` it is *complete*: a key it does not hold does not
exist, and the shard is not asked at all.

An event writes straight into the cache and records, per key, the entry it replaced (the
undo log); `rollback_event` puts those back, so it discards exactly the event's writes.
`commit_event` turns the undo log's keys into a `WriteSet` for the shard's committer and
forgets the undo log: the values stay in the cache, so later events see them while the
commit is still in flight. `delete_all` swaps in an empty complete cache and keeps the old
one aside until the event ends.

`list` merges the shard's rows with the cache: a cached key (value or tombstone) always
wins over the shard's row, which may or may not already reflect the in-flight writes.

Byte accounting: the registry row holds sum(len(key)+len(value)) of the object; this
instance tracks it through its own writes (asking the shard only for the length of values
it has not cached) and enforces the per-object quota before any write is made.
"""

from __future__ import annotations

import enum
import heapq
import logging
import time
from bisect import bisect_left
from collections.abc import Iterator
from contextlib import closing
from operator import itemgetter
from typing import Final

from dohost.core.errors import DohostError
from dohost.core.limits import (
    LIST_MAX_BYTES,
    LIST_MAX_ENTRIES,
    MAX_ENTRY_BYTES,
    MAX_KEY_BYTES,
    EventLimits,
)
from dohost.storage.api import CommitTicket, ListOptions, ListResult, storage_error
from dohost.storage.fencing import NO_FENCE
from dohost.storage.kv_shard import KvShard
from dohost.storage.list_range import KeyRange, collect
from dohost.storage.validate import (
    check_count,
    check_entry,
    check_key,
    quota_exceeded,
)
from dohost.storage.write_set import ALARM_UNCHANGED, WriterState, WriteSet

_log = logging.getLogger(__name__)


class _Missing(enum.Enum):
    M = 0


MISSING: Final = _Missing.M  # "not in the cache", as opposed to None ("known absent")

ENTRY_OVERHEAD = 64  # rough per-entry memory cost, for the cache budget
DEFAULT_CACHE_BYTES = 32 * 1024 * 1024

_first = itemgetter(0)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class KvObjectStorage:
    """Storage of one object in a kv shard, for one activation (one thread at a time)."""

    __slots__ = (
        "__weakref__",
        "_alarm",
        "_alarm_known",
        "_alarm_undo",
        "_cache",
        "_cache_bytes",
        "_cache_max",
        "_class",
        "_closed",
        "_complete",
        "_created_ms",
        "_event_clear",
        "_event_start_bytes",
        "_fence",
        "_last_ticket",
        "_list_max_bytes",
        "_list_max_entries",
        "_loaded",
        "_name",
        "_new_keys",
        "_oid",
        "_pre_clear",
        "_quota",
        "_registered_bytes",
        "_shard",
        "_sorted_keys",
        "_undo",
        "_used",
        "_writer",
    )

    def __init__(
        self,
        shard: KvShard,
        object_id: bytes,
        class_name: str,
        name: str | None = None,
        *,
        quota_bytes: int = EventLimits().object_storage_bytes,
        cache_max_bytes: int = DEFAULT_CACHE_BYTES,
        list_max_entries: int = LIST_MAX_ENTRIES,
        list_max_bytes: int = LIST_MAX_BYTES,
        fence: tuple[int, int] = NO_FENCE,
    ) -> None:
        """`fence`: (partition, epoch) every write set carries (storage/fencing.py)."""
        self._shard = shard
        self._fence = fence
        self._oid = object_id
        self._class = class_name
        self._name = name
        self._quota = quota_bytes
        self._cache_max = cache_max_bytes
        self._list_max_entries = list_max_entries
        self._list_max_bytes = list_max_bytes

        self._cache: dict[bytes, bytes | None] = {}
        self._complete = False  # the cache knows every key (after delete_all)
        self._cache_bytes = 0  # an upper bound of the cache's size
        self._sorted_keys: list[bytes] | None = None  # cache keys in order, for list
        self._new_keys: list[bytes] = []  # cache keys added since _sorted_keys was built

        # the current event
        self._undo: dict[bytes, bytes | _Missing | None] = {}  # key -> entry it replaced
        self._event_clear = False
        self._pre_clear: tuple[dict[bytes, bytes | None], dict[bytes, bytes | _Missing | None], bool] | None = None  # fmt: skip
        self._event_start_bytes = 0

        # The object's alarm as this activation sees it (loaded on first use), and its
        # value before the current event changed it (a 1-tuple), for rollback.
        self._alarm: int | None = None
        self._alarm_known = False
        self._alarm_undo: tuple[int | None] | None = None

        self._loaded = False
        self._used = 0  # sum of len(key)+len(value), this event's writes included
        self._created_ms = 0
        self._registered_bytes = -1  # byte count of the registry row (as last sent); -1: none
        self._writer = WriterState()
        self._last_ticket = CommitTicket.completed()
        self._closed = False

    # ------------------------------------------------------------------ properties

    @property
    def object_id(self) -> bytes:
        return self._oid

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def bytes_used(self) -> int:
        """Sum of len(key)+len(value) of the object, this event's writes included."""
        self._ensure_loaded()
        return self._used

    # ------------------------------------------------------------------- internals

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        if self._closed:
            raise self._closed_error()
        # A previous activation's commits may still be queued: the shard must hold them
        # before this one reads rows or the byte count.
        self._shard.wait_idle(self._oid)
        row = self._shard.object_row(self._oid)
        if row is None:
            self._used = 0
            self._created_ms = _now_ms()
        else:
            self._used = row.bytes
            self._created_ms = row.created_ms if row.created_ms is not None else _now_ms()
            # a name learned only now must still reach the row
            if row.name is not None or self._name is None:
                self._registered_bytes = row.bytes
        self._event_start_bytes = self._used
        self._loaded = True

    def _closed_error(self) -> DohostError:
        return storage_error("this object's storage was closed (its activation ended)")

    def _remember(self, key: bytes, value: bytes | None) -> None:
        """Cache what the shard said about `key` (a read, not a write)."""
        if key not in self._cache:
            self._cache[key] = value
            self._new_keys.append(key)
            self._cache_bytes += len(key) + ENTRY_OVERHEAD + (len(value) if value else 0)

    def _write(self, key: bytes, value: bytes | None) -> None:
        cache = self._cache
        old = cache.get(key, MISSING)
        undo = self._undo
        if key not in undo:
            undo[key] = old
        if old is MISSING:
            self._new_keys.append(key)
            self._cache_bytes += len(key) + ENTRY_OVERHEAD
        elif old is not None:
            self._cache_bytes -= len(old)
        cache[key] = value
        if value is not None:
            self._cache_bytes += len(value)

    def _stored_size(self, key: bytes, cached: bytes | _Missing | None) -> int | None:
        """len(key)+len(value) of `key` as stored now, None if absent; `cached` is its
        cache entry. Asks the shard (for the length only) when the cache does not know."""
        if cached is MISSING:
            if self._complete:
                return None
            n = self._shard.value_size(self._oid, key)
            return None if n is None else len(key) + n
        return None if cached is None else len(key) + len(cached)

    def _existing(self, keys: list[bytes]) -> dict[bytes, int]:
        """The keys of `keys` that exist now -> len(key)+len(value), with one shard query
        for the keys the cache does not know."""
        cache = self._cache
        unknown = [] if self._complete else [k for k in keys if k not in cache]
        stored = self._shard.value_sizes(self._oid, unknown) if unknown else {}
        out: dict[bytes, int] = {}
        for k in keys:
            v = cache.get(k, MISSING)
            if v is MISSING:
                n = stored.get(k)
                if n is not None:
                    out[k] = len(k) + n
            elif v is not None:
                out[k] = len(k) + len(v)
        return out

    def _check_quota(self, delta: int) -> None:
        if delta > 0 and self._used + delta > self._quota:
            raise quota_exceeded(self._used, delta, self._quota)

    def _sorted(self) -> list[bytes]:
        keys = self._sorted_keys
        if keys is None:
            keys = self._sorted_keys = sorted(self._cache)
        elif self._new_keys:
            # timsort merges the sorted run with the short new one in linear time
            keys.extend(self._new_keys)
            keys.sort()
        self._new_keys = []
        return keys

    def _apply_undo(self, undo: dict[bytes, bytes | _Missing | None]) -> None:
        cache = self._cache
        removed = False
        for k, old in undo.items():
            if old is MISSING:
                cache.pop(k, None)
                removed = True
            else:
                cache[k] = old
        if removed:
            self._sorted_keys = None
            self._new_keys = []

    def _reset_cache(self) -> None:
        self._cache = {}
        self._complete = False
        self._cache_bytes = 0
        self._sorted_keys = None
        self._new_keys = []

    # ------------------------------------------------------------------- ObjectStorage

    def begin_event(self) -> None:
        if self._closed:
            raise self._closed_error()
        err = self._writer.error
        if err is not None:
            raise storage_error(
                f"an earlier commit of this object failed ({err.message}); its activation "
                "must be discarded and the object reloaded"
            )
        if self._undo or self._event_clear:
            _log.warning("begin_event with an unfinished event; rolling its writes back")
            self.rollback_event()
        if self._cache_bytes > self._cache_max and self._last_ticket.done:
            # Every write is in the shard now, so the cache can start over.
            self._reset_cache()

    def get(self, key: bytes) -> bytes | None:
        v = self._cache.get(key, MISSING)
        if v is MISSING:
            return self._get_slow(key)
        return v

    def _get_slow(self, key: bytes) -> bytes | None:
        check_key(key)
        self._ensure_loaded()
        if self._complete:
            return None
        v = self._shard.get(self._oid, key)
        self._remember(key, v)
        return v

    def get_many(self, keys: list[bytes]) -> dict[bytes, bytes]:
        check_count(keys)
        cache = self._cache
        out: dict[bytes, bytes] = {}
        missing: list[bytes] = []
        for k in keys:
            v = cache.get(k, MISSING)
            if v is MISSING:
                check_key(k)
                missing.append(k)
            elif v is not None:
                out[k] = v
        if missing:
            self._ensure_loaded()
            if not self._complete:
                unique = list(dict.fromkeys(missing))
                found = self._shard.get_many(self._oid, unique)
                for k in unique:
                    v = found.get(k)
                    self._remember(k, v)
                    if v is not None:
                        out[k] = v
        return out

    def put(self, key: bytes, value: bytes) -> None:
        klen = len(key)
        vlen = len(value)
        if klen > MAX_KEY_BYTES or klen + vlen > MAX_ENTRY_BYTES:
            check_entry(key, value)  # raises the right error
        cache = self._cache
        old = cache.get(key, MISSING)
        if old is MISSING:
            self._put_uncached(key, value)
            return
        # Hot path: a cached key (this implies the object is loaded).
        delta = klen + vlen if old is None else vlen - len(old)
        if delta > 0 and self._used + delta > self._quota:
            raise quota_exceeded(self._used, delta, self._quota)
        self._cache_bytes += vlen if old is None else delta
        undo = self._undo
        if key not in undo:
            undo[key] = old
        cache[key] = value
        self._used += delta

    def _put_uncached(self, key: bytes, value: bytes) -> None:
        self._ensure_loaded()
        old = self._stored_size(key, MISSING)
        delta = len(key) + len(value) - (old or 0)
        if delta > 0 and self._used + delta > self._quota:
            raise quota_exceeded(self._used, delta, self._quota)
        self._write(key, value)
        self._used += delta

    def put_many(self, entries: dict[bytes, bytes]) -> None:
        check_count(entries)
        for k, v in entries.items():
            check_entry(k, v)
        self._ensure_loaded()
        # Everything is checked before anything is written: all or nothing.
        exists = self._existing(list(entries))
        delta = sum(len(k) + len(v) - exists.get(k, 0) for k, v in entries.items())
        self._check_quota(delta)
        for k, v in entries.items():
            self._write(k, v)
        self._used += delta

    def delete(self, key: bytes) -> bool:
        check_key(key)
        self._ensure_loaded()
        cached = self._cache.get(key, MISSING)
        size = self._stored_size(key, cached)
        if size is None:  # absent already: nothing to write
            if cached is MISSING and not self._complete:
                self._remember(key, None)
            return False
        self._write(key, None)
        self._used -= size
        return True

    def delete_many(self, keys: list[bytes]) -> int:
        check_count(keys)
        for k in keys:
            check_key(k)
        self._ensure_loaded()
        unique = list(dict.fromkeys(keys))
        cache = self._cache
        exists = self._existing(unique)
        n = 0
        for k in unique:
            if k in exists:
                self._used -= exists[k]
                self._write(k, None)
                n += 1
            elif k not in cache and not self._complete:
                self._remember(k, None)
        return n

    def get_alarm(self) -> int | None:
        if not self._alarm_known:
            self._ensure_loaded()  # waits for earlier commits of this object
            self._alarm = self._shard.get_alarm(self._oid)
            self._alarm_known = True
        return self._alarm

    def set_alarm(self, due_ms: int | None) -> None:
        current = self.get_alarm()
        if self._alarm_undo is None:
            self._alarm_undo = (current,)
        self._alarm = due_ms

    def delete_all(self) -> None:
        self.set_alarm(None)
        self._ensure_loaded()
        if not self._event_clear:
            self._pre_clear = (self._cache, self._undo, self._complete)
            self._event_clear = True
        self._cache = {}
        self._undo = {}
        self._complete = True
        self._cache_bytes = 0
        self._sorted_keys = []
        self._new_keys = []
        self._used = 0

    def _overlay(
        self, keys: list[bytes], i: int, j: int, reverse: bool
    ) -> Iterator[tuple[bytes, bytes]]:
        """Cached values of keys[i:j] in the requested order, tombstones left out."""
        cache = self._cache
        for n in range(j - 1, i - 1, -1) if reverse else range(i, j):
            k = keys[n]
            v = cache.get(k)
            if v is not None:
                yield k, v

    def list(self, opts: ListOptions) -> ListResult:
        rng = KeyRange.from_options(opts)
        self._ensure_loaded()
        if rng.empty:
            return ListResult([], False)
        keys = self._sorted()
        i = bisect_left(keys, rng.lo)
        j = len(keys) if rng.hi is None else bisect_left(keys, rng.hi)
        overlay = self._overlay(keys, i, j, rng.reverse)
        if self._complete:
            return collect(overlay, rng.limit, self._list_max_entries, self._list_max_bytes)
        cache = self._cache
        with closing(self._shard.scan(self._oid, rng.lo, rng.hi, rng.reverse)) as rows:
            # A cached key hides the shard's row: the cache holds this activation's view.
            visible: Iterator[tuple[bytes, bytes]] = (kv for kv in rows if kv[0] not in cache)
            merged = (
                heapq.merge(overlay, visible, key=_first, reverse=rng.reverse) if i < j else visible
            )
            return collect(merged, rng.limit, self._list_max_entries, self._list_max_bytes)

    def rollback_event(self) -> None:
        if self._pre_clear is not None:
            self._cache, undo, self._complete = self._pre_clear
            self._apply_undo(undo)
            self._sorted_keys = None
            self._new_keys = []
        else:
            self._apply_undo(self._undo)
        if self._alarm_undo is not None:
            self._alarm = self._alarm_undo[0]
            self._alarm_undo = None
        self._undo = {}
        self._event_clear = False
        self._pre_clear = None
        self._used = self._event_start_bytes

    def commit_event(self) -> CommitTicket:
        err = self._writer.error
        if err is not None:
            self.rollback_event()
            return CommitTicket.failed(err)
        if not self._undo and not self._event_clear and self._alarm_undo is None:
            return self._last_ticket
        cache = self._cache
        ws = WriteSet(
            object_id=self._oid,
            class_name=self._class,
            name=self._name,
            created_ms=self._created_ms,
            clear=self._event_clear,
            puts={k: cache[k] for k in self._undo},
            bytes_after=self._used,
            writer=self._writer,
            update_registry=self._used != self._registered_bytes,
            alarm=ALARM_UNCHANGED if self._alarm_undo is None else self._alarm,
            partition=self._fence[0],
            epoch=self._fence[1],
        )
        self._alarm_undo = None
        self._registered_bytes = self._used
        self._undo = {}
        self._event_clear = False
        self._pre_clear = None
        self._event_start_bytes = self._used
        self._last_ticket = ws.ticket
        return self._shard.submit(ws)

    def close(self) -> None:
        """End this activation's use: the current event's writes are dropped, committed
        ones still reach the disk. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._loaded = False  # every call now reaches _ensure_loaded, which refuses
        self._undo = {}
        self._event_clear = False
        self._pre_clear = None
        self._alarm_undo = None
        self._alarm_known = False
        self._reset_cache()  # a get now misses the cache and reports the closed storage

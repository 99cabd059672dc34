"""Tenant-wide storage accounting: the storage-bytes and object-count quotas.

`TenantUsage` knows, for one tenant, the committed size of every object that has stored
something (so also how many objects exist) plus what events in flight have added since.
`QuotaStorage` wraps an object's `ObjectStorage` (installed through the supervisor's
`wrap_storage` hook) and refuses, with the ABI's `quota_exceeded`, any write that would
take the tenant above its storage quota, before the write is made: nothing is half
written, and the guest sees an error status, never a trap. The object quota is checked
before an event is delivered (`admit`), since an event of a new object may create it.

Sizes are the storage layer's own `bytes_used` (sum of len(key)+len(value)). At start
a `kv`-backed class is loaded as two numbers per class (objects, bytes: one SQLite
aggregate over its registry rows, `TenantUsage.load_class`), so that a restart does not
grow with the stored objects; an object leaves that aggregate for the per-object map the
first time anything counts it (`learn`: one registry read, once per object and process).
A `sqlite`-backed class is still loaded object by object from its listing, whose size is
the database file's (and which lists every object file, also one whose only events wrote
nothing); commits then replace it with the KV byte count.

Thread safety: wrappers run on worker threads (or inline on the loop thread); every
shared number is changed under `TenantUsage.lock`.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from dohost.core.errors import Code, DohostError
from dohost.core.ids import ObjectId
from dohost.server.shared_state import Usage
from dohost.storage.api import CommitTicket, ListOptions, ListResult, ObjectStorage

if TYPE_CHECKING:
    from dohost.server.shared_state import SharedState

ObjectKey = tuple[str, bytes]  # (class, object id)
# (class, object id) -> the committed size of a kv-backed object, None if it stored nothing
SizeLookup = Callable[[str, bytes], int | None]
_T = TypeVar("_T")


def _no_growth() -> int:
    return 0


class SizedStorage(ObjectStorage, Protocol):
    @property
    def bytes_used(self) -> int: ...


class TenantUsage:
    """Committed bytes and objects of one tenant, and what in-flight events add.

    Events in flight *reserve* room before they write (`reserve`) or before a new
    object's event is delivered (`admit`): a check and its reservation are one step
    under `lock` (and, with `--processes N`, under the tenant's host-wide lock with the
    other nodes' published numbers), so concurrent events, on this node or another,
    cannot together pass the quota. Reservations only ever count growth: room an event
    frees counts once it commits. Only growth takes the host-wide lock: a release, a
    commit (a reservation becoming usage) and a delete publish without it
    (`SharedState.publish_usage` orders the fields so that is safe)."""

    def __init__(self, tenant: str, max_bytes: int, max_objects: int) -> None:
        self.tenant = tenant
        self.max_bytes = max_bytes
        self.max_objects = max_objects
        self.lock = threading.Lock()
        # Committed size of each stored object known one by one; `unlisted` holds the
        # others (kv-backed classes, loaded as aggregates): class -> [objects, bytes].
        self.objects: dict[ObjectKey, int] = {}
        self.unlisted: dict[str, list[int]] = {}
        self._learned: set[ObjectKey] = set()  # keys `learn` has settled
        self.lookup: SizeLookup | None = None
        self.total = 0  # committed bytes of all objects, `unlisted` included
        self._pending: dict[ObjectKey, int] = {}  # size change of each event in flight
        self._reserved = 0  # sum of the positive size changes in `_pending`
        self._admitted: dict[ObjectKey, int] = {}  # new objects with events in flight
        # Metrics: bytes read and committed bytes written, per class.
        self.read_bytes: dict[str, int] = {}
        self.written_bytes: dict[str, int] = {}
        # `--processes N`: the other nodes' usage of this tenant is added to the checks,
        # and ours is published after each change (server/shared_state.py).
        self.shared: SharedState | None = None

    # ---------------------------------------------------------------- the other nodes

    @contextlib.contextmanager
    def _host_wide(self) -> Iterator[Usage]:
        """Under `lock`: the tenant's host-wide lock, and what the other nodes use and
        reserve (zeros with one process). Publish what changes before leaving."""
        if self.shared is None:
            yield _NOTHING
            return
        with self.shared.tenant_lock(self.tenant):
            yield self.shared.others_usage(self.tenant)

    def _count(self) -> int:
        """Stored objects (under `lock`)."""
        return len(self.objects) + sum(u[0] for u in self.unlisted.values())

    def _publish(self) -> None:
        """Under `lock`, and under `_host_wide` if what this node holds (committed +
        reserved) grew since it last published: tell the other nodes our numbers."""
        if self.shared is not None:
            new = sum(1 for k in self._admitted if k not in self.objects)
            self.shared.publish_usage(
                self.tenant, Usage(self.total, self._count(), self._reserved, new)
            )

    def publish(self) -> None:
        with self.lock, self._host_wide():
            self._publish()

    def host_totals(self) -> tuple[int, int]:
        """(bytes, objects) of this tenant committed on the whole host."""
        with self.lock:
            others = _NOTHING if self.shared is None else self.shared.others_usage(self.tenant)
            return self.total + others.bytes, self._count() + others.objects

    # ---------------------------------------------------------------- loading

    def load(self, class_name: str, object_id: bytes, size: int) -> None:
        with self.lock:
            old = self.objects.get((class_name, object_id), 0)
            self.objects[(class_name, object_id)] = size
            self.total += size - old

    def load_class(self, class_name: str, objects: int, size: int) -> None:
        """A kv-backed class's stored objects and bytes, as one aggregate."""
        with self.lock:
            u = self.unlisted.setdefault(class_name, [0, 0])
            u[0] += objects
            u[1] += size
            self.total += size

    def learn(self, key: ObjectKey) -> None:
        """Before `key` is counted (admitted, its storage opened, deleted): move it out of
        its class's aggregate into the per-object map, with its committed size."""
        if key in self._learned:
            return
        with self.lock:
            u = self.unlisted.get(key[0])
            if not u or u[0] == 0 or key in self.objects or self.lookup is None:
                self._learned.add(key)
                return
            lookup = self.lookup
        size = lookup(*key)  # a registry read, outside the lock
        with self.lock:
            if key in self._learned:
                return
            self._learned.add(key)
            u = self.unlisted.get(key[0])
            if size is None or not u or u[0] == 0 or key in self.objects:
                return
            u[0] -= 1
            u[1] -= size
            self.objects[key] = size  # the bytes move; the totals stay

    def bytes_by_class(self) -> dict[str, int]:
        with self.lock:
            out: dict[str, int] = {cls: u[1] for cls, u in self.unlisted.items()}
            for (cls, _), size in self.objects.items():
                out[cls] = out.get(cls, 0) + size
            return out

    def objects_by_class(self) -> dict[str, int]:
        with self.lock:
            out: dict[str, int] = {cls: u[0] for cls, u in self.unlisted.items()}
            for cls, _ in self.objects:
                out[cls] = out.get(cls, 0) + 1
            return out

    # ---------------------------------------------------------------- object quota

    def admit(self, key: ObjectKey) -> None:
        """Before an event: an object that does not exist yet counts against the object
        quota while its event runs. Raises QUOTA_EXCEEDED when there is no room; pair
        every successful call with `release`."""
        self.learn(key)
        with self.lock:
            if key in self.objects or key in self._admitted:
                self._admitted[key] = self._admitted.get(key, 0) + 1
                return
            with self._host_wide() as others:
                new = sum(1 for k in self._admitted if k not in self.objects)
                used = self._count() + new + others.objects + others.reserved_objects
                if used >= self.max_objects:
                    raise DohostError(
                        Code.QUOTA_EXCEEDED,
                        f"tenant {self.tenant!r} has reached its quota of {self.max_objects} "
                        "objects; delete objects or ask the admin for a higher quota",
                    )
                self._admitted[key] = 1
                self._publish()

    def release(self, key: ObjectKey) -> None:
        with self.lock:
            n = self._admitted.get(key, 0) - 1
            if n > 0:
                self._admitted[key] = n
                return
            self._admitted.pop(key, None)
            if key not in self.objects:  # a reservation ends (one that created is counted)
                self._publish()

    def forget(self, key: ObjectKey) -> None:
        """The object was deleted (`learn` it before deleting it)."""
        with self.lock:
            self.total -= self.objects.pop(key, 0)
            self._set_pending(key, 0)
            self._publish()

    def forget_class(self, class_name: str) -> None:
        """Every object of the class was deleted."""
        with self.lock:
            for key in [k for k in self.objects if k[0] == class_name]:
                self.total -= self.objects.pop(key)
                self._set_pending(key, 0)
            self.total -= self.unlisted.pop(class_name, [0, 0])[1]
            self._learned = {k for k in self._learned if k[0] != class_name}
            self._publish()

    def rename_class(self, old: str, new: str) -> None:
        """The class's objects now count under its new name."""
        with self.lock:
            for key in [k for k in self.objects if k[0] == old]:
                self.objects[(new, key[1])] = self.objects.pop(key)
            if old in self.unlisted:
                self.unlisted[new] = self.unlisted.pop(old)
            self._learned = {(new, k[1]) if k[0] == old else k for k in self._learned}

    # ---------------------------------------------------------------- storage quota

    def _set_pending(self, key: ObjectKey, event_delta: int) -> None:
        """Under `lock`."""
        old = self._pending.pop(key, 0)
        if event_delta:
            self._pending[key] = event_delta
        self._reserved += max(0, event_delta) - max(0, old)

    def reserve(self, key: ObjectKey, event_delta: int) -> bool:
        """Grow the object's event to `event_delta` bytes if that fits the quota, and
        count it at once as reserved (False, and nothing changed, if it does not fit).
        The check and the reservation are one step under the lock (and the host-wide
        lock): checked apart, two events on two worker threads (or two nodes) could
        each see the other's growth not yet counted and both write past the quota."""
        with self.lock, self._host_wide() as others:
            mine = self._reserved - max(0, self._pending.get(key, 0))
            used = self.total + mine + others.bytes + others.reserved_bytes
            if used + event_delta > self.max_bytes:
                return False
            grows = event_delta > self._pending.get(key, 0)
            self._set_pending(key, event_delta)
            if grows:
                self._publish()
            return True

    def set_pending(self, key: ObjectKey, event_delta: int) -> None:
        """The event's exact size change after a write: never above what it reserved,
        so the other nodes may go on seeing the reservation until the event ends."""
        with self.lock:
            self._set_pending(key, event_delta)

    def end_event(
        self, key: ObjectKey, size: int | None, class_name: str, read: int, written: int
    ) -> int | None:
        """The event ended: committed with the object now `size` bytes, or (None)
        rolled back. Returns the object's previous committed size (None if it had
        none), for `revert`."""
        with self.lock:
            if read:
                self.read_bytes[class_name] = self.read_bytes.get(class_name, 0) + read
            had_pending = key in self._pending
            if size is None:
                if had_pending:
                    self._set_pending(key, 0)
                    self._publish()
                return None
            if written:
                self.written_bytes[class_name] = self.written_bytes.get(class_name, 0) + written
            prev = self.objects.get(key)
            # The reservation becomes usage (never more than was reserved).
            self._set_pending(key, 0)
            self.objects[key] = size
            self.total += size - (prev or 0)
            self._publish()
            return prev

    def revert(self, key: ObjectKey, size: int, prev: int | None) -> None:
        """A commit failed: put back the size it replaced (unless a later one moved on;
        under the host-wide lock: the object may grow back)."""
        with self.lock:
            if self.objects.get(key) != size:
                return
            with self._host_wide():
                if prev is None:
                    del self.objects[key]
                else:
                    self.objects[key] = prev
                self.total += (prev or 0) - size
                self._publish()

    def quota_error(self, delta: int) -> DohostError:
        stored, _ = self.host_totals()
        return DohostError(
            Code.QUOTA_EXCEEDED,
            f"writing {delta} more bytes would take tenant {self.tenant!r} above its "
            f"storage quota of {self.max_bytes} bytes ({stored} stored); delete data first",
        )


_NOTHING = Usage()


class QuotaStorage:
    """An object's storage seen through its tenant's storage quota (one activation)."""

    __slots__ = ("_class", "_inner", "_key", "_read", "_start", "_usage", "_written", "_wrote")

    def __init__(self, inner: SizedStorage, usage: TenantUsage, class_name: str, oid: ObjectId):
        self._inner = inner
        self._usage = usage
        self._class = class_name
        self._key: ObjectKey = (class_name, oid.raw)
        usage.learn(self._key)
        self._start: int | None = None  # object size before the event's first write
        self._wrote = False
        self._read = 0
        self._written = 0

    def __getattr__(self, name: str) -> Any:
        # Backend extras (a sqlite object's connection, `closed`) pass through.
        return getattr(self._inner, name)

    # ---------------------------------------------------------------- accounting

    def _grow(self, worst: int, exact: Callable[[], int]) -> None:
        """Reserve the write's growth in the tenant quota, or refuse the write. `worst`
        assumes every key is new; only near the quota is the exact growth (`exact`, a
        read) computed. The reservation stands until `_after_write` (or `_unreserve`,
        if the write fails) replaces it with what the event really grew."""
        if self._start is None:
            self._start = self._inner.bytes_used
        so_far = self._inner.bytes_used - self._start
        if self._usage.reserve(self._key, so_far + worst):
            return
        delta = exact()
        if delta > 0 and not self._usage.reserve(self._key, so_far + delta):
            raise self._usage.quota_error(delta)

    def _write(self, worst: int, exact: Callable[[], int], write: Callable[[], _T]) -> _T:
        """Reserve, write, then count what the write really grew. A write that fails
        gives back its reservation (the event's pending growth is what it wrote)."""
        self._grow(worst, exact)
        try:
            out = write()
        except BaseException:
            assert self._start is not None
            with contextlib.suppress(Exception):
                self._usage.set_pending(self._key, self._inner.bytes_used - self._start)
            raise
        self._after_write()
        return out

    def _after_write(self) -> None:
        self._wrote = True
        assert self._start is not None
        self._usage.set_pending(self._key, self._inner.bytes_used - self._start)

    def _end(self, committed: bool) -> int | None:
        size = self._inner.bytes_used if committed and self._wrote else None
        prev = self._usage.end_event(self._key, size, self._class, self._read, self._written)
        self._start = None
        self._wrote = False
        self._read = self._written = 0
        return prev if size is not None else None

    # ---------------------------------------------------------------- ObjectStorage

    def begin_event(self) -> None:
        self._start = None
        self._wrote = False
        self._read = self._written = 0
        self._inner.begin_event()

    def get(self, key: bytes) -> bytes | None:
        v = self._inner.get(key)
        if v is not None:
            self._read += len(v)
        return v

    def get_many(self, keys: list[bytes]) -> dict[bytes, bytes]:
        found = self._inner.get_many(keys)
        self._read += sum(len(v) for v in found.values())
        return found

    def put(self, key: bytes, value: bytes) -> None:
        worst = len(key) + len(value)

        def exact() -> int:
            old = self._inner.get(key)
            return worst - (0 if old is None else len(key) + len(old))

        self._write(worst, exact, lambda: self._inner.put(key, value))
        self._written += worst

    def put_many(self, entries: dict[bytes, bytes]) -> None:
        worst = sum(len(k) + len(v) for k, v in entries.items())

        def exact() -> int:
            old = self._inner.get_many(list(entries))
            return worst - sum(len(k) + len(v) for k, v in old.items())

        self._write(worst, exact, lambda: self._inner.put_many(entries))
        self._written += worst

    def delete(self, key: bytes) -> bool:
        return self._write(0, _no_growth, lambda: self._inner.delete(key))

    def delete_many(self, keys: list[bytes]) -> int:
        return self._write(0, _no_growth, lambda: self._inner.delete_many(keys))

    def list(self, opts: ListOptions) -> ListResult:
        result = self._inner.list(opts)
        self._read += sum(len(k) + len(v) for k, v in result.entries)
        return result

    def delete_all(self) -> None:
        self._write(0, _no_growth, self._inner.delete_all)

    def rollback_event(self) -> None:
        self._inner.rollback_event()
        self._end(committed=False)

    def commit_event(self) -> CommitTicket:
        ticket = self._inner.commit_event()
        if ticket.done and ticket.error is not None:
            self._end(committed=False)
            return ticket
        size = self._inner.bytes_used if self._wrote else None
        prev = self._end(committed=True)
        if size is not None:
            key, usage = self._key, self._usage

            def on_done(t: CommitTicket) -> None:
                if t.error is not None:
                    usage.revert(key, size, prev)

            ticket.add_done_callback(on_done)
        return ticket

    def close(self) -> None:
        if self._start is not None:
            self._end(committed=False)
        self._inner.close()


class UsageBook:
    """Every tenant's `TenantUsage`; also the supervisor's `wrap_storage` hook."""

    def __init__(self, quotas: Callable[[str], tuple[int, int]]) -> None:
        # quotas(tenant) -> (storage bytes, objects): read when a tenant is first seen
        # and again through `update_limits` when the admin changes them.
        self._quotas = quotas
        self._tenants: dict[str, TenantUsage] = {}
        self._lock = threading.Lock()
        self.shared: SharedState | None = None
        # (tenant, class, object id) -> committed size: TenantUsage.learn's registry read
        self.lookup: Callable[[str, str, bytes], int | None] | None = None

    def get(self, tenant: str) -> TenantUsage:
        usage = self._tenants.get(tenant)
        if usage is None:
            with self._lock:
                usage = self._tenants.get(tenant)
                if usage is None:
                    max_bytes, max_objects = self._quotas(tenant)
                    usage = TenantUsage(tenant, max_bytes, max_objects)
                    usage.shared = self.shared
                    if self.lookup is not None:
                        usage.lookup = functools.partial(self.lookup, tenant)
                    self._tenants[tenant] = usage
        return usage

    def update_limits(self, tenant: str) -> None:
        usage = self.get(tenant)
        usage.max_bytes, usage.max_objects = self._quotas(tenant)

    def forget(self, tenant: str) -> None:
        with self._lock:
            self._tenants.pop(tenant, None)

    def tenants(self) -> list[TenantUsage]:
        return list(self._tenants.values())

    def wrap(
        self, tenant: str, class_name: str, oid: ObjectId, inner: ObjectStorage
    ) -> ObjectStorage:
        sized: SizedStorage = inner  # type: ignore[assignment]  # both backends have bytes_used
        return QuotaStorage(sized, self.get(tenant), class_name, oid)

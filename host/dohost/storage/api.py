"""The storage contract the runtime codes against, whatever the backend.

One `ObjectStorage` belongs to one activation and is used only from the worker thread that
runs that activation's current event (never two threads at once). Its methods are
synchronous: guest storage imports call them directly. Writes of an event are buffered and
become durable through `commit_event`, which returns a `CommitTicket` that completes (on
some storage thread) once the writes are fsync'd, or fails.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from dohost.core.errors import Code, DohostError

if TYPE_CHECKING:
    from dohost.storage.sql_exec import SqlResult, SqlValue

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListOptions:
    """kv_list options (abi/list.cddl)."""

    prefix: bytes = b""
    start: bytes | None = None  # inclusive
    end: bytes | None = None  # exclusive
    reverse: bool = False
    limit: int = 0  # 0 = no limit (the per-call cap still applies)


@dataclass(frozen=True)
class ListResult:
    entries: list[tuple[bytes, bytes]]
    more: bool  # stopped at the per-call cap before the range ended


class Durability:
    FSYNC = "fsync"  # survives power loss: one fsync per commit batch
    OS = "os"  # development only: survives a process crash, not a power loss


class Backend:
    """Storage backend of a class, chosen at deploy time."""

    KV = "kv"  # sharded: many objects' rows in a few SQLite files per tenant
    SQLITE = "sqlite"  # one SQLite file per object


_together = threading.local()


@contextlib.contextmanager
def resolving_together() -> Iterator[None]:
    """Resolve a batch of tickets as one (on the committing thread): work that ticket
    callbacks hand to `after_resolving` (waking the event loop) runs once, when the block
    ends, instead of once per ticket."""
    if getattr(_together, "hooks", None) is not None:
        yield  # (nested: the outer block runs the hooks)
        return
    hooks: dict[object, Callable[[], None]] = {}
    _together.hooks = hooks
    try:
        yield
    finally:
        _together.hooks = None
        for fn in hooks.values():
            try:
                fn()
            except Exception:
                _log.exception("a commit batch hook failed")


def after_resolving(key: object, fn: Callable[[], None]) -> bool:
    """Inside `resolving_together` on this thread: run `fn` when it ends, once per `key`,
    and return True. Outside one, return False (the caller does the work now)."""
    hooks: dict[object, Callable[[], None]] | None = getattr(_together, "hooks", None)
    if hooks is None:
        return False
    hooks.setdefault(key, fn)
    return True


class CommitTicket:
    """Completion of one commit. Thread-safe; callbacks run on the completing thread."""

    __slots__ = ("_callbacks", "_done", "_error", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._error: DohostError | None = None
        self._callbacks: list[Callable[[CommitTicket], None]] = []

    @classmethod
    def completed(cls) -> CommitTicket:
        t = cls()
        t._done = True
        return t

    @classmethod
    def failed(cls, error: DohostError) -> CommitTicket:
        t = cls()
        t._done = True
        t._error = error
        return t

    @property
    def done(self) -> bool:
        return self._done

    @property
    def error(self) -> DohostError | None:
        return self._error

    def add_done_callback(self, fn: Callable[[CommitTicket], None]) -> None:
        with self._lock:
            if not self._done:
                self._callbacks.append(fn)
                return
        fn(self)

    def resolve(self, error: DohostError | None = None) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            self._error = error
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            # A failing callback must not keep the others (or the committer thread that
            # resolves tickets) from running.
            try:
                fn(self)
            except Exception:
                _log.exception("commit ticket callback failed")

    def wait(self, timeout: float | None = None) -> DohostError | None:
        """Block the calling (non-trio) thread until done; returns the error, if any."""
        ev = threading.Event()
        self.add_done_callback(lambda _t: ev.set())
        if not ev.wait(timeout):
            raise TimeoutError("commit did not complete in time")
        return self._error


class ObjectStorage(Protocol):
    """Key/value storage of one object, as seen by its activation."""

    def begin_event(self) -> None: ...

    def get(self, key: bytes) -> bytes | None: ...

    def get_many(self, keys: list[bytes]) -> dict[bytes, bytes]: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def put_many(self, entries: dict[bytes, bytes]) -> None: ...

    def delete(self, key: bytes) -> bool: ...

    def delete_many(self, keys: list[bytes]) -> int: ...

    def list(self, opts: ListOptions) -> ListResult: ...

    def delete_all(self) -> None:
        """Delete every key of the object, and its alarm."""
        ...

    def get_alarm(self) -> int | None:
        """The object's alarm (ms since the epoch) as this event sees it, or None."""
        ...

    def set_alarm(self, due_ms: int | None) -> None:
        """Set (or with None delete) the object's one alarm, as part of this event's
        transaction: committed with its other writes, rolled back with them."""
        ...

    def rollback_event(self) -> None:
        """Forget every write of the current event."""
        ...

    def commit_event(self) -> CommitTicket:
        """Hand the current event's writes to the committer (or commit the open
        transaction) and return the ticket that completes when they are durable. The
        ticket also covers every earlier commit of this object. With no writes, returns
        the ticket of the last commit still in flight (or a completed one)."""
        ...

    def close(self) -> None: ...


class SqlObjectStorage(ObjectStorage, Protocol):
    """An `ObjectStorage` that also runs guest SQL in the event's transaction: the `sqlite`
    backend (storage/sql_exec.py). The `kv` backend has no `sql_exec`; callers look it up
    with getattr, so wrappers that pass attributes through keep it."""

    def sql_exec(self, sql: str, params: Sequence[SqlValue], deadline: float) -> SqlResult:
        """Run one statement; `deadline` is a time.perf_counter() value. Raises
        DohostError with the code the guest sees."""
        ...


def storage_error(message: str) -> DohostError:
    return DohostError(Code.STORAGE_ERROR, message)

"""The bookmark imports (abi/README.md, "Bookmarks"): an object's own point-in-time
recovery, in the style of Durable Objects' `getCurrentBookmark`, `getBookmarkForTime`
and `onNextSessionRestoreBookmark`.

    bookmark_current(out_ptr, out_cap) -> i32            the bookmark of now
    bookmark_for_time(ms: i64, out_ptr, out_cap) -> i32  the bookmark of a past time
    bookmark_restore(ptr, len) -> i32                    restore to it at the next activation

A bookmark is text (core/bookmarks.py): a time in the object's history, MACed with the
class key. The host side (the class key, the clock, where a restore request goes) is
the activation's `bookmarks` hook, set by the supervisor only when the host has a
replica store: without one every import answers `not_supported`, never a trap.

`bookmark_restore` only records the request. The supervisor applies it once the event
has succeeded: the activation ends, and before the object's next event its storage is
replaced by its state at the bookmark, read from the replica (server/object_restore.py).
A failed event's request is dropped with its writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from dohost.core.bookmarks import BOOKMARK_CHARS
from dohost.core.errors import Code, DohostError
from dohost.runtime.event import Event

NO_REPLICA_MESSAGE = (
    "bookmarks need a replica: this host was started without one (dohost serve --replica URL)"
)


class BookmarkHost(Protocol):
    """What the bookmark imports need of the host, for one object."""

    def current(self) -> str: ...

    def for_time(self, at_ms: int) -> str: ...

    def restore_next(self, bookmark: str) -> None: ...


def bookmark_current(ev: Event, optr: int, ocap: int) -> int:
    ev.pending = None  # any call of an import that produces bytes drops it
    if not ev.mem.check(optr, ocap):
        return ev.bad_pointer("bookmark_current")
    hook = ev.host.bookmarks
    if hook is None:
        return ev.err(Code.NOT_SUPPORTED, NO_REPLICA_MESSAGE)
    return ev.output(hook.current().encode("ascii"), optr, ocap)


def bookmark_for_time(ev: Event, at_ms: int, optr: int, ocap: int) -> int:
    ev.pending = None
    if not ev.mem.check(optr, ocap):
        return ev.bad_pointer("bookmark_for_time")
    hook = ev.host.bookmarks
    if hook is None:
        return ev.err(Code.NOT_SUPPORTED, NO_REPLICA_MESSAGE)
    try:
        text = hook.for_time(at_ms)
    except DohostError as e:
        return ev.err(e.code, e.message)
    return ev.output(text.encode("ascii"), optr, ocap)


def bookmark_restore(ev: Event, ptr: int, n: int) -> int:
    if not ev.mem.check(ptr, n):
        return ev.bad_pointer("bookmark_restore")
    if ev.input is None:
        return ev.err(Code.NOT_SUPPORTED, "bookmark_restore is not available during _initialize")
    hook = ev.host.bookmarks
    if hook is None:
        return ev.err(Code.NOT_SUPPORTED, NO_REPLICA_MESSAGE)
    if n > BOOKMARK_CHARS:
        return ev.err(
            Code.INVALID_ARGUMENT, f"not a bookmark: {n} bytes (a bookmark is {BOOKMARK_CHARS})"
        )
    if ev.inline:
        # The request is applied by the supervisor after a worker run only: one place
        # that records it, and an abandoned inline attempt leaves nothing behind.
        ev.offload()
    raw = ev.read(ptr, n, "bookmark_restore")
    try:
        hook.restore_next(raw.decode("ascii"))
    except UnicodeDecodeError:
        return ev.err(Code.INVALID_ARGUMENT, "not a bookmark: it is not ASCII text")
    except DohostError as e:
        return ev.err(e.code, e.message)
    return 0


IMPORTS: dict[str, Callable[..., int]] = {
    "bookmark_current": bookmark_current,
    "bookmark_for_time": bookmark_for_time,
    "bookmark_restore": bookmark_restore,
}

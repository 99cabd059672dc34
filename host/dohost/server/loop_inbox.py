"""Calls handed to the trio loop from other threads, many per loop wake-up.

`TrioToken.run_sync_soon` writes a byte to the loop's wake-up socket on every call: a
`send` system call on the calling thread, after which that thread must win the GIL back
from a busy loop. A kv committer resolving a batch of N tickets made N of them, and the
committers spent 8-31% of their busy samples there (py-spy, bench `incr`). A `LoopInbox`
collects the calls and schedules one delivery while none is pending, and a committer
resolving a batch (`storage.api.resolving_together`) wakes the loop once at its end, so
a batch of N completions costs one wake-up.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import trio

from dohost.storage.api import after_resolving

_log = logging.getLogger(__name__)
_INBOX: trio.lowlevel.RunVar[LoopInbox] = trio.lowlevel.RunVar("dohost_loop_inbox")


class LoopInbox:
    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token
        self._lock = threading.Lock()
        self._calls: list[tuple[Callable[..., object], tuple[Any, ...]]] = []
        self._scheduled = False

    def post(self, fn: Callable[..., object], *args: Any) -> None:
        """Run `fn(*args)` on the loop thread soon (any thread; never blocks on the loop).
        Dropped once the run has finished."""
        with self._lock:
            self._calls.append((fn, args))
            if self._scheduled:
                return
            self._scheduled = True
        # A committer resolving a batch wakes the loop once, after its last ticket: the
        # first wake-up's `send` hands the GIL to the loop, which would otherwise run
        # the inbox before the next ticket of the batch is posted.
        if not after_resolving(self, self._wake):
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._run_all)

    def _run_all(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
            self._scheduled = False
        for fn, args in calls:
            try:
                fn(*args)
            except Exception:  # (a bug) must not strand the waiters posted after it
                _log.exception("a call handed to the event loop failed")


def current_inbox() -> LoopInbox:
    """The running loop's shared inbox (loop thread only)."""
    try:
        return _INBOX.get()
    except LookupError:
        inbox = LoopInbox(trio.lowlevel.current_trio_token())
        _INBOX.set(inbox)
        return inbox

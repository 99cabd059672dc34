"""CPU time each thread spends in Python's garbage collector.

An inline event that used more than a millisecond of CPU marks its object "heavy"
(server/supervisor.py): its events leave the loop. A collection that happens to run
during a quiet object's event is CPU time of that thread too, yet it is the host's, not
the guest's: `seconds()` lets the event subtract it (`EventOutcome.gc_s`), so a GC
pause does not demote a quiet object. Measured with `time.thread_time`, per thread (a
collection runs on the thread whose allocation triggered it, holding the GIL).
"""

from __future__ import annotations

import gc
import threading
import time

_local = threading.local()


def _on_gc(phase: str, _info: dict[str, int]) -> None:
    if phase == "start":
        _local.t0 = time.thread_time()
    else:
        t0: float | None = getattr(_local, "t0", None)
        if t0 is not None:
            _local.total = getattr(_local, "total", 0.0) + (time.thread_time() - t0)
            _local.t0 = None


def seconds() -> float:
    """CPU seconds the calling thread has spent in collections since it started."""
    total: float = getattr(_local, "total", 0.0)
    return total


def install() -> None:
    """Start counting (idempotent). First in `gc.callbacks`, so the time of callbacks
    added later (at their "start") is counted as collection time too."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.insert(0, _on_gc)


install()

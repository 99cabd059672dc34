"""Worker threads that run wasm events for the trio loop.

Measured on this kind of machine: `trio.to_thread.run_sync` costs 150-300 µs per call
and a trio checkpoint ~10 µs, while a wasm no-op event costs ~20 µs. So events go to a
small pool of long-lived threads through a plain deque, and finished jobs come back in
batches: a worker that completes a job while a delivery is already scheduled on the loop
just appends to it, so under load many results cost one loop wake-up.

wasmtime releases the GIL while wasm runs, so `workers` threads really run that many
objects at once (the default is the number of cores).

A worker that blocks on the loop (an object call: server/calls.py) is replaced while it
waits (`blocking`), so `size` threads stay free to run events: otherwise a chain of calls
longer than the pool, or a few callers whose callees need a worker, would wait forever.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import outcome
import trio

from dohost.server.loop_inbox import LoopInbox, current_inbox

T = TypeVar("T")
SPARE_IDLE_S = 10.0  # how long a spare worker waits for work before it ends
# Workers run below the loop thread's CPU priority (a nice value, per thread on Linux):
# the loop runs the inline events and the HTTP front door of every tenant, so when it
# wakes it must get a core at once, not after the timeslice of a worker burning a noisy
# tenant's CPU limit (tests/reliability/test_noisy_neighbour.py: p99 of a quiet tenant's
# no-ops went from ~8 ms to ~1 ms with 2 workers busy on 2 cores).
WORKER_NICE = 10


class PoolExhausted(Exception):
    """Too many workers are blocked in calls to replace another one."""


class WorkerPool:
    def __init__(
        self, workers: int | None = None, name: str = "dohost-worker", max_blocked: int = 512
    ) -> None:
        self.size = workers or os.cpu_count() or 2
        self.max_blocked = max_blocked
        self._name = name
        self._jobs: collections.deque[tuple[Callable[[], Any], trio.lowlevel.Task]] = (
            collections.deque()
        )
        self._cond = threading.Condition(threading.Lock())
        self._inbox: LoopInbox | None = None  # finished jobs go back through it (batched)
        self._closed = False
        self._token: trio.lowlevel.TrioToken | None = None
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(self.size)
        ]
        self._alive = self.size  # threads started or about to be (under _cond)
        self.blocked = 0  # workers blocked in `blocking` (under _cond)
        self._started = False
        self.busy = 0  # jobs running now (read by metrics)

    @property
    def token(self) -> trio.lowlevel.TrioToken:
        """The loop's token, for workers that must call into it (set by start)."""
        assert self._token is not None, "the pool is not started"
        return self._token

    def start(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._inbox = current_inbox()
        if not self._started:
            self._started = True
            for t in self._threads:
                t.start()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` on a worker thread and return its result. Not cancellable once queued:
        an event that started always finishes (its outcome is still delivered)."""
        task = trio.lowlevel.current_task()
        with self._cond:
            if self._closed:
                raise RuntimeError("worker pool is closed")
            self._jobs.append((fn, task))
            self._cond.notify()
        result: T = await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        return result

    @contextlib.contextmanager
    def blocking(self) -> Iterator[None]:
        """Run the block on a worker thread that is about to wait for the loop: another
        thread takes its place meanwhile. Raises PoolExhausted when `max_blocked`
        workers already wait (each is an object call in flight)."""
        with self._cond:
            if self.blocked >= self.max_blocked:
                raise PoolExhausted(f"{self.blocked} worker threads are waiting in calls")
            self.blocked += 1
            if self._alive - self.blocked < self.size and not self._closed:
                self._alive += 1
                self._threads = [t for t in self._threads if t.is_alive()]
                t = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(t)
                t.start()
        try:
            yield
        finally:
            with self._cond:
                self.blocked -= 1
                if self._alive - self.blocked > self.size:
                    self._cond.notify_all()  # a spare thread may leave now

    def _work(self) -> None:
        _lower_priority()
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    if self._alive - self.blocked <= self.size:
                        self._cond.wait()
                    # A spare (a replacement no longer needed) stays a while for the next
                    # call, so steady call traffic does not start a thread per call.
                    elif (
                        not self._cond.wait(SPARE_IDLE_S)
                        and not self._jobs
                        and self._alive - self.blocked > self.size
                    ):
                        self._alive -= 1
                        return
                if not self._jobs:
                    self._alive -= 1
                    return
                fn, task = self._jobs.popleft()
            self.busy += 1
            result = outcome.capture(fn)
            self.busy -= 1
            self._deliver(task, result)

    def _deliver(self, task: trio.lowlevel.Task, result: outcome.Outcome[Any]) -> None:
        assert self._inbox is not None
        self._inbox.post(trio.lowlevel.reschedule, task, result)

    def close(self) -> None:
        """Stop the threads once the queued jobs have run."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in list(self._threads):
            if t.is_alive() and t is not threading.current_thread():
                t.join(timeout=30)


def _lower_priority() -> None:
    """Give the calling thread the WORKER_NICE priority (Linux: a nice value is per thread,
    and raising it needs no privilege). Elsewhere, or when refused, nothing changes."""
    try:
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        if current < WORKER_NICE:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)
    except (AttributeError, OSError):
        pass

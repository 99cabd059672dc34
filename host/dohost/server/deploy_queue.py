"""Deploys wait their turn: one at a time per tenant, a few compiles at once per host.

A compile runs in a limited child process (runtime/compile_child.py) and holds no event
worker, but it still takes a core: without a bound, one tenant deploying in a loop (or
many tenants at once) would keep every core compiling. Each tenant's deploys run one at
a time in arrival order (trio locks are FIFO) and at most `max_waiting` may wait behind
it; across tenants at most `compile_slots` compiles run at once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import trio

from dohost.core.errors import Code, DohostError

DEFAULT_MAX_WAITING = 8


class DeployQueue:
    def __init__(self, compile_slots: int | None = None, max_waiting: int = DEFAULT_MAX_WAITING):
        self.compile_slots = compile_slots or max(1, os.cpu_count() or 1)
        self.max_waiting = max_waiting
        self._compiles = trio.Semaphore(self.compile_slots)
        self._tenants: dict[str, tuple[trio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, tenant: str) -> AsyncIterator[None]:
        """Hold the tenant's deploy turn (waiting for it, FIFO); `rate_limited` when
        `max_waiting` of its deploys already wait."""
        lock, waiting = self._tenants.setdefault(tenant, (trio.Lock(), [0]))
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            if waiting[0] >= self.max_waiting:
                raise DohostError(
                    Code.RATE_LIMITED,
                    f"{waiting[0]} deploys of this tenant are already waiting; the limit "
                    f"is {self.max_waiting}: wait for them to finish",
                ) from None
            waiting[0] += 1
            try:
                await lock.acquire()
            finally:
                waiting[0] -= 1
        try:
            yield
        finally:
            lock.release()
            if waiting[0] == 0 and not lock.locked():
                self._tenants.pop(tenant, None)

    @contextlib.asynccontextmanager
    async def compiling(self) -> AsyncIterator[None]:
        """Hold one of the host's compile slots."""
        async with self._compiles:
            yield

"""The alarm loop: fires objects' alarms at their time, at least once, with retries.

At start it loads the host-wide alarm index (storage/alarm_index.py), so alarms that
became due while the host was down fire promptly, in due order. Every committed event
that set an alarm adds it here (`schedule`). When an entry is due, the object is asked
(under its inbox lock, through the supervisor) whether it still has that alarm: the
object's own record is the truth, the index only a superset of it.

Outcomes of one delivery:
- the object has no alarm (deleted, object or class gone): the index entry is removed;
- it has one at another time: rescheduled to that time;
- the handler succeeded: the index entry is removed unless the handler set a new alarm;
- the handler failed: retried after `backoff` (in memory; a restart re-fires with
  retry_count 0, which keeps "at least once"); after 6 retries the alarm is dropped with a
  log line and the object's record is cleared. A failing handler that set a new alarm
  replaced the retry: the new alarm is scheduled instead.

Time: alarms are wall-clock milliseconds, read through `wall_ms` (injectable: tests tie it
to trio's MockClock); the loop sleeps on trio's clock for the difference.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

import trio

from dohost.core.alarm_schedule import AlarmRun
from dohost.core.errors import Code
from dohost.runtime.event import EventOutcome
from dohost.server.tenant_limits import TenantLimits
from dohost.storage.alarm_index import AlarmEntry, AlarmIndex, AlarmKey

log = logging.getLogger("dohost.alarms")

Deliver = Callable[[AlarmEntry, AlarmRun, str], Awaitable[EventOutcome]]


@dataclass
class _Pending:
    entry: AlarmEntry
    run: AlarmRun
    due_ms: int


@dataclass
class AlarmStats:
    runs: int = 0
    retries: int = 0
    failures: int = 0
    dropped: int = 0
    stale: int = 0  # index entries the object no longer had
    lateness_ms: list[float] | None = None  # recorded when a list is set (benchmarks)
    deferred: int = 0  # deliveries put back for the tenant's rate (tenant_limits.py)
    trace: list[AlarmKey] | None = None  # deliveries in start order, when a list is set (tests)


class AlarmScheduler:
    def __init__(
        self,
        index: AlarmIndex,
        deliver: Deliver,
        wall_ms: Callable[[], float],
        *,
        jitter: Callable[[], float] = random.random,
        max_concurrent: int = 512,
        owns: Callable[[AlarmEntry], bool] | None = None,
    ) -> None:
        """`owns` says whether this node serves an entry's object: the index is shared
        by every node of a data set, and each loads only the alarms of its partitions."""
        self._index = index
        self._owns = owns
        self._deliver = deliver
        self._wall_ms = wall_ms
        self._jitter = jitter
        self._heap: list[tuple[int, int, AlarmKey]] = []
        self._pending: dict[AlarmKey, _Pending] = {}
        self._running: set[AlarmKey] = set()
        self._seq = 0
        self._wake = trio.Event()
        self._limit = trio.CapacityLimiter(max_concurrent)
        self._changed = trio.Event()  # set whenever a delivery finishes (see settled)
        # Classes being deleted or renamed: their due alarms wait here, unfired.
        self._held: dict[tuple[str, str], list[_Pending]] = {}
        self.stats = AlarmStats()
        # Deliveries per second per tenant (server/tenant_limits.py); None: no limit.
        self.tenant_limits: TenantLimits | None = None

    # ------------------------------------------------------------------ scheduling

    def schedule(self, entry: AlarmEntry) -> None:
        """(Re)schedule an object's alarm at entry.due_ms (loop thread). Replaces what
        was pending for that object, a retry included."""
        self._schedule_at(entry, AlarmRun(entry.due_ms), entry.due_ms)

    def _schedule_at(self, entry: AlarmEntry, run: AlarmRun, due: int) -> None:
        self._pending[entry.key] = _Pending(entry, run, due)
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, entry.key))
        if self._heap[0][2] == entry.key:
            self._wake.set()

    def cancel(self, key: AlarmKey) -> None:
        self._pending.pop(key, None)

    def load(self, entries: Iterable[AlarmEntry]) -> None:
        """Schedule index entries (at start, and for partitions claimed later); an
        object already pending keeps what it has (a newer commit scheduled it)."""
        for entry in entries:
            if entry.key not in self._pending and entry.key not in self._running:
                self._schedule_at(entry, AlarmRun(entry.due_ms, entry.retry_count), entry.next_ms)

    def unload(self, which: Callable[[AlarmEntry], bool]) -> None:
        """Forget pending alarms of objects this node no longer serves (their index
        entries stay, for the new owner). A delivery already running finishes."""
        for key in [k for k, p in self._pending.items() if which(p.entry)]:
            del self._pending[key]
        for held in self._held.values():
            held[:] = [p for p in held if not which(p.entry)]

    def pending(self) -> list[tuple[AlarmEntry, AlarmRun, int]]:
        held = [p for ps in self._held.values() for p in ps]
        return sorted(
            ((p.entry, p.run, p.due_ms) for p in [*self._pending.values(), *held]),
            key=lambda t: t[2],
        )

    # ------------------------------------------------------------------ class changes

    @contextlib.asynccontextmanager
    async def hold_class(self, tenant: str, class_name: str) -> AsyncIterator[None]:
        """No alarm of the class starts inside the block, and none is running when it
        begins (a running one finishes first, retry bookkeeping included). Due alarms
        wait and are scheduled again at the exit, under the class's name then (see
        `rename_class`), unless `drop_class` dropped them."""
        key = (tenant, class_name)
        self._held[key] = []
        try:
            while any(k[:2] == key for k in self._running):
                await self._changed.wait()
            yield
        finally:
            for p in self._held.pop(key, []):
                if p.entry.key not in self._pending:
                    self._schedule_at(p.entry, p.run, p.due_ms)

    def rename_class(self, tenant: str, old: str, new: str) -> None:
        """Pending and held alarms of class `old` move to `new` (same due times and retry
        counts). Call inside `hold_class(tenant, old)`."""
        moved = [p for k, p in self._pending.items() if k[:2] == (tenant, old)]
        moved += self._held.get((tenant, old), [])
        for p in moved:
            self._pending.pop(p.entry.key, None)
        self._held[(tenant, old)] = []
        for p in moved:
            e = p.entry
            entry = AlarmEntry(e.tenant, new, e.object_id, e.name, e.backend, e.due_ms)
            self._schedule_at(entry, p.run, p.due_ms)

    def drop_class(self, tenant: str, class_name: str) -> None:
        """Forget every pending and held alarm of a class (it was deleted)."""
        for k in [k for k in self._pending if k[:2] == (tenant, class_name)]:
            del self._pending[k]
        self._held[(tenant, class_name)] = []

    def next_due(self) -> int | None:
        self._drop_stale_heads()
        return self._heap[0][0] if self._heap else None

    def _drop_stale_heads(self) -> None:
        while self._heap:
            due, _, key = self._heap[0]
            p = self._pending.get(key)
            if p is not None and p.due_ms == due:
                return
            heapq.heappop(self._heap)

    # ------------------------------------------------------------------ the loop

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Overdue entries come first (the index is ordered by next_ms) and fire at once.
        owns = self._owns
        self.load(e for e in self._index.entries() if owns is None or owns(e))
        task_status.started()
        async with trio.open_nursery() as nursery:
            while True:
                now = self._wall_ms()
                while True:
                    self._drop_stale_heads()
                    if not self._heap or self._heap[0][0] > now:
                        break
                    _, _, key = heapq.heappop(self._heap)
                    if key in self._running:
                        # One delivery per object at a time: try again when it finishes.
                        continue
                    p = self._pending.pop(key)
                    held = self._held.get(key[:2])
                    if held is not None:
                        held.append(p)  # its class is being deleted or renamed
                        continue
                    wait = (
                        0.0
                        if self.tenant_limits is None
                        else self.tenant_limits.alarm_wait(key[0], now / 1000)
                    )
                    if wait > 0.0:  # over the tenant's rate: put back until a token is there
                        self.stats.deferred += 1
                        self._schedule_at(p.entry, p.run, int(now + max(1.0, wait * 1000)))
                        continue
                    self._running.add(key)
                    if self.stats.trace is not None:
                        self.stats.trace.append(key)
                    nursery.start_soon(self._fire, p, now)
                nxt = self.next_due()
                if nxt is None or nxt > now:
                    self._index.flush_removals()  # quiet moment: apply queued removals
                self._wake = trio.Event()
                with trio.move_on_after(max(0.0, (nxt - now) / 1000) if nxt is not None else 3600):
                    await self._wake.wait()

    async def _fire(self, p: _Pending, now: float) -> None:
        key = p.entry.key
        try:
            async with self._limit:
                if self.stats.lateness_ms is not None:
                    self.stats.lateness_ms.append(self._wall_ms() - p.due_ms)
                await self._fire_one(p)
        except Exception:
            log.exception("alarm delivery failed for %s/%s", p.entry.tenant, p.entry.class_name)
        finally:
            self._running.discard(key)
            # Look again: it may have been rescheduled while running, and a quiet loop
            # applies the index removal of the alarm that just fired now, not when it
            # next wakes (maybe an hour later; `dohost alarms` read the index meanwhile).
            self._wake.set()
            self._changed.set()
            self._changed = trio.Event()

    async def settled(self) -> None:
        """Wait until no delivery runs and nothing is due (tests: after moving a clock)."""
        while True:
            nxt = self.next_due()
            if not self._running and (nxt is None or nxt > self._wall_ms()):
                return
            if not self._running:
                self._wake.set()  # due but not started yet: make the loop look now
            await self._changed.wait()

    async def _fire_one(self, p: _Pending) -> None:
        entry, run = p.entry, p.run
        if self._owns is not None and not self._owns(entry):
            return  # its partition moved to another node, which loaded it from the index
        result = await self._deliver(entry, run, "alarm")
        state = result.alarm_state
        if state == "gone":
            self.stats.stale += 1
            self._index.remove(entry.key, entry.due_ms)
            return
        if state == "moved":
            assert result.alarm_due is not None
            moved_to = result.alarm_due
            self._schedule_at(_with_due(entry, moved_to), AlarmRun(moved_to), moved_to)
            return
        self.stats.runs += 1
        if result.error is None:
            if not (result.alarm_changed and result.alarm is not None):
                self._index.remove(entry.key, entry.due_ms)
            # A new alarm set by the handler was scheduled by the commit hook.
            return
        self.stats.failures += 1
        if result.error.code is Code.NOT_SUPPORTED:
            log.warning(
                "%s/%s object %s: alarm dropped: the class exports no dohost_alarm",
                entry.tenant,
                entry.class_name,
                entry.object_id.hex()[:16],
            )
            await self._drop(entry, run)
            return
        if result.alarm_replaced:
            return  # the failing handler's new alarm replaced the retry (commit hook scheduled it)
        nxt = run.after_failure(int(self._wall_ms()), self._jitter)
        if nxt is None:
            log.warning(
                "%s/%s object %s: alarm scheduled for %d dropped after %d failed retries: %s",
                entry.tenant,
                entry.class_name,
                entry.object_id.hex()[:16],
                run.scheduled_ms,
                run.retry_count,
                result.error,
            )
            await self._drop(entry, run)
            return
        self.stats.retries += 1
        self._schedule_at(entry, nxt[0], nxt[1])
        self._index.record_retry(entry.key, entry.due_ms, nxt[1], nxt[0].retry_count)

    async def _drop(self, entry: AlarmEntry, run: AlarmRun) -> None:
        self.stats.dropped += 1
        await self._deliver(entry, run, "alarm_clear")
        self._index.remove(entry.key, entry.due_ms)


def _with_due(entry: AlarmEntry, due: int) -> AlarmEntry:
    return AlarmEntry(
        entry.tenant, entry.class_name, entry.object_id, entry.name, entry.backend, due
    )

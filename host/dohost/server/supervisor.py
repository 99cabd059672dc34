"""Objects in memory: one inbox per object, activations, the output gate, eviction.

Invariants:
- **One event at a time per object.** Each `ObjectSlot` has a FIFO `trio.Lock`; an event
  holds it from the moment it starts until its guest code has returned, so events of one
  object never interleave. The commit of an event is *not* awaited under the lock: the
  next event may start while the previous commit is in flight (it reads that event's
  writes from the write-back cache), which is what lets one hot object sustain more
  than one event per fsync.
- **Output gate.** An event's response is released only after its commit ticket (which
  covers every earlier commit of the object) has completed. A failed commit turns the
  response into `storage_error` and resets the slot: activation and storage are
  dropped, and the next event rebuilds them from what is on disk.
- A slot's `activation` and `storage` are touched by a worker thread only while the slot
  lock is held, and by the loop (eviction) only while it is not held and nobody waits.
- Eviction never cuts an event: it only takes idle slots whose last commit completed.
- While an event holds a slot, `slot.holder` is its `EventNode` (server/calls.py): the
  call chain it belongs to and the slot it waits for in a call, which is how calls
  that would wait forever are refused (`call_cycle`, `call_depth`).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import trio

from dohost.core.errors import Code, DohostError
from dohost.core.ids import ObjectId
from dohost.core.limits import EventLimits
from dohost.core.replica_log import ObjectState
from dohost.runtime import ws_imports
from dohost.runtime.activation import Activation
from dohost.runtime.event import EventOutcome, ObjectIdent, OffloadRequest, check_alarm
from dohost.server.calls import CallRouter, EventNode
from dohost.server.loop_inbox import current_inbox
from dohost.server.object_restore import SlotBookmarks, check_backend, write_state
from dohost.server.tenant_limits import TenantLimits
from dohost.storage.alarm_index import AlarmEntry
from dohost.storage.api import CommitTicket, ObjectStorage

if TYPE_CHECKING:
    from dohost.server.class_registry import ClassRegistry, ClassRuntime
    from dohost.server.executor import WorkerPool

log = logging.getLogger("dohost.supervisor")

SlotKey = tuple[str, str, bytes]
# (tenant, object id, ms) -> the object's state then, from the replica (None: none)
ReadState = Callable[[str, ObjectId, int], Awaitable[ObjectState | None]]
# How long an object whose inline attempt ran out of budget goes straight to workers; the
# period doubles each time the object proves heavy again right after it (up to 2^5 times
# this: 320 s), since each new try holds the loop for up to an inline budget.
HEAVY_FOR_S = 10.0
HEAVY_MAX_DOUBLINGS = 5
# An inline event that finished but used more CPU than this marks its object heavy too.
# The budget bounds one attempt, not the loop: events of a few objects that each stay
# just under it (a 32 MiB memory.fill is one instruction, with no epoch check inside)
# would otherwise run back to back on the loop and hold every other tenant's requests
# (tests/reliability/test_noisy_neighbour.py saw a quiet no-op p99 of 338 ms). A no-op
# event uses ~30 us. The event's CPU is its thread's CPU time minus the host's garbage
# collections during it (runtime/gc_time.py): a GC pause is not the guest's doing and
# must not demote a quiet object.
INLINE_SLOW_CPU_S = 0.001
# Guest memory the resident activations may hold together (their memories' sizes, as
# declared and grown: an upper bound of what they have touched). Past it, the least
# recently used idle activations are dropped (hibernated early), so a stream of new
# objects each touching its memory cannot make the host hold ~16 MiB x 10,000 residents.
DEFAULT_MAX_RESIDENT_MEMORY = 4 << 30


def _slow(result: EventOutcome) -> bool:
    return result.cpu_s - result.gc_s > INLINE_SLOW_CPU_S


class ObjectSlot:
    __slots__ = (
        "activation",
        "activation_version",
        "calls_until",
        "class_name",
        "heavy_strikes",
        "heavy_until",
        "holder",
        "key",
        "last_used",
        "lock",
        "mem_bytes",
        "name",
        "object_id",
        "reset_pending",
        "restore_request",
        "storage",
        "suspect",
        "tenant",
        "ticket",
        "waiting",
    )

    def __init__(self, tenant: str, class_name: str, oid: ObjectId) -> None:
        self.key: SlotKey = (tenant, class_name, oid.raw)
        self.tenant = tenant
        self.class_name = class_name
        self.object_id = oid
        self.name = oid.name
        self.lock = trio.Lock()
        self.storage: ObjectStorage | None = None
        self.activation: Activation | None = None
        self.activation_version = 0
        self.mem_bytes = 0  # its activation's memory size after its last event (loop)
        self.ticket: CommitTicket | None = None
        self.waiting = 0
        self.last_used = 0.0
        # An inline attempt ran out of budget: use workers until this (trio) time.
        self.heavy_until = 0.0
        self.heavy_strikes = 0  # heavy marks in a row (no cheap inline event between)
        self.holder: EventNode | None = None  # the event holding the lock (calls)
        # An inline attempt stopped at an object call: use workers until this (trio) time,
        # so an object that calls is not run twice (and re-instantiated) per event.
        self.calls_until = 0.0
        # A commit failed while another event held the lock: reset before the next one.
        self.reset_pending = False
        # Its first event ran on a worker (its class was marked) and was slow: its next
        # event runs on a worker too, and marks it heavy if slow again (a first event's
        # one-time costs alone must not send a hot object to the workers for 10 s).
        self.suspect = False
        # The running event asked to restore a bookmark (ms) at the next activation.
        self.restore_request: int | None = None

    def idle(self) -> bool:
        return (
            self.waiting == 0
            and not self.lock.locked()
            and (self.ticket is None or self.ticket.done)
        )


def _mark_heavy(slot: ObjectSlot) -> None:
    """Send the object's events to workers for a while (longer each time in a row)."""
    doublings = min(slot.heavy_strikes, HEAVY_MAX_DOUBLINGS)
    slot.heavy_strikes += 1
    slot.heavy_until = trio.current_time() + HEAVY_FOR_S * (1 << doublings)


@dataclass
class SupervisorStats:
    events: int = 0
    errors: int = 0
    activations: int = 0
    evictions: int = 0
    hibernations: int = 0
    storage_failures: int = 0
    inline: int = 0  # events that ran on the loop thread
    offloads: int = 0  # inline attempts that had to move to a worker
    probation: int = 0  # first events sent to a worker by their class's heavy mark


OpenStorage = Callable[[str, str, ObjectId, str], ObjectStorage]
WrapStorage = Callable[[str, str, ObjectId, ObjectStorage], ObjectStorage]


class SupervisorObserver(Protocol):
    """What a server embedding the host learns about events (metrics). Called on the
    loop thread; must be cheap and must not raise."""

    def event(
        self, tenant: str, class_name: str, kind: str, result: EventOutcome, seconds: float
    ) -> None:
        """One event was delivered (`seconds`: from delivery to release, queueing,
        execution and the durable commit included)."""

    def dropped(self, tenant: str, class_name: str, reason: str) -> None:
        """An activation was dropped: reason "eviction" (LRU cap) or "hibernation"."""


async def wait_ticket(ticket: CommitTicket) -> DohostError | None:
    """Await a commit ticket from the trio loop (it completes on a storage thread)."""
    if ticket.done:
        return ticket.error
    inbox = current_inbox()  # a batch of tickets resolved together wakes the loop once
    done = trio.Event()
    ticket.add_done_callback(lambda _t: inbox.post(done.set))
    await done.wait()
    return ticket.error


class Supervisor:
    def __init__(
        self,
        classes: ClassRegistry,
        pool: WorkerPool,
        open_storage: OpenStorage,
        limits: EventLimits,
        *,
        idle_timeout: float = 10.0,
        max_resident: int = 10_000,
        inline_ticks: int = 2,
    ) -> None:
        self._classes = classes
        self._pool = pool
        self._open_storage = open_storage
        self._limits = limits
        self.idle_timeout = idle_timeout
        self.max_resident = max_resident
        self.max_resident_memory = DEFAULT_MAX_RESIDENT_MEMORY
        self.resident_memory = 0  # sum of the slots' mem_bytes
        # Events first try to run on the loop thread with this many epoch ticks of CPU
        # (0 disables it); see Activation.run_event for why that is safe. Two ticks, because
        # an epoch deadline of one tick can fire at the very next tick, microseconds away.
        self.inline_ticks = inline_ticks
        # Ordered by last use: the front is the least recently used.
        self._slots: collections.OrderedDict[SlotKey, ObjectSlot] = collections.OrderedDict()
        self.resident = 0
        # Deliveries that will create an activation (room was made for them) and have not
        # finished: counted against max_resident with the residents, so concurrent
        # creations (worker runs, abandoned inline attempts) cannot overshoot the cap.
        self.creating = 0
        self._room = trio.lowlevel.ParkingLot()  # deliveries waiting for room
        self.stats = SupervisorStats()
        self.closing = False
        # Optional hooks for a server embedding the host: per-tenant/class event limits
        # (an activation is rebuilt when the limits object it was built with is no
        # longer the current one), a wrapper around each object's storage (quota
        # accounting), and an observer of events and dropped activations (metrics).
        self.limits_for: Callable[[str, str], EventLimits] | None = None
        # Alarms (set by the host): `index_alarm` makes an index entry durable before the
        # commit of the event that set the alarm (worker thread); `on_alarm_committed`
        # hears each alarm whose event committed (loop thread) and schedules it.
        self.index_alarm: Callable[[AlarmEntry], None] | None = None
        self.on_alarm_committed: Callable[[AlarmEntry], None] | None = None
        # The wall clock guests' now_ms reads (ms since the epoch); injectable for tests.
        self.wall_ms: Callable[[], float] = lambda: time.time() * 1000.0
        # Ownership (set by the host): raises NOT_OWNER for an object whose partition
        # this node does not serve, before any slot is made for it.
        self.check_owner: Callable[[ObjectId], None] | None = None
        self.wrap_storage: WrapStorage | None = None
        self.observer: SupervisorObserver | None = None
        # Each guest log line with the object it came from (server/tail.py), any thread.
        self.on_log: Callable[[ObjectIdent, int, str], None] | None = None
        # Object-to-object calls (server/calls.py): routing, chains, deadlock checks.
        self.calls = CallRouter(self)
        # WebSockets (server/websockets.py): the host's connection registry. Activations
        # read it; a successful event's WebSocket output is applied once it is durable.
        self.websockets: ws_imports.WsRegistry | None = None
        # Per-tenant limits (server/tenant_limits.py): inline budget, log rate.
        self.tenant_limits = TenantLimits()
        self._tenant_heavy_until: dict[str, float] = {}  # tenant -> trio time
        # (tenant, class) -> trio time: an object of the class proved heavy, so until then
        # the first event of each of its objects without an activation (new, hibernated,
        # evicted) runs on a worker ("probation") instead of trying the loop first: an
        # attacker addressing a new object per request gets one inline try per class,
        # not one per object. A probation event that is heavy on the worker extends it.
        self._class_heavy_until: dict[tuple[str, str], float] = {}
        # Bookmarks (server/object_restore.py), set by a host with a replica store:
        # reads an object's state at a time (tenant, id, ms). Restores guests asked for
        # (slot key -> ms) wait here until the object's next event, kept across
        # eviction; lost if the process stops first.
        self.read_state: ReadState | None = None
        self.pending_restores: dict[SlotKey, int] = {}

    @property
    def pool(self) -> WorkerPool:
        return self._pool

    @property
    def classes(self) -> ClassRegistry:
        return self._classes

    # ------------------------------------------------------------------ delivery

    async def deliver(
        self,
        tenant: str,
        class_name: str,
        oid: ObjectId,
        kind: str,
        data: bytes,
        expect_alarm: int | None = None,
        parent: EventNode | None = None,
        ws_upgrade_key: str | None = None,
        cls: ClassRuntime | None = None,
    ) -> EventOutcome:
        """Run one event on an object and return its result once it may be released.

        kind is "fetch", "alarm" (only if the object's alarm is still `expect_alarm`:
        otherwise the outcome's `alarm_state` says "gone" or "moved") or "alarm_clear"
        (drop that alarm without running guest code). `parent` is the calling event's
        node when the event is an object call (server/calls.py). kind may also be
        "ws_message", "ws_close" or "ws_error" (server/websockets.py); `ws_upgrade_key`
        marks a fetch that may accept a WebSocket upgrade. `cls`: the class as the
        caller resolved it (looked up again if a deploy has replaced it since)."""
        if self.closing:
            raise DohostError(
                Code.SHUTTING_DOWN, "the host is shutting down; retry on another instance"
            )
        if self.check_owner is not None:
            self.check_owner(oid)  # NOT_OWNER: the object's partition is served elsewhere
        t_start = time.perf_counter() if self.observer is not None else 0.0
        slot = self._slot(tenant, class_name, oid)
        yielded = False  # did this call let other tasks run? (see the end)
        creating = False  # counted in self.creating
        try:
            # Uncontended (the common case): take the lock without a scheduling round trip.
            slot.lock.acquire_nowait()
        except trio.WouldBlock:
            slot.waiting += 1
            yielded = True
            try:
                await slot.lock.acquire()
            finally:
                slot.waiting -= 1
        if slot.reset_pending:
            self._reset_slot(slot)
        slot.holder = EventNode(slot, parent)
        try:
            if cls is None or cls.superseded:  # the version current when the event starts
                cls = self._classes.get(tenant, class_name)
            # A guest's bookmark restore waits for this event; if it fails, this event
            # fails with its error (an ordinary outcome: alarms retry, calls answer).
            restore_failed: EventOutcome | None = None
            if self.pending_restores and slot.key in self.pending_restores:
                yielded = True
                restore_failed = await self._restore_bookmark(slot, cls)
            if slot.activation is None and restore_failed is None:
                if self.resident + self.creating >= self.max_resident:
                    # An object call does not wait: its caller holds a slot, and a chain of
                    # waiting callers could hold every activation (it may overshoot).
                    yielded = await self._make_room(slot, wait=parent is None)
                creating = True
                self.creating += 1
            # (A new version's activation replaces the old one: the count does not grow.)
            result = restore_failed
            now = trio.current_time()
            probation = (
                slot.activation is None
                and self._class_heavy_until.get((tenant, class_name), 0.0) > now
            )
            if (
                result is None
                and self.inline_ticks
                and cls.compiled is not None
                and slot.heavy_until <= now
                and slot.calls_until <= now
                and not probation
                and not slot.suspect
                and self._tenant_heavy_until.get(tenant, 0.0) <= now
            ):
                result = self._run(
                    slot, cls, kind, data, self.inline_ticks, expect_alarm, ws_upgrade_key
                )
                if result.offload:
                    # A blocking import is no reason to stay away, nor is an epoch deadline
                    # reached with little CPU used: the deadline is wall time, and a loop
                    # thread preempted on a busy machine (or waiting for the GIL) reaches it
                    # without running the guest.
                    if result.offload_cpu and _slow(result):
                        self._heavy(slot)
                    elif result.offload_call:  # (not heavy: it waits, not runs)
                        slot.calls_until = trio.current_time() + HEAVY_FOR_S
                    self.stats.offloads += 1
                    result = None
                else:
                    self.stats.inline += 1
                    if _slow(result):
                        if result.activation_s:
                            # The first event of an activation runs dohost_init, loads the
                            # object and touches fresh memory (0.3-1.2 ms for the counter
                            # here): not a pattern of the object, which stays inline (a
                            # hot object marked for it went to the workers, two thread
                            # hand-offs per event, for the next 10 s). Its class and
                            # tenant are charged, as an attacker's new objects must be.
                            self._charge_class(slot)
                        else:
                            self._heavy(slot)
                    else:
                        slot.heavy_strikes = 0
            if result is None:
                yielded = True
                result = await self._pool.run(
                    lambda: self._run(slot, cls, kind, data, 0, expect_alarm, ws_upgrade_key)
                )
                if probation:
                    self.stats.probation += 1
                    if _slow(result):  # it would have held the loop: its class's next
                        # new objects stay on the workers, and its own next event too
                        slot.suspect = True
                        self._class_heavy_until[(tenant, class_name)] = now + HEAVY_FOR_S
                elif slot.suspect:  # (the evidence: a second event, on a worker)
                    slot.suspect = False
                    if _slow(result):
                        _mark_heavy(slot)
            if result.ticket is not None:
                slot.ticket = result.ticket
            if slot.restore_request is not None:
                self._take_restore_request(slot, result)  # (may drop the activation)
            self._account_memory(slot)
        finally:
            if creating:
                self.creating -= 1
            slot.holder = None
            if parent is not None:
                parent.waiting_for = None  # the caller now waits only for a commit
            slot.lock.release()
            if self._room:
                self._room.unpark_all()
        if self.resident_memory > self.max_resident_memory:
            self._evict_for_memory()
        slot.last_used = trio.current_time()
        self.stats.events += 1
        if result.error is not None:
            self.stats.errors += 1
        if result.ticket is not None:
            yielded = yielded or not result.ticket.done
            err = await wait_ticket(result.ticket)
            if err is not None:
                error = result.error
                if err.code in (Code.FENCED, Code.REPLICA_UNAVAILABLE):
                    # Another node owns the object now, or the replica store did not take
                    # the event's changes in time (the output gate of a sync replica):
                    # say so, whatever the event did.
                    if error is None:
                        self.stats.errors += 1
                    error = err
                elif error is None:
                    self.stats.errors += 1
                    error = DohostError(
                        Code.STORAGE_ERROR, f"the event's writes were not stored: {err.message}"
                    )
                self.stats.storage_failures += 1
                self._reset_after_storage_failure(slot)
                # Nothing of a failed event leaves the host.
                result = replace(
                    result,
                    error=error,
                    response=None,
                    alarm_changed=False,
                    alarm_replaced=False,
                    ws=None,
                )
        if (
            result.alarm_changed
            and result.alarm is not None
            and (result.error is None or result.alarm_replaced)
            and self.on_alarm_committed is not None
        ):
            self.on_alarm_committed(
                AlarmEntry(tenant, class_name, oid.raw, slot.name, cls.row.storage, result.alarm)
            )
        ws = result.ws
        if ws is not None and self.websockets is not None:
            self.websockets.apply(slot.key, oid, ws)
        if self.observer is not None:
            self.observer.event(tenant, class_name, kind, result, time.perf_counter() - t_start)
        if self._room:
            self._room.unpark_all()  # its commit is done: the slot may be evictable now
        if not yielded:
            # An inline event with nothing to wait for never reached the scheduler: without
            # this, an embedded caller looping on Host.fetch would starve every other task
            # (alarms, the idle reaper). Shielded: the event has happened, so cancelling
            # here would only lose its result.
            await trio.lowlevel.cancel_shielded_checkpoint()
        return result

    def _heavy(self, slot: ObjectSlot) -> None:
        """An inline attempt proved heavy: mark the object, and charge its tenant (new
        objects each get a first try, so the object's mark alone does not bound it)."""
        _mark_heavy(slot)
        self._charge_class(slot)

    def _charge_class(self, slot: ObjectSlot) -> None:
        """A heavy inline event of the slot's class: mark the class (its new objects
        start on a worker for a while) and charge the tenant's inline budget."""
        now = trio.current_time()
        marks = self._class_heavy_until
        if len(marks) >= 100_000:
            marks.clear()  # (only marks of many classes: they expire anyway)
        marks[(slot.tenant, slot.class_name)] = now + HEAVY_FOR_S
        if self.tenant_limits.inline_heavy(slot.tenant, now):
            self._tenant_heavy_until[slot.tenant] = now + HEAVY_FOR_S

    def slot_for(self, tenant: str, class_name: str, oid: ObjectId) -> ObjectSlot:
        return self._slot(tenant, class_name, oid)

    def slot_if_exists(self, key: SlotKey) -> ObjectSlot | None:
        return self._slots.get(key)

    def backend_of(self, slot: ObjectSlot) -> str:
        return self._classes.backend(slot.tenant, slot.class_name)

    def _slot(self, tenant: str, class_name: str, oid: ObjectId) -> ObjectSlot:
        key = (tenant, class_name, oid.raw)
        slot = self._slots.get(key)
        if slot is None:
            slot = ObjectSlot(tenant, class_name, oid)
            self._slots[key] = slot
        else:
            self._slots.move_to_end(key)
            if slot.name is None and oid.name is not None:
                slot.name = oid.name
        return slot

    def _run(
        self,
        slot: ObjectSlot,
        cls: ClassRuntime,
        kind: str,
        data: bytes,
        inline_ticks: int,
        expect_alarm: int | None = None,
        ws_upgrade_key: str | None = None,
    ) -> EventOutcome:
        """Run an event with the slot lock held by the delivering task: on a worker
        thread, or (inline_ticks > 0) as an inline attempt on the loop thread."""
        try:
            compiled = self._classes.compiled(cls)
            if slot.storage is None:
                storage = self._open_storage(
                    slot.tenant, slot.class_name, slot.object_id, cls.row.storage
                )
                if self.wrap_storage is not None:
                    storage = self.wrap_storage(
                        slot.tenant, slot.class_name, slot.object_id, storage
                    )
                slot.storage = storage
            limits = (
                self._limits
                if self.limits_for is None
                else self.limits_for(slot.tenant, slot.class_name)
            )
            if kind in ("alarm", "alarm_clear"):
                early = check_alarm(slot.storage, kind, expect_alarm)
                if early is not None:
                    return early
            act = slot.activation
            if (
                act is not None
                and slot.activation_version != cls.version
                and act.limits is limits
                and cls.deferred_until_ms is not None
                and self.wall_ms() < cls.deferred_until_ms
            ):
                activation_s = 0.0  # a deferred update: this activation keeps its version
            elif act is None or slot.activation_version != cls.version or act.limits is not limits:
                if act is not None:  # an older version's (or older limits') activation goes
                    slot.activation = None
                    self.resident -= 1
                t0 = time.perf_counter()
                act = Activation(
                    compiled,
                    ObjectIdent(slot.tenant, slot.class_name, slot.object_id.hex, slot.name),
                    slot.storage,
                    limits,
                    inline_ticks,
                    log_gate=self.tenant_limits,
                )
                act.wall_ms = self.wall_ms
                if self.index_alarm is not None:
                    act.on_alarm_set = self._alarm_indexer(slot, cls.row.storage)
                act.on_call = self.calls.hook(slot)
                act.on_log = self.on_log
                act.ws_host = self.websockets
                act.ws_key = slot.key
                act.bookmarks = self._bookmarks(slot, cls)
                slot.activation = act
                slot.activation_version = cls.version
                self.resident += 1
                activation_s = time.perf_counter() - t0
            else:
                activation_s = 0.0
            result = act.run_event(kind, data, inline_ticks, ws_upgrade_key)
            if activation_s > 0.0 and not result.offload:
                # Counted once it served: an abandoned inline attempt takes its fresh
                # instance with it (its constructor's writes rolled back) and the worker's
                # run makes the activation that counts, as in the metrics.
                self.stats.activations += 1
            if activation_s > 0.0:
                result = replace(result, activation_s=activation_s)
            if act.broken:
                slot.activation = None
                self.resident -= 1
            return result
        except OffloadRequest as o:
            return EventOutcome(offload=True, offload_cpu=o.cpu)
        except DohostError as e:
            return EventOutcome(error=e)

    # ------------------------------------------------------------------ bookmarks

    def _bookmarks(self, slot: ObjectSlot, cls: ClassRuntime) -> SlotBookmarks | None:
        if self.read_state is None:
            return None  # no replica: the imports answer not_supported

        def request(at_ms: int) -> None:
            slot.restore_request = at_ms

        return SlotBookmarks(cls.class_key, slot.object_id.raw, self.wall_ms, request)

    def _take_restore_request(self, slot: ObjectSlot, result: EventOutcome) -> None:
        """(Slot lock held, after a run.) A successful event's restore request ends the
        activation and waits for the next event; a failed event's is dropped. (An
        inline attempt never records one: bookmark_restore moves it to a worker.)"""
        at_ms, slot.restore_request = slot.restore_request, None
        if at_ms is None or result.error is not None or result.offload:
            return
        self.pending_restores[slot.key] = at_ms
        if slot.activation is not None:
            slot.activation = None
            self.resident -= 1

    async def _restore_bookmark(self, slot: ObjectSlot, cls: ClassRuntime) -> EventOutcome | None:
        """(Slot lock held, before the next event.) Apply a guest's restore request: the
        object's storage becomes its state at the bookmark. A store failure keeps the
        request for the next event; any other failure drops it. Either is returned as
        the failed outcome of this event (None: restored)."""
        at_ms = self.pending_restores[slot.key]
        read = self.read_state
        assert read is not None
        try:
            check_backend(slot.class_name, cls.row.storage)
            state = await read(slot.tenant, slot.object_id, at_ms)
            await self.replace_state(slot, cls.row.storage, state, require_empty=False)
        except DohostError as e:
            if e.code is not Code.REPLICA_UNAVAILABLE:
                del self.pending_restores[slot.key]
            return EventOutcome(
                error=DohostError(
                    e.code, f"restoring the object to its bookmark failed: {e.message}"
                )
            )
        del self.pending_restores[slot.key]
        return None

    async def replace_state(
        self, slot: ObjectSlot, backend: str, state: ObjectState | None, *, require_empty: bool
    ) -> int:
        """(Slot lock held.) Drop the activation and replace the object's storage with
        `state` in one transaction (server/object_restore.py), wait until it is durable
        and schedule its alarm. Returns the number of keys written."""
        if slot.ticket is not None:
            await wait_ticket(slot.ticket)
        self._reset_slot(slot)
        storage = self._open_storage(slot.tenant, slot.class_name, slot.object_id, backend)
        if self.wrap_storage is not None:
            storage = self.wrap_storage(slot.tenant, slot.class_name, slot.object_id, storage)
        slot.storage = storage
        index = None if self.index_alarm is None else self._alarm_indexer(slot, backend)
        try:
            ticket = await trio.to_thread.run_sync(
                lambda: write_state(storage, state, require_empty=require_empty, index_alarm=index)
            )
            err = await wait_ticket(ticket)
        except BaseException:
            self._reset_slot(slot)
            raise
        if err is not None:
            self._reset_slot(slot)
            raise err
        alarm = None if state is None else state.alarm
        if alarm is not None and self.on_alarm_committed is not None:
            self.on_alarm_committed(
                AlarmEntry(
                    slot.tenant, slot.class_name, slot.object_id.raw, slot.name, backend, alarm
                )
            )
        return 0 if state is None else len(state.rows)

    def _alarm_indexer(self, slot: ObjectSlot, backend: str) -> Callable[[int], None]:
        index = self.index_alarm
        assert index is not None

        def write(due_ms: int) -> None:
            index(
                AlarmEntry(
                    slot.tenant, slot.class_name, slot.object_id.raw, slot.name, backend, due_ms
                )
            )

        return write

    def _reset_after_storage_failure(self, slot: ObjectSlot) -> None:
        """Drop the activation and storage of an object whose commit failed: now if no
        event holds it, else before the next event runs. (Not by waiting for the lock:
        the caller of this event may hold a lock the holder waits for in a call.)"""
        if slot.lock.locked():
            slot.reset_pending = True
            return
        slot.lock.acquire_nowait()
        try:
            self._reset_slot(slot)
        finally:
            slot.lock.release()

    def _reset_slot(self, slot: ObjectSlot) -> None:
        """(Slot lock held.) Forget the activation and storage; the next event rebuilds
        them from disk."""
        slot.reset_pending = False
        if slot.activation is not None:
            slot.activation = None
            self.resident -= 1
        self._forget_memory(slot)
        storage, slot.storage = slot.storage, None
        slot.ticket = None
        if storage is not None:
            try:
                storage.close()
            except Exception:
                log.exception("closing object storage")

    # ------------------------------------------------------------------ residency

    async def _make_room(self, needing: ObjectSlot, *, wait: bool) -> bool:
        """Before a new activation: drop least recently used idle activations until the
        residents and the activations being created are below the cap; when none is idle
        (all busy), wait for one to finish (`wait`), else go over the cap. Returns
        whether it waited."""
        waited = False
        while True:
            self._evict_for(needing)
            if self.resident + self.creating < self.max_resident or not wait:
                return waited
            waited = True
            # Woken when an event ends; the timeout re-checks in case a wake-up was missed.
            with trio.move_on_after(0.05):
                await self._room.park()

    def _evict_for(self, needing: ObjectSlot) -> None:
        """Drop least recently used idle activations while at or above the cap."""
        if self.resident + self.creating < self.max_resident:
            return
        for slot in list(self._slots.values()):
            if self.resident + self.creating < self.max_resident:
                break
            if slot is needing or slot.activation is None or not slot.idle():
                continue
            self._drop(slot)
            self.stats.evictions += 1
            if self.observer is not None:
                self.observer.dropped(slot.tenant, slot.class_name, "eviction")

    def _account_memory(self, slot: ObjectSlot) -> None:
        """(Loop, slot lock held, after an event.) Its activation's memory, counted."""
        act = slot.activation
        size = act.memory_bytes() if act is not None else 0
        if size != slot.mem_bytes:
            self.resident_memory += size - slot.mem_bytes
            slot.mem_bytes = size

    def _forget_memory(self, slot: ObjectSlot) -> None:
        self.resident_memory -= slot.mem_bytes
        slot.mem_bytes = 0

    def _evict_for_memory(self) -> None:
        """Drop least recently used idle activations while their memory is over the
        budget (busy ones cannot be: the overshoot is bounded by the running events)."""
        for slot in list(self._slots.values()):
            if self.resident_memory <= self.max_resident_memory:
                break
            if slot.activation is None or not slot.idle():
                continue
            self._drop(slot)
            self.stats.evictions += 1
            if self.observer is not None:
                self.observer.dropped(slot.tenant, slot.class_name, "eviction")

    def _drop(self, slot: ObjectSlot) -> None:
        """Forget an idle slot's activation and storage (loop thread, slot idle)."""
        if slot.activation is not None:
            slot.activation = None
            self.resident -= 1
        self._forget_memory(slot)
        if self.websockets is not None:
            self.websockets.activation_dropped(slot.key)
        if slot.storage is not None:
            storage, slot.storage = slot.storage, None
            storage.close()
        del self._slots[slot.key]

    def hibernate_idle(self, now: float) -> int:
        """Drop activations idle for longer than idle_timeout; returns how many."""
        dropped = 0
        cutoff = now - self.idle_timeout
        for slot in list(self._slots.values()):
            if slot.last_used <= cutoff and slot.idle():
                had = slot.activation is not None
                self._drop(slot)
                if had:
                    dropped += 1
                    if self.observer is not None:
                        self.observer.dropped(slot.tenant, slot.class_name, "hibernation")
        self.stats.hibernations += dropped
        return dropped

    async def reaper(self) -> None:
        """Background task: hibernate idle objects (time from trio's clock)."""
        while True:
            await trio.sleep(max(self.idle_timeout / 4, 0.01))
            self.hibernate_idle(trio.current_time())

    @contextlib.asynccontextmanager
    async def forget(self, tenant: str, class_name: str, oid: ObjectId) -> AsyncIterator[None]:
        """Hold an object exclusively with no activation and no open storage: waits for
        its running and queued events (and their commits), drops its activation and
        storage, and keeps later events queued until the block exits. For deleting the
        object's storage from inside the block."""
        slot = self._slot(tenant, class_name, oid)
        async with slot.lock:
            if slot.ticket is not None:
                await wait_ticket(slot.ticket)
            self._reset_slot(slot)
            yield
        # Events that queued meanwhile keep using this slot (they hold it); otherwise
        # it goes, so a deleted object leaves nothing behind.
        if slot.idle() and self._slots.get(slot.key) is slot:
            del self._slots[slot.key]

    async def forget_class(self, tenant: str, class_name: str) -> None:
        """Drop every activation and open storage of a class, waiting for its running
        and queued events and their commits. The caller must already have stopped new
        events of the class (ClassRegistry.remove)."""
        for slot in [s for s in self._slots.values() if s.key[:2] == (tenant, class_name)]:
            async with self.forget(tenant, class_name, slot.object_id):
                pass

    async def forget_tenant(self, tenant: str) -> None:
        """Drop every activation and open storage of a tenant, waiting for its events.
        The caller must already have stopped new events of the tenant."""
        for slot in [s for s in self._slots.values() if s.tenant == tenant]:
            async with self.forget(tenant, slot.class_name, slot.object_id):
                pass

    def slots(self) -> list[ObjectSlot]:
        return list(self._slots.values())

    def resident_slots(self) -> list[ObjectSlot]:
        return [s for s in self._slots.values() if s.activation is not None]

    def busy(self) -> bool:
        return any(s.lock.locked() or s.waiting for s in self._slots.values())

    def events_in_flight(self) -> int:
        """Events running or queued, over every object (what a shutdown waits for)."""
        return sum(int(s.lock.locked()) + s.waiting for s in self._slots.values())

    async def drain(self) -> None:
        """Wait for every queued and running event, then for their commits."""
        while self.busy():
            await trio.sleep(0.005)
        for slot in list(self._slots.values()):
            if slot.ticket is not None:
                await wait_ticket(slot.ticket)

    def close_all(self) -> None:
        for slot in list(self._slots.values()):
            slot.activation = None
            if slot.storage is not None:
                try:
                    slot.storage.close()
                except Exception:
                    log.exception("closing object storage")
                slot.storage = None
        self._slots.clear()
        self.resident = 0
        self.resident_memory = 0

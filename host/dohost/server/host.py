"""`dohost.Host`: the embedded API, and what the HTTP server and the CLI stand on.

    async with Host("./data") as host:
        await host.deploy("acme", "counter", wasm_bytes)
        resp = await host.fetch("acme", "counter", "room-1", Request("POST", "/incr"))

`fetch` returns the guest's response once the writes it depends on are durable (the
output gate), and raises `DohostError` for everything that is not a guest response:
an unknown class, a forged id, a trap (`object_error`), a CPU kill (`cpu_limit`), a
failed commit (`storage_error`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import trio

from dohost.core.alarm_schedule import AlarmRun
from dohost.core.calls import DEFAULT_MAX_CALL_DEPTH
from dohost.core.envelopes import Request, Response, encode_request
from dohost.core.errors import Code, DohostError
from dohost.core.ids import ObjectId, new_unique_id
from dohost.core.limits import EventLimits
from dohost.core.names import check_name
from dohost.core.partitions import DEFAULT_PARTITIONS, partition_of
from dohost.core.replica_log import ObjectState
from dohost.core.websocket import (
    CLOSE_GOING_AWAY,
    DEFAULT_MAX_CONNECTIONS_PER_OBJECT,
    DEFAULT_MAX_MESSAGE_BYTES,
)
from dohost.replica import GATE_TIMEOUT_S
from dohost.replica.catalog import CatalogShipper
from dohost.replica.maintenance import MaintenancePolicy
from dohost.replica.object_history import object_state_at
from dohost.replica.replicator import Replicator
from dohost.replica.resync import CleanMarks, forget_clean, local_partitions
from dohost.replica.store import ReplicaStore
from dohost.runtime import crossing
from dohost.runtime.engine import (
    MAPPINGS_PER_INSTANCE,
    EngineSettings,
    EpochTicker,
    make_engine,
    resident_ceiling,
)
from dohost.runtime.event import EventOutcome
from dohost.runtime.linker import build_linker
from dohost.runtime.module_loader import WASM_MAGIC, ModuleCache
from dohost.server import class_lifecycle
from dohost.server.alarms import AlarmScheduler
from dohost.server.class_registry import ClassRegistry, ClassRuntime
from dohost.server.deploy_queue import DeployQueue
from dohost.server.executor import WorkerPool
from dohost.server.object_restore import (
    FLUSH_TIMEOUT_S,
    RestoredObject,
    check_backend,
    no_replica,
)
from dohost.server.startup import prepare_data_dir
from dohost.server.supervisor import Supervisor
from dohost.server.tail import TailHub, TailRecord
from dohost.server.websockets import WebSockets, WsConnection
from dohost.storage.alarm_index import AlarmEntry, AlarmIndex
from dohost.storage.api import Durability
from dohost.storage.dataset_lock import DataSetLock
from dohost.storage.fencing import Ownership
from dohost.storage.fsutil import Fsync, sync_data
from dohost.storage.manager import StorageManager
from dohost.storage.ownership_local import LocalOwnership
from dohost.storage.partition_count import partition_count
from dohost.storage.system_db import SystemDb

log = logging.getLogger("dohost.host")


def _no_fsync(_fd: int) -> None:
    """(Durability.OS) Files survive a process crash without an fsync."""


DEFAULT_MAX_MODULE_BYTES = 32 * 1024 * 1024
CLAIMS_CHECK_S = 0.25  # how often a Host checks that its partition locks still stand


@dataclass(frozen=True)
class ClassInfo:
    tenant: str
    name: str
    version: int
    sha256: str
    storage: str
    module_size: int

    @classmethod
    def of(cls, c: ClassRuntime, size: int) -> ClassInfo:
        return cls(c.row.tenant, c.row.name, c.row.version, c.row.sha256, c.row.storage, size)


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """An object resolved once per request (`Host.resolve`): its tenant, its class (the
    version current then; the supervisor looks again if a deploy replaced it) and its
    MAC-checked id."""

    tenant: str
    cls: ClassRuntime
    oid: ObjectId

    @property
    def class_name(self) -> str:
        return self.cls.row.name


class Host:
    """A durable-object host over one data directory. Use as an async context manager."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        durability: str = Durability.FSYNC,
        limits: EventLimits | None = None,
        idle_timeout: float = 10.0,
        max_resident: int = 10_000,
        workers: int | None = None,
        kv_shards: int = 4,
        fastcall: bool | None = None,
        max_module_bytes: int = DEFAULT_MAX_MODULE_BYTES,
        shutdown_timeout: float = 30.0,
        wall_clock_ms: Callable[[], float] | None = None,
        alarm_jitter: Callable[[], float] | None = None,
        trace_alarms: bool = False,
        max_call_depth: int = DEFAULT_MAX_CALL_DEPTH,
        storage_vfs: str | None = None,
        storage_fsync: Fsync | None = None,
        ws_max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        ws_max_connections_per_object: int = DEFAULT_MAX_CONNECTIONS_PER_OBJECT,
        ws_send_queue_bytes: int | None = None,
        dataset_lock: DataSetLock | None = None,
        ownership: Ownership | None = None,
        partitions: int = DEFAULT_PARTITIONS,
        program: str | None = None,
        replica: ReplicaStore | None = None,
        replica_sync: bool = True,
        replica_gate_timeout_s: float = GATE_TIMEOUT_S,
        replica_policy: MaintenancePolicy | None = None,
    ) -> None:
        """`wall_clock_ms` (milliseconds since the epoch) is what guests' `now_ms` and the
        alarm loop read; tests pass one tied to trio's MockClock. `alarm_jitter` returns
        a fraction in [0, 1) for the retry backoff jitter (random by default).
        `max_call_depth`: how many object calls deep a chain may go (`call_depth`).
        `storage_vfs` (an apsw VFS name) and `storage_fsync` replace the SQLite VFS and the
        fsync of objects' storage: fault injection in tests (storage/faultvfs.py).
        WebSockets: `ws_max_message_bytes` (either direction; a larger incoming message
        fails the connection with 1009), `ws_max_connections_per_object`
        (`limit_exceeded` beyond), `ws_send_queue_bytes` (unsent bytes a client may leave
        unread before it is closed with 1008; default twice the message limit + 64 KiB).

        Ownership (ARCHITECTURE.md, "One owner per object"): the Host takes the data set
        lock (`DATA/dohost.lock`; DATA_IN_USE if another program holds it) unless a
        `dataset_lock` is given (a node of `serve --processes N` passes the one its
        parent holds). With `ownership=None` it claims every partition itself; given an
        ownership backend it serves only the partitions that backend holds (and those
        claimed later with `claim`), and refuses other objects with NOT_OWNER.
        `partitions` is the count a new data set gets (`DATA/PARTITIONS`); `program`
        what the lock file names as holder (default: this process's command line).
        `replica`: ship every committed kv change to this replica store after its local
        commit (docs/replication.md; the caller closes the store after the Host). With
        `replica_sync` (the default) an event's response waits until its changes are in
        the store and the claim is re-checked, at most `replica_gate_timeout_s` (then
        `replica_unavailable`); without, it is released after the local commit.
        `replica_policy`: snapshots and retention (the PITR window, 30 days)."""
        if durability not in (Durability.FSYNC, Durability.OS):
            raise DohostError(Code.INVALID_ARGUMENT, "durability must be 'fsync' or 'os'")
        self.data_dir = Path(data_dir)
        self.durability = durability
        self.limits = limits or EventLimits()
        self.idle_timeout = idle_timeout
        ceiling = resident_ceiling()
        if max_resident > ceiling:
            log.warning(
                "max_resident %d lowered to %d: each resident costs %d memory mappings and "
                "vm.max_map_count allows no more (raise it to keep more residents)",
                max_resident, ceiling, MAPPINGS_PER_INSTANCE,
            )  # fmt: skip
        self.max_resident = min(max_resident, ceiling)
        self.shutdown_timeout = shutdown_timeout
        self._workers = workers
        self._kv_shards = kv_shards
        self._fast = (
            crossing.fast_enabled() if fastcall is None else (fastcall and crossing.fast_enabled())
        )
        self._max_module_bytes = max_module_bytes
        self._stack: contextlib.AsyncExitStack | None = None
        self.tail = TailHub()  # live events and guest log lines (server/tail.py)
        self._drain_scope = trio.CancelScope()
        self.wall_ms: Callable[[], float] = wall_clock_ms or (lambda: time.time() * 1000.0)
        self._alarm_jitter = alarm_jitter or random.random
        self._trace_alarms = trace_alarms  # record deliveries in start order (tests)
        self.max_call_depth = max_call_depth
        self._ws_options = (
            ws_max_message_bytes,
            ws_max_connections_per_object,
            ws_send_queue_bytes,
        )
        self._storage_vfs = storage_vfs
        self._storage_fsync = storage_fsync or sync_data
        self._dataset_lock = dataset_lock
        self._ownership = ownership
        self._partitions_default = partitions
        self._program = program
        # partition -> epoch this Host serves: held, fenced in open storage, alarms loaded.
        self._serving: dict[int, int] = {}
        self.partitions = 0  # the data set's count, known once open
        self.claims_broken = False  # set by _watch_claims: serve nothing any more
        self._replica = replica
        self._replica_sync = replica_sync
        self._replica_gate_timeout_s = replica_gate_timeout_s
        self._replica_policy = replica_policy
        self.replicator: Replicator | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Host:
        prepare_data_dir(self.data_dir)
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            if self._dataset_lock is None:
                lock = DataSetLock.acquire(self.data_dir, self._program)
                stack.callback(lock.release)
            self.partitions = partition_count(
                self.data_dir,
                self._partitions_default,
                self._storage_fsync if self.durability == Durability.FSYNC else _no_fsync,
            )
            self.ownership = self._open_ownership(stack)
            self._serving = self.ownership.held()
            self.system = SystemDb(self.data_dir)
            stack.callback(self.system.close)
            settings = EngineSettings()
            self.engine = make_engine(settings)
            self.ticker = EpochTicker(self.engine)
            stack.callback(self.ticker.stop)
            self.modules = ModuleCache(
                self.engine, self.data_dir / "cache" / "modules", settings.fingerprint(), settings
            )
            self.classes = ClassRegistry(
                self.system,
                self.engine,
                build_linker(self.engine, fast=self._fast),
                self.modules,
                self.limits,
                self._fast,
                self._max_module_bytes,
            )
            held = self.ownership.held()
            if self._replica is None:
                forget_clean(self.data_dir, held)  # these commits will not be shipped
            else:
                # Write sets carry their claim's partition and epoch (the fencing); the
                # segments of a partition are written under that epoch.
                ownership = self.ownership
                # The partitions whose replica may lack local changes are resynced from
                # a snapshot of the local state, read before anything is served
                # (replica/resync.py).
                marks = CleanMarks(self.data_dir)
                stack.callback(marks.close)
                dirty = set(held) - marks.take(held, self._replica.description)
                resync_ms = int(self.wall_ms())
                resync = await trio.to_thread.run_sync(
                    local_partitions, self.data_dir, self.partitions, dirty
                )
                self.replicator = Replicator(
                    self._replica,
                    partitions=self.partitions,
                    epoch_of=lambda partition: ownership.epoch_of(partition) or 0,
                    wall_clock_ms=lambda: int(self.wall_ms()),
                    sync=self._replica_sync,
                    # The output gate's re-check (DESIGN.md): the lock still held, the
                    # epoch unchanged.
                    claim_holds=lambda p, e: ownership.valid() and ownership.epoch_of(p) == e,
                    gate_timeout_s=self._replica_gate_timeout_s,
                    held=held,
                    dirty=dirty,
                    resync=resync,
                    resync_taken_ms=resync_ms,
                    clean_marks=marks,
                    policy=self._replica_policy,
                )
                # Registered before the storage, so it runs after the storage closed:
                # the last commits are queued by then and get shipped.
                stack.callback(self._close_replica)
                if 0 in held:
                    # One shipper of the catalog per data set: the owner of partition 0.
                    catalog = CatalogShipper(
                        self._replica,
                        self.data_dir,
                        writer=f"w{os.getpid()}",
                        wall_clock_ms=lambda: int(self.wall_ms()),
                        retention_ms=self.replicator.policy.retention_ms,
                        registry=self.replicator.metrics.registry,
                    )
                    stack.callback(catalog.close)
            self.storage = StorageManager(
                self.data_dir,
                durability=self.durability,
                shards_per_tenant=self._kv_shards,
                vfs=self._storage_vfs,
                fsync=self._storage_fsync,
                claims=self.ownership,
                on_kv_commit=None if self.replicator is None else self.replicator.committed,
                kv_commit_gate=self.replicator is not None and self._replica_sync,
            )
            stack.callback(self.storage.close)
            self.deploys = DeployQueue()
            self.pool = WorkerPool(self._workers)
            self.pool.start()
            stack.callback(self.pool.close)
            self.supervisor = Supervisor(
                self.classes,
                self.pool,
                lambda t, c, oid, backend: self.storage.open_object(
                    t, c, oid.raw, oid.name, backend
                ),
                self.limits,
                idle_timeout=self.idle_timeout,
                max_resident=self.max_resident,
            )
            self.supervisor.wall_ms = self.wall_ms
            self.supervisor.check_owner = self._check_owner
            self.supervisor.calls.max_depth = self.max_call_depth
            stack.callback(self.supervisor.close_all)
            self.tail.attach(trio.lowlevel.current_trio_token())
            self.supervisor.on_log = lambda ident, level, text: self.tail.guest_line(
                ident.tenant, ident.class_name, ident.label, level, text
            )
            max_message, per_object, queue = self._ws_options
            self.websockets = WebSockets(
                self._deliver_ws,
                max_message_bytes=max_message,
                max_per_object=per_object,
                send_queue_bytes=queue,
                wall_ms=self.wall_ms,
            )
            self.supervisor.websockets = self.websockets
            self.alarm_index = AlarmIndex(self.data_dir / "alarms.db", self.durability)
            stack.callback(self.alarm_index.close)
            if class_lifecycle.finish_renames(self.system, self.storage, self.alarm_index):
                log.warning("finished class renames that a stop had interrupted")
            self.alarms = AlarmScheduler(
                self.alarm_index,
                self._deliver_alarm,
                self.wall_ms,
                jitter=self._alarm_jitter,
                owns=lambda e: self._owns_raw(e.object_id),
            )
            self.tenant_limits = self.supervisor.tenant_limits
            self.alarms.tenant_limits = self.tenant_limits
            if self._trace_alarms:
                self.alarms.stats.trace = []
            self.supervisor.index_alarm = self.alarm_index.upsert_durable
            self.supervisor.on_alarm_committed = self.alarms.schedule
            if self._replica is not None:
                self.supervisor.read_state = self._object_state_at
            nursery = await stack.enter_async_context(trio.open_nursery())
            self._nursery = nursery
            self.websockets.background = nursery
            nursery.start_soon(self.supervisor.reaper)
            nursery.start_soon(self._watch_claims)
            await nursery.start(self.alarms.run)
            stack.push_async_callback(self._drain)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    def _open_ownership(self, stack: contextlib.AsyncExitStack) -> Ownership:
        """The given backend (its count must be the data set's), or this Host's own,
        holding every partition."""
        given = self._ownership
        if given is not None:
            if given.count != self.partitions:
                raise DohostError(
                    Code.INVALID_ARGUMENT,
                    f"the ownership backend has {given.count} partitions but the data set "
                    f"{self.data_dir} has {self.partitions}",
                )
            return given
        own = LocalOwnership(
            self.data_dir, f"host-{os.getpid()}", self.partitions, durability=self.durability
        )
        stack.callback(own.close)
        got = own.claim(range(self.partitions))
        if len(got) != self.partitions:
            # Only possible if another program broke the data set lock.
            raise DohostError(
                Code.DATA_IN_USE,
                f"{self.data_dir}: {self.partitions - len(got)} partitions are held by "
                "another program; stop it, or use another --data",
            )
        return own

    def _close_replica(self) -> None:
        """Ship what the last commits queued (bounded)."""
        assert self.replicator is not None
        left = self.replicator.close(timeout=self.shutdown_timeout)
        if left:
            log.warning("replica: %d committed changes were not shipped before shutdown", left)

    async def _drain(self) -> None:
        """Finish in-flight events (bounded), then let the stack close everything."""
        self.websockets.close_all()
        self.supervisor.closing = True
        with self._drain_scope:
            self._drain_scope.deadline = trio.current_time() + self.shutdown_timeout
            await self.supervisor.drain()
        if self._drain_scope.cancelled_caught:
            log.warning("shutdown: closing with events still running")
        self._nursery.cancel_scope.cancel()

    def stop_now(self) -> None:
        """End in-flight events at once (a second Ctrl-C): running guests trap at their
        next epoch check (`cpu_limit`), their writes roll back, and the close stops
        waiting for them."""
        self.supervisor.closing = True
        self.ticker.hurry()
        self._drain_scope.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    # ------------------------------------------------------------------ ownership

    def partition_of(self, oid: ObjectId | bytes) -> int:
        """The partition of an object id (the data set's count is fixed)."""
        raw = oid.raw if isinstance(oid, ObjectId) else oid
        return partition_of(raw, self.partitions)

    def owns(self, oid: ObjectId | bytes) -> bool:
        """Whether this Host serves the object's partition now."""
        return self._owns_raw(oid.raw if isinstance(oid, ObjectId) else oid)

    def _owns_raw(self, raw: bytes) -> bool:
        return partition_of(raw, self.partitions) in self._serving

    def serving(self) -> dict[int, int]:
        """partition -> epoch of every partition this Host serves."""
        return dict(self._serving)

    def _check_owner(self, oid: ObjectId) -> None:
        """Raise NOT_OWNER unless this Host serves the object (every event passes here,
        in the supervisor: fetches, calls, alarms, WebSocket messages)."""
        p = partition_of(oid.raw, self.partitions)
        if p not in self._serving:
            if self.claims_broken:
                raise DohostError(
                    Code.FENCED,
                    f"this node's claims on {self.data_dir} were broken "
                    f"({self.ownership.lost()}); it serves nothing until restarted",
                )
            raise DohostError(
                Code.NOT_OWNER,
                f"this node does not own partition {p} (object {oid.raw.hex()[:16]}...)",
            )

    async def _watch_claims(self) -> None:
        """Background: once the claims no longer stand (`valid()`: the lock file was
        replaced or removed), serve nothing. Commits check this themselves before each
        batch; this stops reads too, within one period, at no cost per event."""
        while True:
            await trio.sleep(CLAIMS_CHECK_S)
            if not self.claims_broken and not self.ownership.valid():
                log.error(
                    "the partition claims of %s were broken (%s): serving nothing until restarted",
                    self.data_dir,
                    self.ownership.lost(),
                )
                self.claims_broken = True
                self._serving.clear()
                self.alarms.unload(lambda _e: True)

    async def claim(
        self,
        partitions: Iterable[int],
        wait: float = 0.0,
        before_serving: Callable[[dict[int, int]], None] | None = None,
    ) -> dict[int, int]:
        """Claim partitions on the running Host (waiting up to `wait` s for a previous
        owner to let go) and start serving those obtained: their claims are fenced in
        the open storage, their alarms loaded. Returns partition -> epoch of what this
        Host now serves of `partitions`. `before_serving(new)` runs on a thread once the
        new claims are fenced and before they are served (a cluster node restores them
        from the replica store there: server/cluster_restore.py)."""
        wanted = list(partitions)
        got = await trio.to_thread.run_sync(lambda: self.ownership.claim(wanted, wait))
        new = {p: e for p, e in got.items() if self._serving.get(p) != e}
        if new:
            refused = await trio.to_thread.run_sync(self.storage.fence, new)
            for p in refused:
                log.warning("partition %d: a newer claim exists in the storage; not serving", p)
                new.pop(p)
                got.pop(p)
            if refused:
                await trio.to_thread.run_sync(self.ownership.release, refused)
            if before_serving is not None and new:
                try:
                    await trio.to_thread.run_sync(before_serving, dict(new))
                except BaseException:
                    await trio.to_thread.run_sync(self.ownership.release, list(new))
                    raise
            self._serving.update(new)
            ps = set(new)
            entries = await trio.to_thread.run_sync(self.alarm_index.entries)
            self.alarms.load(e for e in entries if self.partition_of(e.object_id) in ps)
        return got

    async def release(self, partitions: Iterable[int], *, lost: bool = False) -> None:
        """Stop serving partitions and give up their claims: new events for their
        objects are refused (NOT_OWNER) at once; running and queued ones finish and
        their commits complete; then their activations are dropped, their alarms
        unloaded, and the claims released. `lost`: the claims are gone already (a
        cluster node's lease lapsed): drop the activations of every given partition,
        served or not (their caches may be stale once the partition is claimed again)."""
        ps = set(partitions) if lost else {p for p in partitions if p in self._serving}
        if not ps:
            return
        for p in ps:
            self._serving.pop(p, None)
        self.alarms.unload(lambda e: self.partition_of(e.object_id) in ps)
        for slot in self.supervisor.slots():
            if self.partition_of(slot.object_id.raw) in ps:
                self.websockets.close_object(
                    slot.key, CLOSE_GOING_AWAY, "the object moved to another node"
                )
                async with self.supervisor.forget(slot.tenant, slot.class_name, slot.object_id):
                    pass
        await trio.to_thread.run_sync(self.ownership.release, sorted(ps))

    # ------------------------------------------------------------------ classes

    async def deploy(
        self,
        tenant: str,
        class_name: str,
        wasm: bytes,
        storage: str = "kv",
        *,
        update: str = "immediate",
        max_delay_s: float | None = None,
    ) -> ClassInfo:
        """Validate and deploy a module as the next version of a class. `update`:
        "immediate" (each object's next event runs it) or "deferred" (each object runs
        it from its next activation, or from its first event after `max_delay_s`)."""
        until = class_lifecycle.update_deadline(update, max_delay_s, self.wall_ms())
        self.classes.check_size(wasm)
        sha = hashlib.sha256(wasm).hexdigest()
        async with self.deploys.turn(tenant):
            if not self.modules.cached(sha) and wasm.startswith(WASM_MAGIC):
                # In a limited child process, waited for on a thread of trio's own:
                # a compile holds no event worker (runtime/compile_child.py).
                async with self.deploys.compiling():
                    await trio.to_thread.run_sync(self.modules.compile, sha, wasm)
            # The rest (deserialize, validate, a trial instantiation under the event CPU
            # limit) on a worker: bounded by that limit.
            cls = await self.pool.run(
                lambda: self.classes.deploy(tenant, class_name, wasm, storage, until)
            )
        return ClassInfo.of(cls, len(wasm))

    def class_versions(self, tenant: str, class_name: str) -> list[class_lifecycle.VersionInfo]:
        return class_lifecycle.versions(self, tenant, class_name)

    async def rollback(
        self,
        tenant: str,
        class_name: str,
        version: int,
        *,
        update: str = "immediate",
        max_delay_s: float | None = None,
    ) -> ClassInfo:
        """Deploy the module of an earlier `version` as the next version."""
        until = class_lifecycle.update_deadline(update, max_delay_s, self.wall_ms())
        cls = await class_lifecycle.rollback(self, tenant, class_name, version, until)
        return self.class_info(tenant, cls.row.name)

    async def delete_class(self, tenant: str, class_name: str) -> int:
        """Delete a class, its objects' storage and alarms (class_lifecycle.py); returns
        how many objects were deleted."""
        return await class_lifecycle.delete_class(self, tenant, class_name)

    async def rename_class(self, tenant: str, class_name: str, new_name: str) -> ClassInfo:
        """Rename a class keeping its objects and their ids (class_lifecycle.py)."""
        cls = await class_lifecycle.rename_class(self, tenant, class_name, new_name)
        return self.class_info(tenant, cls.row.name)

    def class_info(self, tenant: str, class_name: str) -> ClassInfo:
        c = self.classes.get(tenant, class_name)
        return ClassInfo.of(c, c.compiled.info.size if c.compiled else 0)

    # ------------------------------------------------------------------ ids

    def id_from_name(self, tenant: str, class_name: str, name: str) -> ObjectId:
        return self.classes.get(tenant, class_name).id_for_name(name)

    def new_unique_id(self, tenant: str, class_name: str) -> ObjectId:
        return new_unique_id(self.classes.get(tenant, class_name).class_key)

    def id_from_string(self, tenant: str, class_name: str, text: str) -> ObjectId:
        return self.classes.get(tenant, class_name).id_from_string(text)

    def resolve(self, tenant: str, class_name: str, obj: str | ObjectId) -> ObjectRef:
        """An object by name or id, resolved once: the class's current version and the
        id (a name MACed into an id, an id MAC-checked against the class key, both
        through the class's cache), so a forged id or one of another class or tenant is
        `invalid_id`."""
        check_name("tenant", tenant)
        cls = self.classes.get(tenant, class_name)
        if isinstance(obj, ObjectId):
            return ObjectRef(tenant, cls, cls.verified_id(obj))
        return ObjectRef(tenant, cls, cls.id_for_name(obj))

    def resolve_id_text(self, tenant: str, class_name: str, text: str) -> ObjectRef:
        """`resolve` of an id in its text form (64 lower-case hex characters)."""
        check_name("tenant", tenant)
        cls = self.classes.get(tenant, class_name)
        return ObjectRef(tenant, cls, cls.id_from_string(text))

    # ------------------------------------------------------------------ alarms

    async def _deliver_alarm(self, entry: AlarmEntry, run: AlarmRun, kind: str) -> EventOutcome:
        """The alarm loop's way in: an alarm event (or clear) for one object."""
        try:
            self.classes.get(entry.tenant, entry.class_name)
        except DohostError:
            return EventOutcome(alarm_state="gone")  # class or tenant deleted
        oid = ObjectId(entry.object_id, entry.name)
        t0 = time.perf_counter()
        result = await self.supervisor.deliver(
            entry.tenant, entry.class_name, oid, kind, run.info(), expect_alarm=run.scheduled_ms
        )
        if self.tail.active and kind == "alarm" and result.alarm_state is None:
            self._tail_event("alarm", entry.tenant, entry.class_name, oid, None, result, t0)
        return result

    def pending_alarms(
        self, tenant: str | None = None, class_name: str | None = None
    ) -> list[tuple[AlarmEntry, int, int]]:
        """(entry, due_ms, retry_count) of every scheduled alarm, earliest first."""
        return [
            (e, due, run.retry_count)
            for e, run, due in self.alarms.pending()
            if (tenant is None or e.tenant == tenant)
            and (class_name is None or e.class_name == class_name)
        ]

    # ------------------------------------------------------------------ events

    async def fetch(
        self, tenant: str, class_name: str, obj: str | ObjectId, request: Request
    ) -> Response:
        """Deliver a fetch event to an object (by name or id) and return its response."""
        return await self.fetch_object(self.resolve(tenant, class_name, obj), request)

    async def fetch_object(self, ref: ObjectRef, request: Request) -> Response:
        """`fetch` to an object already resolved (`resolve`)."""
        t0 = time.perf_counter()
        result = await self.supervisor.deliver(
            ref.tenant, ref.cls.row.name, ref.oid, "fetch", encode_request(request), cls=ref.cls
        )
        if self.tail.active:
            self._tail_event("request", ref.tenant, ref.cls.row.name, ref.oid, request, result, t0)
        if result.error is not None:
            raise result.error
        assert result.response is not None
        return result.response

    async def fetch_upgrade(
        self, ref: ObjectRef, request: Request, ws_key: str
    ) -> Response | WsConnection:
        """Deliver a WebSocket upgrade request (a valid RFC 6455 handshake whose
        Sec-WebSocket-Key is `ws_key`) as a fetch event. Returns the accepted connection
        (serve it with its `serve` after writing the 101), or the guest's response when
        it did not accept."""
        t0 = time.perf_counter()
        result = await self.supervisor.deliver(
            ref.tenant,
            ref.cls.row.name,
            ref.oid,
            "fetch",
            encode_request(request),
            ws_upgrade_key=ws_key,
            cls=ref.cls,
        )
        if self.tail.active:
            self._tail_event("request", ref.tenant, ref.cls.row.name, ref.oid, request, result, t0)
        if result.error is not None:
            raise result.error
        ws = result.ws
        if ws is not None and ws.accepted is not None:
            conn = self.websockets.take_accepted(ws.accepted.id)
            if conn is not None:
                return conn
        assert result.response is not None
        return result.response

    def _tail_event(
        self,
        kind: str,
        tenant: str,
        class_name: str,
        oid: ObjectId,
        request: Request | None,
        result: EventOutcome,
        t0: float,
    ) -> None:
        """One event's record for `dohost tail` / `dohost dev` (only while someone reads)."""
        err = result.error
        status = result.response.status if result.response is not None else 0
        if err is not None:
            status = err.code.http_status
        path = ""
        if request is not None:
            path = request.path + (f"?{request.query}" if request.query else "")
        self.tail.publish(
            TailRecord(
                kind,
                tenant,
                class_name,
                oid.name if oid.name is not None else oid.hex,
                time.time() * 1000,
                method=request.method if request is not None else "",
                path=path,
                status=status,
                duration_ms=(time.perf_counter() - t0) * 1000,
                cpu_ms=result.cpu_s * 1000,
                error=str(err) if err is not None else "",
            )
        )

    async def _deliver_ws(
        self, tenant: str, class_name: str, oid: ObjectId, kind: str, data: bytes
    ) -> EventOutcome | None:
        """The WebSocket registry's way in: one ws_message/ws_close/ws_error event."""
        cls = self.classes.get(tenant, class_name)
        compiled = cls.compiled
        if (
            kind != "ws_message"
            and compiled is not None
            and f"dohost_{kind}" not in compiled.info.ws_exports
        ):
            return None  # optional handler not exported: do not wake the object
        return await self.supervisor.deliver(tenant, class_name, oid, kind, data)

    # ------------------------------------------------------------------ deletion

    async def delete_object(self, tenant: str, class_name: str, obj: str | ObjectId) -> ObjectId:
        """Delete an object (by name or id): its running and queued events finish, its
        activation is dropped and its storage deleted durably. Events that arrive
        meanwhile wait, then find an empty object."""
        ref = self.resolve(tenant, class_name, obj)
        cls, oid = ref.cls, ref.oid
        self._check_owner(oid)
        self.websockets.close_object(
            (tenant, class_name, oid.raw), CLOSE_GOING_AWAY, "the object was deleted"
        )
        async with self.supervisor.forget(tenant, class_name, oid):
            await trio.to_thread.run_sync(
                self.storage.delete_object, tenant, class_name, oid.raw, cls.row.storage
            )
        return oid

    async def _object_state_at(self, tenant: str, oid: ObjectId, at_ms: int) -> ObjectState | None:
        """The kv object's state at `at_ms` as the replica holds it (None: none then).
        Changes committed but not shipped yet are shipped first."""
        store = self._replica
        if store is None:
            raise no_replica()
        replicator = self.replicator
        now_ms = int(self.wall_ms())

        def read() -> ObjectState | None:
            if replicator is not None and not replicator.flush(FLUSH_TIMEOUT_S):
                raise DohostError(
                    Code.REPLICA_UNAVAILABLE,
                    f"committed changes did not reach the replica within {FLUSH_TIMEOUT_S:g} s "
                    "(the store is failing or slow; see dohost_replica_lag_seconds): the "
                    "object's history there is not complete yet, try again",
                )
            return object_state_at(store, self.partition_of(oid), tenant, oid.raw, at_ms, now_ms)

        return await trio.to_thread.run_sync(read)

    async def restore_object(
        self,
        tenant: str,
        class_name: str,
        obj: str | ObjectId,
        at_ms: int,
        *,
        source: str | ObjectId | None = None,
    ) -> RestoredObject:
        """Replace object `obj`'s state with its state at `at_ms` read from the replica;
        with `source` (fork), copy `source`'s state at `at_ms` into `obj`, which must be
        new or empty, and leave `source` untouched. The object is held (its running and
        queued events finish first, later ones wait), its activation dropped, and the
        restore is one transaction of its storage, its alarm included."""
        if self._replica is None:
            raise no_replica()
        ref = self.resolve(tenant, class_name, obj)
        cls, oid = ref.cls, ref.oid
        check_backend(class_name, cls.row.storage)
        src = oid if source is None else self.resolve(tenant, class_name, source).oid
        fork = source is not None
        if fork and src.raw == oid.raw:
            raise DohostError(
                Code.INVALID_ARGUMENT,
                "a fork copies into another object: name a different target, or restore "
                "the object in place (without a target)",
            )
        self._check_owner(oid)
        state = await self._object_state_at(tenant, src, at_ms)
        if state is None:
            raise DohostError(
                Code.NOT_FOUND,
                f"the replica holds no state of object {src.name or src.hex} of class "
                f"{class_name} at {at_ms} ms (not written yet then, deleted, or not replicated)",
            )
        async with self.supervisor.forget(tenant, class_name, oid):
            slot = self.supervisor.slot_for(tenant, class_name, oid)
            self.supervisor.pending_restores.pop(slot.key, None)  # superseded
            keys = await self.supervisor.replace_state(
                slot, cls.row.storage, state, require_empty=fork
            )
        return RestoredObject(class_name, oid.hex, oid.name, src.hex, at_ms, keys, state.alarm)

    async def delete_tenant(self, tenant: str) -> bool:
        """Delete a tenant: its classes, activations and every object's storage. Returns
        False if there was no such tenant. (The emptied kv shard files stay open until
        the process ends; `dohost serve` removes the directories of deleted tenants at
        its next start.)"""
        check_name("tenant", tenant)
        classes = self.classes.list(tenant)
        existed = self.system.delete_tenant(tenant)
        self.classes.forget_tenant(tenant)  # new events of the tenant now fail
        self.websockets.close_tenant(tenant, CLOSE_GOING_AWAY, "the tenant was deleted")
        await self.supervisor.forget_tenant(tenant)

        def wipe() -> None:
            for c in classes:
                class_lifecycle.wipe_class(self.storage, tenant, c.row.name, c.row.storage)

        await trio.to_thread.run_sync(wipe)
        return existed or bool(classes)

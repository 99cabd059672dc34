"""Ships committed kv changes to a replica store after the local commit, and (in sync
mode, the default with a replica) holds each event's response until its changes are in
the store and the claim they were written under still stands (DESIGN.md, "Replication").

The kv shards' committer threads hand every committed batch to `committed` (a list
append under a lock: nothing of the upload happens on a committer thread, and nothing
waits for it). One uploader thread takes everything queued, groups it by (partition,
epoch) in commit order, and uploads one segment per group with a create-only write.

Per partition and epoch the uploader keeps the next seq. The first time it ships for a
(partition, epoch) it reads that partition's log and writes the epoch's start record
naming the end of the history it found (core/replica_chain.py), then its segments from
1. Epochs are per claim, so the start record must be new: one that exists already, or a
newer epoch's, means another writer owns the partition's log.

Failures: an upload the store failed (`replica_unavailable`) is retried with backoff
(0.1 s doubling to 5 s) and keeps its place: later changes wait behind it, the lag grows
and the metrics show it; the host keeps serving. A segment key that is already taken
holds either this uploader's own earlier try (the answer was lost: same bytes, done) or
another writer's under the same epoch: then this process no longer owns the partition's
log, so it stops shipping that partition (`fenced` in the metrics and the log) rather
than write a fork of the history.

**Output gate** (`sync=True`). The kv shards then leave the tickets of what they
committed to this class (KvShard's `replica_gate`): a ticket resolves once the segment
holding its change is in the store (and every earlier segment of its partition: a
partition's segments go up in order) and the owner has re-checked its claim
(`claim_holds(partition, epoch)`: the lock is still held, the epoch unchanged). The
upload round is the group commit: one round carries every change queued since the last
one, of every partition. When the store fails, changes keep their place and are retried;
an event that waited `gate_timeout_s` for them fails with `replica_unavailable` (503,
nothing acknowledged). Its change stays committed locally and queued, so it reaches the
store when the store is back, before anything later of its partition: the replica never
skips a change the local copy holds, whether it was acknowledged or not. A claim lost,
or a partition fenced in the store, fails its events with `fenced`.

**Resync** (replica/resync.py): the partitions whose replica may lack changes of the
local copy (`dirty`: after a crash, an overflow, a run without a replica) get a snapshot
of their local state (`resync`, read before the host served anything, at
`resync_taken_ms`) at (epoch, 0), right after the epoch's start record and before any
segment; the uploader does that first, for every dirty partition with local objects.
A clean `close` (everything shipped) marks the partitions complete (`clean_marks`).

**Maintenance** (replica/maintenance.py): a thread runs `maintain` every
`maintain_every_s`: periodic snapshots and log retention of the partitions this run
ships.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from dohost.core.errors import Code, DohostError
from dohost.core.partitions import partition_of
from dohost.core.replica_chain import PartitionListing, follow_chain, plan_restore
from dohost.core.replica_keys import (
    FORMAT_KEY,
    parse_log_key,
    partition_prefix,
    segment_key,
    snapshot_key,
    start_key,
)
from dohost.core.replica_log import (
    ALARM_UNCHANGED,
    ObjectChange,
    PartitionState,
    Segment,
    Snapshot,
    StartRecord,
    decode_format,
    decode_start,
    encode_format,
    encode_segment,
    encode_snapshot,
    encode_start,
)
from dohost.replica import GATE_TIMEOUT_S
from dohost.replica.maintenance import MaintenancePolicy, maintain_partition
from dohost.replica.resync import CleanMarks
from dohost.replica.store import ReplicaKeyExists, ReplicaStore
from dohost.storage.api import CommitTicket
from dohost.storage.write_set import ALARM_UNCHANGED as WS_ALARM_UNCHANGED
from dohost.storage.write_set import WriteSet

_log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0
# Segments of different partitions uploaded at once: with the output gate an event waits
# for its round, so a round of 32 partitions must not take four store round trips.
UPLOAD_THREADS = 32
MAX_PENDING_BYTES = 256 * 1024 * 1024
MAINTAIN_EVERY_S = 60.0
MISMATCH_READS = 3  # reads of a taken key holding other bytes before it counts as fenced


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def change_of(tenant: str, ws: WriteSet, committed_ms: int) -> ObjectChange:
    """The logical change a committed write set made (what `_apply_batch` applied)."""
    return ObjectChange(
        tenant=tenant,
        class_name=ws.class_name,
        object_id=ws.object_id,
        name=ws.name,
        created_ms=ws.created_ms,
        puts=tuple(ws.puts.items()),
        clear=ws.clear,
        drop=ws.drop,
        alarm=ALARM_UNCHANGED if ws.alarm is WS_ALARM_UNCHANGED else ws.alarm,
        committed_ms=committed_ms,
    )


@dataclass(slots=True)
class _Queued:
    partition: int
    epoch: int
    change: ObjectChange
    size: int  # bytes it holds in memory, roughly (the bound on what may wait)
    # Sync mode: the event's ticket, resolved when the change is in the store (or the
    # event gives up waiting); None once resolved, and in async mode.
    ticket: CommitTicket | None = None
    deadline: float = 0.0  # monotonic time the event stops waiting (sync mode)


class ReplicatorMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self.segments = Counter(
            "dohost_replica_segments_uploaded", "Segments written to the replica store", registry=r
        )
        self.bytes = Counter(
            "dohost_replica_uploaded_bytes",
            "Bytes of segments written to the replica store",
            registry=r,
        )
        self.failures = Counter(
            "dohost_replica_upload_failures",
            "Replica store writes that failed (retried)",
            registry=r,
        )
        self.fenced = Counter(
            "dohost_replica_fenced_partitions",
            "Partitions whose log another writer took over (shipping stopped)",
            registry=r,
        )
        self.overflowed = Counter(
            "dohost_replica_overflowed_partitions",
            "Partitions whose shipping stopped because too much was waiting for the store",
            registry=r,
        )
        self.pending_bytes = Gauge(
            "dohost_replica_pending_bytes",
            "Bytes of committed changes waiting for the replica store",
            registry=r,
        )
        self.pending = Gauge(
            "dohost_replica_pending_changes",
            "Committed changes not yet in the replica store",
            registry=r,
        )
        self.gate_timeouts = Counter(
            "dohost_replica_gate_timeouts",
            "Events that failed because their changes did not reach the replica store in time",
            registry=r,
        )
        self.snapshots = Counter(
            "dohost_replica_snapshots", "Snapshots written to the replica store", registry=r
        )
        self.deleted = Counter(
            "dohost_replica_deleted_objects",
            "Segments and snapshots deleted by retention (older than the PITR window)",
            registry=r,
        )
        self.maintenance_failures = Counter(
            "dohost_replica_maintenance_failures",
            "Snapshot or retention passes of a partition that failed (tried again later)",
            registry=r,
        )
        self.snapshot_age = Gauge(
            "dohost_replica_snapshot_age_seconds",
            "Age of the oldest newest-snapshot among the partitions this node ships "
            "(0: none known yet)",
            registry=r,
        )
        self.lag = Gauge(
            "dohost_replica_lag_seconds",
            "Age of the oldest committed change not yet in the replica store (0: none)",
            registry=r,
        )


class Replicator:
    def __init__(
        self,
        store: ReplicaStore,
        *,
        partitions: int,
        epoch_of: Callable[[int], int],
        wall_clock_ms: Callable[[], int] = wall_ms,
        registry: CollectorRegistry | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        sync: bool = False,
        claim_holds: Callable[[int, int], bool] = lambda partition, epoch: True,
        gate_timeout_s: float = GATE_TIMEOUT_S,
        monotonic: Callable[[], float] = time.monotonic,
        held: Iterable[int] = (),
        dirty: Iterable[int] = (),
        resync: dict[int, PartitionState] | None = None,
        resync_taken_ms: int = 0,
        clean_marks: CleanMarks | None = None,
        policy: MaintenancePolicy | None = None,
        maintain_every_s: float | None = MAINTAIN_EVERY_S,
    ) -> None:
        """`epoch_of(partition)`: the epoch of this process's claim of a partition, for
        write sets that do not carry their own (partition -1). `max_pending_bytes`:
        how much may wait for the store (see `committed`). `sync`: resolve the write
        sets' tickets once shipped (the output gate; the kv shards must be told to leave
        them to `committed`), after `claim_holds(partition, epoch)` confirmed the claim;
        an event waits at most `gate_timeout_s` (on `monotonic`).
        Resync (module doc): `held` partitions, of which `dirty` may lack changes in the
        replica, `resync` their local objects (those with any) as of `resync_taken_ms`;
        `clean_marks` records a clean close. `policy`: snapshots and retention, run every
        `maintain_every_s` (None: only when `maintain` is called)."""
        self.store = store
        self.partitions = partitions
        self.epoch_of = epoch_of
        self.metrics = ReplicatorMetrics(registry)
        self._clock = wall_clock_ms
        self._sleep = sleep
        self._cv = threading.Condition()
        self._queue: list[_Queued] = []
        self._max_pending_bytes = max_pending_bytes
        self._pending_bytes = 0
        self._queued_total = 0  # changes ever queued
        self._shipped_total = 0  # changes ever shipped (or dropped for a fenced partition)
        self._oldest_unshipped_ms: int | None = None
        self._closing = False
        self._next_seq: dict[tuple[int, int], int] = {}  # (partition, epoch) -> next seq
        self._stopped: set[int] = set()  # partitions that queue no more (fenced, overflowed)
        self._fenced: set[int] = set()  # partitions that ship nothing more
        self._format_checked = False
        self._mismatches: dict[str, int] = {}
        # (partition, epoch) -> the start record of a try whose answer may have been lost
        self._start_tried: dict[tuple[int, int], bytes] = {}
        self.sync = sync
        self._claim_holds = claim_holds
        self._gate_timeout_s = gate_timeout_s
        self._monotonic = monotonic
        self._gate_scan = 0  # queue index before which no ticket can still expire
        self._held = set(held)
        self._dirty = set(dirty)
        self._resync = dict(resync or {})
        self._resync_taken_ms = resync_taken_ms
        self._clean_marks = clean_marks
        self.policy = policy or MaintenancePolicy()
        self._newest_snapshot_ms: dict[int, int] = {}
        # Maintenance visits a partition only when it may have work: segments shipped
        # since its last visit, and that visit a snapshot period ago or that many
        # segments (a visit lists the partition and reads its start records).
        self._segments_since_visit: dict[int, int] = {}
        self._last_visit_ms: dict[int, int] = {}
        self.last_error: DohostError | None = None
        self.metrics.lag.set_function(self._lag_seconds)
        self.metrics.pending.set_function(lambda: self._queued_total - self._shipped_total)
        self.metrics.pending_bytes.set_function(lambda: self._pending_bytes)
        self.metrics.snapshot_age.set_function(self._snapshot_age_s)
        self._pool = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="dohost-replica-upload")
        self._thread = threading.Thread(target=self._run, name="dohost-replicator", daemon=True)
        self._thread.start()
        self._gate_thread: threading.Thread | None = None
        if sync:
            self._gate_thread = threading.Thread(
                target=self._expire_loop, name="dohost-replica-gate", daemon=True
            )
            self._gate_thread.start()
        self._maintain_thread: threading.Thread | None = None
        if maintain_every_s is not None:
            self._maintain_thread = threading.Thread(
                target=self._maintain_loop,
                args=(maintain_every_s,),
                name="dohost-replica-maintenance",
                daemon=True,
            )
            self._maintain_thread.start()

    # --------------------------------------------------------- committer side

    def committed(self, tenant: str, write_sets: list[WriteSet]) -> None:
        """Queue what a committer just made durable (called on its thread: cheap).

        Memory is bounded: a change that would take more than `max_pending_bytes`
        waiting for the store is not queued, and its partition stops shipping (its
        replica log stays a consistent prefix of its history: a restore gives its state
        as of the last change shipped) rather than the host running out of memory or the
        log skipping a change. The next start resyncs it (a snapshot of the local state)."""
        now = self._clock()
        deadline = self._monotonic() + self._gate_timeout_s if self.sync else 0.0
        queued = []
        for ws in write_sets:
            # Write sets carry their claim's partition and epoch when ownership fences
            # them (storage/fencing.py); -1 otherwise.
            p = getattr(ws, "partition", -1)
            if p >= 0:
                e = getattr(ws, "epoch", 0)
            else:
                p = partition_of(ws.object_id, self.partitions)
                e = self.epoch_of(p)
            size = 128 + sum(len(k) + len(v or b"") for k, v in ws.puts.items())
            ticket = ws.ticket if self.sync else None
            queued.append(_Queued(p, e, change_of(tenant, ws, now), size, ticket, deadline))
        overflowed = []
        refused: list[tuple[_Queued, DohostError]] = []
        with self._cv:
            kept = []
            for q in queued:
                if q.partition in self._stopped:
                    refused.append((q, self._stopped_error(q.partition)))
                    continue
                if self._pending_bytes + q.size > self._max_pending_bytes:
                    self._stopped.add(q.partition)
                    overflowed.append(q.partition)
                    refused.append((q, self._stopped_error(q.partition)))
                    continue
                self._pending_bytes += q.size
                kept.append(q)
            if kept and not self._queue:
                self._oldest_unshipped_ms = now
            self._queue.extend(kept)
            self._queued_total += len(kept)
            self._cv.notify_all()
        for q, error in refused:
            if q.ticket is not None:
                q.ticket.resolve(error)
        for p in overflowed:
            self.metrics.overflowed.inc()
            _log.error(
                "replica: more than %d bytes wait for the store; partition %d stops shipping "
                "(its replica ends at its last shipped change)",
                self._max_pending_bytes,
                p,
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything queued so far is in the store; False on timeout."""
        with self._cv:
            target = self._queued_total
            return self._cv.wait_for(lambda: self._shipped_total >= target, timeout)

    def close(self, timeout: float = 10.0) -> int:
        """Ship what is queued (within `timeout`), stop; returns changes left unshipped."""
        self.flush(timeout)
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._thread.join(timeout)
        for thread in (self._gate_thread, self._maintain_thread):
            if thread is not None:
                thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._cv:
            left = self._queue[:]
        # Nothing waits forever: what did not ship is not acknowledged.
        self._resolve(
            left,
            DohostError(
                Code.SHUTTING_DOWN,
                "the host stopped before the event's changes reached the replica store",
            ),
        )
        with self._cv:
            left_count = self._queued_total - self._shipped_total
            complete = self._held - self._stopped - self._dirty
        if self._clean_marks is not None and not left_count:
            # Everything committed was shipped: the next start needs no resync of these.
            self._clean_marks.mark(complete, self.store.description)
        return left_count

    def _stopped_error(self, partition: int) -> DohostError:
        if partition in self._fenced:
            return DohostError(
                Code.FENCED,
                f"partition {partition}'s replica log has another writer: this node no "
                "longer ships it, so it acknowledges nothing of it",
            )
        return DohostError(
            Code.REPLICA_UNAVAILABLE,
            f"partition {partition} stopped shipping to the replica store (more changes "
            "waited for the store than fit in memory); restart the server to ship it again",
        )

    # -------------------------------------------------------------- output gate

    @staticmethod
    def _resolve(items: list[_Queued], error: DohostError | None) -> None:
        for q in items:
            ticket, q.ticket = q.ticket, None
            if ticket is not None:
                ticket.resolve(error)

    def _expire_loop(self) -> None:
        """(Sync mode.) Fail the events whose changes waited too long for the store:
        their changes stay queued (they ship when the store is back), but the event's
        response is a 503 rather than an acknowledgement."""
        while True:
            expired: list[_Queued] = []
            with self._cv:
                if self._closing:
                    return
                now = self._monotonic()
                i = self._gate_scan
                while i < len(self._queue) and self._queue[i].deadline <= now:
                    if self._queue[i].ticket is not None:
                        expired.append(self._queue[i])
                    i += 1
                self._gate_scan = i
                if not expired:
                    wait = self._queue[i].deadline - now if i < len(self._queue) else None
                    self._cv.wait(wait)
                    continue
            self.metrics.gate_timeouts.inc(len(expired))
            error = self.last_error
            self._resolve(
                expired,
                DohostError(
                    Code.REPLICA_UNAVAILABLE,
                    f"the event's changes did not reach the replica store "
                    f"{self.store.description} within {self._gate_timeout_s:g} s"
                    + (f" ({error.message})" if error is not None else "")
                    + "; they were not acknowledged (retry the request later)",
                ),
            )

    def _lag_seconds(self) -> float:
        oldest = self._oldest_unshipped_ms
        return 0.0 if oldest is None else max(0, self._clock() - oldest) / 1000

    # ------------------------------------------------------------ uploader side

    def _run(self) -> None:
        # Resync first: each dirty partition with local objects gets its snapshot at
        # (epoch, 0) before any segment of the epoch (`_begin_epoch`).
        for p in sorted(self._resync):
            if not self._ship_with_retry(p, self.epoch_of(p), []):
                return  # closing while the store was failing
        while True:
            with self._cv:
                self._cv.wait_for(lambda: bool(self._queue) or self._closing)
                if self._closing:
                    return
                batch = self._queue[:]
            groups: dict[tuple[int, int], list[_Queued]] = {}
            for q in batch:
                groups.setdefault((q.partition, q.epoch), []).append(q)
            # Partitions are independent logs: their segments go up at once (one store
            # round trip each); within a partition, rounds stay in order. This round is
            # the group commit of the output gate: it carries every event queued since
            # the last one.
            shipped = list(
                self._pool.map(
                    lambda item: self._ship_with_retry(item[0][0], item[0][1], item[1]),
                    groups.items(),
                )
            )
            if not all(shipped):
                return  # closing while the store was failing
            with self._cv:
                del self._queue[: len(batch)]
                self._gate_scan = max(0, self._gate_scan - len(batch))
                self._shipped_total += len(batch)
                self._pending_bytes -= sum(q.size for q in batch)
                self._oldest_unshipped_ms = (
                    self._queue[0].change.committed_ms if self._queue else None
                )
                self._cv.notify_all()

    def _ship_with_retry(self, partition: int, epoch: int, items: list[_Queued]) -> bool:
        delay = RETRY_FIRST_S
        while True:
            try:
                error = self._ship(partition, epoch, [q.change for q in items])
                if error is None and self.sync and not self._claim_holds(partition, epoch):
                    # In the store, but this node may no longer own the partition: a new
                    # owner may have restored without it. Acknowledge nothing.
                    error = DohostError(
                        Code.FENCED,
                        f"partition {partition}: the claim of epoch {epoch} was lost before "
                        "the event's changes were acknowledged",
                    )
                self._resolve(items, error)
                return True
            except DohostError as e:
                if e.code is not Code.REPLICA_UNAVAILABLE:
                    # Not the store failing: a damaged log or a replica of another data
                    # set. Retrying cannot help; stop shipping this partition.
                    _log.error("replica: partition %d: %s; shipping stopped", partition, e)
                    self._fence(partition, e)
                    self._resolve(items, self._stopped_error(partition))
                    return True
                self.metrics.failures.inc()
                self.last_error = e
                _log.warning("replica: %s (retrying in %.1f s)", e, delay)
            with self._cv:
                if self._closing:
                    return False
            self._sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _fence(self, partition: int, error: DohostError) -> None:
        with self._cv:
            new = partition not in self._fenced
            self._fenced.add(partition)
            self._stopped.add(partition)
        if new:
            self.metrics.fenced.inc()
        self.last_error = error

    def _ship(self, partition: int, epoch: int, changes: list[ObjectChange]) -> DohostError | None:
        """Upload one segment; the error its events get if this partition can no
        longer be shipped (None: shipped)."""
        if partition in self._fenced:
            return self._stopped_error(partition)
        if not self._format_checked:
            self._check_format()
        seq = self._next_seq.get((partition, epoch))
        if seq is None:
            seq = self._next_seq[(partition, epoch)] = self._begin_epoch(partition, epoch)
        if not changes:
            return None
        data = encode_segment(
            Segment(partition, epoch, seq, max(c.committed_ms for c in changes), tuple(changes))
        )
        key = segment_key(partition, epoch, seq)
        if not self._put_new(key, data):
            self._fence(
                partition,
                DohostError(Code.FENCED, f"{key} was written by another writer of epoch {epoch}"),
            )
            _log.error(
                "replica: %s holds another writer's segment; shipping of partition %d stopped",
                key,
                partition,
            )
            return self._stopped_error(partition)
        self._next_seq[(partition, epoch)] = seq + 1
        self._segments_since_visit[partition] = self._segments_since_visit.get(partition, 0) + 1
        # The first visit comes a snapshot period after the first segment (or sooner if
        # many wait), not at the next pass: a fresh partition needs no snapshot yet.
        self._last_visit_ms.setdefault(partition, self._clock())
        self.metrics.segments.inc()
        self.metrics.bytes.inc(len(data))
        return None

    def _put_new(self, key: str, data: bytes) -> bool:
        """Create `key`; True also when it already holds exactly `data` (our own earlier
        try whose answer was lost), False when it holds something else."""
        try:
            self.store.put_new(key, data)
            return True
        except ReplicaKeyExists:
            found = self.store.get(key)
        if found == data:
            return True
        # Another writer of the same epoch is impossible while ownership holds, so other
        # bytes may also be the store's answer to our own broken try (seen once with
        # SeaweedFS under heavy load after a connection failed mid-request): read it again
        # a few times (retried with backoff) before calling it another writer's.
        seen = self._mismatches[key] = self._mismatches.get(key, 0) + 1
        if seen < MISMATCH_READS:
            raise DohostError(
                Code.REPLICA_UNAVAILABLE,
                f"{key} in {self.store.description} holds other bytes than this writer's "
                f"({len(found)} vs {len(data)}); reading it again",
            )
        return False

    def _check_format(self) -> None:
        data = encode_format(self.partitions)
        if not self._put_new(FORMAT_KEY, data):
            found = decode_format(self.store.get(FORMAT_KEY), FORMAT_KEY)
            if found != self.partitions:
                raise DohostError(
                    Code.INVALID_ARGUMENT,
                    f"the replica store {self.store.description} holds a data set of {found} "
                    f"partitions, this one has {self.partitions}: use another location",
                )
        self._format_checked = True

    def start_epoch(self, partition: int, epoch: int, base: tuple[int, int] | None) -> None:
        """Start (partition, epoch) now, its start record naming `base`: the last (epoch,
        seq) its new owner restored (a cluster node that just restored a partition it
        claimed, server/cluster_restore.py). A segment an older owner uploads after this
        (never acknowledged: its claim was gone) is then outside the history, even when
        it lands before this owner's first commit. Clears what an older epoch of this
        process left on the partition (a fence, a stopped queue). Blocking."""
        if not self._format_checked:
            self._check_format()
        record = encode_start(StartRecord(partition, epoch, base, self._clock()))
        if not self._put_new(start_key(partition, epoch), record):
            raise DohostError(
                Code.FENCED, f"partition {partition}: another writer started epoch {epoch}"
            )
        with self._cv:
            self._fenced.discard(partition)
            self._stopped.discard(partition)
            self._next_seq[(partition, epoch)] = 1

    def _begin_epoch(self, partition: int, epoch: int) -> int:
        """The first seq to write for (partition, epoch), after its start record."""
        keys = [k for k in map(parse_log_key, self.store.list(partition_prefix(partition))) if k]
        listing = PartitionListing.of(partition, keys)
        tried = self._start_tried.get((partition, epoch))
        key = start_key(partition, epoch)
        if epoch in listing.start_epochs:
            # Epochs are per claim: a start of ours that this process did not write is
            # another writer's (or a claim reused, which the ownership backend forbids).
            # It is ours if it holds the bytes of our earlier try whose answer was lost.
            if tried is None or self.store.get(key) != tried:
                raise DohostError(
                    Code.FENCED,
                    f"partition {partition}: epoch {epoch} was started by another writer",
                )
            end = decode_start(tried, partition, epoch, key).base
        else:
            starts = {
                e: decode_start(
                    self.store.get(start_key(partition, e)), partition, e, start_key(partition, e)
                )
                for e in listing.start_epochs
            }
            if starts and max(starts) > epoch:
                raise DohostError(
                    Code.FENCED,
                    f"partition {partition}: epoch {max(starts)} has started in the replica "
                    f"store; this writer's epoch {epoch} is older",
                )
            end = plan_restore(listing, follow_chain(listing, starts)).end
            record = encode_start(StartRecord(partition, epoch, end, self._clock()))
            self._start_tried[(partition, epoch)] = record
            if not self._put_new(key, record):
                raise DohostError(
                    Code.FENCED, f"partition {partition}: another writer started epoch {epoch}"
                )
        if partition in self._dirty:
            # The replica may lack changes the local copy holds: the epoch starts from a
            # snapshot of the local state as the host found it (before serving).
            state = self._resync.get(partition, {})
            if state or end is not None:
                taken = self._resync_taken_ms
                data = encode_snapshot(Snapshot(partition, epoch, 0, taken, state))
                if not self._put_new(snapshot_key(partition, epoch, 0, taken), data):
                    raise DohostError(
                        Code.FENCED,
                        f"partition {partition}: another writer's snapshot in epoch {epoch}",
                    )
                self.metrics.snapshots.inc()
                self._newest_snapshot_ms[partition] = taken
            with self._cv:
                self._resync.pop(partition, None)
                self._dirty.discard(partition)
        self._start_tried.pop((partition, epoch), None)
        return 1

    # -------------------------------------------------------------- maintenance

    def maintain(self, now_ms: int | None = None) -> None:
        """One pass of snapshots and retention over the partitions shipped this run that
        may have work (see `_segments_since_visit`)."""
        now = self._clock() if now_ms is None else now_ms
        policy = self.policy
        for partition in sorted(self._segments_since_visit):
            waiting = self._segments_since_visit[partition]
            last = self._last_visit_ms.get(partition)
            if partition in self._stopped or not waiting:
                continue
            if (
                last is not None
                and now - last < policy.snapshot_every_ms
                and waiting < policy.snapshot_after_segments
            ):
                continue
            self._last_visit_ms[partition] = now
            self._segments_since_visit[partition] = 0
            try:
                done = maintain_partition(self.store, partition, now, self.policy)
            except DohostError as e:
                self.metrics.maintenance_failures.inc()
                _log.warning("replica: maintenance of partition %d: %s", partition, e)
                continue
            if done.snapshot is not None:
                self.metrics.snapshots.inc()
            self.metrics.deleted.inc(done.deleted)
            if done.newest_snapshot_ms is not None:
                self._newest_snapshot_ms[partition] = done.newest_snapshot_ms

    def _maintain_loop(self, every_s: float) -> None:
        while True:
            with self._cv:
                if self._cv.wait_for(lambda: self._closing, every_s):
                    return
            try:
                self.maintain()
            except Exception:
                _log.exception("replica: maintenance pass failed")

    def _snapshot_age_s(self) -> float:
        known = list(self._newest_snapshot_ms.values())
        return 0.0 if not known else max(0, self._clock() - min(known)) / 1000

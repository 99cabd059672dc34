"""Prometheus metrics of one server, labelled by tenant and class.

Counters fed per request and per event (the supervisor's observer hook) live in a
registry owned by the server (never the process-global one, so tests can run several
servers). Gauges of current state (resident objects, running events, stored bytes and
objects) and the storage byte counters are read at scrape time by `_LiveCollector`.
Label children are cached per (tenant, class): `labels()` is too slow for every request;
the per-event series are plain totals turned into series at scrape time
(`_EventCollector`), since the observer runs for every event.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from dohost.runtime.event import EventOutcome

if TYPE_CHECKING:
    from dohost.server.host import Host
    from dohost.server.quota_storage import UsageBook

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TC = ("tenant", "class")
# Event latency buckets (seconds): no-op events take tens of µs, durable ones an fsync.
DURATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
_LE = [floatToGoString(b) for b in DURATION_BUCKETS] + ["+Inf"]  # type: ignore[no-untyped-call]


class _EventTotals:
    """The event metrics of one (tenant, class), as plain numbers. The observer runs for
    every event on the loop thread; adding to a few attributes there costs a fraction of
    a prometheus child's locked `inc` per counter and `observe`, and `_EventCollector`
    turns them into the same series at scrape time (also on the loop thread)."""

    __slots__ = (
        "activations", "buckets", "cpu", "duration_sum", "events", "reads", "sql_read",
        "sql_written", "writes",
    )  # fmt: skip

    def __init__(self) -> None:
        self.events = 0
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)  # the last one: +Inf
        self.duration_sum = 0.0
        self.cpu = 0.0
        self.reads = self.writes = self.sql_read = self.sql_written = self.activations = 0


class _EventCollector:
    """The per-event series, from the `_EventTotals` of every (tenant, class)."""

    def __init__(self, totals: dict[tuple[str, str], _EventTotals]) -> None:
        self._totals = totals

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily("dohost_events", "Events delivered to objects", labels=TC)
        duration = HistogramMetricFamily(
            "dohost_event_duration_seconds",
            "Time from delivery to release of an event's result (queueing, execution, commit)",
            labels=TC,
        )
        cpu = CounterMetricFamily(
            "dohost_event_cpu_seconds", "CPU time of events (thread time)", labels=TC
        )
        reads = CounterMetricFamily("dohost_storage_reads", "Keys read by events", labels=TC)
        writes = CounterMetricFamily(
            "dohost_storage_writes", "Keys written or deleted by events", labels=TC
        )
        sql_read = CounterMetricFamily(
            "dohost_sql_rows_read",
            "Rows read by SQL statements (rows returned, or full-scan steps when more)",
            labels=TC,
        )
        sql_written = CounterMetricFamily(
            "dohost_sql_rows_written",
            "Rows inserted, updated or deleted by SQL statements (triggers included)",
            labels=TC,
        )
        activations = CounterMetricFamily(
            "dohost_activations", "Activations created (instantiations)", labels=TC
        )
        for (tenant, class_name), t in list(self._totals.items()):
            labels = [tenant, class_name]
            events.add_metric(labels, t.events)
            cumulative = list(itertools.accumulate(t.buckets))
            duration.add_metric(labels, list(zip(_LE, cumulative, strict=True)), t.duration_sum)
            cpu.add_metric(labels, t.cpu)
            reads.add_metric(labels, t.reads)
            writes.add_metric(labels, t.writes)
            sql_read.add_metric(labels, t.sql_read)
            sql_written.add_metric(labels, t.sql_written)
            activations.add_metric(labels, t.activations)
        yield from (events, duration, cpu, reads, writes, sql_read, sql_written, activations)


class Metrics:
    """The server's metrics; also the supervisor's `SupervisorObserver`."""

    def __init__(self, host: Host, usage: UsageBook) -> None:
        # The `*_created` timestamp series double the output and nobody reads them
        # (process-wide switch; the server owns its process).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        r = self.registry = CollectorRegistry()
        # The replicator keeps its own registry (it runs below the server); shown here.
        self._replica_registry = (
            None if host.replicator is None else host.replicator.metrics.registry
        )
        self.requests = Counter(
            "dohost_http_requests", "HTTP requests answered", [*TC, "status"], registry=r
        )
        self.errors = Counter(
            "dohost_errors",
            "Requests answered with a host error, by stable error code",
            [*TC, "code"],
            registry=r,
        )
        # Per-event series: plain totals read at scrape time (_EventCollector).
        self._totals: dict[tuple[str, str], _EventTotals] = {}
        r.register(_EventCollector(self._totals))
        self.evictions = Counter(
            "dohost_evictions",
            "Activations dropped: eviction (resident cap) or hibernation (idle)",
            [*TC, "reason"],
            registry=r,
        )
        self.alarm_runs = Counter(
            "dohost_alarm_runs", "Alarm handler runs (stale or moved alarms not counted)", TC,
            registry=r,
        )  # fmt: skip
        self.alarm_retries = Counter(
            "dohost_alarm_retries",
            "Alarm handler runs that failed, and so are retried with backoff (up to the limit)",
            TC,
            registry=r,
        )
        self.calls = Counter(
            "dohost_calls", "Calls made to other objects (by the caller's class)", TC, registry=r
        )
        self.call_failures = Counter(
            "dohost_call_failures",
            "Calls that could not be made (call_cycle, call_depth, call_failed, ...), by code",
            [*TC, "code"],
            registry=r,
        )
        r.register(_LiveCollector(host, usage))
        self._requests: dict[tuple[str, str, int], Any] = {}

    def _for(self, tenant: str, class_name: str) -> _EventTotals:
        t = self._totals.get((tenant, class_name))
        if t is None:
            t = self._totals[(tenant, class_name)] = _EventTotals()
        return t

    # ---------------------------------------------------------------- observer hooks

    def event(
        self, tenant: str, class_name: str, kind: str, result: EventOutcome, seconds: float
    ) -> None:
        t = self._for(tenant, class_name)
        t.events += 1
        t.buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        t.duration_sum += seconds
        t.cpu += result.cpu_s
        t.reads += result.storage_reads
        t.writes += result.storage_writes
        t.sql_read += result.sql_rows_read
        t.sql_written += result.sql_rows_written
        if result.activation_s:
            t.activations += 1
        if result.calls:
            self.calls.labels(tenant, class_name).inc(result.calls)
            for code, n in result.call_failures:
                self.call_failures.labels(tenant, class_name, code).inc(n)
        if kind == "alarm" and result.alarm_state is None:
            self.alarm_runs.labels(tenant, class_name).inc()
            if result.error is not None and not result.alarm_replaced:
                self.alarm_retries.labels(tenant, class_name).inc()

    def dropped(self, tenant: str, class_name: str, reason: str) -> None:
        self.evictions.labels(tenant, class_name, reason).inc()

    # ---------------------------------------------------------------- requests

    def request(self, tenant: str, class_name: str, status: int, error: str | None) -> None:
        key = (tenant, class_name, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(tenant, class_name, str(status))
        child.inc()
        if error is not None:
            self.errors.labels(tenant, class_name, error).inc()

    def forget_tenant(self, tenant: str) -> None:
        """Drop a deleted tenant's request children from the cache (the exported series,
        its event totals included, keep their last values until restart, as Prometheus
        counters should)."""
        for rk in [k for k in self._requests if k[0] == tenant]:
            del self._requests[rk]

    def render(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        if self._replica_registry is not None:
            data += generate_latest(self._replica_registry)
        return data


class _LiveCollector:
    """Scrape-time gauges from the supervisor, the usage book and the storage."""

    def __init__(self, host: Host, usage: UsageBook) -> None:
        self._host = host
        self._usage = usage

    def describe(self) -> list[Metric]:
        return []  # unknown until collected; prometheus_client then calls collect()

    def collect(self) -> Iterator[Metric]:
        sup = self._host.supervisor
        resident = GaugeMetricFamily(
            "dohost_resident_objects", "Objects with a live activation", labels=TC
        )
        running = GaugeMetricFamily(
            "dohost_events_running", "Objects with an event running or queued", labels=TC
        )
        res_counts: dict[tuple[str, str], int] = {}
        run_counts: dict[tuple[str, str], int] = {}
        for slot in sup.slots():
            k = (slot.tenant, slot.class_name)
            if slot.activation is not None:
                res_counts[k] = res_counts.get(k, 0) + 1
            if slot.lock.locked() or slot.waiting:
                run_counts[k] = run_counts.get(k, 0) + 1
        for k, n in sorted(res_counts.items()):
            resident.add_metric(list(k), n)
        for k, n in sorted(run_counts.items()):
            running.add_metric(list(k), n)
        yield resident
        yield running

        stored = GaugeMetricFamily(
            "dohost_storage_bytes", "Committed key+value bytes stored", labels=TC
        )
        objects = GaugeMetricFamily(
            "dohost_stored_objects", "Objects that have stored something", labels=TC
        )
        read_b = CounterMetricFamily(
            "dohost_storage_read_bytes", "Bytes of values read by events", labels=TC
        )
        written_b = CounterMetricFamily(
            "dohost_storage_written_bytes", "Key+value bytes written by committed events", labels=TC
        )
        for u in sorted(self._usage.tenants(), key=lambda u: u.tenant):
            for cls, n in sorted(u.bytes_by_class().items()):
                stored.add_metric([u.tenant, cls], n)
            for cls, n in sorted(u.objects_by_class().items()):
                objects.add_metric([u.tenant, cls], n)
            for cls, n in sorted(u.read_bytes.copy().items()):
                read_b.add_metric([u.tenant, cls], n)
            for cls, n in sorted(u.written_bytes.copy().items()):
                written_b.add_metric([u.tenant, cls], n)
        yield stored
        yield objects
        yield read_b
        yield written_b

        st = self._host.storage.stats()
        fsyncs = CounterMetricFamily(
            "dohost_storage_fsyncs", "fsync calls of commits (kv shards and sqlite WALs)"
        )
        fsyncs.add_metric([], st.kv_fsyncs + st.wal_fsyncs)
        yield fsyncs
        ws = self._host.websockets
        ws_in = CounterMetricFamily(
            "dohost_ws_messages_in",
            "WebSocket messages received (auto-responses excluded)",
            labels=TC,
        )
        ws_auto = CounterMetricFamily(
            "dohost_ws_auto_responses",
            "WebSocket messages answered by the auto-response",
            labels=TC,
        )
        ws_open = GaugeMetricFamily(
            "dohost_ws_connections", "Open WebSocket connections", labels=TC
        )
        for k, n in sorted(ws.messages_in.items()):
            ws_in.add_metric(list(k), n)
        for k, n in sorted(ws.auto_responses.items()):
            ws_auto.add_metric(list(k), n)
        for k, n in sorted(ws.open_by_class.items()):
            ws_open.add_metric(list(k), n)
        yield ws_in
        yield ws_auto
        yield ws_open
        limits = self._host.tenant_limits
        for name, doc, counts in (
            (
                "dohost_log_dropped_bytes",
                "Guest log bytes dropped over the tenant's log rate",
                limits.log_dropped_bytes,
            ),
            (
                "dohost_alarms_deferred",
                "Alarm deliveries put back for the tenant's alarm rate",
                limits.alarms_deferred,
            ),
            (
                "dohost_tenant_inline_off",
                "Times a tenant's events were sent to workers for its inline budget",
                limits.tenant_heavy_marks,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["tenant"])
            for tenant, n in sorted(counts.copy().items()):
                family.add_metric([tenant], n)
            yield family
        busy = GaugeMetricFamily("dohost_workers_busy", "Worker threads running an event")
        busy.add_metric([], self._host.pool.busy)
        yield busy

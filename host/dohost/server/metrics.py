"""Prometheus metrics of one server, labelled by tenant and class.

Counters fed per request and per event (the supervisor's observer hook) live in a
registry owned by the server (never the process-global one, so tests can run several
servers). Gauges of current state (resident objects, running events, stored bytes and
objects) and the storage byte counters are read at scrape time by `_LiveCollector`.
Label children are cached per (tenant, class): `labels()` is too slow for every request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

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


class _Children:
    """The per-(tenant, class) children of the event metrics."""

    __slots__ = (
        "activations", "cpu", "duration", "events", "reads", "sql_read", "sql_written", "writes",
    )  # fmt: skip

    def __init__(self, m: Metrics, tenant: str, class_name: str) -> None:
        self.events = m.events.labels(tenant, class_name)
        self.duration = m.event_duration.labels(tenant, class_name)
        self.cpu = m.cpu_seconds.labels(tenant, class_name)
        self.reads = m.storage_reads.labels(tenant, class_name)
        self.writes = m.storage_writes.labels(tenant, class_name)
        self.activations = m.activations.labels(tenant, class_name)
        self.sql_read = m.sql_rows_read.labels(tenant, class_name)
        self.sql_written = m.sql_rows_written.labels(tenant, class_name)


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
        self.events = Counter("dohost_events", "Events delivered to objects", TC, registry=r)
        self.event_duration = Histogram(
            "dohost_event_duration_seconds",
            "Time from delivery to release of an event's result (queueing, execution, commit)",
            TC,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.cpu_seconds = Counter(
            "dohost_event_cpu_seconds", "CPU time of events (thread time)", TC, registry=r
        )
        self.storage_reads = Counter("dohost_storage_reads", "Keys read by events", TC, registry=r)
        self.storage_writes = Counter(
            "dohost_storage_writes", "Keys written or deleted by events", TC, registry=r
        )
        self.sql_rows_read = Counter(
            "dohost_sql_rows_read",
            "Rows read by SQL statements (rows returned, or full-scan steps when more)",
            TC,
            registry=r,
        )
        self.sql_rows_written = Counter(
            "dohost_sql_rows_written",
            "Rows inserted, updated or deleted by SQL statements (triggers included)",
            TC,
            registry=r,
        )
        self.activations = Counter(
            "dohost_activations", "Activations created (instantiations)", TC, registry=r
        )
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
        self._children: dict[tuple[str, str], _Children] = {}
        self._requests: dict[tuple[str, str, int], Any] = {}

    def _for(self, tenant: str, class_name: str) -> _Children:
        c = self._children.get((tenant, class_name))
        if c is None:
            c = self._children[(tenant, class_name)] = _Children(self, tenant, class_name)
        return c

    # ---------------------------------------------------------------- observer hooks

    def event(
        self, tenant: str, class_name: str, kind: str, result: EventOutcome, seconds: float
    ) -> None:
        c = self._for(tenant, class_name)
        c.events.inc()
        c.duration.observe(seconds)
        if result.cpu_s:
            c.cpu.inc(result.cpu_s)
        if result.storage_reads:
            c.reads.inc(result.storage_reads)
        if result.storage_writes:
            c.writes.inc(result.storage_writes)
        if result.sql_rows_read:
            c.sql_read.inc(result.sql_rows_read)
        if result.sql_rows_written:
            c.sql_written.inc(result.sql_rows_written)
        if result.activation_s:
            c.activations.inc()
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
        """Drop a deleted tenant's label children from the cache (the exported series
        keep their last values until restart, as Prometheus counters should)."""
        for k in [k for k in self._children if k[0] == tenant]:
            del self._children[k]
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

"""The per-event series are plain totals turned into series at scrape time: they read
exactly as prometheus_client's own Counter and Histogram fed the same events would."""

from __future__ import annotations

import bisect

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from dohost.server.metrics import DURATION_BUCKETS, TC, _EventCollector, _EventTotals

# Durations on, between, below and above the bucket bounds (le is inclusive).
DURATIONS = [0.00001, 0.0001, 0.00011, 0.001, 0.0099, 0.01, 2.5, 30.0, 31.0, 0.0003]


def test_event_totals_expose_the_same_series_as_prometheus_children() -> None:
    ours = CollectorRegistry()
    totals: dict[tuple[str, str], _EventTotals] = {}
    ours.register(_EventCollector(totals))
    t = totals[("acme", "counter")] = _EventTotals()

    theirs = CollectorRegistry()
    events = Counter("dohost_events", "Events delivered to objects", TC, registry=theirs)
    duration = Histogram(
        "dohost_event_duration_seconds",
        "Time from delivery to release of an event's result (queueing, execution, commit)",
        TC,
        buckets=DURATION_BUCKETS,
        registry=theirs,
    )
    reads = Counter("dohost_storage_reads", "Keys read by events", TC, registry=theirs)
    for i, seconds in enumerate(DURATIONS):
        t.events += 1
        t.buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        t.duration_sum += seconds
        t.reads += i
        events.labels("acme", "counter").inc()
        duration.labels("acme", "counter").observe(seconds)
        reads.labels("acme", "counter").inc(i)

    def lines(registry: CollectorRegistry, prefixes: tuple[str, ...]) -> list[str]:
        text = generate_latest(registry).decode()
        # samples, and the "# HELP name ..." / "# TYPE name ..." lines of the families
        named = [(ln.split(" ")[2] if ln.startswith("#") else ln, ln) for ln in text.splitlines()]
        return [ln for name, ln in named if name.startswith(prefixes) and "_created" not in ln]

    wanted = ("dohost_events", "dohost_event_duration", "dohost_storage_reads")
    assert lines(ours, wanted) == lines(theirs, wanted)
    assert 'dohost_event_duration_seconds_bucket{class="counter",le="+Inf",tenant="acme"} 10.0' in (
        lines(ours, wanted)
    )

"""Alarm lateness in the suite (issue 19: p99 ≤ 10 ms with 1,000 and ≤ 1 s with 10,000
alarms due in one second): bench/alarms_residency.py's measure, run in this process
pinned to the servers' CPU. Lateness is when each handler *finished* (its writes
durable) minus the time it was due."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import trio

from bench.common import SERVER_CPU
from bench.model import TargetRow

TARGETS_MS = {1_000: 10.0, 10_000: 1_000.0}


@contextlib.contextmanager
def _pinned(cpu: int) -> Iterator[None]:
    before = os.sched_getaffinity(0)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {cpu} if cpu in before else before)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def run(sizes: list[int], durability: str, label: str) -> list[TargetRow]:
    from bench.alarms_residency import lateness

    out = []
    for n in sizes:
        with _pinned(SERVER_CPU):
            r = trio.run(lateness, n, durability)
        out.append(
            TargetRow(
                f"alarms-{n}",
                f"alarm lateness p99, {n:,} due in one second" + label,
                r["done_p99_ms"],
                "ms",
                TARGETS_MS.get(n, 10.0),
                at_most=True,
                note=(
                    f"handler done (durable) − due: p50 {r['done_p50_ms']:.1f} ms, "
                    f"max {r['done_max_ms']:.1f} ms; delivery start p50 "
                    f"{r['start_p50_ms']:.1f} ms"
                ),
            )
        )
    return out

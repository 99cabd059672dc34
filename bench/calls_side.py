"""The object → object call row of the suite (issue 19: per call ≥ 1× workerd):
bench/calls_micro.py's "per call, 50 calls in one event" for dohost (in-process
`Host`, pinned to the servers' CPU) and workerd (bench/workerd_calls/, a DO calling
another through a stub), p50 of the per-call cost, `reps` interleaved repetitions."""

from __future__ import annotations

import contextlib
import sys

import trio

from bench.alarm_lateness import _pinned
from bench.common import SERVER_CPU
from bench.model import Row
from bench.servers import ensure_workerd


def run(reps: int, quick: bool, label: str) -> list[Row]:
    # dohost from the benchmarked tree first: calls_micro puts the working tree's host/
    # on sys.path, which must not shadow it.
    import dohost.server.calls  # noqa: F401
    from bench import calls_micro

    binary = str(ensure_workerd())
    row = Row("calls", "object → object call, per call" + label, "50 per event", "µs", False, 1.0)
    row.note = (
        "one event making 50 calls to another object's no-op minus one making none, / 50, "
        "p50 (bench/calls_micro.py); dohost in-process, workerd over HTTP"
    )
    for rep in range(reps):
        order = ("workerd", "dohost") if rep % 2 == 0 else ("dohost", "workerd")
        for name in order:
            with contextlib.redirect_stdout(sys.stderr):
                if name == "dohost":
                    with _pinned(SERVER_CPU):
                        rows = trio.run(calls_micro.bench_dohost, quick)
                else:
                    rows = calls_micro.bench_workerd(binary, quick)
            per_call = next(r for r in rows if "per call" in r["name"])
            side = row.dohost if name == "dohost" else row.workerd
            side.values.append(per_call["p50_us"])
            side.p50_ms.append(per_call["p50_us"] / 1e3)
            side.p99_ms.append(per_call["p99_us"] / 1e3)
    return [row]

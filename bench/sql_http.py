"""100-row SQL inserts and selects inside one request, dohost beside workerd, over HTTP.

    .venv/bin/python -m bench.sql_http [--duration 3] [--reps 2] [--durability fsync|os]
    .venv/bin/python -m bench sql          # the same rows inside the suite

One object on each side, the same routes (same SQL, same rows, same JSON):

- dohost: bench/guests/sqlbench.c (C SDK `sql.h`), class `sqlbench` deployed with
  storage="sqlite", on `dohost serve` (the real HTTP server, fsync'd commits unless
  --durability os); build it with `.venv/bin/python tools/build_guests.py sqlbench`.
- workerd: bench/workerd_sql/ (a Durable Object class with enableSql = true, storage on
  local disk, fsync per commit), the workerd binary the suite installs (bench/servers.py).

Rows, each one client connection (keep-alive), sequential requests (c=1), for `duration`
seconds per side and repetition, the sides interleaved (A/B then B/A):

    noop      the same object answering without SQL: the HTTP + dispatch floor
    insert    100 single-row `INSERT ... VALUES (?, ?, ?)` statements (one call each) in
              one request, one transaction; the response waits for it to be durable
    select    one `SELECT id, name, score ... ORDER BY id LIMIT 100`, every row returned
              as JSON

Checks: every insert answers "100"; every select body is byte for byte the expected
100 rows; at the end each side's row count is 100 × the inserts it acknowledged.
Reported: req/s, p50/p99 latency, server CPU per request and the dohost/workerd ratio
(per repetition pair, median). The machine is shared and noisy: compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import CLIENT_CPU, WORK, BenchError, RawClient, cpu_seconds, pct
from bench.model import Row, Side
from bench.servers import Dohost, Server, Workerd, ensure_workerd

REPO = Path(__file__).resolve().parent.parent
WASM = REPO / "tests" / "fixtures" / "build" / "sqlbench.wasm"
WORKERD_CONFIG = Path(__file__).resolve().parent / "workerd_sql" / "config.capnp"
CLASS = "sqlbench"
OBJECT = "sql"
ROWS = 100
NAME = "a name of some length"  # as in sqlbench.c and worker.js
# What every select answers: JSON.stringify's compact form, which the C guest matches.
EXPECTED_SELECT = json.dumps(
    [{"id": i, "name": NAME, "score": i % 97} for i in range(ROWS)], separators=(",", ":")
).encode()


@dataclass
class Target:
    """One side: its server and how its URLs are shaped."""

    server: Server
    next_id: int = 0  # the first id of the next insert request
    acked: int = 0  # insert requests answered "100"

    @property
    def name(self) -> str:
        return self.server.name

    def path(self, op: str, query: str = "") -> str:
        q = f"?{query}" if query else ""
        if isinstance(self.server, Workerd):
            return f"/{OBJECT}/{op}{q}"
        return f"/v1/classes/{CLASS}/objects/{OBJECT}/{op}{q}"

    def client(self) -> RawClient:
        return RawClient(self.server.port, self.server.headers)


@dataclass(frozen=True)
class Op:
    key: str
    title: str
    method: str
    # (target) -> (path, expected body); called once per request
    next_request: Callable[[Target], tuple[str, bytes]]


def _insert(t: Target) -> tuple[str, bytes]:
    start = t.next_id
    t.next_id += ROWS
    return t.path("insert", f"start={start}&n={ROWS}"), str(ROWS).encode()


OPS = (
    Op("noop", "same object, no SQL (HTTP + dispatch floor)", "GET",
       lambda t: (t.path("noop"), b"ok")),
    Op("insert", f"{ROWS} single-row INSERTs in one request", "POST", _insert),
    Op("select", f"SELECT of {ROWS} rows returned as JSON", "GET",
       lambda t: (t.path("select", f"n={ROWS}"), EXPECTED_SELECT)),
)  # fmt: skip


def load(t: Target, op: Op, secs: float, row: Row) -> None:
    """Sequential requests for `secs` seconds on one keep-alive connection; one sample
    (req/s, p50/p99 ms, server CPU µs per request) into the row's side."""
    c = t.client()
    lat: list[float] = []
    bad = 0
    try:
        c0 = cpu_seconds(t.server.pid)
        t0 = time.perf_counter()
        end = t0 + secs
        while True:
            path, want = op.next_request(t)
            a = time.perf_counter()
            status, body = c.request(op.method, path)
            b = time.perf_counter()
            lat.append(b - a)
            if status != 200 or body != want:
                if not bad:
                    row.checks.append(f"{t.name}: {op.key} answered {status} {body[:120]!r}")
                bad += 1
            elif op.key == "insert":
                t.acked += 1
            if b >= end:
                break
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(t.server.pid) - c0
    finally:
        c.close()
    s: Side = row.dohost if t.name == "dohost" else row.workerd
    s.values.append(len(lat) / elapsed)
    s.p50_ms.append(pct(lat, 50) * 1e3)
    s.p99_ms.append(pct(lat, 99) * 1e3)
    s.cpu_us.append(cpu / len(lat) * 1e6)
    if bad:
        row.checks.append(f"{t.name}: {bad} of {len(lat)} {op.key} responses wrong")


def count_rows(t: Target) -> int:
    c = t.client()
    try:
        status, body = c.request("GET", t.path("count"))
    finally:
        c.close()
    if status != 200:
        raise BenchError(f"{t.name}: count answered {status} {body[:200]!r}")
    return int(body)


def warm(t: Target) -> None:
    """Activation, statement caches, JIT; leaves ids 0..ROWS-1 for the selects."""
    c = t.client()
    try:
        for _ in range(50):
            for op in OPS:
                path, want = op.next_request(t)
                status, body = c.request(op.method, path)
                if status != 200 or body != want:
                    raise BenchError(f"{t.name}: warm-up {op.key}: {status} {body[:200]!r}")
                if op.key == "insert":
                    t.acked += 1
    finally:
        c.close()


def run(
    work: Path, duration: float, reps: int, durability: str, say: Callable[[str], None] = print
) -> list[Row]:
    """The rows, both servers started in `work` and stopped (by pid) before returning."""
    if not WASM.exists():
        raise BenchError(f"{WASM} is missing: run .venv/bin/python tools/build_guests.py sqlbench")
    ensure_workerd()
    for sub in ("wd-sql", "dh-sql"):
        shutil.rmtree(work / sub, ignore_errors=True)
    label = "" if durability == "fsync" else " [dohost durability=os]"
    # issue 19's target for the inserts; the others are context
    rows = [Row(f"sql-{op.key}-c1", f"SQL: {op.title}{label}", "c=1", "req/s", True,
                1.0 if op.key == "insert" else 0.0) for op in OPS]  # fmt: skip
    rows[0].note = "bench/guests/sqlbench.c on sqlite storage; workerd: bench/workerd_sql/"
    wd = Workerd(work / "wd-sql", work, config=WORKERD_CONFIG, sockets=("http",))
    dh = Dohost(work / "dh-sql", work, durability)
    sides = [Target(wd), Target(dh)]
    affinity = os.sched_getaffinity(0)
    try:
        wd.start()
        dh.start()
        dh.setup()
        dh.deploy(CLASS, WASM.read_bytes(), storage="sqlite")
        if CLIENT_CPU in affinity:  # this thread drives the load: keep it off the servers' CPU
            os.sched_setaffinity(0, {CLIENT_CPU})
        for t in sides:
            warm(t)
        for op, row in zip(OPS, rows, strict=True):
            say(f"sql side by side: {op.key} ({reps} × {duration:g} s per side)")
            for rep in range(reps):
                for t in sides if rep % 2 == 0 else sides[::-1]:
                    load(t, op, duration, row)
        for t in sides:
            n = count_rows(t)
            msg = f"{t.name}: {n:,} rows, {t.acked:,} inserts acknowledged"
            rows[1].checked.append(msg)
            if n != t.acked * ROWS:
                rows[1].checks.append(msg + f" (expected {t.acked * ROWS:,} rows)")
    finally:
        os.sched_setaffinity(0, affinity)
        wd.stop()
        dh.stop()
    return rows


def summary(rows: list[Row]) -> str:
    """p50 of each SQL row minus its side's no-SQL floor: what the SQL work costs."""
    floor = rows[0]
    out = []
    for r in rows[1:]:
        w = r.workerd.p50 - floor.workerd.p50
        d = r.dohost.p50 - floor.dohost.p50
        out.append(
            f"- {r.workload}: p50 over the no-SQL floor: workerd {w * 1e3:,.0f} µs, "
            f"dohost {d * 1e3:,.0f} µs"
        )
    return "\n".join(out)


def main() -> None:
    from bench.report import side_table

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per side and rep")
    ap.add_argument("--reps", type=int, default=2, help="interleaved repetitions per row")
    ap.add_argument("--durability", choices=["fsync", "os"], default="fsync")
    args = ap.parse_args()
    work = WORK / "sql_http"
    work.mkdir(parents=True, exist_ok=True)
    rows = run(work, args.duration, args.reps, args.durability)
    print(side_table(rows))
    print()
    print(summary(rows))
    for r in rows:
        for line in r.checked:
            print(f"- {r.key}: {line}")
    failed = [f"{r.key}: {c}" for r in rows for c in r.checks]
    if failed:
        raise SystemExit("correctness checks FAILED: " + "; ".join(failed))


if __name__ == "__main__":
    main()

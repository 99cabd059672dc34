"""Micro-benchmark of sql_exec: 100-row inserts and selects inside one event.

    .venv/bin/python bench/sql_micro.py [--events 300] [--durability os|fsync] [--dir DIR]

Through `dohost.Host` and the C test guest (tests/fixtures/c/sqltest.c, C SDK `sql.h`) on
a `sqlite` class, one object:

- insert: one event runs 100 single-row `INSERT ... VALUES (?, ?, ?)` statements;
- select: one event runs one `SELECT id, name, score ... LIMIT 100` and reads every value;
- noop: an event that runs no SQL (the floor: delivery, wasm, response);

each as event latency (p50/p99 µs, from `Host.fetch` to its response, commit included).
Then the host side alone, without wasm (storage/sql_exec.py on the object's connection):
one single-row INSERT and one 100-row SELECT, per statement. The machine is shared and
noisy: compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host"))

from dohost import Host, Request  # noqa: E402
from dohost.storage.api import Durability  # noqa: E402
from dohost.storage.sqlite_object import SqliteObjectStorage  # noqa: E402
from dohost.storage.wal_flusher import WalFlusher  # noqa: E402

WASM = ROOT / "tests" / "fixtures" / "build" / "sqltest.wasm"
ROWS = 100


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def show(name: str, samples_s: list[float], note: str = "") -> None:
    us = [x * 1e6 for x in samples_s]
    print(f"  {name:<40} p50 {pct(us, 0.5):>9,.0f} µs   p99 {pct(us, 0.99):>9,.0f} µs  {note}")


async def through_host(data: Path, events: int, durability: str) -> None:
    async with Host(data, durability=durability) as host:
        await host.deploy("bench", "sql", WASM.read_bytes(), "sqlite")

        async def fetch(method: str, path: str) -> float:
            p, _, q = path.partition("?")
            t0 = time.perf_counter()
            r = await host.fetch("bench", "sql", "o", Request(method, p, q))
            dt = time.perf_counter() - t0
            assert r.status in (200, 404), r.body
            return dt

        await fetch("POST", "/bench/setup")
        for i in range(20):  # warm up: activation, statement caches
            await fetch("POST", f"/bench/insert?n={ROWS}&start={(events + i) * ROWS}")
            await fetch("GET", f"/bench/select?n={ROWS}")
            await fetch("GET", "/noop")
        ins = [
            await fetch("POST", f"/bench/insert?n={ROWS}&start={i * ROWS}") for i in range(events)
        ]
        sel = [await fetch("GET", f"/bench/select?n={ROWS}") for _ in range(events)]
        noop = [await fetch("GET", "/noop") for _ in range(events)]
    print(f"through dohost.Host ({durability} durability, {events} events each):")
    show(f"event: {ROWS} single-row INSERTs", ins, f"= {pct(ins, 0.5) / ROWS * 1e6:.1f} µs/row")
    show(f"event: one SELECT of {ROWS} rows", sel)
    show("event: no SQL (floor)", noop)


def host_side(data: Path, n: int) -> None:
    flusher = WalFlusher(Durability.OS)
    o = SqliteObjectStorage(str(data / "direct.db"), bytes(32), "c", None, flusher)
    o.begin_event()
    deadline = time.perf_counter() + 3600
    o.sql_exec(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER)", (), deadline
    )
    ins: list[float] = []
    for i in range(n * ROWS):
        t0 = time.perf_counter()
        o.sql_exec(
            "INSERT INTO t(id, name, score) VALUES (?, ?, ?)",
            (i, "a name of some length", i % 97),
            deadline,
        )
        ins.append(time.perf_counter() - t0)
    sel: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = o.sql_exec("SELECT id, name, score FROM t ORDER BY id LIMIT ?", (ROWS,), deadline)
        sel.append(time.perf_counter() - t0)
        assert r.rows == ROWS
    raw = o.connection
    base: list[float] = []
    for i in range(n * ROWS):
        t0 = time.perf_counter()
        raw.execute(
            "INSERT INTO t(id, name, score) VALUES (?, ?, ?)",
            (10**9 + i, "a name of some length", 1),
        )
        base.append(time.perf_counter() - t0)
    o.rollback_event()
    o.close()
    flusher.close()
    print("host side, no wasm (storage/sql_exec.py):")
    show("sql_exec: one single-row INSERT", ins)
    show(
        f"sql_exec: one SELECT of {ROWS} rows", sel, f"(mean {statistics.mean(sel) * 1e6:,.0f} µs)"
    )
    show("floor: the same INSERT through apsw", base)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--durability", choices=["os", "fsync"], default="os")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    if not WASM.exists():
        sys.exit(f"{WASM} is missing: run .venv/bin/python tools/build_guests.py sqltest")
    base = Path(tempfile.mkdtemp(prefix="dohost-sql-bench-", dir=args.dir))
    try:
        trio.run(through_host, base / "data", args.events, args.durability)
        host_side(base, max(10, args.events // 10))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

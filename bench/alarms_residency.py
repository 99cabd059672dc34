"""Alarm lateness and memory per resident object (issue "Alarms, hibernation").

    .venv/bin/python bench/alarms_residency.py [--quick] [--durability fsync|os]

- Alarm lateness: N objects (1, 1,000, 10,000) of the C test guest each set an alarm,
  spread evenly over the same second; reported is when each handler *finished* (its
  writes durable) minus the time it was due, p50/p99/max, plus when delivery started.
  The alarms are set an hour ahead of the host's (injected) wall clock, which then jumps
  to 100 ms before the first is due: setting them never eats into the second measured.
- RSS per resident object: the counter sample, 10,000 objects each incremented once and
  kept resident; (RSS after - RSS of a host that served as many requests to one object)
  / 10,000, like the workerd peer's run_bench.sh (workerd: ~250 KiB here).
Targets: lateness p99 <= 10 ms for 1,000 simultaneous alarms; <= 25 KiB per resident.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import trio

from dohost import Host, Request

ROOT = Path(__file__).resolve().parent.parent


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else float("nan")


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def lateness(n: int, durability: str) -> dict[str, float]:
    # The host's wall clock, moved forward once every alarm is set (below): however long
    # setting them took on a busy machine, they then fall due within one second.
    shift = [0.0]

    def clock() -> float:
        return time.time() * 1000 + shift[0]

    with tempfile.TemporaryDirectory() as d:
        async with Host(
            Path(d), durability=durability, max_resident=max(n, 100), wall_clock_ms=clock
        ) as host:
            await host.deploy("b", "k", (ROOT / "tests/fixtures/build/kvtest.wasm").read_bytes())
            done: list[float] = []
            deliver = host.alarms._deliver

            async def timed(entry, run, kind):  # type: ignore[no-untyped-def]
                r = await deliver(entry, run, kind)
                if kind == "alarm":
                    done.append(clock() - run.scheduled_ms)
                return r

            host.alarms._deliver = timed  # type: ignore[method-assign]
            host.alarms.stats.lateness_ms = []
            t_set = time.time()
            due = int(clock()) + 3_600_000  # later than setting them all can take
            limit = trio.CapacityLimiter(64)

            async def set_one(i: int) -> None:
                async with limit:
                    # spread over one second: "due in the same second"
                    at = due + i * 1000 // n
                    r = await host.fetch(
                        "b", "k", f"o{i}", Request("POST", "/alarm_set", f"ms={at}")
                    )
                    assert r.status == 200, r.text

            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(set_one, i)
            set_s = time.time() - t_set
            shift[0] += due - 100 - clock()  # the first is due in 100 ms
            host.alarms._wake.set()  # the loop sleeps until the old clock's due time
            while len(done) < n:
                await trio.sleep(0.05)
            started = host.alarms.stats.lateness_ms
            return {
                "objects": n,
                "set_per_s": n / set_s,
                "start_p50_ms": pct(started, 50),
                "done_p50_ms": pct(done, 50),
                "done_p99_ms": pct(done, 99),
                "done_max_ms": max(done),
            }


async def rss_per_resident(n: int, durability: str) -> dict[str, float]:
    counter = (ROOT / "samples/counter/counter.wasm").read_bytes()
    incr = Request("POST", "/incr")
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        async with Host(Path(d) / "base", durability=durability, max_resident=n + 100) as host:
            await host.deploy("b", "counter", counter)
            for _ in range(n):  # as many requests, one object: the baseline's garbage
                await host.fetch("b", "counter", "one", incr)
            gc.collect()
            base = rss_kib()
        async with Host(Path(d) / "many", durability=durability, max_resident=n + 100) as host:
            await host.deploy("b", "counter", counter)
            await host.fetch("b", "counter", "warm", incr)
            gc.collect()
            before = rss_kib()
            limit = trio.CapacityLimiter(32)

            async def one(i: int) -> None:
                async with limit:
                    await host.fetch("b", "counter", f"o{i}", incr)

            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(one, i)
            gc.collect()
            after = rss_kib()
            out["residents"] = host.supervisor.resident
            out["kib_per_resident"] = (after - max(before, base)) / n
            out["kib_per_resident_vs_idle_host"] = (after - before) / n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--durability", default="fsync", choices=["fsync", "os"])
    args = ap.parse_args()
    sizes = [1, 1000] if args.quick else [1, 1000, 10_000]
    label = "" if args.durability == "fsync" else " (durability=os: no fsync, dev only)"
    print(
        f"| alarms due in the same second{label} | set/s | start p50 ms | done p50 ms | done p99 ms | max ms |"
    )
    print("|---|---|---|---|---|---|")
    for n in sizes:
        r = trio.run(lateness, n, args.durability)
        print(
            f"| {n:,} objects | {r['set_per_s']:,.0f} | {r['start_p50_ms']:.1f} | {r['done_p50_ms']:.1f} "
            f"| {r['done_p99_ms']:.1f} | {r['done_max_ms']:.1f} |"
        )
    n = 2000 if args.quick else 10_000
    r = trio.run(rss_per_resident, n, args.durability)
    print()
    print(
        "| resident counter objects | residents | KiB per resident (vs baseline) | KiB per resident (vs idle host) |"
    )
    print("|---|---|---|---|")
    print(
        f"| {n:,} | {r['residents']:.0f} | {r['kib_per_resident']:.1f} | {r['kib_per_resident_vs_idle_host']:.1f} |"
    )


if __name__ == "__main__":
    main()

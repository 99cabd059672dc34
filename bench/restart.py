"""Restart -> first response with many stored objects (issue 19: ≤ 1 s, flat in n).

For each n: a fresh `dohost serve` data directory with the bench tenant and classes;
n counter objects `s0`..`s<n-1>` stored through the host's own storage layer (an
embedded `Host` on that directory: the same rows an increment commits, written in
batches, so that 10^5 objects take seconds instead of the minutes HTTP creation takes);
then `reps` restarts of `dohost serve` on it: spawn -> listening, spawn -> first 200
from an existing object (`GET s0`), and the server's RSS then. Checked: the first
response and a sample of 50 counters read 1, and the server counts n objects of the
class (`dohost_stored_objects` in /metrics).

    .venv/bin/python -m bench restart            # as part of the suite
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import trio

from bench.common import median, rss_kib
from bench.model import TargetRow
from bench.servers import TENANT, Dohost, counter_value, request
from bench.sidebyside import Ctx

BATCH = 2_000  # objects stored between waits for their commits


async def _populate(data: Path, n: int, durability: str) -> None:
    from dohost import Host  # the benchmarked tree's (bench/suite.py sets the path)

    async with Host(data, durability=durability) as host:
        storage = host.storage
        tickets = []
        for i in range(n):
            name = f"s{i}"
            oid = host.id_from_name(TENANT, "counter", name).raw
            obj = storage.open_object(TENANT, "counter", oid, name)
            obj.begin_event()
            obj.put(b"count", b"1")
            tickets.append(obj.commit_event())
            obj.close()
            if len(tickets) >= BATCH:
                for t in tickets:
                    await trio.to_thread.run_sync(t.wait)
                tickets.clear()
        for t in tickets:
            await trio.to_thread.run_sync(t.wait)


def point(ctx: Ctx, n: int, reps: int) -> tuple[TargetRow, dict[str, float]]:
    data = ctx.work / f"restart-{n}"
    shutil.rmtree(data, ignore_errors=True)
    dh = Dohost(data, ctx.work, ctx.durability)
    dh.start()
    try:
        dh.setup()
    finally:
        dh.stop()
    t0 = time.perf_counter()
    trio.run(_populate, data, n, ctx.durability)
    populate_s = time.perf_counter() - t0
    firsts: list[float] = []
    listens: list[float] = []
    problems: list[str] = []
    rss = 0
    for rep in range(reps):
        t0 = time.perf_counter()
        listens.append(dh.start())
        try:
            st, body = request(dh, dh.get("s0"))
            firsts.append(time.perf_counter() - t0)
            rss = rss_kib(dh.pid)
            if st != 200 or body != b"1":
                problems.append(f"s0 after restart: {st} {body[:50]!r}")
            if rep == 0:
                for i in random.Random(n).sample(range(n), min(n, 50)):
                    v = counter_value(dh, f"s{i}")
                    if v != 1:
                        problems.append(f"s{i} = {v}")
                        break
                counted = dh.metrics().get("dohost_stored_objects", -1)
                if counted != n:
                    problems.append(f"/metrics dohost_stored_objects = {counted:.0f}, stored {n}")
        finally:
            dh.stop()
    shutil.rmtree(data, ignore_errors=True)
    row = TargetRow(
        f"restart-{n}",
        f"restart → first response, {n:,} stored objects" + ctx.dlabel(),
        median(firsts) * 1e3,
        "ms",
        1000.0,
        at_most=True,
        note=(
            f"median of {reps} restarts ({', '.join(f'{x * 1e3:.0f}' for x in firsts)}); "
            f"→ listening {median(listens) * 1e3:.0f} ms; RSS then {rss / 1024:.0f} MiB; "
            f"{n:,} objects stored in {populate_s:.1f} s through the storage layer"
        ),
        check="; ".join(problems) or "ok",
    )
    return row, {"n": n, "first_ms": row.value, "listen_ms": median(listens) * 1e3,
                 "rss_mib": rss / 1024}  # fmt: skip


def run(ctx: Ctx, sizes: list[int], reps: int = 3) -> list[TargetRow]:
    out = []
    for n in sizes:
        ctx.say(f"restart with {n:,} stored objects")
        out.append(point(ctx, n, reps)[0])
    return out

"""Scale curves for dohost alone: how cost grows with the number of objects.

store     for n in 10^3, 10^4, 10^5 (10^6 with --full): a fresh `dohost serve`, n new
          counter objects created over HTTP (one increment each, 16 keep-alive client
          connections, so that commits batch and the host, not fsync latency, is what
          is timed); time per object; bytes on disk per object (du of the data directory
          after a clean stop, minus the empty directory's); then a restart on that
          directory: spawn -> first 200 from an existing object, and the server's RSS
          then (one object touched: what the stored ones cost in memory). Checked: no failed
          creation, and a sample of 200 counters read back as 1 after the restart.
          A point stops at its time cap (a slow disk): it then reports the n created.
resident  for n in 10^3, 10^4, 4·10^4: n counter objects created and kept resident (idle
          timeout 3600 s, resident cap raised to n; 16 client connections, time cap as
          above); RSS growth per object against n increments of one object; then wrk c=1 reading random residents' counters
          (GET /, a cached read, no storage write): p50/p99.
"""

from __future__ import annotations

import random
import shutil
import time

from bench.common import drive, du_bytes, rss_kib, run_wrk
from bench.model import ResidentPoint, StorePoint
from bench.servers import Dohost, counter_value, log_tail, request
from bench.sidebyside import Ctx

THREADS = 16


def store_point(ctx: Ctx, n: int, cap_s: float) -> StorePoint:
    data = ctx.work / f"scale-store-{n}"
    shutil.rmtree(data, ignore_errors=True)
    dh = Dohost(data, ctx.work, ctx.durability)
    dh.start()
    try:
        dh.setup()
        request(dh, dh.noop("warm"))
        disk0 = du_bytes(data)
        method, pre, post = dh.wrk_random("s")
        paths = [f"{pre}{i}{post}" for i in range(n)]
        tick = ctx.task(f"dohost: create {n:,} objects", n)
        pop = drive(dh.port, method, paths, threads=THREADS, headers=dh.headers,
                    progress=tick, max_secs=cap_s)  # fmt: skip
    finally:
        dh.stop()
    k = pop.prefix  # the first k objects were all created
    disk = du_bytes(data) - disk0
    if ctx.profile_dir is not None:  # the restart under py-spy (timed again below, unprofiled)
        from bench.profile import startup_prefix

        dh.prefix = startup_prefix(ctx.profile_dir / f"restart-{n}.txt")
        try:
            dh.start()
            request(dh, dh.get("s0"))
        finally:
            dh.stop()
            dh.prefix = []
    t0 = time.perf_counter()
    t_listen = dh.start()
    try:
        st, body = request(dh, dh.get("s0"))
        t_first = time.perf_counter() - t0
        rss_restart = rss_kib(dh.pid)
        problems = []
        if st != 200 or body != b"1":
            problems.append(f"s0 after restart: {st} {body[:50]!r}")
        for i in random.Random(n).sample(range(k), min(k, 200)):
            v = counter_value(dh, f"s{i}")
            if v != 1:
                problems.append(f"s{i} = {v}")
                break
        if pop.errors:
            problems.append(f"{pop.errors} failed creations")
    finally:
        dh.stop()
    shutil.rmtree(data, ignore_errors=True)
    if pop.capped:
        problems.append(f"time cap: {pop.n:,} of {n:,} created in {cap_s:.0f} s")
    return StorePoint(pop.n, pop.secs, pop.errors, disk, t_first, t_listen,
                      "; ".join(problems) or "ok", rss_restart)  # fmt: skip


def resident_point(ctx: Ctx, n: int, cap_s: float) -> ResidentPoint:
    data = ctx.work / f"scale-resident-{n}"
    shutil.rmtree(data, ignore_errors=True)
    dh = Dohost(data, ctx.work, ctx.durability, idle_timeout=3600.0,
                max_resident=max(n + 100, 10_000))  # fmt: skip
    dh.start()
    problems: list[str] = []
    nan = float("nan")
    try:
        dh.setup()
        method, path = dh.incr("base")
        tick = ctx.task(f"dohost: {n:,} increments of one object (baseline)", n)
        drive(dh.port, method, [path] * n, threads=THREADS, headers=dh.headers, progress=tick,
              max_secs=cap_s)  # fmt: skip
        r0 = rss_kib(dh.pid)
        method, pre, post = dh.wrk_random("res")
        tick = ctx.task(f"dohost: {n:,} resident objects", n)
        pop = drive(dh.port, method, [f"{pre}{i}{post}" for i in range(n)], threads=THREADS,
                    headers=dh.headers, progress=tick, max_secs=cap_s)  # fmt: skip
        if pop.capped:
            problems.append(f"time cap: {pop.n:,} of {n:,} created in {cap_s:.0f} s")
        if pop.errors:
            # The host could not keep them all (it may have died): say how far it got, why.
            why = log_tail(dh.log, 2) if dh.proc is not None and dh.proc.poll() is not None else ""
            alive = "alive" if dh.proc is not None and dh.proc.poll() is None else "exited"
            problems.append(
                f"FAILED: {pop.errors:,} of {pop.n:,} creations failed (server {alive}"
                + (f": {why}" if why else "") + ")"
            )  # fmt: skip
            return ResidentPoint(pop.n - pop.errors, -1, 0, nan, nan, nan, "; ".join(problems))
        k = pop.prefix
        r1 = rss_kib(dh.pid)
        residents = int(dh.metrics().get("dohost_resident_objects", -1))
        _m, gpre, _p = dh.wrk_random("res")
        res = run_wrk(f"http://127.0.0.1:{dh.port}/", 1, ctx.duration, method="GET",
                      token=dh.token, random_objs=k, path_pre=gpre, path_post="/",
                      log=ctx.log)  # fmt: skip
        if residents < pop.n:
            problems.append(f"only {residents} resident")
        if res.errors or res.non2xx:
            problems.append(f"wrk errors={res.errors} non2xx={res.non2xx}")
    finally:
        dh.stop()
        shutil.rmtree(data, ignore_errors=True)
    return ResidentPoint(pop.n, residents, r1 - r0, res.p50_ms, res.p99_ms, res.rps,
                         "; ".join(problems) or "ok")  # fmt: skip


def run_store(ctx: Ctx, sizes: list[int], cap_s: float) -> list[StorePoint]:
    out = []
    for n in sizes:
        ctx.say(f"scale: {n:,} stored objects")
        out.append(store_point(ctx, n, cap_s))
    return out


def run_resident(ctx: Ctx, sizes: list[int], cap_s: float) -> list[ResidentPoint]:
    out = []
    for n in sizes:
        ctx.say(f"scale: {n:,} resident objects")
        out.append(resident_point(ctx, n, cap_s))
    return out

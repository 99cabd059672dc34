"""Side-by-side workloads, dohost and workerd, interleaved A/B in one run.

The same workloads as ../shared/peers/workerd/run_bench.sh (workerd's `kv` namespace,
`Counter` with ctx.storage.get/put on local disk, fsync per commit; dohost's counter sample
on kv storage, fsync'd group commit unless --durability os):

    noop    one object, no-op, wrk c=1 and c=32 (dohost: the noop fixture guest, which
            answers "ok" without touching storage; workerd: /same/noop)
    read    one object, read the counter, c=1 and c=32 (dohost: counter GET /, a cached
            read; workerd: /same/get)
    incr    one object, durable increment, c=1 and c=32
    objects create N new objects (4 client threads, like helper.py populate: one increment
            each), then increments at random over those N objects, c=1 and c=32
    cold    process start -> first response (a new object's no-op)
    rss     RSS per resident object with N residents (workerd: its preventEviction
            namespace; dohost: the default cap of 10,000 residents, idle timeout raised
            so none hibernates while they are created)
    sql     100-row SQL insert and select in one request, c=1 (bench/sql_http.py: its own
            workerd config with a SQLite-backed class, and dohost's sqlbench guest)

Every repetition runs workerd then dohost, or dohost then workerd (alternating), so a
busy moment of the shared machine lands on both. After each load: wrk's errors and
non-2xx count are 0, and counters equal the acknowledged increments.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import sql_http
from bench.common import (
    BenchError,
    cpu_seconds,
    drive,
    rss_kib,
    run_wrk,
    server_nofile,
)
from bench.model import Row
from bench.servers import Dohost, Server, Workerd, counter_value, request

if TYPE_CHECKING:
    from bench.profile import Profiler


@dataclass
class Ctx:
    work: Path  # this run's scratch folder (data directories, logs)
    duration: float
    reps: int
    nobj: int
    cold_reps: int
    rss_objects: int
    durability: str
    create_cap_s: float  # creation loads stop after this long (a slow disk, a slow peer)
    log: Path
    say: Callable[[str], None]
    task: Callable[[str, int], Callable[[int], None]]  # a progress bar: (label, total) -> advance
    profile_dir: Path | None = None  # --profile: py-spy the dohost server into this folder
    rows: list[Row] = field(default_factory=list)

    def order(self, rep: int, a: Server, b: Server) -> list[Server]:
        return [a, b] if rep % 2 == 0 else [b, a]

    def dlabel(self) -> str:
        return "" if self.durability == "fsync" else " [dohost durability=os]"


def _wrk_check(row: Row, side: Server, res: object) -> None:
    from bench.common import WrkResult

    assert isinstance(res, WrkResult)
    if res.errors or res.non2xx:
        row.checks.append(f"{side.name}: wrk errors={res.errors} non2xx={res.non2xx}")


def _add(row: Row, side: Server, value: float, p50: float = float("nan"),
         p99: float = float("nan"), cpu: tuple[float, int] | None = None) -> None:  # fmt: skip
    """One repetition's sample; cpu = (server CPU seconds during the load, requests)."""
    s = row.dohost if side.name == "dohost" else row.workerd
    s.values.append(value)
    s.p50_ms.append(p50)
    s.p99_ms.append(p99)
    if cpu is not None and cpu[1]:
        s.cpu_us.append(cpu[0] / cpu[1] * 1e6)


def _url(side: Server, path: str, port: int | None = None) -> str:
    return f"http://127.0.0.1:{port or side.port}{path}"


def _warm(ctx: Ctx, side: Server) -> None:
    _method, path = side.noop("same")
    run_wrk(_url(side, path), 8, 1, token=side.token, log=ctx.log)


# The ratio each row must reach (issue 19, "Lead workerd on every row, per core"); rows
# not named here: ≥ 1.
TARGETS = {"incr-c32": 2.0, "incr-c1": 1.5, "create": 10.0, "rand-c32": 8.0, "cold": 0.5}


def one_object(ctx: Ctx, wd: Workerd, dh: Dohost, op: str) -> None:
    """noop / read / incr on one object at c=1 and c=32."""
    names = {"noop": "one object, no-op", "read": "one object, read (counter get)",
             "incr": "one object, durable increment"}  # fmt: skip
    for side in (wd, dh):
        _warm(ctx, side)
        if op == "read":
            request(side, side.incr("same"))  # the counter exists
    for conc in (1, 32):
        target = TARGETS.get(f"{op}-c{conc}", 1.0)
        row = Row(f"{op}-c{conc}", names[op] + ctx.dlabel(), f"c={conc}", "req/s", True, target)
        if op == "noop":
            row.note = "dohost: tests/fixtures/noop.wat (no storage); workerd: /same/noop"
        elif op == "read":
            row.note = "dohost: counter GET / (a cached kv_get); workerd: /same/get"
        tick = ctx.task(f"{row.workload} {row.conc}", ctx.reps * 2)
        done = 0
        for rep in range(ctx.reps):
            for side in ctx.order(rep, wd, dh):
                method, path = getattr(side, "get" if op == "read" else op)("same")
                before = counter_value(side, "same") if op == "incr" else 0
                f0 = _fsyncs(side)
                prof = _prof(ctx, side, row.key)
                c0 = cpu_seconds(side.pid)
                res = run_wrk(_url(side, path), conc, ctx.duration, method=method,
                              token=side.token, log=ctx.log)  # fmt: skip
                cpu = (cpu_seconds(side.pid) - c0, res.reqs)
                _stop_prof(prof)
                if op == "incr":
                    _note_fsyncs(row, side, f0, res.reqs)
                _wrk_check(row, side, res)
                if op == "incr":
                    after = counter_value(side, "same")
                    extra = after - before - res.reqs
                    row.checked.append(f"{side.name} rep{rep}: +{after - before}, acked {res.reqs}")
                    if not 0 <= extra <= conc + res.errors:
                        row.checks.append(
                            f"{side.name}: counter moved {after - before}, wrk acked {res.reqs}"
                        )
                _add(row, side, res.rps, res.p50_ms, res.p99_ms, cpu)
                done += 1
                tick(done)
        ctx.rows.append(row)


def objects(ctx: Ctx, wd: Workerd, dh: Dohost) -> None:
    """Create N new objects per side, then increments at random over them.

    Per repetition: create on A, create on B, then c=1 on A and B, then c=32 on A and B.
    Creation stops at the time cap (on a slow disk workerd may create only a part of N
    in it); the random increments then go to the first k objects of both sides, k the
    smaller of the two counts created, so that both sides get the same workload."""
    n, cap = ctx.nobj, ctx.create_cap_s
    create = Row("create", f"create {n:,} new objects (≤ {cap:.0f} s)" + ctx.dlabel(),
                 "4 threads", "objects/s", True, TARGETS["create"])  # fmt: skip
    create.note = "one increment each to a new name, 4 keep-alive connections (helper.py populate)"
    rand = {c: Row(f"rand-c{c}", f"increments over {n:,} objects" + ctx.dlabel(), f"c={c}",
                   "req/s", True, TARGETS.get(f"rand-c{c}", 1.0)) for c in (1, 32)}  # fmt: skip
    for rep in range(ctx.reps):
        prefix = f"r{rep}-"
        order = ctx.order(rep, wd, dh)
        made: dict[str, Any] = {}
        for side in order:
            method, pre, post = side.wrk_random(prefix)
            paths = [f"{pre}{i}{post}" for i in range(n)]
            tick = ctx.task(f"{side.name}: create {n:,} objects (rep {rep + 1}/{ctx.reps})", n)
            f0 = _fsyncs(side)
            prof = _prof(ctx, side, "create")
            c0 = cpu_seconds(side.pid)
            pop = drive(side.port, method, paths, threads=4, headers=side.headers,
                        progress=tick, max_secs=cap)  # fmt: skip
            _stop_prof(prof)
            _note_fsyncs(create, side, f0, pop.n)
            if pop.errors:
                create.checks.append(f"{side.name}: {pop.errors} failed creations")
            if pop.capped:
                create.checked.append(
                    f"{side.name} rep{rep}: {pop.n:,} of {n:,} created in the {cap:.0f} s cap"
                )
            _add(create, side, pop.rate, cpu=(cpu_seconds(side.pid) - c0, pop.n))
            made[side.name] = pop
        k = min(p.prefix for p in made.values())
        if k < n:
            for c in (1, 32):
                rand[c].checked.append(f"rep{rep}: over the first {k:,} objects (creation capped)")
        acked = {name: p.n - p.errors for name, p in made.items()}
        slack = dict.fromkeys(made, 0)
        for c in (1, 32):
            for side in order:
                method, pre, post = side.wrk_random(prefix)
                f0 = _fsyncs(side)
                prof = _prof(ctx, side, f"rand-c{c}")
                c0 = cpu_seconds(side.pid)
                res = run_wrk(_url(side, "/"), c, ctx.duration, method=method, token=side.token,
                              random_objs=k, path_pre=pre, path_post=post, log=ctx.log)  # fmt: skip
                _stop_prof(prof)
                _note_fsyncs(rand[c], side, f0, res.reqs)
                _wrk_check(rand[c], side, res)
                _add(rand[c], side, res.rps, res.p50_ms, res.p99_ms,
                     (cpu_seconds(side.pid) - c0, res.reqs))  # fmt: skip
                acked[side.name] += res.reqs
                slack[side.name] += c + res.errors
        # The counters of all objects created add up to the acknowledged increments.
        for side in order:
            done = made[side.name].done or []
            gets = [side.get(f"{prefix}{i}")[1] for i in range(n) if done[i]]
            tick = ctx.task(f"{side.name}: read back {len(gets):,} counters", len(gets))
            back = drive(side.port, "GET", gets, threads=4, headers=side.headers,
                         keep_bodies=True, progress=tick)  # fmt: skip
            total = sum(int(b or b"0") for b in back.bodies or [])
            a = acked[side.name]
            msg = f"{side.name} rep{rep}: sum {total:,} over {len(gets):,} objects, acked {a:,}"
            rand[32].checked.append(msg)
            if back.errors or not 0 <= total - a <= slack[side.name]:
                rand[32].checks.append(msg + f" (read errors {back.errors})")
    ctx.rows += [create, rand[1], rand[32]]


def cold(ctx: Ctx, wd_dir: Path, dh_dir: Path) -> None:
    """Process start -> first response from a new object (its no-op)."""
    row = Row("cold", "process start → first response" + ctx.dlabel(), "", "ms", False,
              TARGETS["cold"])  # fmt: skip
    row.note = "spawn to the first 200 of a new object's no-op, median over repetitions"
    listen = Row("listen", "process start → listening (informational)", "", "ms", False, 0.0)
    wd = Workerd(wd_dir, ctx.work)
    dh = Dohost(dh_dir, ctx.work, ctx.durability)
    dh.start()
    dh.setup()  # the tenant and classes exist before the timed starts (workerd's are in its config)
    dh.stop()
    tick = ctx.task("cold starts", ctx.cold_reps * 2)
    done = 0
    for rep in range(ctx.cold_reps):
        for side in ctx.order(rep, wd, dh):
            t0 = time.perf_counter()
            t_listen = side.start()
            try:
                st, body = request(side, side.noop(f"cold{rep}"))
                t_first = time.perf_counter() - t0
            finally:
                side.stop()
            if st != 200:
                row.checks.append(f"{side.name}: first response {st} {body[:100]!r}")
            _add(row, side, t_first * 1e3)
            _add(listen, side, t_listen * 1e3)
            done += 1
            tick(done)
    if ctx.profile_dir is not None:  # one more start of dohost, under py-spy
        from bench.profile import startup_prefix

        dh.prefix = startup_prefix(ctx.profile_dir / "cold.txt")
        try:
            dh.start()
            request(dh, dh.noop("cold-profiled"))
        finally:
            dh.stop()
            dh.prefix = []
    ctx.rows += [row, listen]


def rss(ctx: Ctx, wd_dir: Path, dh_dir: Path) -> None:
    """RSS growth per resident object: N increments to one object first (request garbage,
    caches), RSS; then N new objects, all kept resident; RSS again; divide."""
    n = ctx.rss_objects
    row = Row("rss", f"RSS per resident object, up to {n:,} residents" + ctx.dlabel(), "",
              "KiB", False, 10.0)  # fmt: skip
    row.note = (
        "(RSS after N new resident objects − RSS after N increments of one object) / N; "
        "workerd: preventEviction namespace; dohost: idle timeout 3600 s, default cap 10,000"
    )
    wd = Workerd(wd_dir, ctx.work)
    dh = Dohost(dh_dir, ctx.work, ctx.durability, idle_timeout=3600.0)
    # workerd keeps 3 descriptors (db, wal, shm) per live object: like run_bench.sh, it
    # gets as many residents as its descriptor limit allows (~6,566 under 20,000).
    counts = {"workerd": min(n, (server_nofile() - 300) // 3), "dohost": n}
    if counts["workerd"] < n:
        row.note += (f"; workerd holds {counts['workerd']:,} (3 descriptors per live object, "
                     f"limit {server_nofile():,})")  # fmt: skip
    for side in (wd, dh):
        n = counts[side.name]
        side.start()
        try:
            port = side.port_for("http-pin") if isinstance(side, Workerd) else side.port
            if isinstance(side, Dohost):
                side.setup()
            method, path = side.incr("pinbase")
            tick = ctx.task(f"{side.name}: {n:,} increments of one object (baseline)", n)
            base = drive(port, method, [path] * n, threads=4, headers=side.headers,
                         progress=tick, max_secs=ctx.create_cap_s)  # fmt: skip
            r0 = rss_kib(side.pid)
            method, pre, post = side.wrk_random("pin")
            tick = ctx.task(f"{side.name}: {n:,} resident objects", n)
            prof = _prof(ctx, side, "rss-create")
            pop = drive(port, method, [f"{pre}{i}{post}" for i in range(n)], threads=4,
                        headers=side.headers, progress=tick, max_secs=ctx.create_cap_s)  # fmt: skip
            _stop_prof(prof)
            r1 = rss_kib(side.pid)
            if isinstance(side, Workerd):
                live = side.live_objects()
            else:
                live = int(side.metrics().get("dohost_resident_objects", -1))
            msg = (f"{side.name}: RSS {r0 / 1024:.0f} → {r1 / 1024:.0f} MiB, {pop.n:,} objects "
                   f"created ({pop.rate:.0f}/s), {live:,} live")  # fmt: skip
            row.checked.append(msg)
            if base.errors or pop.errors or live < 0.99 * pop.n:
                row.checks.append(msg + f"; errors {base.errors}+{pop.errors}")
            _add(row, side, (r1 - r0) / max(pop.n - pop.errors, 1))
        finally:
            side.stop()
    ctx.rows.append(row)


def _fsyncs(side: Server) -> float:
    return (
        side.metrics().get("dohost_storage_fsyncs_total", 0.0) if isinstance(side, Dohost) else 0.0
    )


def _note_fsyncs(row: Row, side: Server, f0: float, requests: int) -> None:
    """dohost: how many requests one fsync carried during the load (group commit)."""
    if isinstance(side, Dohost):
        n = _fsyncs(side) - f0
        row.dohost.notes.append(f"{requests / n:.1f} req/fsync" if n else "no fsync")


def _prof(ctx: Ctx, side: Server, key: str) -> Profiler | None:
    """With --profile: py-spy the dohost server while one load runs."""
    if ctx.profile_dir is None or side.name != "dohost":
        return None
    from bench.profile import Profiler

    ctx.profile_dir.mkdir(parents=True, exist_ok=True)
    return Profiler(side.pid, ctx.profile_dir / f"{key}.txt")


def _stop_prof(prof: Profiler | None) -> None:
    if prof is not None:
        prof.stop()


def run(ctx: Ctx, selected: set[str]) -> None:
    """Run the selected side-by-side workloads, appending rows to ctx.rows."""
    for sub in ("wd-main", "dh-main", "wd-cold", "dh-cold", "wd-rss", "dh-rss"):
        shutil.rmtree(ctx.work / sub, ignore_errors=True)
    hot = [w for w in ("noop", "read", "incr", "objects") if w in selected]
    if hot:
        wd = Workerd(ctx.work / "wd-main", ctx.work)
        dh = Dohost(ctx.work / "dh-main", ctx.work, ctx.durability)
        try:
            wd.start()
            dh.start()
            dh.setup()
            for w in hot:
                ctx.say(f"side by side: {w}")
                if w == "objects":
                    objects(ctx, wd, dh)
                else:
                    one_object(ctx, wd, dh, w)
        finally:
            wd.stop()
            dh.stop()
    if "cold" in selected:
        ctx.say("side by side: cold start")
        cold(ctx, ctx.work / "wd-cold", ctx.work / "dh-cold")
    if "rss" in selected:
        ctx.say("side by side: RSS per resident object")
        rss(ctx, ctx.work / "wd-rss", ctx.work / "dh-rss")
    if "sql" in selected:
        ctx.rows += sql_http.run(ctx.work, ctx.duration, ctx.reps, ctx.durability, ctx.say)
    for row in ctx.rows:
        if not row.dohost.values or not row.workerd.values:
            raise BenchError(f"row {row.key} has no samples")

"""Micro-benchmark of the storage layer: per-operation costs beside their raw floors.

    .venv/bin/python bench/storage_micro.py [--dir DIR] [--quick]

Prints, for the kv backend: a cached get and put (the hot path: a dict lookup), an
uncached get (a shard read), and commit throughput in FSYNC mode with 1 and 1000 objects
(events per second, and how many events one fsync carried); for the sqlite backend, a get
and commit throughput through the WAL flusher; and as floors, a raw apsw point read of the
same row shape and a raw write+fsync on the same disk. The machine is shared and noisy:
compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host"))

import apsw  # noqa: E402

from dohost.storage.api import Backend, CommitTicket, Durability  # noqa: E402
from dohost.storage.kv_object import KvObjectStorage  # noqa: E402
from dohost.storage.kv_shard import KvShard  # noqa: E402
from dohost.storage.manager import StorageManager  # noqa: E402


def oid(n: int) -> bytes:
    return n.to_bytes(4, "big") + bytes(28)


def per_op(fn: Callable[[], None], n: int, repeat: int = 5) -> float:
    """Best of `repeat` runs of `fn` (which does n operations): seconds per operation."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


# Every row printed, as (name, value, unit, note): for callers such as the suite (bench/micro.py).
ROWS: list[tuple[str, float, str, str]] = []


def row(name: str, value: float, unit: str, note: str = "") -> None:
    """Print one row and record it; value in unit (ns, µs or ev/s)."""
    ROWS.append((name, value, unit, note))
    text = (
        f"{value:,.0f} {unit}" if unit in ("ns", "ev/s") or value >= 100 else f"{value:.2f} {unit}"
    )
    print(f"  {name:<44} {text:>14}  {note}")


def bench_kv_reads(work: Path, quick: bool) -> None:
    shard = KvShard(str(work / "reads.db"), Durability.FSYNC)
    nkeys = 2_000 if quick else 20_000
    keys = [b"key-%08d" % i for i in range(nkeys)]
    o = KvObjectStorage(shard, oid(1), "bench")
    o.begin_event()
    for i in range(0, nkeys, 128):
        o.put_many({k: b"v" * 100 for k in keys[i : i + 128]})
    o.commit_event().wait(60)

    o.begin_event()
    hot = keys[nkeys // 2]
    o.get(hot)
    get = o.get
    n = 200_000 if quick else 1_000_000

    def cached_gets() -> None:
        for _ in range(n):
            get(hot)

    row("kv cached get", per_op(cached_gets, n) * 1e9, "ns", "(target: well under 1 µs)")

    put = o.put
    value = b"w" * 100

    def cached_puts() -> None:
        for _ in range(n // 4):
            put(hot, value)

    row("kv cached put (into the event)", per_op(cached_puts, n // 4) * 1e9, "ns")
    o.rollback_event()

    for k in keys:  # warm SQLite's page cache, so that both read rows below compare alike
        shard.get(oid(1), k)

    def uncached_gets() -> None:
        fresh = KvObjectStorage(shard, oid(1), "bench")
        fresh.begin_event()
        for k in keys:
            fresh.get(k)

    row("kv uncached get (shard read, then cached)", per_op(uncached_gets, nkeys) * 1e6, "µs")

    def shard_gets() -> None:
        for k in keys:
            shard.get(oid(1), k)

    row("KvShard.get (thread's read connection)", per_op(shard_gets, nkeys) * 1e6, "µs")

    raw = apsw.Connection(str(work / "reads.db"))
    sql = "SELECT value FROM kv WHERE object_id=? AND key=?"
    o1 = oid(1)

    def raw_gets() -> None:
        for k in keys:
            raw.execute(sql, (o1, k)).fetchone()

    row("floor: raw apsw point read, same db", per_op(raw_gets, nkeys) * 1e6, "µs")
    raw.close()
    shard.close()


def bench_fsync(work: Path, quick: bool) -> None:
    """Raw floors: rewriting blocks in place, and appending (a WAL grows by appending until
    its first checkpoint, then rewrites itself in place)."""
    n = 100 if quick else 300
    block = b"x" * 4096
    fd = os.open(work / "fsync.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    os.pwrite(fd, block * 16, 0)
    os.fsync(fd)

    def overwrite() -> None:
        for i in range(n):
            os.pwrite(fd, block, (i % 16) * 4096)
            os.fsync(fd)

    t = per_op(overwrite, n, repeat=1)
    row("floor: raw 4 KiB overwrite + os.fsync", t * 1e6, "µs", f"({1 / t:,.0f}/s)")
    offset = [16]

    def append() -> None:
        for _ in range(n):
            os.pwrite(fd, block, offset[0] * 4096)
            offset[0] += 1
            os.fdatasync(fd)

    t = per_op(append, n, repeat=1)
    row("floor: raw 4 KiB append + os.fdatasync", t * 1e6, "µs", f"({1 / t:,.0f}/s)")
    os.close(fd)


def bench_commits(work: Path, backend: str, nobjects: int, nevents: int) -> dict[str, float]:
    """Commit throughput; returns events/s, the number of batches (kv) or flusher rounds
    (sqlite), fsyncs and the elapsed seconds."""
    d = work / f"commits-{backend}-{nobjects}"
    m = StorageManager(d, Durability.FSYNC, shards_per_tenant=1)
    objs = [m.open_object("t", "bench", oid(i), None, backend) for i in range(nobjects)]
    for o in objs:  # create them first: the loop below measures steady-state events
        o.begin_event()
        o.put(b"init", b"0")
        o.commit_event()
    m.flush(120)
    s0 = m.stats()
    tickets: list[CommitTicket] = []
    t0 = time.perf_counter()
    for i in range(nevents):
        o = objs[i % nobjects]
        o.begin_event()
        o.put(b"counter", b"%d" % i)
        tickets.append(o.commit_event())
    for t in tickets:
        assert t.wait(120) is None
    elapsed = time.perf_counter() - t0
    s1 = m.stats()
    if backend == Backend.KV:
        syncs = s1.kv_fsyncs - s0.kv_fsyncs
        batches = s1.kv_batches - s0.kv_batches
        detail = f"{batches} batches, {syncs} fsyncs, {nevents / max(batches, 1):.0f} events/batch"
    else:
        syncs = s1.wal_fsyncs - s0.wal_fsyncs
        batches = rounds = s1.wal_rounds - s0.wal_rounds
        detail = f"{rounds} flusher rounds, {syncs} WAL fsyncs"
    row(
        f"{backend} commits, {nobjects} object{'s' if nobjects > 1 else ''}, FSYNC",
        nevents / elapsed,
        "ev/s",
        f"({detail})",
    )
    # Time the kv committers spent per batch: SQLite (apply + commit) and the fsync.
    shards = list(getattr(m, "_shards", {}).values())
    commit_s = sum(s.stats.commit_seconds for s in shards)
    fsync_s = sum(s.stats.fsync_seconds for s in shards)
    for o in objs:
        o.close()
    m.close()
    return {"ev_per_s": nevents / elapsed, "batches": batches, "fsyncs": syncs,
            "secs": elapsed, "commit_s": commit_s, "fsync_s": fsync_s}  # fmt: skip


def bench_commit_latency(work: Path, n: int) -> None:
    """One event at a time, each waiting for its fsync: the latency floor of one commit."""
    m = StorageManager(work / "latency", Durability.FSYNC, shards_per_tenant=1)
    o = m.open_object("t", "bench", oid(1))

    def loop() -> None:
        for i in range(n):
            o.begin_event()
            o.put(b"counter", b"%d" % i)
            assert o.commit_event().wait(60) is None

    t = per_op(loop, n, repeat=1)
    row("kv commit latency (one event, waited)", t * 1e6, "µs", f"({1 / t:,.0f} ev/s)")
    o.close()
    m.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=str(ROOT / "bench" / ".work" / "storage_micro"))
    ap.add_argument("--quick", action="store_true", help="smaller workloads")
    args = ap.parse_args()
    work = Path(args.dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    quick = args.quick
    print(
        f"storage micro-benchmark (apsw {apsw.apsw_version()}, SQLite {apsw.sqlite_lib_version()}, dir {work})"
    )
    print("reads")
    bench_kv_reads(work, quick)
    print("durability")
    bench_fsync(work, quick)
    bench_commit_latency(work, 100 if quick else 300)
    n = 5_000 if quick else 20_000
    bench_commits(work, Backend.KV, 1, n)
    bench_commits(work, Backend.KV, 1000, n)
    bench_commits(work, Backend.SQLITE, 1, n // 4)
    bench_commits(work, Backend.SQLITE, 1000, n // 4)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

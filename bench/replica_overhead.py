"""What replication costs the host: durable increments/s of the counter sample (embedded
API, fsync'd, 32 concurrent clients) and the host's CPU per increment (this process: the
loop, workers, committers and uploaders; SeaweedFS is another process) with no replica,
a directory replica and SeaweedFS on loopback, each with the output gate (sync: a
response waits for the store) and without (async), in one run, rounds alternating
(issue 18: sync ≥ 0.7× of none, async ≥ 0.95×). Also: how long the replicator then
takes to have shipped everything (async).

    python bench/replica_overhead.py [--objects 1,10000] [--total 6000] [--rounds 2]
        [--kinds none,file-async,file-sync,s3-async,s3-sync]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import trio

_REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_REPO / "host"))
sys.path.insert(0, str(_REPO / "tests" / "replica"))

from seaweedfs_server import SeaweedFS, start_seaweedfs  # noqa: E402

from dohost import Host, Request  # noqa: E402
from dohost.replica.file_store import FileReplicaStore  # noqa: E402
from dohost.replica.store import ReplicaStore  # noqa: E402

COUNTER = (_REPO / "samples" / "counter" / "counter.wasm").read_bytes()
INCR = Request("POST", "/incr")


async def increments(
    data: Path, store: ReplicaStore | None, sync: bool, objects: int, total: int
) -> tuple[float, float, float]:
    """(increments/s with 32 concurrent clients, CPU µs per increment, seconds after the
    last response until the replica had everything)."""
    async with Host(data, workers=2, replica=store, replica_sync=sync) as host:
        await host.deploy("b", "counter", COUNTER)
        counter = iter(range(total))

        async def worker() -> None:
            for i in counter:
                r = await host.fetch("b", "counter", f"o{i % objects}", INCR)
                assert r.status == 200

        t, cpu = time.perf_counter(), time.process_time()
        async with trio.open_nursery() as nursery:
            for _ in range(32):
                nursery.start_soon(worker)
        rate = total / (time.perf_counter() - t)
        cpu_us = (time.process_time() - cpu) / total * 1e6
        t = time.perf_counter()
        if host.replicator is not None:
            assert await trio.to_thread.run_sync(host.replicator.flush, 600.0)
        return rate, cpu_us, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", default="1,10000")
    parser.add_argument("--total", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--kinds", default="none,file-async,file-sync,s3-async,s3-sync")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    print(f"load average {os.getloadavg()[0]:.2f} (1 min)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server: SeaweedFS = start_seaweedfs(work / "seaweedfs", "bench")
        try:
            for objects in (int(x) for x in args.objects.split(",")):
                results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in kinds}
                for r in range(args.rounds):
                    for kind in results:
                        name = f"{kind}-{objects}-{r}"
                        store: ReplicaStore | None = None
                        if kind.startswith("file"):
                            store = FileReplicaStore(str(work / f"replica-{name}"))
                        elif kind.startswith("s3"):
                            store = server.store("bench", name)
                        sync = kind.endswith("-sync")
                        try:
                            results[kind].append(
                                trio.run(increments, work / name, store, sync, objects, args.total)
                            )
                        finally:
                            if store is not None:
                                store.close()
                base = max(r[0] for r in results.get("none", [(1.0, 0.0, 0.0)]))
                for kind, runs in results.items():
                    best, cpu_us, drain = max(runs)
                    print(
                        f"{objects:>6} objects, c=32, {kind:>10}: {best:7.0f} incr/s "
                        f"({best / base:.2f}x of none), {cpu_us:6.0f} µs CPU/incr; all "
                        f"shipped {drain:.2f} s after the last response"
                    )
        finally:
            server.stop()
    print(f"load average {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()

"""What asynchronous replication costs the host: durable increments/s of the counter
sample (embedded API, fsync'd) with no replica, a directory replica and SeaweedFS on
loopback, in one run, rounds alternating (issue 18: async replica ≥ 0.95× of none).
Also: how long the replicator then takes to have shipped everything.

    python bench/replica_overhead.py [--objects 1,10000] [--total 6000] [--rounds 2]
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
    data: Path, store: ReplicaStore | None, objects: int, total: int
) -> tuple[float, float]:
    """(increments/s with 32 concurrent clients, seconds after the last response until
    the replica had everything)."""
    async with Host(data, workers=2, replica=store) as host:
        await host.deploy("b", "counter", COUNTER)
        counter = iter(range(total))

        async def worker() -> None:
            for i in counter:
                r = await host.fetch("b", "counter", f"o{i % objects}", INCR)
                assert r.status == 200

        t = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(32):
                nursery.start_soon(worker)
        rate = total / (time.perf_counter() - t)
        t = time.perf_counter()
        if host.replicator is not None:
            assert await trio.to_thread.run_sync(host.replicator.flush, 600.0)
        return rate, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", default="1,10000")
    parser.add_argument("--total", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} (1 min)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server: SeaweedFS = start_seaweedfs(work / "seaweedfs", "bench")
        try:
            for objects in (int(x) for x in args.objects.split(",")):
                results: dict[str, list[tuple[float, float]]] = {"none": [], "file": [], "s3": []}
                for r in range(args.rounds):
                    for kind in results:
                        name = f"{kind}-{objects}-{r}"
                        store: ReplicaStore | None = None
                        if kind == "file":
                            store = FileReplicaStore(str(work / f"replica-{name}"))
                        elif kind == "s3":
                            store = server.store("bench", name)
                        try:
                            results[kind].append(
                                trio.run(increments, work / name, store, objects, args.total)
                            )
                        finally:
                            if store is not None:
                                store.close()
                base = max(rate for rate, _ in results["none"])
                for kind, runs in results.items():
                    best, drain = max(runs)
                    print(
                        f"{objects:>6} objects, c=32, {kind:>4} replica: {best:7.0f} incr/s "
                        f"({best / base:.2f}x of none; all shipped {drain:.2f} s after the last "
                        f"response)"
                    )
        finally:
            server.stop()
    print(f"load average {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()

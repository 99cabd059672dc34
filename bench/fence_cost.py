"""What epoch fencing costs on the kv commit path (ARCHITECTURE.md, "One owner per
object"): committer time per write set with and without claims.

    .venv/bin/python bench/fence_cost.py [--events N] [--rounds R]

Durability `os` (no fsync), so that the committer's own work is measured, not the disk:
N events over 1,000 objects are queued 32 at a time (a batch of 32 write sets, as under
32 concurrent clients) to one shard, first without claims (no fence checks), then with a
`LocalOwnership` holding every partition (per batch: `PRAGMA data_version`, the lock
file's `stat`, and per write set a fence lookup, cached). Rounds alternate the two so
that a busy machine's noise falls on both; the best round of each is reported, with the
committer's time in SQLite (`ShardStats.commit_seconds`) per write set.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host"))

from dohost.storage.api import Durability  # noqa: E402
from dohost.storage.fencing import epoch_for  # noqa: E402
from dohost.storage.kv_object import KvObjectStorage  # noqa: E402
from dohost.storage.kv_shard import KvShard  # noqa: E402
from dohost.storage.ownership_local import LocalOwnership  # noqa: E402

OBJECTS = 1000
BATCH = 32


def oid(n: int) -> bytes:
    return bytes(4) + n.to_bytes(4, "big") + bytes(24)


def one_round(work: Path, events: int, claims: LocalOwnership | None) -> tuple[float, float]:
    """(wall µs per write set, committer SQLite µs per write set)."""
    shard = KvShard(str(work / f"s-{time.monotonic_ns()}.db"), Durability.OS, claims=claims)
    try:
        objs = [
            KvObjectStorage(
                shard,
                oid(n),
                "c",
                fence=epoch_for(claims, oid(n)) if claims is not None else (-1, 0),
            )
            for n in range(OBJECTS)
        ]
        t0 = time.perf_counter()
        for start in range(0, events, BATCH):
            tickets = []
            for i in range(start, min(start + BATCH, events)):
                o = objs[i % OBJECTS]
                o.begin_event()
                o.put(b"count", str(i).encode())
                tickets.append(o.commit_event())
            for t in tickets:
                assert t.wait(30) is None
        wall = (time.perf_counter() - t0) / events * 1e6
        return wall, shard.stats.commit_seconds / events * 1e6
    finally:
        shard.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        claims = LocalOwnership(work, "bench", 4096, durability=Durability.OS)
        claims.claim(range(4096))
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.rounds):
            for name, c in (("no claims", None), ("fenced", claims)):
                r = one_round(work, args.events, c)
                if name not in best or r[0] < best[name][0]:
                    best[name] = r
        claims.close()
    for name, (wall, sql) in best.items():
        print(f"{name:>10}: {wall:6.1f} µs per write set (wall), {sql:6.1f} µs in the committer")
    wall = best["fenced"][0] - best["no claims"][0]
    sql = best["fenced"][1] - best["no claims"][1]
    print(
        f"fence cost: {sql:+.1f} µs per write set in the committer, {wall:+.1f} µs wall "
        f"(best of {args.rounds} rounds; compare on a quiet machine)"
    )


if __name__ == "__main__":
    main()

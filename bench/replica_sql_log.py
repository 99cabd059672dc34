"""Which log to ship for SQL-backed objects (issue 18): per event, how many bytes a
session-extension changeset holds vs the WAL pages the commit appended, and what
recording the changeset costs, on a few representative workloads of one object's
SQLite database (each event: one transaction).

    python bench/replica_sql_log.py [--events 2000]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import apsw

PAGE = 4096
WAL_FRAME = PAGE + 24  # each WAL frame: a 24-byte header and one page

SCHEMA = """
CREATE TABLE items(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, qty INTEGER NOT NULL,
                   note TEXT NOT NULL);
CREATE INDEX items_owner ON items(owner);
CREATE TABLE log(seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, what TEXT NOT NULL);
"""


def counter_bump(db: apsw.Connection, rng: random.Random, i: int) -> None:
    db.execute("UPDATE items SET qty = qty + 1 WHERE id = ?", (rng.randrange(1, 1001),))


def insert_row(db: apsw.Connection, rng: random.Random, i: int) -> None:
    db.execute(
        "INSERT INTO log(at, what) VALUES(?, ?)", (i, f"event {i} " + "x" * rng.randrange(20, 200))
    )


def cart_update(db: apsw.Connection, rng: random.Random, i: int) -> None:
    owner = f"user{rng.randrange(50)}"
    for _ in range(5):
        db.execute(
            "UPDATE items SET qty = ?, owner = ?, note = ? WHERE id = ?",
            (rng.randrange(100), owner, "n" * 60, rng.randrange(1, 1001)),
        )
    db.execute("INSERT INTO log(at, what) VALUES(?, ?)", (i, "cart"))


WORKLOADS: dict[str, Callable[[apsw.Connection, random.Random, int], None]] = {
    "counter (1 row updated)": counter_bump,
    "append (1 row inserted)": insert_row,
    "cart (5 rows + 1 insert, index)": cart_update,
}


def run(
    path: Path, work: Callable[..., None], events: int, session: bool
) -> tuple[float, float, float]:
    """(bytes per event shipped, µs per event, µs per event of session work)"""
    db = apsw.Connection(str(path))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute(SCHEMA)
    with db:
        db.executemany(
            "INSERT INTO items(id, owner, qty, note) VALUES(?,?,?,?)",
            ((i, f"user{i % 50}", 0, "n" * 60) for i in range(1, 1001)),
        )
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    rng = random.Random(7)
    wal = Path(str(path) + "-wal")
    total_bytes = 0
    session_s = 0.0
    t = time.perf_counter()
    for i in range(events):
        before = wal.stat().st_size if wal.exists() else 0
        s = None
        if session:
            t0 = time.perf_counter()
            s = apsw.Session(db, "main")
            s.attach()
            session_s += time.perf_counter() - t0
        db.execute("BEGIN")
        work(db, rng, i)
        db.execute("COMMIT")
        if s is not None:
            t0 = time.perf_counter()
            total_bytes += len(s.changeset())
            s.close()
            session_s += time.perf_counter() - t0
        else:
            total_bytes += wal.stat().st_size - before
        if i % 500 == 499:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    elapsed = time.perf_counter() - t
    db.close()
    return total_bytes / events, elapsed / events * 1e6, session_s / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} (1 min); SQLite {apsw.sqlite_lib_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        for n, (name, work) in enumerate(WORKLOADS.items()):
            wal_bytes, wal_us, _ = run(Path(tmp) / f"w{n}.db", work, args.events, False)
            cs_bytes, cs_us, sess_us = run(Path(tmp) / f"s{n}.db", work, args.events, True)
            print(
                f"{name:32} WAL {wal_bytes:6.0f} B/event | changeset {cs_bytes:5.0f} B/event "
                f"({wal_bytes / max(cs_bytes, 1):4.0f}x smaller) | event {wal_us:4.0f} µs, "
                f"with a session {cs_us:4.0f} µs ({sess_us:3.0f} µs in the session)"
            )


if __name__ == "__main__":
    main()

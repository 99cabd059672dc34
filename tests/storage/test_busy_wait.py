"""storage/busy_wait.py: a connection that finds the write lock taken tries again after
a short wait (not SQLite's milliseconds), and gives up with BusyError at its timeout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import pytest

from dohost.storage import busy_wait


def _db(path: Path) -> Any:
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY)")
    return conn


def test_a_writer_waits_for_the_lock_and_gets_it_once_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder, waiter = _db(tmp_path / "db"), _db(tmp_path / "db")
    busy_wait.set_short_busy_wait(waiter, 10_000)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            holder.execute("COMMIT")  # the other process lets go while we wait

    monkeypatch.setattr(busy_wait.time, "sleep", sleep)
    waiter.execute("BEGIN IMMEDIATE")
    waiter.execute("INSERT INTO t VALUES (2)")
    waiter.execute("COMMIT")
    assert waits == [0.00002, 0.00004, 0.00008]  # microseconds, doubling
    assert waiter.execute("SELECT count(*) FROM t").fetchall() == [(2,)]


def test_a_writer_gives_up_with_busy_at_its_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder, waiter = _db(tmp_path / "db"), _db(tmp_path / "db")
    busy_wait.set_short_busy_wait(waiter, 20)
    holder.execute("BEGIN IMMEDIATE")
    now = [100.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds  # an injected clock: no real waiting

    monkeypatch.setattr(busy_wait.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(busy_wait.time, "sleep", sleep)
    with pytest.raises(apsw.BusyError):
        waiter.execute("BEGIN IMMEDIATE")
    assert 0.020 <= now[0] - 100.0 < 0.022  # tried until the 20 ms were spent
    holder.execute("ROLLBACK")
    waiter.execute("BEGIN IMMEDIATE")  # free again: taken at once
    waiter.execute("ROLLBACK")

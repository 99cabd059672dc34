"""The alarm index: durable upserts with group commit, lazy removal, ordering."""

from __future__ import annotations

import threading
from pathlib import Path

from dohost.storage.alarm_index import AlarmEntry, AlarmIndex


def entry(i: int, due: int, tenant: str = "t") -> AlarmEntry:
    return AlarmEntry(tenant, "c", i.to_bytes(32, "big"), f"o{i}", "kv", due)


def test_upsert_replace_remove_and_order(tmp_path: Path) -> None:
    idx = AlarmIndex(tmp_path / "alarms.db")
    idx.upsert_durable(entry(1, 300))
    idx.upsert_durable(entry(2, 100))
    idx.upsert_durable(entry(1, 200))  # one alarm per object: replaces
    assert [(e.name, e.due_ms) for e in idx.entries()] == [("o2", 100), ("o1", 200)]
    idx.remove(entry(1, 0).key, due_ms=999)  # a stale removal leaves a newer entry alone
    assert len(idx.entries()) == 2
    idx.remove(entry(1, 0).key, due_ms=200)
    assert [e.name for e in idx.entries()] == ["o2"]
    idx.close()
    again = AlarmIndex(tmp_path / "alarms.db")
    assert [e.due_ms for e in again.entries()] == [100]
    assert again.entries(tenant="nobody") == []


def test_concurrent_upserts_share_fsyncs(tmp_path: Path) -> None:
    idx = AlarmIndex(tmp_path / "alarms.db")
    start = threading.Barrier(32)

    def worker(k: int) -> None:
        start.wait()
        for i in range(10):
            idx.upsert_durable(entry(k * 100 + i, i))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(idx.entries()) == 320
    assert idx.batches < 320  # followers rode along with leaders' transactions


def test_tenant_removal(tmp_path: Path) -> None:
    idx = AlarmIndex(tmp_path / "alarms.db")
    idx.upsert_durable(entry(1, 1, "a"))
    idx.upsert_durable(entry(2, 1, "b"))
    idx.remove_tenant("a")
    assert [e.tenant for e in idx.entries()] == ["b"]


def test_a_queued_removal_never_deletes_a_newer_entry_at_the_same_time(tmp_path: Path) -> None:
    idx = AlarmIndex(tmp_path / "alarms.db")
    idx.upsert_durable(entry(1, 500))
    idx.remove(entry(1, 500).key, due_ms=500)  # queued, not applied yet
    idx.upsert_durable(entry(1, 500))  # the object set an alarm for the very same ms
    idx.flush_removals()
    assert [e.due_ms for e in idx.entries()] == [500]
    idx.remove(entry(1, 500).key, due_ms=500)
    assert idx.entries() == []  # entries() applies queued removals first


def test_queued_removals_survive_close(tmp_path: Path) -> None:
    idx = AlarmIndex(tmp_path / "alarms.db")
    idx.upsert_durable(entry(1, 1))
    idx.remove(entry(1, 1).key)
    idx.close()
    assert AlarmIndex(tmp_path / "alarms.db").entries() == []

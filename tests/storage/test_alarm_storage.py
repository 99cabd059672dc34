"""An object's alarm in its own storage: part of the event's transaction, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from dohost.storage.manager import StorageManager

OID = bytes(range(32))


@pytest.fixture(params=["kv", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_alarm_commit_rollback_reopen(tmp_path: Path, backend: str) -> None:
    m = StorageManager(tmp_path, "fsync")
    s = m.open_object("t", "c", OID, "n", backend)
    s.begin_event()
    assert s.get_alarm() is None
    s.set_alarm(1_000)
    assert s.get_alarm() == 1_000  # the event sees its own change
    s.rollback_event()
    s.begin_event()
    assert s.get_alarm() is None  # rolled back with the event
    s.set_alarm(2_000)
    s.set_alarm(3_000)  # setting replaces
    assert s.commit_event().wait(10) is None
    s.begin_event()
    assert s.get_alarm() == 3_000
    s.set_alarm(None)
    s.rollback_event()
    s.begin_event()
    assert s.get_alarm() == 3_000
    s.rollback_event()
    s.close()
    m.close()

    m = StorageManager(tmp_path, "fsync")
    s = m.open_object("t", "c", OID, "n", backend)
    s.begin_event()
    assert s.get_alarm() == 3_000  # durable
    s.put(b"k", b"v")
    s.delete_all()  # takes the alarm too
    assert s.get_alarm() is None
    assert s.commit_event().wait(10) is None
    s.close()
    m.close()

    m = StorageManager(tmp_path, "fsync")
    s = m.open_object("t", "c", OID, "n", backend)
    s.begin_event()
    assert s.get_alarm() is None and s.get(b"k") is None
    s.rollback_event()
    s.close()
    m.close()


def test_alarm_only_event_commits_and_other_objects_are_separate(
    tmp_path: Path, backend: str
) -> None:
    m = StorageManager(tmp_path, "os")
    a = m.open_object("t", "c", OID, None, backend)
    b = m.open_object("t", "c", bytes(32), None, backend)
    a.begin_event()
    a.set_alarm(5)
    assert a.commit_event().wait(10) is None
    b.begin_event()
    assert b.get_alarm() is None
    b.rollback_event()
    a.close()
    b.close()
    m.close()

"""Storage and object quotas reserve their room when they check it (server/quota_storage.py):
two events, on one node or on two nodes sharing `shared.mmap`, cannot both take the last
room. (The same with real processes: tests/server/test_processes.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from dohost.core.errors import DohostError
from dohost.server.quota_storage import TenantUsage
from dohost.server.shared_state import SharedState, Usage, shared_path


def test_a_reservation_takes_the_room_before_the_write_is_made() -> None:
    usage = TenantUsage("acme", max_bytes=1000, max_objects=10)
    usage.load("c", b"a", 800)
    # Two events of different objects check at once: the first reserves 150 bytes...
    assert usage.reserve(("c", b"x"), 150)
    # ...so the second, which would have fit without it, does not.
    assert not usage.reserve(("c", b"y"), 100)
    assert usage.reserve(("c", b"y"), 50)
    # An event may grow its own reservation within the room.
    assert not usage.reserve(("c", b"x"), 151)
    assert usage.reserve(("c", b"x"), 140)
    # A rolled-back event gives its room back; a committed one turns it into usage.
    usage.end_event(("c", b"y"), None, "c", 0, 0)
    assert usage.reserve(("c", b"z"), 60)
    usage.end_event(("c", b"x"), 140, "c", 0, 140)
    assert usage.total == 940
    assert not usage.reserve(("c", b"w"), 1)  # 940 + z's 60 reserved


def test_room_an_event_frees_counts_only_once_it_commits() -> None:
    usage = TenantUsage("acme", max_bytes=1000, max_objects=10)
    usage.load("c", b"a", 1000)
    assert usage.reserve(("c", b"a"), -500)  # a delete, not yet committed
    assert not usage.reserve(("c", b"b"), 10)  # (it may still roll back)


def test_two_nodes_share_one_quota(tmp_path: Path) -> None:
    path = shared_path(tmp_path)
    SharedState.create(path, 2).close()
    views = [SharedState(path, 0), SharedState(path, 1)]
    try:
        a, b = (TenantUsage("acme", max_bytes=1000, max_objects=3) for _ in range(2))
        a.shared, b.shared = views
        # Objects: a new object's event reserves its place on every node at once.
        a.admit(("c", b"1"))
        b.admit(("c", b"2"))
        a.admit(("c", b"3"))
        with pytest.raises(DohostError) as e:
            b.admit(("c", b"4"))
        assert e.value.code.code == "quota_exceeded"
        # The event that ends without creating gives its place back to every node.
        a.release(("c", b"3"))
        b.admit(("c", b"4"))
        assert views[0].others_usage("acme") == Usage(0, 0, 0, 2)
        # Bytes: what node 1 reserves, node 0 cannot take.
        assert b.reserve(("c", b"2"), 600)
        assert not a.reserve(("c", b"1"), 401)
        assert a.reserve(("c", b"1"), 400)
        # Commits move reservations into usage, seen by the other node.
        b.end_event(("c", b"2"), 600, "c", 0, 600)
        b.release(("c", b"2"))
        assert views[0].others_usage("acme") == Usage(600, 1, 0, 1)
        assert a.host_totals() == (600, 1)
    finally:
        for v in views:
            v.close()

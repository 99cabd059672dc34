"""Epoch fencing in the storage (storage/fencing.py), both backends: once a newer claim
has opened an object's storage, an older claim's commits fail with FENCED, atomically
and alone; the newer owner sees nothing the older one tried after that.

The claims here are a plain table (partition -> epoch) so that the fence itself is what
stops the old owner: its claims still look valid to it, as after a lock broken without
its knowledge. (tests/server/test_fencing_process.py breaks real locks under a real
server.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dohost.core.errors import Code, DohostError
from dohost.core.partitions import partition_of
from dohost.storage.api import Durability
from dohost.storage.manager import AnyObjectStorage, StorageManager

COUNT = 4
BACKENDS = ["kv", "sqlite"]


@dataclass
class Table:
    """A node's claims as the storage sees them."""

    epochs: dict[int, int]
    count: int = COUNT
    still_valid: bool = True
    log: list[str] = field(default_factory=list)

    def epoch_of(self, partition: int) -> int | None:
        return self.epochs.get(partition)

    def held(self) -> dict[int, int]:
        return dict(self.epochs)

    def valid(self) -> bool:
        return self.still_valid


def oid_in(partition: int, tag: int) -> bytes:
    """An id whose partition (bytes 4..8) is `partition`, in shard 0."""
    raw = bytes(4) + partition.to_bytes(4, "big") + bytes([tag]) * 24
    assert partition_of(raw, COUNT) == partition
    return raw


def manager(data: Path, claims: Table) -> StorageManager:
    return StorageManager(data, Durability.OS, shards_per_tenant=1, claims=claims)


def put(obj: AnyObjectStorage, key: bytes, value: bytes) -> DohostError | None:
    obj.begin_event()
    obj.put(key, value)
    return obj.commit_event().wait(10)


def read(obj: AnyObjectStorage, key: bytes) -> bytes | None:
    obj.begin_event()
    v = obj.get(key)
    obj.rollback_event()
    return v


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_newer_claim_fences_the_old_owner(tmp_path: Path, backend: str) -> None:
    x, y = oid_in(1, 1), oid_in(2, 2)
    old = manager(tmp_path, Table({p: 1 for p in range(COUNT)}))
    new = manager(tmp_path, Table({1: 2}))  # only partition 1 moved
    try:
        ox = old.open_object("t", "c", x, backend=backend)
        oy = old.open_object("t", "c", y, backend=backend)
        assert put(ox, b"k", b"old-1") is None
        assert put(oy, b"k", b"y-1") is None
        # the new owner opens x: fence raised, and it sees what was committed before
        nx = new.open_object("t", "c", x, backend=backend)
        assert read(nx, b"k") == b"old-1"
        assert put(nx, b"k", b"new-1") is None
        # the old owner's next commit of x is refused; y (partition 2) is not affected
        err = put(ox, b"k", b"old-2")
        assert err is not None and err.code is Code.FENCED, err
        assert "partition 1" in err.message
        assert put(oy, b"k", b"y-2") is None
        # a fresh activation of x on the old node fails too (kv: at commit; sqlite:
        # already when it opens the file, before reading anything)
        ox.close()
        again = old.open_object("t", "c", x, backend=backend)
        try:
            err = put(again, b"k", b"old-3")
        except DohostError as e:
            err = e
        assert err is not None and err.code is Code.FENCED
        again.close()
        # nothing of the old owner after the fence surfaced
        nx.close()
        check = new.open_object("t", "c", x, backend=backend)
        assert read(check, b"k") == b"new-1"
        check.close()
    finally:
        old.close()
        new.close()


def test_kv_fenced_write_set_fails_alone_in_its_batch(tmp_path: Path) -> None:
    stale = oid_in(1, 1)
    fine = [oid_in(2, n) for n in range(3, 40)]
    old = manager(tmp_path, Table({p: 1 for p in range(COUNT)}))
    new = manager(tmp_path, Table({1: 5}))
    try:
        objs = [old.open_object("t", "c", o) for o in [stale, *fine]]
        new.open_object("t", "c", stale).close()  # the new owner opens the shard: fence
        tickets = []
        for o in objs:  # queued together: most of them share a batch
            o.begin_event()
            o.put(b"k", b"v")
            tickets.append(o.commit_event())
        errors = [t.wait(10) for t in tickets]
        assert errors[0] is not None and errors[0].code is Code.FENCED
        assert errors[1:] == [None] * len(fine)
        # the stale writer stays failed: its next write set is refused without a batch
        with pytest.raises(DohostError):
            objs[0].begin_event()
    finally:
        old.close()
        new.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_broken_claim_commits_nothing_before_anyone_else_writes(
    tmp_path: Path, backend: str
) -> None:
    claims = Table({p: 1 for p in range(COUNT)})
    node = manager(tmp_path, claims)
    try:
        o = node.open_object("t", "c", oid_in(3, 1), backend=backend)
        assert put(o, b"k", b"1") is None
        claims.still_valid = False  # the lock file was replaced under the node
        err = put(o, b"k", b"2")
        assert err is not None and err.code is Code.FENCED
        claims.still_valid = True
        o.close()
        o = node.open_object("t", "c", oid_in(3, 1), backend=backend)
        assert read(o, b"k") == b"1"
        o.close()
    finally:
        node.close()


def test_claiming_into_open_shards_refuses_older_epochs(tmp_path: Path) -> None:
    a_claims = Table({0: 1})
    a = manager(tmp_path, a_claims)
    b = manager(tmp_path, Table({1: 3}))
    try:
        a.open_object("t", "c", oid_in(0, 1)).close()  # opens the shard
        b.open_object("t", "c", oid_in(1, 1)).close()
        a_claims.epochs[1] = 2  # a claims partition 1 with an older epoch than b's
        a_claims.epochs[2] = 1
        assert a.fence({1: 2, 2: 1}) == [1]
        a_claims.epochs[1] = 4
        assert a.fence({1: 4}) == []
    finally:
        a.close()
        b.close()


def test_opening_an_unclaimed_partition_is_not_owner(tmp_path: Path) -> None:
    node = manager(tmp_path, Table({0: 1}))
    try:
        with pytest.raises(DohostError) as e:
            node.open_object("t", "c", oid_in(1, 1))
        assert e.value.code is Code.NOT_OWNER
    finally:
        node.close()

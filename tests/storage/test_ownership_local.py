"""The local ownership backend (storage/ownership_local.py): claims are kernel locks on
byte ranges of one file, epochs grow with each claim, a dead owner's claims are free at
once, a replaced lock file invalidates the claims made on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dohost.core.errors import Code, DohostError
from dohost.storage.api import Durability
from dohost.storage.ownership_local import LOCK_FILE, LocalOwnership, Owner, runs
from dohost.storage.partition_count import PARTITIONS_FILE, partition_count

HOST_DIR = str(Path(__file__).resolve().parents[2] / "host")


def own(data: Path, node: str, count: int = 64) -> LocalOwnership:
    data.mkdir(parents=True, exist_ok=True)
    return LocalOwnership(data, node, count, durability=Durability.OS)


def test_runs() -> None:
    assert runs([5, 0, 1, 2, 2, 7, 6]) == [(0, 2), (5, 7)]
    assert runs([]) == []


def test_claims_exclude_each_other_and_epochs_grow(tmp_path: Path) -> None:
    a = own(tmp_path, "a")
    b = own(tmp_path, "b")
    try:
        got = a.claim(range(0, 32))
        assert got == dict.fromkeys(range(32), 1)
        # b gets only what a does not hold (a run split partition by partition)
        got_b = b.claim(range(16, 48))
        assert sorted(got_b) == list(range(32, 48))
        assert set(got_b.values()) == {1}
        assert a.owner_of(20) == Owner("a", os.getpid(), 1)
        assert b.owner_of(20) == Owner("a", os.getpid(), 1)
        assert b.owner_of(40) == Owner("b", os.getpid(), 1)
        assert a.owner_of(60) is None
        # claiming again what one holds keeps the epoch
        assert a.claim([3]) == {3: 1}
        a.release(range(16, 32))
        assert a.epoch_of(20) is None and a.epoch_of(3) == 1
        assert b.owner_of(20) is None
        assert b.claim(range(16, 32)) == dict.fromkeys(range(16, 32), 2)
        assert a.owner_of(20) == Owner("b", os.getpid(), 2)
        with pytest.raises(DohostError) as e:
            a.claim([64])
        assert e.value.code is Code.INVALID_ARGUMENT
    finally:
        a.close()
        b.close()
    # closed: every claim is free; epochs keep growing
    c = own(tmp_path, "c")
    assert c.claim([0, 20, 40]) == {0: 2, 20: 3, 40: 2}
    c.close()


def test_claims_of_a_sigkilled_process_are_free_at_once(tmp_path: Path) -> None:
    script = (
        f"import sys; sys.path.insert(0, {HOST_DIR!r})\n"
        "from dohost.storage.ownership_local import LocalOwnership\n"
        "o = LocalOwnership(sys.argv[1], 'victim', 64)\n"
        "print(len(o.claim(range(64))), flush=True); sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "64\n"
    mine = own(tmp_path, "survivor")
    try:
        assert mine.claim(range(64)) == {}
        owner = mine.owner_of(7)
        assert owner == Owner("victim", proc.pid, 1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert mine.owner_of(7) is None
        assert mine.claim(range(64)) == dict.fromkeys(range(64), 2)
    finally:
        mine.close()


def test_claim_waits_for_a_release(tmp_path: Path) -> None:
    a = own(tmp_path, "a")
    b = own(tmp_path, "b")
    try:
        a.claim([1])
        assert b.claim([1], wait=0.05) == {}  # bounded wait, nothing obtained
        a.release([1])
        assert b.claim([1], wait=1.0) == {1: 2}
    finally:
        a.close()
        b.close()


def test_replaced_lock_file_invalidates_claims(tmp_path: Path) -> None:
    a = own(tmp_path, "a")
    try:
        a.claim(range(64))
        assert a.valid()
        os.replace(tmp_path / LOCK_FILE, tmp_path / "old.lock")
        assert not a.valid()
        b = own(tmp_path, "b")  # locks the new file: the claims are its now
        assert b.claim([5]) == {5: 2}
        b.close()
        (tmp_path / LOCK_FILE).unlink()
        assert not a.valid()
    finally:
        a.close()


def test_partition_count_is_fixed_at_creation(tmp_path: Path) -> None:
    assert partition_count(tmp_path, 128) == 128
    assert (tmp_path / PARTITIONS_FILE).read_text() == "128\n"
    assert partition_count(tmp_path, 4096) == 128  # fixed once written
    (tmp_path / PARTITIONS_FILE).write_text("zero\n")
    with pytest.raises(DohostError) as e:
        partition_count(tmp_path)
    assert "PARTITIONS is damaged" in e.value.message

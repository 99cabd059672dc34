"""The data set lock (storage/dataset_lock.py): one program per data directory, a stale
lock file of a killed holder does not block, an inherited descriptor is checked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dohost.core.errors import Code, DohostError
from dohost.storage.dataset_lock import LOCK_FILE, DataSetLock, read_holder

HOLD = """
import sys
sys.path.insert(0, {host!r})
from dohost.storage.dataset_lock import DataSetLock
lock = DataSetLock.acquire(sys.argv[1], "holder-test --data x")
print("locked", lock.fileno(), flush=True)
sys.stdin.read()  # hold until the test closes stdin (or kills us)
"""

HOST_DIR = str(Path(__file__).resolve().parents[2] / "host")


def start_holder(data: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(host=HOST_DIR), str(data)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("locked")
    return proc


def test_second_acquire_is_refused_with_the_holder_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    lock = DataSetLock.acquire(data, "dohost serve --data ./data --port 8080")
    try:
        assert read_holder(data) == (os.getpid(), "dohost serve --data ./data --port 8080")
        with pytest.raises(DohostError) as e:
            DataSetLock.acquire(data, "dohost run x.wasm")
        assert e.value.code is Code.DATA_IN_USE
        msg = e.value.message
        assert "\n" not in msg
        assert str(data) in msg
        assert f"pid {os.getpid()} (dohost serve --data ./data --port 8080)" in msg
        assert "dohost call" in msg and "another data directory" in msg
    finally:
        lock.release()
    # released: the next program gets it, and the file now names it
    again = DataSetLock.acquire(data, "second")
    assert read_holder(data) == (os.getpid(), "second")
    again.release()
    again.release()  # idempotent


def test_lock_of_a_sigkilled_holder_does_not_block(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = start_holder(data)
    with pytest.raises(DohostError) as e:
        DataSetLock.acquire(data)
    assert f"pid {proc.pid} (holder-test --data x)" in e.value.message
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (data / LOCK_FILE).exists()  # the stale file stays ...
    lock = DataSetLock.acquire(data, "restart")  # ... and does not block
    assert read_holder(data) == (os.getpid(), "restart")
    lock.release()


def test_inherited_descriptor_is_checked(tmp_path: Path) -> None:
    data = tmp_path / "data"
    other = tmp_path / "other"
    lock = DataSetLock.acquire(data)
    try:
        # the same open file description (what a child gets through pass_fds)
        child = DataSetLock.inherited(data, os.dup(lock.fileno()))
        child.release()  # closes its descriptor only: the parent still holds the lock
        with pytest.raises(DohostError) as e:
            DataSetLock.acquire(data)
        assert e.value.code is Code.DATA_IN_USE
        # a descriptor of another directory's lock file is refused
        other_lock = DataSetLock.acquire(other)
        with pytest.raises(DohostError) as e:
            DataSetLock.inherited(data, other_lock.fileno())
        assert e.value.code is Code.INVALID_ARGUMENT
        other_lock.release()
        # a descriptor of the right file that does not hold the lock is refused
        fd = os.open(data / LOCK_FILE, os.O_RDWR)
        try:
            with pytest.raises(DohostError) as e:
                DataSetLock.inherited(data, fd)
            assert e.value.code is Code.DATA_IN_USE
        finally:
            os.close(fd)
    finally:
        lock.release()


def test_children_holding_the_inherited_lock_keep_others_out(tmp_path: Path) -> None:
    """The parent passes the descriptor on and exits: the child still holds the set."""
    data = tmp_path / "data"
    lock = DataSetLock.acquire(data, "parent")
    script = (
        f"import sys; sys.path.insert(0, {HOST_DIR!r})\n"
        "from dohost.storage.dataset_lock import DataSetLock\n"
        "DataSetLock.inherited(sys.argv[1], int(sys.argv[2]))\n"
        "print('ok', flush=True); sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(data), str(lock.fileno())],
        pass_fds=[lock.fileno()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ok\n"
        os.close(lock.fileno())  # the parent's descriptor goes, without an unlock
        lock._fd = None
        with pytest.raises(DohostError) as e:
            DataSetLock.acquire(data)
        assert e.value.code is Code.DATA_IN_USE
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
    DataSetLock.acquire(data).release()  # the last holder is gone

"""The `local` ownership backend: processes of one machine sharing one data directory.

A claim of partition p is an exclusive open-file-description lock (`F_OFD_SETLK`) on byte
p of `DATA/partitions.lock`: one file for every partition (4,096 lock files, each with an
open descriptor, would pass the descriptor limit). The kernel drops the locks when the
process dies, so a dead owner's partitions can be claimed at once, without a timeout.
OFD locks (unlike classic POSIX locks) belong to the open file description: closing some
other descriptor of the file does not drop them, and two instances in one process
conflict like two processes do (tests run two nodes in one process).

Each claim increments the partition's **epoch** in `DATA/partitions.db` (with the owner's
node name and pid), durably, before the claim is returned: the epoch is the fencing token
every commit of the partition carries (storage/fencing.py). `owner_of(p)` tells who holds
a partition now, so that other nodes can route to it.

`valid()` tells whether this instance's locks still stand: they lock the inode its
descriptor refers to, so if `partitions.lock` was removed or replaced under it (an
operator, a test breaking the claim), another process may lock the new file: from then
on this instance must commit nothing.

`watch` (DESIGN.md's fourth verb) is not provided here: on one machine the parent process
knows when nodes die, and `owner_of` answers from the kernel's lock table at any time.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import apsw

from dohost.core.errors import Code, DohostError
from dohost.core.partitions import check_partition_count, progressions
from dohost.storage.api import Durability

LOCK_FILE = "partitions.lock"
EPOCH_DB = "partitions.db"
BUSY_TIMEOUT_MS = 10_000
_WAIT_STEP_S = 0.01

_FLOCK = "hhqqi"  # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS partitions("
    " partition INTEGER PRIMARY KEY, epoch INTEGER NOT NULL,"
    " node TEXT, pid INTEGER, claimed_ms INTEGER)"
)
# One statement per arithmetic run of partitions (first, last, step): a first claim of
# 4,096 partitions, or of one node's share under static placement, is two statements.
_CLAIM_RUN = (
    "WITH RECURSIVE s(p) AS (SELECT ?1 UNION ALL SELECT p + ?3 FROM s WHERE p + ?3 <= ?2)"
    " INSERT INTO partitions(partition, epoch, node, pid, claimed_ms)"
    " SELECT p, 1, ?4, ?5, ?6 FROM s WHERE true"
    " ON CONFLICT(partition) DO UPDATE SET epoch = epoch + 1, node = excluded.node,"
    " pid = excluded.pid, claimed_ms = excluded.claimed_ms"
)
_RUN_WHERE = " WHERE partition BETWEEN ?1 AND ?2 AND (partition - ?1) % ?3 = 0"
_EPOCH_RANGE_OF_RUN = "SELECT min(epoch), max(epoch) FROM partitions" + _RUN_WHERE
_EPOCHS_OF_RUN = "SELECT partition, epoch FROM partitions" + _RUN_WHERE
_RELEASE_RUN = (
    "UPDATE partitions SET node = NULL, pid = NULL"
    " WHERE partition BETWEEN ? AND ? AND node = ? AND pid = ?"
)


@dataclass(frozen=True)
class Owner:
    """Who holds a partition's claim: node name, pid, and the epoch of that claim."""

    node: str
    pid: int
    epoch: int


def runs(partitions: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted distinct partitions as inclusive runs: [0,1,2,5] -> [(0,2),(5,5)]."""
    ps = sorted(set(partitions))
    if ps and ps[-1] - ps[0] + 1 == len(ps):
        return [(ps[0], ps[-1])]  # one run (every partition, at start): at C speed
    out: list[tuple[int, int]] = []
    for p in ps:
        if out and out[-1][1] == p - 1:
            out[-1] = (out[-1][0], p)
        else:
            out.append((p, p))
    return out


class LocalOwnership:
    """This node's claims on partitions of one data directory. Thread-safe."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        node_name: str,
        partitions: int,
        *,
        durability: str = Durability.FSYNC,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.node_name = node_name
        self.count = check_partition_count(partitions)
        self.lock_path = self.data_dir / LOCK_FILE
        self._mutex = threading.Lock()
        self._held: dict[int, int] = {}  # partition -> epoch of our claim
        self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        st = os.fstat(self._fd)
        self._identity = (st.st_dev, st.st_ino)
        try:
            self._db = apsw.Connection(str(self.data_dir / EPOCH_DB))
            self._db.setbusytimeout(BUSY_TIMEOUT_MS)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a claim's epoch is on disk before the claim is used.
            sync = "FULL" if durability == Durability.FSYNC else "OFF"
            self._db.execute(f"PRAGMA synchronous={sync}")
            self._db.execute(_SCHEMA)
        except BaseException:
            os.close(self._fd)
            raise
        self._closed = False

    # ------------------------------------------------------------------ kernel locks

    def _lock(self, lo: int, hi: int) -> bool:
        """Try to lock bytes lo..hi (inclusive); False if another holder has one."""
        arg = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, lo, hi - lo + 1, 0)
        try:
            fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, arg)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def _unlock(self, lo: int, hi: int) -> None:
        arg = struct.pack(_FLOCK, fcntl.F_UNLCK, os.SEEK_SET, lo, hi - lo + 1, 0)
        fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, arg)

    def _locked_by_other(self, p: int) -> bool:
        arg = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, p, 1, 0)
        res = fcntl.fcntl(self._fd, fcntl.F_OFD_GETLK, arg)
        lock_type: int = struct.unpack(_FLOCK, res)[0]
        return lock_type != fcntl.F_UNLCK

    def _lock_runs(self, wanted: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Lock what can be locked now: a whole run in one call when nobody holds any of
        it, else partition by partition. Returns the runs locked."""
        got: list[tuple[int, int]] = []
        for lo, hi in wanted:
            if self._lock(lo, hi):
                got.append((lo, hi))
            elif lo < hi:
                got.extend(runs(p for p in range(lo, hi + 1) if self._lock(p, p)))
        return got

    # ------------------------------------------------------------------ claims

    def _check(self, partitions: Iterable[int]) -> list[int]:
        ps = list(partitions)
        bad = [p for p in ps if not 0 <= p < self.count]
        if bad:
            raise DohostError(
                Code.INVALID_ARGUMENT,
                f"partition {bad[0]} does not exist (this data set has {self.count})",
            )
        return ps

    def claim(self, partitions: Iterable[int], wait: float = 0.0) -> dict[int, int]:
        """Claim what of `partitions` no other node holds (waiting up to `wait` seconds
        for the others) and return partition -> epoch of each new claim. Partitions this
        node already holds keep their epoch (and are returned with it). Blocking: call
        it off the event loop."""
        ps = self._check(partitions)
        deadline = time.monotonic() + wait
        out: dict[int, int] = {}
        while True:
            with self._mutex:
                if self._closed:
                    raise DohostError(Code.SHUTTING_DOWN, "the ownership backend is closed")
                for p in ps:
                    if p in self._held:
                        out[p] = self._held[p]
                todo = runs(p for p in ps if p not in out)
                got = self._lock_runs(todo)
                if got:
                    try:
                        out.update(self._bump_epochs(got))
                    except BaseException:
                        for lo, hi in got:
                            self._unlock(lo, hi)
                        raise
                missing = len(ps) - len(out)
            if missing == 0 or time.monotonic() >= deadline:
                return out
            time.sleep(_WAIT_STEP_S)

    def _bump_epochs(self, got: list[tuple[int, int]]) -> dict[int, int]:
        """(Mutex held, the runs locked.) Increment and record the epochs, durably."""
        now = time.time_ns() // 1_000_000
        out: dict[int, int] = {}
        pid = os.getpid()
        prog = progressions(p for lo, hi in got for p in range(lo, hi + 1))
        try:
            with self._db:
                for lo, hi, step in prog:
                    self._db.execute(_CLAIM_RUN, (lo, hi, step, self.node_name, pid, now))
                for lo, hi, step in prog:
                    row = self._db.execute(_EPOCH_RANGE_OF_RUN, (lo, hi, step)).fetchone()
                    least, most = row if row is not None else (None, None)
                    if least is not None and least == most:  # the common case: one epoch
                        out.update(dict.fromkeys(range(lo, hi + 1, step), int(least)))
                        continue
                    for p, epoch in self._db.execute(_EPOCHS_OF_RUN, (lo, hi, step)):
                        out[int(p)] = int(epoch)
        except apsw.Error as e:
            raise DohostError(
                Code.STORAGE_ERROR, f"cannot record the claim in {self.data_dir / EPOCH_DB}: {e}"
            ) from e
        self._held.update(out)
        return out

    def release(self, partitions: Iterable[int]) -> None:
        """Give up this node's claims on `partitions` (those it does not hold are
        ignored). The caller has drained their objects first."""
        ps = self._check(partitions)
        with self._mutex:
            mine = runs(p for p in ps if p in self._held)
            if not mine or self._closed:
                return
            for lo, hi in mine:
                for p in range(lo, hi + 1):
                    del self._held[p]
            try:
                with self._db:
                    for lo, hi in mine:
                        self._db.execute(_RELEASE_RUN, (lo, hi, self.node_name, os.getpid()))
            finally:
                for lo, hi in mine:
                    self._unlock(lo, hi)

    # ------------------------------------------------------------------ questions

    def epoch_of(self, partition: int) -> int | None:
        """The epoch of this node's claim on `partition`, None if it holds none."""
        return self._held.get(partition)

    def held(self) -> dict[int, int]:
        """partition -> epoch of every claim this node holds."""
        with self._mutex:
            return dict(self._held)

    def owner_of(self, partition: int) -> Owner | None:
        """Who holds `partition` now (this node included), None if nobody does."""
        (p,) = self._check([partition])
        with self._mutex:
            if self._closed:
                raise DohostError(Code.SHUTTING_DOWN, "the ownership backend is closed")
            if p in self._held:
                return Owner(self.node_name, os.getpid(), self._held[p])
            if not self._locked_by_other(p):
                return None
            row = self._db.execute(
                "SELECT node, pid, epoch FROM partitions WHERE partition=?", (p,)
            ).fetchone()
        if row is None or row[0] is None:
            # Locked, but its epoch is not written yet (a claim in progress).
            return None
        return Owner(str(row[0]), int(row[1]), int(row[2]))

    def valid(self) -> bool:
        """Whether this node's locks still stand: `partitions.lock` is still the file
        they lock (not removed or replaced under it)."""
        try:
            st = os.stat(self.lock_path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._identity

    def lost(self) -> str:
        """Why `valid()` is false, for the log and the `fenced` error."""
        return f"its partition lock file {self.lock_path} was replaced or removed"

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Drop every claim (the kernel would at exit). Idempotent."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self._held.clear()
            try:
                self._db.close()
            finally:
                os.close(self._fd)  # the last descriptor of the description: locks go

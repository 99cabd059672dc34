"""I/O faults (issue 8, item 2): storage failures during a commit, through the real Host.

Faults are injected under SQLite (storage/faultvfs.py: an apsw VFS over the default one)
and in the host's own fsync of the WAL files (`Host(storage_fsync=...)`; with
`synchronous=NORMAL` that fsync is what makes a commit durable):
- a failing write of the WAL (SQLITE_IOERR),
- the disk full while writing the WAL (SQLITE_FULL),
- a failing fsync of the WAL (EIO),
each on the file that holds one object ("the victim": its kv shard or its own database),
on both backends. Every test shows:
- the victim's events get `storage_error` while the fault lasts;
- objects stored in other files keep serving meanwhile, and the host never stops;
- once the fault clears, the victim is reset and serves again, and nothing acknowledged
  is lost (its counter is at least every acknowledged value, and the guest's checksum
  shows only whole events), also after a restart on the same data directory.
Failed writes are rolled back, so their events leave no trace; after a failed fsync the
events' outcome is unknown (the commit may have reached the disk), so those may land.
While the fault lasts, all objects are sent an increment at once (kv: the victim's shard
mates share its failing batch).

The fault storm repeats that with a random fault (write, disk full, fsync, read) on a
random object's database or WAL, for 1, 2 or 5 operations or until cleared, then checks
every object and, at the end, a restart (12 rounds per backend; 300 under `slow`).
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import apsw
import pytest
import trio
from io_fault_helpers import FaultyFsync, storage_file

from dohost import Code, DohostError, Host, Request
from dohost.storage.faultvfs import FaultVFS

ROOT = Path(__file__).resolve().parents[2]
WASM = ROOT / "tests" / "fixtures" / "build" / "checksum_counter.wasm"
TENANT, CLASS = "acme", "cc"
OBJECTS = [f"o{i}" for i in range(12)]
VICTIM = "o0"
ATTEMPTS = 3  # events sent to the victim while the fault lasts
_vfs_names = itertools.count()


async def incr(host: Host, name: str) -> int:
    r = await host.fetch(TENANT, CLASS, name, Request("POST", "/incr"))
    assert r.status == 200, r.text
    return int(r.text)


async def incr_into(results: dict[str, int | DohostError], host: Host, name: str) -> None:
    try:
        results[name] = await incr(host, name)
    except DohostError as e:
        results[name] = e


async def verified_n(host: Host, name: str) -> int:
    """The object's counter, after the guest checked that it holds only whole events."""
    r = await host.fetch(TENANT, CLASS, name, Request("GET", "/verify"))
    assert r.status == 200, f"{name}: {r.text}"
    return int(r.text.split()[0])


class Fault:
    """One kind of fault, armed on one file and cleared."""

    def __init__(self, kind: str, vfs: FaultVFS, fsync: FaultyFsync) -> None:
        self.kind, self.vfs, self.fsync = kind, vfs, fsync

    def arm(self, db_path: str) -> None:
        wal_path = db_path + "-wal"
        if self.kind == "write":
            self.vfs.fail("write", path_contains=wal_path, error=apsw.IOError)
        elif self.kind == "full":
            self.vfs.fail("write", path_contains=wal_path, error=apsw.FullError)
        else:  # the host's fsync of the WAL, and SQLite's own syncs of the db and WAL
            self.fsync.failing = wal_path
            self.vfs.fail("sync", path_contains=db_path, error=apsw.IOError)

    def clear(self) -> None:
        self.vfs.clear()
        self.fsync.failing = ""

    @property
    def injected(self) -> int:
        return self.vfs.injected["write"] + self.vfs.injected["sync"] + self.fsync.injected


@pytest.mark.parametrize("backend", ["kv", "sqlite"])
@pytest.mark.parametrize("kind", ["write", "full", "fsync"])
async def test_a_storage_fault_during_commit(tmp_path: Path, backend: str, kind: str) -> None:
    data = tmp_path / "data"
    vfs = FaultVFS(f"reliability-io-{next(_vfs_names)}")
    fsync = FaultyFsync()
    fault = Fault(kind, vfs, fsync)
    acked: dict[str, int] = {}
    try:
        async with Host(data, storage_vfs=vfs.vfs_name, storage_fsync=fsync, workers=2) as host:
            await host.deploy(TENANT, CLASS, WASM.read_bytes(), backend)
            for _ in range(2):
                for name in OBJECTS:
                    acked[name] = await incr(host, name)

            def file_of(name: str) -> str:
                oid = host.id_from_name(TENANT, CLASS, name)
                return storage_file(host.storage, TENANT, CLASS, backend, oid)

            victim_file = file_of(VICTIM)
            hit = [n for n in OBJECTS if file_of(n) == victim_file]  # kv: its shard mates too
            others = [n for n in OBJECTS if n not in hit]
            assert len(others) >= 3, "no object stored in another file"

            fault.arm(victim_file)
            failures = dict.fromkeys(hit, 0)
            for _ in range(ATTEMPTS):
                # One burst: the events of the hit file share its failing commit (kv: one
                # batch); the others commit meanwhile to other files.
                results: dict[str, int | DohostError] = {}
                async with trio.open_nursery() as nursery:
                    for name in OBJECTS:
                        nursery.start_soon(incr_into, results, host, name)
                for name in hit:
                    err = results[name]
                    assert isinstance(err, DohostError), (name, err)
                    assert err.code is Code.STORAGE_ERROR, err
                    failures[name] += 1
                for name in others:  # the rest of the host keeps serving meanwhile
                    value = results[name]
                    assert isinstance(value, int), (name, value)
                    acked[name] = value
            assert fault.injected >= 1
            fault.clear()

            # The hit objects serve again: reset, rebuilt from what is stored.
            for name in hit:
                n = await verified_n(host, name)
                if kind == "fsync":  # outcome unknown: the failed events may have landed
                    assert acked[name] <= n <= acked[name] + failures[name], name
                else:  # rolled back: no trace of the failed events
                    assert n == acked[name], name
            for _ in range(2):
                for name in OBJECTS:
                    acked[name] = await incr(host, name)
            for name in OBJECTS:
                assert await verified_n(host, name) == acked[name]
            assert not host.supervisor.closing
        print(f"\n{backend}/{kind}: {fault.injected} faults injected")

        async with Host(data) as host:  # a restart on the same data, no faults
            for name in OBJECTS:
                assert await verified_n(host, name) == acked[name], name
    finally:
        fault.clear()


# ---- fault storm: random faults, random files, random durations ---------------------------

STORM_KINDS = ("write", "full", "fsync", "read")


def arm_random(rng: random.Random, vfs: FaultVFS, fsync: FaultyFsync, db_path: str) -> str:
    """Arm one random fault on `db_path` or its WAL, for a few operations or until cleared."""
    kind = rng.choice(STORM_KINDS)
    path = db_path + rng.choice(["", "-wal"])
    count = rng.choice([1, 2, 5, None])
    if kind == "fsync":
        fsync.failing = path
        vfs.fail("sync", path_contains=path, count=count)
    else:
        error = apsw.FullError if kind == "full" else apsw.IOError
        vfs.fail(
            "read" if kind == "read" else "write", path_contains=path, error=error, count=count
        )
    return f"{kind} on {path.rsplit('/', 1)[1]} x{count or 'inf'}"


async def fault_storm(tmp_path: Path, backend: str, rounds: int, seed: int) -> tuple[int, int]:
    """Rounds of: arm a random fault on a random object's file, send every object an
    increment at once, clear the fault, check every object. Returns (faults injected,
    events that failed with storage_error)."""
    rng = random.Random(f"{seed}-{backend}")
    data = tmp_path / "data"
    vfs = FaultVFS(f"reliability-storm-{next(_vfs_names)}")
    fsync = FaultyFsync()
    names = [f"s{i}" for i in range(24)]
    known = dict.fromkeys(names, 0)  # the counter as last verified (or acknowledged)
    failed = dict.fromkeys(names, 0)  # failed increments since then
    errors = 0
    try:
        async with Host(data, storage_vfs=vfs.vfs_name, storage_fsync=fsync, workers=2) as host:
            await host.deploy(TENANT, CLASS, WASM.read_bytes(), backend)
            for name in names:
                known[name] = await incr(host, name)
            for r in range(rounds):
                victim = host.id_from_name(TENANT, CLASS, rng.choice(names))
                what = arm_random(
                    rng, vfs, fsync, storage_file(host.storage, TENANT, CLASS, backend, victim)
                )
                results: dict[str, int | DohostError] = {}
                async with trio.open_nursery() as nursery:
                    for name in names:
                        nursery.start_soon(incr_into, results, host, name)
                for name, res in results.items():
                    if isinstance(res, DohostError):
                        assert res.code is Code.STORAGE_ERROR, f"round {r} ({what}): {res}"
                        failed[name] += 1
                        errors += 1
                    else:
                        assert known[name] < res <= known[name] + failed[name] + 1, (r, what)
                        known[name], failed[name] = res, 0
                vfs.clear()
                fsync.failing = ""
                for name in names:  # whole events only; nothing acknowledged lost
                    n = await verified_n(host, name)
                    assert known[name] <= n <= known[name] + failed[name], (r, what, name)
                    known[name], failed[name] = n, 0
            for name in names:  # every file heals once written again
                known[name] = await incr(host, name)
        async with Host(data) as host:  # restart: exactly what was acknowledged last
            for name in names:
                assert await verified_n(host, name) == known[name], name
    finally:
        vfs.clear()
        fsync.failing = ""
    return sum(vfs.injected.values()) + fsync.injected, errors


@pytest.mark.parametrize("backend", ["kv", "sqlite"])
async def test_fault_storm_short(tmp_path: Path, backend: str) -> None:
    injected, errors = await fault_storm(tmp_path, backend, rounds=12, seed=1)
    print(f"\nfault storm ({backend}, 12 rounds): {injected} faults injected, {errors} errors")
    assert injected >= 6 and errors >= 3


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["kv", "sqlite"])
async def test_fault_storm(tmp_path: Path, backend: str) -> None:
    injected, errors = await fault_storm(tmp_path, backend, rounds=300, seed=2)
    print(f"\nfault storm ({backend}, 300 rounds): {injected} faults injected, {errors} errors")
    assert injected >= 150 and errors >= 75

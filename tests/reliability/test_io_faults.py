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
"""

from __future__ import annotations

import itertools
from pathlib import Path

import apsw
import pytest
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


async def verified_n(host: Host, name: str) -> int:
    """The object's counter, after the guest checked that it holds only whole events."""
    r = await host.fetch(TENANT, CLASS, name, Request("GET", "/verify"))
    assert r.status == 200, f"{name}: {r.text}"
    return int(r.text.split()[0])


class Fault:
    """One kind of fault, armed on one file and cleared."""

    def __init__(self, kind: str, vfs: FaultVFS, fsync: FaultyFsync) -> None:
        self.kind, self.vfs, self.fsync = kind, vfs, fsync

    def arm(self, wal_path: str) -> None:
        if self.kind == "write":
            self.vfs.fail("write", path_contains=wal_path, error=apsw.IOError)
        elif self.kind == "full":
            self.vfs.fail("write", path_contains=wal_path, error=apsw.FullError)
        else:
            self.fsync.failing = wal_path

    def clear(self) -> None:
        self.vfs.clear()
        self.fsync.failing = ""

    @property
    def injected(self) -> int:
        return self.vfs.injected["write"] + self.fsync.injected


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
            others = [n for n in OBJECTS if file_of(n) != victim_file]
            assert len(others) >= 3, "no object stored in another file"

            fault.arm(victim_file + "-wal")
            for _ in range(ATTEMPTS):
                with pytest.raises(DohostError) as e:
                    await incr(host, VICTIM)
                assert e.value.code is Code.STORAGE_ERROR, e.value
                for name in others:  # the rest of the host keeps serving meanwhile
                    acked[name] = await incr(host, name)
            assert fault.injected >= 1
            fault.clear()

            # The victim serves again: reset, rebuilt from what is stored.
            n = await verified_n(host, VICTIM)
            if kind == "fsync":  # outcome unknown: the failed events may have landed
                assert acked[VICTIM] <= n <= acked[VICTIM] + ATTEMPTS
            else:  # rolled back: no trace of the failed events
                assert n == acked[VICTIM]
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

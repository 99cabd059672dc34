"""The catalog in the replica (replica/catalog.py): copies of the system database and
the modules it names, shipped when the database changes and restored as of a time."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dohost.core.errors import Code, DohostError
from dohost.core.replica_keys import module_key
from dohost.replica.catalog import CatalogShipper, restore_catalog
from dohost.replica.file_store import FileReplicaStore
from dohost.replica.store import ReplicaStore
from dohost.storage.system_db import SystemDb

DAY_MS = 86_400_000


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


def deploy(db: SystemDb, tenant: str, wasm: bytes) -> str:
    sha = hashlib.sha256(wasm).hexdigest()
    db.save_module(sha, wasm)
    db.put_class_version(tenant, "counter", sha, "kv", b"k" * 32)
    return sha


def tenants_in(data_dir: Path) -> list[str]:
    db = SystemDb(data_dir)
    try:
        return sorted(t.name for t in db.tenants())
    finally:
        db.close()


def open_data(
    tmp_path: Path, store: ReplicaStore, retention_ms: int = 30 * DAY_MS
) -> tuple[SystemDb, Clock, CatalogShipper]:
    """A data directory's system database, a clock, and its catalog shipper (whose
    background thread these tests do not rely on: they call ship_if_changed)."""
    data = tmp_path / "data"
    data.mkdir()
    clock = Clock()
    ship = CatalogShipper(store, data, writer="t", wall_clock_ms=clock, poll_s=3600,
                          retention_ms=retention_ms)  # fmt: skip
    return SystemDb(data), clock, ship


def test_copies_follow_changes_and_restore_as_of_a_time(
    tmp_path: Path, store: ReplicaStore
) -> None:
    db, clock, ship = open_data(tmp_path, store)
    try:
        db.create_tenant("acme", b"h" * 32)
        sha1 = deploy(db, "acme", b"\0asm-one")
        clock.ms += 1000
        assert ship.ship_if_changed()
        t1 = clock.ms
        assert not ship.ship_if_changed()  # nothing changed: nothing shipped
        clock.ms += 1000
        db.create_tenant("globex", None)
        sha2 = deploy(db, "globex", b"\0asm-two")
        assert ship.ship_if_changed()
    finally:
        ship.close()
        db.close()
    assert store.get(module_key(sha1)) == b"\0asm-one"
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    assert restore_catalog(store, old, t1) == 1
    assert tenants_in(old) == ["acme"] and (old / "modules" / f"{sha1}.wasm").exists()
    assert restore_catalog(store, new, None) == 2
    assert tenants_in(new) == ["acme", "globex"]
    assert (new / "modules" / f"{sha2}.wasm").read_bytes() == b"\0asm-two"


def test_a_damaged_module_stops_the_restore(tmp_path: Path, file_store: FileReplicaStore) -> None:
    db, _clock, ship = open_data(tmp_path, file_store)
    try:
        sha = deploy(db, "acme", b"\0asm-one")
        assert ship.ship_if_changed()
    finally:
        ship.close()
        db.close()
    path = Path(file_store.root) / module_key(sha)
    path.write_bytes(b"\0asm-One")
    (tmp_path / "r").mkdir()
    with pytest.raises(DohostError) as info:
        restore_catalog(file_store, tmp_path / "r", None)
    assert info.value.code is Code.REPLICA_CORRUPT and module_key(sha) in info.value.message
    path.unlink()
    with pytest.raises(DohostError) as info:
        restore_catalog(file_store, tmp_path / "r", None)
    assert info.value.code is Code.REPLICA_CORRUPT and "missing" in info.value.message


def test_old_copies_leave_with_the_retention_window(
    tmp_path: Path, file_store: FileReplicaStore
) -> None:
    db, clock, ship = open_data(tmp_path, file_store, retention_ms=10 * DAY_MS)
    try:
        for day in range(0, 30, 5):
            clock.ms = 1_700_000_000_000 + day * DAY_MS
            db.create_tenant(f"t{day}", None)
            assert ship.ship_if_changed()
    finally:
        ship.close()
        db.close()
    # Copies of days 0..25; the window of the last (day 25) starts at day 15: day 15's
    # copy is its base, days 0..10 go.
    assert len(file_store.list("catalog/")) == 3
    (tmp_path / "r").mkdir()
    restore_catalog(file_store, tmp_path / "r", 1_700_000_000_000 + 16 * DAY_MS)
    assert tenants_in(tmp_path / "r") == ["t0", "t10", "t15", "t5"]


def test_no_catalog_is_not_found(tmp_path: Path, file_store: FileReplicaStore) -> None:
    with pytest.raises(DohostError) as info:
        restore_catalog(file_store, tmp_path, None)
    assert info.value.code is Code.NOT_FOUND

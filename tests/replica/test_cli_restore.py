"""`dohost restore` as a user runs it: a real process restoring from a replica that a
Replicator filled, and each bad input refused in one line with a stable code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from seaweedfs_server import SeaweedFS

from dohost.replica.replicator import Replicator
from dohost.replica.store import ReplicaStore
from dohost.storage.api import ListOptions
from dohost.storage.manager import StorageManager

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from test_cli_errors import dohost


def fill(store: ReplicaStore, data: Path) -> None:
    rep = Replicator(store, partitions=64, epoch_of=lambda p: 1)
    manager = StorageManager(data, "os", on_kv_commit=rep.committed)
    try:
        for n in range(20):
            obj = manager.open_object("acme", "counter", bytes([n + 1]) * 32, f"c{n}")
            obj.begin_event()
            obj.put(b"count", str(n).encode())
            if n == 3:
                obj.set_alarm(1_900_000_000_000)
            assert obj.commit_event().wait(10) is None
            obj.close()
        assert rep.flush(60)
    finally:
        manager.close()
        rep.close()


def counts(data: Path) -> dict[str, bytes]:
    manager = StorageManager(data, "os")
    try:
        out = {}
        for row in manager.list_objects("acme", "counter", limit=100).objects:
            obj = manager.open_object("acme", "counter", row.object_id)
            out[row.name or ""] = dict(obj.list(ListOptions()).entries)[b"count"]
            obj.close()
        return out
    finally:
        manager.close()


def test_restore_from_a_directory(tmp_path: Path, file_store: ReplicaStore) -> None:
    fill(file_store, tmp_path / "data")
    url = f"file://{tmp_path / 'replica'}"
    r = dohost("restore", "--replica", url, "--data", str(tmp_path / "restored"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("restored 20 objects (1 with alarms) of ")
    assert counts(tmp_path / "restored") == {f"c{n}": str(n).encode() for n in range(20)}
    r = dohost("alarms", "--data-dir", str(tmp_path / "restored"))
    assert "1 pending alarm" in r.stdout


def test_restore_from_s3_with_credentials_from_the_environment(
    tmp_path: Path, seaweedfs: SeaweedFS
) -> None:
    store = seaweedfs.store("dohost-test", "cli-restore")
    try:
        fill(store, tmp_path / "data")
    finally:
        store.close()
    env = {
        "AWS_ENDPOINT_URL": seaweedfs.endpoint,
        "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
    }
    r = dohost(
        "restore",
        "--replica",
        "s3://dohost-test/cli-restore",
        "--data",
        str(tmp_path / "r"),
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert counts(tmp_path / "r") == {f"c{n}": str(n).encode() for n in range(20)}


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--replica", "ftp://x/y"], "invalid_argument", "not a replica URL"),
        (["--replica", "s3://bucket-a/p"], "invalid_argument", "AWS_ACCESS_KEY_ID"),
        (["--at", "yesterday"], "invalid_argument", "ISO 8601"),
        (["--at", "2026-12-07T23:00:00"], "invalid_argument", "with its zone"),
        (["--at", "4102444800000"], "invalid_argument", "in the future"),
        ([], "not_found", "no dohost replica"),
    ],
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, args: list[str], code: str, words: str
) -> None:
    base = ["--replica", f"file://{tmp_path / 'empty-replica'}", "--data", str(tmp_path / "new")]
    r = dohost("restore", *base, *args)
    assert r.returncode != 0
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith(f"error: {code}: "), r.stderr
    assert words in line
    assert not (tmp_path / "new").exists()


def test_restore_into_a_non_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "system.db").write_bytes(b"")
    r = dohost(
        "restore", "--replica", f"file://{tmp_path}/replica", "--data", str(tmp_path / "busy")
    )
    assert r.returncode != 0 and r.stderr.startswith("error: already_exists: ")

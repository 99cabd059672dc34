"""The output gate of a synchronous replica (`sync=True`, `serve --replica-sync on`): an
event is acknowledged only once its changes are in the replica store and the claim they
were written under still stands; a store that fails makes events fail with
`replica_unavailable` (nothing acknowledged), and service resumes when it is back."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from seaweedfs_server import SeaweedFS
from test_host_replica import ServerProcess

from dohost.core.errors import Code, DohostError
from dohost.replica.file_store import FileReplicaStore
from dohost.replica.replicator import Replicator
from dohost.replica.restore import restore_kv
from dohost.replica.store import ReplicaStore
from dohost.storage.api import ListOptions
from dohost.storage.manager import StorageManager

PARTITIONS = 16
NOW = 10**13 - 1


class Gated:
    """A StorageManager whose kv tickets the replicator resolves (the sync mode)."""

    def __init__(self, data: Path, store: ReplicaStore, **kw: Any) -> None:
        self.registry = CollectorRegistry()
        self.claim_ok = True
        self.replicator = Replicator(
            store,
            partitions=PARTITIONS,
            epoch_of=lambda p: 1,
            registry=self.registry,
            sync=True,
            claim_holds=lambda p, e: self.claim_ok,
            **kw,
        )
        self.manager = StorageManager(
            data, "os", on_kv_commit=self.replicator.committed, kv_commit_gate=True
        )

    def event(self, n: int, edit: Callable[[Any], None]) -> DohostError | None:
        """One event on object n; the error its ticket resolved with (None: acked)."""
        obj = self.manager.open_object("acme", "counter", n.to_bytes(4, "big") * 8, f"o{n}")
        try:
            obj.begin_event()
            edit(obj)
            return obj.commit_event().wait(30)
        finally:
            obj.close()

    def metric(self, name: str) -> float:
        return self.registry.get_sample_value(name) or 0.0

    def close(self) -> None:
        self.manager.close()
        self.replicator.close()


def restored_rows(store: ReplicaStore, target: Path) -> dict[bytes, dict[bytes, bytes]]:
    restore_kv(store, target, now_ms=NOW)
    manager = StorageManager(target, "os")
    try:
        out = {}
        for row in manager.list_objects("acme", "counter", limit=100).objects:
            obj = manager.open_object("acme", "counter", row.object_id)
            out[row.object_id[:4]] = dict(obj.list(ListOptions()).entries)
            obj.close()
        return out
    finally:
        manager.close()


@pytest.fixture
def gated_file(tmp_path: Path) -> Iterator[tuple[Gated, FileReplicaStore]]:
    store = FileReplicaStore(str(tmp_path / "replica"))
    # Retries every 10 ms (not 0.1 s doubling), so that service resumes as soon as the
    # store is back.
    g = Gated(tmp_path / "data", store, gate_timeout_s=2, sleep=lambda s: time.sleep(0.01))
    yield g, store
    g.close()


def test_an_acknowledged_event_is_in_the_store_at_once(tmp_path: Path, store: ReplicaStore) -> None:
    g = Gated(tmp_path / "data", store)
    try:
        for i in range(5):
            assert g.event(i % 2, lambda o, i=i: o.put(b"n", str(i).encode())) is None
            # No flush: what was acknowledged must already be in the store.
            rows = restored_rows(store, tmp_path / f"r{i}")
            assert rows[(i % 2).to_bytes(4, "big")] == {b"n": str(i).encode()}
    finally:
        g.close()


def break_store(root: Path) -> Path:
    """Make the file store fail every write: its directory moves away, a file takes its
    place."""
    aside = root.with_name(root.name + ".aside")
    root.rename(aside)
    root.write_bytes(b"not a directory")
    return aside


def mend_store(root: Path, aside: Path) -> None:
    root.unlink()
    aside.rename(root)


def test_a_failing_store_fails_events_cleanly_then_service_resumes(
    gated_file: tuple[Gated, FileReplicaStore], tmp_path: Path
) -> None:
    g, store = gated_file
    root = Path(store.root)
    assert g.event(1, lambda o: o.put(b"k", b"acked-1")) is None
    aside = break_store(root)
    err = g.event(1, lambda o: o.put(b"k", b"unacked-2"))
    assert err is not None and err.code is Code.REPLICA_UNAVAILABLE
    assert "did not reach the replica store" in err.message
    err = g.event(2, lambda o: o.put(b"k", b"unacked-3"))
    assert err is not None and err.code is Code.REPLICA_UNAVAILABLE
    assert g.metric("dohost_replica_gate_timeouts_total") == 2
    assert g.metric("dohost_replica_upload_failures_total") >= 1
    mend_store(root, aside)
    # Back: the changes that failed ship first (in order), then the next event.
    assert g.replicator.flush(30)
    assert g.event(1, lambda o: o.put(b"k2", b"acked-4")) is None
    rows = restored_rows(store, tmp_path / "restored")
    # Nothing acknowledged is missing; the unacknowledged changes (committed locally)
    # are there too, in order, so the replica never skips what the local copy holds.
    assert rows[(1).to_bytes(4, "big")] == {b"k": b"unacked-2", b"k2": b"acked-4"}
    assert rows[(2).to_bytes(4, "big")] == {b"k": b"unacked-3"}


def test_a_lost_claim_acknowledges_nothing(gated_file: tuple[Gated, FileReplicaStore]) -> None:
    g, _ = gated_file
    assert g.event(1, lambda o: o.put(b"k", b"v")) is None
    g.claim_ok = False
    err = g.event(1, lambda o: o.put(b"k", b"w"))
    assert err is not None and err.code is Code.FENCED
    assert "claim of epoch 1 was lost" in err.message


def test_closing_resolves_what_waits(tmp_path: Path) -> None:
    store = FileReplicaStore(str(tmp_path / "replica"))
    g = Gated(tmp_path / "data", store, gate_timeout_s=60)
    root = Path(store.root)
    assert g.event(1, lambda o: o.put(b"k", b"v")) is None
    break_store(root)
    obj = g.manager.open_object("acme", "counter", (1).to_bytes(4, "big") * 8, "o1")
    obj.begin_event()
    obj.put(b"k", b"w")
    ticket = obj.commit_event()
    obj.close()
    g.manager.close()
    assert g.replicator.close(timeout=0.5) == 1
    assert ticket.done and ticket.error is not None
    assert ticket.error.code is Code.SHUTTING_DOWN


def test_serve_sync_over_seaweedfs_stopped_then_resumed(
    tmp_path: Path, seaweedfs: SeaweedFS, wasm: Any
) -> None:
    """A real server with `--replica s3://… --replica-sync on`: while SeaweedFS is
    stopped (SIGSTOP) increments fail with 503 replica_unavailable; after SIGCONT they
    succeed again, and a restore holds every acknowledged increment."""
    prefix = f"gate-{os.getpid()}-{tmp_path.name}"
    server = ServerProcess(
        tmp_path / "data",
        "--replica", f"s3://dohost-test/{prefix}",
        "--replica-endpoint", seaweedfs.endpoint,
        "--replica-access-key", seaweedfs.access_key,
        "--replica-secret-key", seaweedfs.secret_key,
        "--replica-timeout", "1",
        processes=1,
    )  # fmt: skip
    acked = 0
    try:
        token = server.new_tenant()
        with server.client(token) as c:
            assert c.put("/v1/classes/counter", content=wasm("counter")).status_code == 201
            for _ in range(3):
                r = c.post("/v1/classes/counter/objects/a/incr")
                assert r.status_code == 200
                acked = int(r.text)
            os.kill(seaweedfs.process.pid, signal.SIGSTOP)
            try:
                r = c.post("/v1/classes/counter/objects/a/incr", timeout=30)
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "replica_unavailable"
            finally:
                os.kill(seaweedfs.process.pid, signal.SIGCONT)
            for _ in range(3):
                r = c.post("/v1/classes/counter/objects/a/incr", timeout=60)
                assert r.status_code == 200, r.text
                acked = int(r.text)
    finally:
        assert server.stop() == 0
    assert acked == 7  # the failed increment was committed locally, then shipped
    shutil.rmtree(tmp_path / "data")
    store = seaweedfs.store("dohost-test", prefix)
    try:
        report = restore_kv(store, tmp_path / "restored", now_ms=NOW)
    finally:
        store.close()
    assert report.objects == 1 and report.ignored == []
    manager = StorageManager(tmp_path / "restored", "os")
    try:
        (tenant,) = os.listdir(tmp_path / "restored" / "tenants")
        (row,) = manager.list_objects(tenant, "counter").objects
        obj = manager.open_object(tenant, "counter", row.object_id)
        assert row.name == "a" and obj.get(b"count") == b"7"
        obj.close()
    finally:
        manager.close()


def test_serve_sync_off_acknowledges_at_once(tmp_path: Path, wasm: Any) -> None:
    root = tmp_path / "replica"
    root.mkdir()
    server = ServerProcess(
        tmp_path / "data", "--replica", f"file://{root}", "--replica-sync", "off", processes=1
    )
    try:
        token = server.new_tenant()
        with server.client(token) as c:
            assert c.put("/v1/classes/counter", content=wasm("counter")).status_code == 201
            aside = break_store(root)
            try:
                r = c.post("/v1/classes/counter/objects/a/incr")
                assert (r.status_code, r.text) == (200, "1")
            finally:
                mend_store(root, aside)
        server.wait_for_metric(r"^dohost_replica_segments_uploaded_total [1-9]")
    finally:
        assert server.stop() == 0


def test_serve_refuses_a_bad_replica_sync_value(tmp_path: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "dohost.cli", "serve", "--data", str(tmp_path / "d"), "--port", "0",
         "--replica", f"file://{tmp_path}/r", "--replica-sync", "maybe"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "--replica-sync" in r.stderr

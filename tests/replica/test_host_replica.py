"""A real Host shipping to a replica store (`Host(replica=...)`, `dohost serve
--replica`): the data directory is lost, `restore_kv` rebuilds it (tenants, classes and
modules included), and every acknowledged increment and pending alarm is back."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import trio

from dohost import Host, Request
from dohost.core.partitions import static_owner
from dohost.core.replica_keys import parse_log_key
from dohost.replica.file_store import FileReplicaStore
from dohost.replica.restore import restore_kv
from dohost.replica.store import ReplicaStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from api_helpers import ServerProcess


async def fetch(
    host: Host, cls: str, obj: str, method: str = "GET", path: str = "/", body: bytes = b""
) -> tuple[int, str]:
    r = await host.fetch("acme", cls, obj, Request(method, path, "", [], body))
    return r.status, r.text


async def test_data_directory_lost_then_restored(
    tmp_path: Path, store: ReplicaStore, wasm: Any
) -> None:
    data = tmp_path / "data"
    acked: dict[str, int] = {}
    async with Host(data, durability="os", workers=2, replica=store) as host:
        await host.deploy("acme", "counter", wasm("counter"))
        await host.deploy("acme", "reminder", wasm("reminder"))

        async def incr(obj: str) -> None:
            status, text = await fetch(host, "counter", obj, "POST", "/incr")
            assert status == 200
            acked[obj] = max(acked.get(obj, 0), int(text))

        async with trio.open_nursery() as n:
            for i in range(120):
                n.start_soon(incr, f"c{i % 12}")
        for i in range(3):
            body = json.dumps({"delay_ms": 86_400_000, "message": f"m{i}"}).encode()
            assert (await fetch(host, "reminder", "r", "POST", "/remind", body))[0] == 201
        assert host.replicator is not None and host.replicator.flush(60)
        assert host.replicator.metrics.registry.get_sample_value(
            "dohost_replica_segments_uploaded_total"
        )
    shutil.rmtree(data)  # the disaster: nothing of the data directory is kept

    restored = tmp_path / "restored"
    report = restore_kv(store, restored, now_ms=10**13 - 1)
    assert report.objects == 13 and report.alarms == 1 and report.ignored == []
    assert report.catalog and report.modules == 2
    async with Host(restored, durability="os", workers=2) as host:
        for obj, count in acked.items():
            assert await fetch(host, "counter", obj) == (200, str(count))
        status, text = await fetch(host, "reminder", "r")
        assert status == 200 and json.loads(text)["pending"] == 3
        assert [e.class_name for e in host.alarm_index.entries("acme")] == ["reminder"]


async def test_each_run_of_the_host_is_a_new_epoch(
    tmp_path: Path, file_store: FileReplicaStore, wasm: Any
) -> None:
    data = tmp_path / "data"
    for run in (1, 2):
        async with Host(
            data, durability="os", workers=2, replica=FileReplicaStore(file_store.root)
        ) as host:
            if run == 1:
                await host.deploy("acme", "counter", wasm("counter"))
            assert (await fetch(host, "counter", "a", "POST", "/incr"))[1] == str(run)
    starts = [k for k in file_store.list("") if k.endswith("/start")]
    epochs = [int(k.split("/")[1][1:]) for k in starts]
    assert len(epochs) == 2 and epochs[0] < epochs[1]  # each run claims anew
    restore_kv(file_store, tmp_path / "restored", now_ms=10**13 - 1)


def test_serve_ships_and_shows_the_replica_metrics(tmp_path: Path, wasm: Any) -> None:
    replica = tmp_path / "replica"
    server = ServerProcess(tmp_path / "data", "--replica", f"file://{replica}", processes=1)
    try:
        token = server.new_tenant()
        with server.client(token) as c:
            assert c.put("/v1/classes/counter", content=wasm("counter")).status_code == 201
            assert c.post("/v1/classes/counter/objects/a/incr").text == "1"
        server.wait_for_metric(r"^dohost_replica_segments_uploaded_total [1-9]")
        with server.admin() as c:
            text = c.get("/metrics").text
        assert (
            "dohost_replica_lag_seconds" in text
            and "dohost_replica_upload_failures_total 0.0" in text
        )
    finally:
        assert server.stop() == 0
    assert any(k.endswith("/start") for k in FileReplicaStore(str(replica)).list(""))


def test_serve_with_two_processes_ships_each_nodes_partitions(tmp_path: Path, wasm: Any) -> None:
    """`serve --processes 2 --replica`: each node ships the partitions it owns under its
    claims' epochs (and the owner of partition 0 the catalog); a restore of the replica
    alone holds every increment of both nodes' objects and serves them."""
    replica = tmp_path / "replica"
    server = ServerProcess(tmp_path / "data", "--replica", f"file://{replica}", processes=2)
    objects = [f"o{i}" for i in range(12)]
    try:
        token = server.new_tenant()
        with server.client(token) as c:
            assert c.put("/v1/classes/counter", content=wasm("counter")).status_code == 201
            for round_ in (1, 2):
                for obj in objects:
                    r = c.post(f"/v1/classes/counter/objects/{obj}/incr")
                    assert (r.status_code, r.text) == (200, str(round_))
    finally:
        assert server.stop() == 0
    store = FileReplicaStore(str(replica))
    shipped = {k.partition for k in map(parse_log_key, store.list("")) if k and k.kind == "segment"}
    # Both nodes shipped (node i owns the partitions p with p % 2 == i).
    assert {static_owner(p, 2) for p in shipped} == {0, 1}, shipped
    assert len([k for k in store.list("catalog/")]) >= 1
    restored = tmp_path / "restored"
    report = restore_kv(store, restored, now_ms=10**13 - 1)
    assert report.objects == len(objects) and report.catalog and report.ignored == []
    server = ServerProcess(restored, processes=1)
    try:
        with server.client(token) as c:
            for obj in objects:
                assert c.get(f"/v1/classes/counter/objects/{obj}/").text == "2"
    finally:
        assert server.stop() == 0

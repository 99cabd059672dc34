"""Disaster tests (issue 18): `dohost serve --replica s3://… --replica-sync on` over
SeaweedFS under a concurrent increment load is SIGKILLed, its data directory deleted,
`dohost restore` rebuilds a new one from the replica alone, and a server on it must show
(a history check over every object):
- every acknowledged increment: n >= the highest n acknowledged;
- nothing that was never attempted: n <= the increments attempted on the object (an
  increment that failed or was cut by the kill may or may not be there);
- whole events only: the checksum_counter guest's /verify recomputes its checksum over
  n, its log ring, `armed` and `fired`;
- every pending alarm: an object whose increments armed an alarm (a day ahead) has it
  in the restored alarm index.
The second run stops SeaweedFS (SIGSTOP) in the middle of the load: increments then fail
with 503 replica_unavailable (none acknowledged), and succeed again once it runs on.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from seaweedfs_server import SeaweedFS
from test_host_replica import ServerProcess

from dohost.replica.catalog import restore_catalog
from dohost.replica.restore import restore_kv
from dohost.storage.alarm_index import AlarmIndex
from dohost.storage.system_db import SystemDb

OBJECTS = 24
TASKS = 8
ALARM_EVERY = 5
DAY_MS = 86_400_000
INCR = f"/incr?alarm_every={ALARM_EVERY}&alarm_in={DAY_MS}"
BUCKET = "dohost-test"


@dataclass
class History:
    """What the clients saw, per object."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    cv: threading.Condition = field(init=False)
    attempted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    acked: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # highest n
    acks: int = 0
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # code -> count
    other: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cv = threading.Condition(self.lock)


def load(server: ServerProcess, token: str, h: History, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    with server.client(token) as c:
        while not stop.is_set():
            obj = f"o{rng.randrange(OBJECTS)}"
            with h.lock:
                h.attempted[obj] += 1
            try:
                r = c.post(f"/v1/classes/cc/objects/{obj}{INCR}", timeout=30)
            except httpx.HTTPError:
                continue  # cut by the kill: not acknowledged
            with h.cv:
                if r.status_code == 200:
                    h.acked[obj] = max(h.acked[obj], int(r.text))
                    h.acks += 1
                    h.cv.notify_all()
                elif r.status_code == 503:
                    h.refused[r.json()["error"]["code"]] += 1
                    h.cv.notify_all()
                else:
                    h.other.append(f"{r.status_code} {r.text[:200]}")


def wait_until(h: History, done: Any, timeout: float = 120.0) -> None:
    with h.cv:
        assert h.cv.wait_for(lambda: done(h), timeout), (h.acks, dict(h.refused), h.other)


def wait_for_catalog_with_class(seaweedfs: SeaweedFS, prefix: str, timeout: float = 60) -> None:
    """The catalog is shipped asynchronously (within about half a second of a deploy):
    wait, by reading the store, until a copy holds the class."""
    store = seaweedfs.store(BUCKET, prefix)
    stop = threading.Event()
    try:
        for _ in range(int(timeout / 0.2)):
            with tempfile.TemporaryDirectory() as d:
                try:
                    restore_catalog(store, Path(d), None)
                    db = SystemDb(Path(d))
                    try:
                        if db.classes():
                            return
                    finally:
                        db.close()
                except Exception:
                    pass
            stop.wait(0.2)  # polling the store, bounded above
        raise AssertionError("no catalog with the class reached the store")
    finally:
        store.close()


def run_disaster(tmp_path: Path, seaweedfs: SeaweedFS, wasm: Any, stop_store: bool) -> History:
    prefix = f"disaster-{os.getpid()}-{tmp_path.name}"
    server = ServerProcess(
        tmp_path / "data",
        "--durability", "fsync",
        "--replica", f"s3://{BUCKET}/{prefix}",
        "--replica-endpoint", seaweedfs.endpoint,
        "--replica-access-key", seaweedfs.access_key,
        "--replica-secret-key", seaweedfs.secret_key,
        "--replica-timeout", "2",
        processes=1,
    )  # fmt: skip
    h = History()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        token = server.new_tenant()
        with server.client(token) as c:
            assert c.put("/v1/classes/cc", content=wasm("checksum_counter")).status_code == 201
        wait_for_catalog_with_class(seaweedfs, prefix)
        threads = [
            threading.Thread(target=load, args=(server, token, h, stop, i)) for i in range(TASKS)
        ]
        for t in threads:
            t.start()
        wait_until(h, lambda h: h.acks >= 150)
        if stop_store:
            os.kill(seaweedfs.process.pid, signal.SIGSTOP)
            try:
                wait_until(h, lambda h: h.refused["replica_unavailable"] >= 3)
                stuck_at = h.acks
            finally:
                os.kill(seaweedfs.process.pid, signal.SIGCONT)
            wait_until(h, lambda h: h.acks >= stuck_at + 100)
        else:
            wait_until(h, lambda h: h.acks >= 300)
    finally:
        server.stop(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(60)
    assert h.other == []
    shutil.rmtree(tmp_path / "data")  # the disaster

    store = seaweedfs.store(BUCKET, prefix)
    try:
        report = restore_kv(store, tmp_path / "restored", now_ms=10**13 - 1)
    finally:
        store.close()
    assert report.catalog and report.modules == 1 and report.ignored == []
    index = AlarmIndex(tmp_path / "restored" / "alarms.db")
    try:
        alarmed = {e.name for e in index.entries()}
    finally:
        index.close()
    server = ServerProcess(tmp_path / "restored", processes=1)
    try:
        with server.client(token) as c:
            for obj, attempts in sorted(h.attempted.items()):
                r = c.get(f"/v1/classes/cc/objects/{obj}/verify")
                assert r.status_code == 200, (obj, r.text)  # whole events only
                n, armed, _fired = map(int, r.text.split())
                assert h.acked[obj] <= n <= attempts, (obj, h.acked[obj], n, attempts)
                if h.acked[obj] >= ALARM_EVERY:
                    assert armed >= ALARM_EVERY and obj in alarmed, obj
    finally:
        assert server.stop() == 0
    return h


def test_killed_under_load_then_restored_from_the_replica_alone(
    tmp_path: Path, seaweedfs: SeaweedFS, wasm: Any
) -> None:
    h = run_disaster(tmp_path, seaweedfs, wasm, stop_store=False)
    assert h.acks >= 300


def test_the_store_stopped_mid_load_refuses_then_resumes(
    tmp_path: Path, seaweedfs: SeaweedFS, wasm: Any
) -> None:
    h = run_disaster(tmp_path, seaweedfs, wasm, stop_store=True)
    assert h.refused["replica_unavailable"] >= 3

"""`dohost serve` as a process: first start, graceful SIGTERM/SIGINT with an event in
flight, restart with the data kept, removal of deleted tenants' data, /metrics."""

from __future__ import annotations

import signal
import stat
import struct
import threading
import time
from pathlib import Path

import httpx
import wasmtime
from api_helpers import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
COUNTER = (ROOT / "samples" / "counter" / "counter.wasm").read_bytes
SLOW = bytes(wasmtime.wat2wasm((ROOT / "tests" / "fixtures" / "versioned_wait.wat").read_text()))


def test_first_start_creates_a_private_admin_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    s = ServerProcess(data, admin_token=None)
    try:
        path = data / "admin.token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = path.read_text().strip()
        assert len(token) >= 40
        with s.client(token) as c:
            assert c.get("/v1/tenants").json() == {"tenants": []}
        assert str(path) in s.stderr()  # says where the token is, never the token
        assert token not in s.stderr()
    finally:
        assert s.stop() == 0
    # The second start reuses it.
    s = ServerProcess(data, admin_token=None)
    try:
        assert s.admin_token == token
        with s.admin() as c:
            assert c.get("/v1/tenants").status_code == 200
    finally:
        assert s.stop() == 0


def graceful_stop_with_event_in_flight(tmp_path: Path, sig: int) -> None:
    data = tmp_path / "data"
    s = ServerProcess(data)
    stopped = False
    try:
        t = s.new_tenant()
        with s.client(t) as c:
            assert c.put("/v1/classes/slow", content=SLOW).status_code == 201
            assert c.put("/v1/classes/counter", content=COUNTER()).status_code == 201
            assert c.post("/v1/classes/counter/objects/a/incr").text == "1"
        results: list[httpx.Response] = []

        def slow_call() -> None:
            body = b"wait" + struct.pack("<q", int((time.time() + 1.0) * 1000))
            with s.client(t) as c2:
                results.append(c2.post("/v1/classes/slow/objects/o/", content=body))

        th = threading.Thread(target=slow_call)
        th.start()
        s.wait_for_metric(rf'^dohost_events_running\{{class="slow",tenant="{s.names[t]}"\}} 1\.0$')
        rc = s.stop(sig)
        stopped = True
        th.join(60)
        assert rc == 0, s.stderr()
        # The event in flight finished and was answered before the process exited.
        assert results and results[0].status_code == 200 and results[0].text == "v11"
    finally:
        if not stopped:
            s.stop()
    # Everything acknowledged is there after a restart, tokens included.
    s = ServerProcess(data)
    try:
        with s.client(t) as c:
            assert c.get("/v1/classes/slow/objects/o/storage").json()["entries"] == [
                {"key": "bg==", "value": "MQ=="}
            ]
            assert c.post("/v1/classes/counter/objects/a/incr").text == "2"
    finally:
        assert s.stop() == 0


def test_sigterm_finishes_the_event_in_flight_then_exits_0(tmp_path: Path) -> None:
    graceful_stop_with_event_in_flight(tmp_path, signal.SIGTERM)


def test_sigint_is_graceful_too(tmp_path: Path) -> None:
    graceful_stop_with_event_in_flight(tmp_path, signal.SIGINT)


def test_deleted_tenant_data_is_gone_and_its_directory_removed_at_restart(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    s = ServerProcess(data)
    try:
        for storage in ("kv", "sqlite"):
            t = s.new_tenant("gone")
            with s.client(t) as c:
                r = c.put(f"/v1/classes/counter?storage={storage}", content=COUNTER())
                assert r.status_code == 201
                assert c.post("/v1/classes/counter/objects/a/incr").text == "1"
            name = s.names[t]
            assert (data / "tenants" / name).is_dir()
            with s.admin() as admin:
                assert admin.delete(f"/v1/tenants/{name}").status_code == 200
            if storage == "sqlite":  # one file per object: gone at once
                assert not list((data / "tenants" / name).rglob("*.db"))
        kept = s.new_tenant("kept")
        kept_name = s.names[kept]
        with s.client(kept) as c:
            assert c.put("/v1/classes/counter", content=COUNTER()).status_code == 201
            assert c.post("/v1/classes/counter/objects/a/incr").text == "1"
    finally:
        assert s.stop() == 0
    s = ServerProcess(data)
    try:
        assert sorted(p.name for p in (data / "tenants").iterdir()) == [kept_name]
        with s.client(kept) as c:
            assert c.get("/v1/classes/counter/objects/a/").text == "1"
    finally:
        assert s.stop() == 0


def test_metrics_are_labelled_by_tenant_and_class(tmp_path: Path) -> None:
    s = ServerProcess(tmp_path / "data")
    try:
        t = s.new_tenant()
        name = s.names[t]
        with s.client(t) as c:
            assert c.put("/v1/classes/counter", content=COUNTER()).status_code == 201
            for _ in range(3):
                assert c.post("/v1/classes/counter/objects/a/incr").status_code == 200
            assert c.get("/v1/classes/counter/objects/a/nope").status_code == 404
            assert c.get("/v1/classes/counter/ids/" + "0" * 64 + "/").status_code == 404
        with s.admin() as admin:
            r = admin.get("/metrics")
        assert r.headers["content-type"].startswith("text/plain")
        text = r.text
        labels = f'class="counter",tenant="{name}"'
        for line in (
            f'dohost_http_requests_total{{class="counter",status="200",tenant="{name}"}} 3.0',
            f'dohost_http_requests_total{{class="counter",status="404",tenant="{name}"}} 2.0',
            f'dohost_errors_total{{class="counter",code="invalid_id",tenant="{name}"}} 1.0',
            f"dohost_events_total{{{labels}}} 4.0",
            f"dohost_event_duration_seconds_count{{{labels}}} 4.0",
            f"dohost_activations_total{{{labels}}} 1.0",
            f"dohost_storage_writes_total{{{labels}}} 3.0",
            f"dohost_storage_reads_total{{{labels}}} 3.0",  # /nope reads nothing
            f"dohost_resident_objects{{{labels}}} 1.0",
            f"dohost_storage_bytes{{{labels}}} 6.0",  # "count" + "3"
            f"dohost_stored_objects{{{labels}}} 1.0",
            f"dohost_storage_written_bytes_total{{{labels}}} 18.0",
        ):
            assert line in text.splitlines(), line
        for name_ in ("dohost_event_cpu_seconds_total", "dohost_storage_read_bytes_total"):
            assert f"{name_}{{{labels}}}" in text
        for family in ("dohost_evictions", "dohost_alarm_runs", "dohost_alarm_retries"):
            assert f"# TYPE {family}_total counter" in text or f"# TYPE {family} counter" in text
        assert "_created" not in text
    finally:
        assert s.stop() == 0


def test_alarm_runs_and_failed_runs_are_counted(tmp_path: Path) -> None:
    kvtest = (ROOT / "tests" / "fixtures" / "build" / "kvtest.wasm").read_bytes()
    s = ServerProcess(tmp_path / "data")
    try:
        t = s.new_tenant()
        labels = f'class="kv",tenant="{s.names[t]}"'
        with s.client(t) as c:
            assert c.put("/v1/classes/kv", content=kvtest).status_code == 201
            assert c.post("/v1/classes/kv/objects/ok/alarm_in?ms=0").text == "0"
            s.wait_for_metric(rf"^dohost_alarm_runs_total\{{{labels}\}} 1\.0$")
            # This object's handler fails on its first run: a retry is scheduled.
            assert (
                c.post("/v1/classes/kv/objects/bad/put?key=__alarm_fail", content=b"1").text == "0"
            )
            assert c.post("/v1/classes/kv/objects/bad/alarm_in?ms=0").text == "0"
            s.wait_for_metric(rf"^dohost_alarm_retries_total\{{{labels}\}} 1\.0$")
            s.wait_for_metric(rf"^dohost_alarm_runs_total\{{{labels}\}} 2\.0$")
    finally:
        assert s.stop() == 0


SPIN = bytes(
    wasmtime.wat2wasm(
        """(module (memory (export "memory") 1) (func (export "dohost_abi_v1"))
          (func (export "dohost_fetch") (param i32) (result i32) (loop $l (br $l)) (i32.const 0)))"""
    )
)


def test_first_signal_says_what_it_waits_for_and_a_second_stops_at_once(tmp_path: Path) -> None:
    """An event that would run for its whole 30 s CPU budget: the first SIGINT names it
    and waits; the second ends it now (it traps) and the server exits 0 well before."""
    s = ServerProcess(tmp_path / "data")
    stopped = False
    try:
        t = s.new_tenant()
        with s.client(t) as c:
            assert c.put("/v1/classes/spin", content=SPIN).status_code == 201
        results: list[httpx.Response | Exception] = []

        def spin() -> None:
            try:
                with s.client(t) as c2:
                    results.append(c2.post("/v1/classes/spin/objects/o/"))
            except httpx.HTTPError as e:
                results.append(e)

        th = threading.Thread(target=spin)
        th.start()
        s.wait_for_metric(rf'^dohost_events_running\{{class="spin",tenant="{s.names[t]}"\}} 1\.0$')
        started = time.monotonic()
        s.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        while "shutting down" not in s.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "shutting down: waiting for 1 event in flight (at most 30 s)" in s.stderr()
        assert "again (Ctrl-C) to stop now" in s.stderr()
        assert s.stderr().count("shutting down") == 1  # (the parent speaks for N nodes)
        assert s.proc.poll() is None  # still waiting for the event
        rc = s.stop(signal.SIGINT)
        stopped = True
        elapsed = time.monotonic() - started
        th.join(60)
        assert rc == 0, s.stderr()
        assert elapsed < 20, elapsed  # not the event's 30 s CPU budget
        assert "stopping now" in s.stderr() and "dohost stopped" in s.stderr()
        assert "Traceback" not in s.stderr()
        # The client got an error answer or a closed connection, never a hang.
        assert results
        if isinstance(results[0], httpx.Response):
            assert results[0].status_code >= 500
    finally:
        if not stopped:
            s.stop()

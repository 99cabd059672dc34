"""Watching and inspecting a tenant's objects through a real `dohost serve`:
`GET /v1/tail` (and `dohost tail`), `GET /v1/alarms` (and `dohost alarms`, which shows
only alarms still pending), read-only SQL (`dohost sql`) and `dohost storage` showing a
SQL class's tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
KVTEST = (ROOT / "tests" / "fixtures" / "build" / "kvtest.wasm").read_bytes
BOOKING = (ROOT / "samples" / "booking" / "booking.wasm").read_bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path_factory.mktemp("inspect") / "data")
    yield s
    s.stop()


def dohost(*args: str, token: str, server: ServerProcess) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOHOST_")}
    env.update(DOHOST_URL=server.url, DOHOST_TOKEN=token)
    return subprocess.run(
        [sys.executable, "-m", "dohost.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


class Tail:
    """A `GET /v1/tail` stream read on a thread; records are parsed JSON lines."""

    def __init__(self, server: ServerProcess, token: str, query: str = "") -> None:
        self.records: list[dict[str, object]] = []
        self.cond = threading.Condition()
        self.client = server.client(token)
        self.started = threading.Event()
        self.status = 0
        self.thread = threading.Thread(target=self._read, args=(query,), daemon=True)
        self.thread.start()
        assert self.started.wait(30)

    def _read(self, query: str) -> None:
        try:
            with self.client.stream("GET", "/v1/tail" + query) as r:
                self.status = r.status_code
                self.started.set()
                for line in r.iter_lines():
                    if line.strip():
                        with self.cond:
                            self.records.append(json.loads(line))
                            self.cond.notify_all()
        except httpx.HTTPError:
            self.started.set()

    def wait(self, n: int, timeout: float = 30.0) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.records) < n:
                left = deadline - time.monotonic()
                assert left > 0, self.records
                self.cond.wait(left)
            return list(self.records)

    def close(self) -> None:
        self.client.close()


def test_tail_streams_events_and_log_lines_of_the_tenant_only(server: ServerProcess) -> None:
    t, other = server.new_tenant(), server.new_tenant()
    for tok in (t, other):
        with server.client(tok) as c:
            assert c.put("/v1/classes/kv", content=KVTEST()).status_code == 201
    everything = Tail(server, t)
    errors_only = Tail(server, t, "?class=kv&status=error")
    one_object = Tail(server, t, "?object=room-2&logs=0")
    try:
        assert everything.status == 200
        with server.client(other) as c:  # another tenant's event: never seen
            assert c.post("/v1/classes/kv/objects/room-1/log", content=b"secret").status_code == 200
        with server.client(t) as c:
            assert c.post("/v1/classes/kv/objects/room-1/log", content=b"hello").status_code == 200
            assert c.get("/v1/classes/kv/objects/room-2/nope").status_code == 404
        log, request, missing = everything.wait(3)
        assert log == {
            "kind": "log",
            "tenant": server.names[t],
            "class": "kv",
            "object": "room-1",
            "at_ms": log["at_ms"],
            "level": "info",
            "message": "hello",
        }
        assert request["kind"] == "request" and request["object"] == "room-1"
        assert (request["method"], request["path"], request["status"]) == ("POST", "/log", 200)
        assert float(request["duration_ms"]) > 0  # type: ignore[arg-type]
        assert missing["status"] == 404 and missing["object"] == "room-2"
        assert [r["path"] for r in errors_only.wait(1)] == ["/nope"]
        assert [r["path"] for r in one_object.wait(1)] == ["/nope"]
        assert all("secret" not in json.dumps(r) for r in everything.records)
    finally:
        for tail in (everything, errors_only, one_object):
            tail.close()
    with server.client(t) as c:
        r = c.get("/v1/tail?status=maybe")
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_argument"
        assert c.get("/v1/tail?class=nothere").status_code == 404
    with server.client(None) as c:
        assert c.get("/v1/tail").status_code == 401


def test_dohost_tail_prints_lines_with_the_object_name(server: ServerProcess) -> None:
    t = server.new_tenant()
    with server.client(t) as c:
        assert c.put("/v1/classes/kv", content=KVTEST()).status_code == 201
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOHOST_")}
    env.update(DOHOST_URL=server.url, DOHOST_TOKEN=t)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dohost.cli", "tail", "kv"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert "following" in proc.stderr.readline()
        with server.client(t) as c:
            assert (
                c.post("/v1/classes/kv/objects/lobby/log", content=b"hi there").status_code == 200
            )
        assert proc.stdout.readline().rstrip().endswith("[kv/lobby] info: hi there")
        assert " POST /log kv/lobby 200 " in proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(30)


def test_alarms_lists_only_pending_ones_over_http_and_from_the_data_dir(
    server: ServerProcess,
) -> None:
    t = server.new_tenant()
    far = 4_102_444_800_000  # 2100-01-01
    with server.client(t) as c:
        assert c.put("/v1/classes/kv", content=KVTEST()).status_code == 201
        assert c.post(f"/v1/classes/kv/objects/later/alarm_set?ms={far}").text == "0"
        assert c.post("/v1/classes/kv/objects/soon/alarm_in?ms=0").text == "0"
        # Fired: the handler records its run (kvtest's /alarm_runs).
        deadline = time.monotonic() + 30
        while c.get("/v1/classes/kv/objects/soon/alarm_get").text != "none":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        listed = c.get("/v1/alarms").json()["alarms"]
    assert [(a["class"], a["name"], a["due_ms"]) for a in listed] == [("kv", "later", far)]
    r = dohost("alarms", token=t, server=server)
    assert r.returncode == 0, r.stderr
    assert "later" in r.stdout and "soon" not in r.stdout and "1 pending alarm" in r.stdout
    r = dohost("alarms", "--json", "--class", "kv", token=t, server=server)
    assert [a["name"] for a in json.loads(r.stdout)["alarms"]] == ["later"]
    # The index on disk: the fired alarm's removal was applied at once, not at the
    # alarm loop's next wake-up (an hour away).
    deadline = time.monotonic() + 30
    while True:
        r = dohost("alarms", "--data-dir", str(server.data_dir), token=t, server=server)
        names = [ln for ln in r.stdout.splitlines() if server.names[t] in ln]
        if len(names) == 1:
            break
        assert time.monotonic() < deadline, r.stdout
        time.sleep(0.1)
    assert "later" in names[0]


def test_sql_reads_a_sqlite_objects_tables_and_refuses_anything_else(
    server: ServerProcess,
) -> None:
    t = server.new_tenant()
    booking = {"table": 3, "slot": "2026-12-24T19:00", "party": 4, "name": "Ada"}
    with server.client(t) as c:
        assert c.put("/v1/classes/booking?storage=sqlite", content=BOOKING()).status_code == 201
        assert c.put("/v1/classes/kv", content=KVTEST()).status_code == 201
        assert c.post("/v1/classes/booking/objects/chez-ada/book", json=booking).status_code == 201
        r = c.post(
            "/v1/classes/booking/objects/chez-ada/storage/sql",
            json={
                "sql": "SELECT table_no, slot, party, name FROM bookings WHERE party > ?",
                "params": [2],
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["columns"] == ["table_no", "slot", "party", "name"]
        assert r.json()["rows"] == [[3, "2026-12-24T19:00", 4, "Ada"]]
        for bad, code in (
            ("DELETE FROM bookings", "sql_refused"),
            ("SELECT * FROM _dohost_kv", "sql_refused"),
            ("ATTACH 'x.db' AS x", "sql_refused"),
            ("PRAGMA journal_mode=DELETE", "sql_refused"),
            ("SELEC 1", "sql_error"),
        ):
            r = c.post("/v1/classes/booking/objects/chez-ada/storage/sql", json={"sql": bad})
            assert (r.status_code, r.json()["error"]["code"]) != (200, None), bad
            assert r.json()["error"]["code"] == code, (bad, r.text)
        r = c.post("/v1/classes/kv/objects/a/storage/sql", json={"sql": "SELECT 1"})
        assert r.json()["error"]["code"] == "not_supported" and "--storage sqlite" in r.text
        # Still one booking: nothing above wrote.
        assert (
            len(
                c.get("/v1/classes/booking/objects/chez-ada/bookings?date=2026-12-24").json()[
                    "bookings"
                ]
            )
            == 1
        )
    r = dohost(
        "sql", "booking", "chez-ada", "SELECT name, party FROM bookings", token=t, server=server
    )
    assert r.returncode == 0, r.stderr
    assert "Ada" in r.stdout and "1 row" in r.stdout
    r = dohost("sql", "booking", "chez-ada", "DROP TABLE bookings", token=t, server=server)
    assert r.returncode == 1 and r.stderr.startswith("error: sql_refused:")
    # `dohost storage` of a SQL object shows its tables (it used to show an empty table).
    r = dohost("storage", "booking", "chez-ada", token=t, server=server)
    assert r.returncode == 0, r.stderr
    assert "table bookings (1 rows)" in r.stdout and "Ada" in r.stdout
    assert "table tables (12 rows)" in r.stdout


def test_serve_access_log_prints_one_line_per_event(tmp_path: Path) -> None:
    s = ServerProcess(tmp_path / "data", "--access-log")
    try:
        t = s.new_tenant()
        with s.client(t) as c:
            assert c.put("/v1/classes/kv", content=KVTEST()).status_code == 201
            assert c.post("/v1/classes/kv/objects/desk/log", content=b"quiet").status_code == 200
        deadline = time.monotonic() + 30
        while " POST /log kv/desk 200 " not in s.stderr():
            assert time.monotonic() < deadline, s.stderr()
            time.sleep(0.05)
        assert "quiet" not in s.stderr()  # guest log lines are not access log lines
    finally:
        assert s.stop() == 0


def test_no_access_log_overrides_a_config_file_that_asks_for_it(tmp_path: Path) -> None:
    cfg = tmp_path / "dohost.toml"
    cfg.write_text("access-log = true\n")
    s = ServerProcess(tmp_path / "data", "--config", str(cfg), "--no-access-log")
    try:
        t = s.new_tenant()
        with s.client(t) as c:
            assert c.put("/v1/classes/kv", content=KVTEST()).status_code == 201
            assert c.post("/v1/classes/kv/objects/desk/log", content=b"quiet").status_code == 200
    finally:
        assert s.stop() == 0
    # Stopped, its stderr is complete: the event wrote no access line.
    assert " POST /log kv/desk " not in s.stderr()


def test_scoped_tokens_inspect_only_their_classes(server: ServerProcess) -> None:
    t = server.new_tenant()
    with server.client(t) as c:
        assert c.put("/v1/classes/booking?storage=sqlite", content=BOOKING()).status_code == 201
        assert c.put("/v1/classes/kv", content=KVTEST()).status_code == 201
        scoped = c.post("/v1/tokens", json={"classes": ["booking"], "read_only": True}).json()
        objects_only = c.post("/v1/tokens", json={"objects_only": True}).json()
    sql = {"sql": "SELECT count(*) FROM tables"}
    with server.client(scoped["token"]) as c:
        # Read-only SQL is reading: a read-only token may inspect its class.
        r = c.post("/v1/classes/booking/objects/x/storage/sql", json=sql)
        assert r.status_code == 200, r.text
        assert c.get("/v1/alarms?class=booking").status_code == 200
        assert c.get("/v1/alarms").json()["error"]["code"] == "forbidden"  # name the class
        assert c.get("/v1/alarms?class=kv").json()["error"]["code"] == "unknown_class"
        r = c.post("/v1/classes/kv/objects/x/storage/sql", json=sql)
        assert r.json()["error"]["code"] == "unknown_class"
    with server.client(objects_only["token"]) as c:
        assert c.get("/v1/alarms").json()["error"]["code"] == "forbidden"
        r = c.post("/v1/classes/booking/objects/x/storage/sql", json=sql)
        assert r.json()["error"]["code"] == "forbidden"

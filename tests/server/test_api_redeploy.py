"""Redeploying a class while one of its events runs, over a real `dohost serve` process:
the running event finishes on the old code, the next event runs the new code, and the
object's durable state is kept."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import wasmtime
from api_helpers import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
WAT = (ROOT / "tests" / "fixtures" / "versioned_wait.wat").read_text()
V1 = bytes(wasmtime.wat2wasm(WAT))
V2 = bytes(wasmtime.wat2wasm(WAT.replace("body\\43v1", "body\\43v2")))
WAIT_S = 2.0  # how long the slow event runs; the redeploy must happen inside it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path_factory.mktemp("redeploy") / "data")
    yield s
    assert s.stop() == 0, s.stderr()


def wait_body(seconds: float) -> bytes:
    """The fixture's request body: spin until now + seconds (wall clock, ms)."""
    return b"wait" + struct.pack("<q", int((time.time() + seconds) * 1000))


def test_redeploy_during_a_slow_event(server: ServerProcess) -> None:
    assert V1 != V2
    t = server.new_tenant()
    name = server.names[t]
    url = "/v1/classes/ver/objects/obj/"
    with server.client(t) as c:
        r = c.put("/v1/classes/ver", content=V1)
        assert (r.status_code, r.json()["version"]) == (201, 1)
        assert c.post(url).text == "v11"

        slow: list[httpx.Response] = []
        slow_done_at: list[float] = []

        def run_slow() -> None:
            with server.client(t) as c2:
                slow.append(c2.post(url, content=wait_body(WAIT_S)))
            slow_done_at.append(time.monotonic())

        thread = threading.Thread(target=run_slow)
        thread.start()
        try:
            # The slow event is running once the object shows as busy.
            server.wait_for_metric(
                rf'^dohost_events_running\{{class="ver",tenant="{name}"\}} 1\.0$'
            )
            r = c.put("/v1/classes/ver", content=V2)
            deployed_at = time.monotonic()
            assert (r.status_code, r.json()["version"]) == (201, 2)
            # Sent while the slow event still runs: it waits for it, then runs v2.
            after = c.post(url)
        finally:
            thread.join(60)
        assert slow and slow[0].status_code == 200
        assert deployed_at < slow_done_at[0], "the deploy did not happen during the event"
        assert slow[0].text == "v12"  # began on v1, finished on v1
        assert after.text == "v23"  # the next event: v2, with v1's data
        assert c.post(url).text == "v24"
        assert c.get("/v1/classes/ver").json()["version"] == 2
        # A redeploy of identical bytes is not a new version.
        r = c.put("/v1/classes/ver", content=V2)
        assert (r.status_code, r.json()["version"]) == (200, 2)


def test_redeploy_rebuilds_every_resident_object(server: ServerProcess) -> None:
    t = server.new_tenant()
    with server.client(t) as c:
        assert c.put("/v1/classes/ver", content=V1).status_code == 201
        for obj in ("a", "b", "c"):
            assert c.post(f"/v1/classes/ver/objects/{obj}/").text == "v11"
        assert c.put("/v1/classes/ver", content=V2).status_code == 201
        for obj in ("a", "b", "c"):
            assert c.post(f"/v1/classes/ver/objects/{obj}/").text == "v22"
        # The storage backend of a class cannot change with a redeploy.
        r = c.put("/v1/classes/ver?storage=sqlite", content=V1)
        assert r.status_code == 400 and "storage" in r.json()["error"]["message"]

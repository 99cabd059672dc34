"""Per-tenant quotas over a real `dohost serve` process: objects, request rate (429 with
Retry-After), storage bytes, CPU ms per event, module size, and the admin's overrides."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import ServerProcess, error_code

ROOT = Path(__file__).resolve().parents[2]
COUNTER = (ROOT / "samples" / "counter" / "counter.wasm").read_bytes
KVTEST = (ROOT / "tests" / "fixtures" / "build" / "kvtest.wasm").read_bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Server-wide defaults from the command line; tenants override them below.
    s = ServerProcess(tmp_path_factory.mktemp("quotas") / "data", "--quota", "objects=50")
    yield s
    assert s.stop() == 0, s.stderr()


def deploy(s: ServerProcess, token: str, cls: str, wasm: bytes) -> None:
    with s.client(token) as c:
        r = c.put(f"/v1/classes/{cls}", content=wasm)
    assert r.status_code == 201, r.text


def test_object_quota_refuses_new_objects_and_creates_nothing(server: ServerProcess) -> None:
    t = server.new_tenant(quotas={"objects": 2})
    deploy(server, t, "counter", COUNTER())
    with server.client(t) as c:
        assert c.post("/v1/classes/counter/objects/a/incr").text == "1"
        assert c.post("/v1/classes/counter/objects/b/incr").text == "1"
        r = c.post("/v1/classes/counter/objects/c/incr")
        assert (r.status_code, error_code(r)) == (429, "quota_exceeded")
        assert "2 objects" in r.json()["error"]["message"]
        r = c.post(f"/v1/classes/counter/ids/{c.post('/v1/classes/counter/ids').json()['id']}/incr")
        assert (r.status_code, error_code(r)) == (429, "quota_exceeded")
        listed = c.get("/v1/classes/counter/objects").json()["objects"]
        assert sorted(o["name"] for o in listed) == ["a", "b"]
        # Existing objects keep working; deleting one makes room.
        assert c.post("/v1/classes/counter/objects/a/incr").text == "2"
        assert c.delete("/v1/classes/counter/objects/a").status_code == 200
        assert c.post("/v1/classes/counter/objects/c/incr").text == "1"
        r = c.post("/v1/classes/counter/objects/a/incr")
        assert (r.status_code, error_code(r)) == (429, "quota_exceeded")
    with server.admin() as admin:
        usage = admin.get(f"/v1/tenants/{server.names[t]}").json()["usage"]
        assert usage["objects"] == 2


def test_server_default_quota_applies_without_override(server: ServerProcess) -> None:
    with server.admin() as admin:
        r = admin.post("/v1/tenants", json={"name": "defaults-only"})
        assert r.json()["quotas"]["objects"] == 50  # from --quota objects=50
        assert r.json()["overrides"] == {}


def test_rate_limit_is_429_with_retry_after_and_per_tenant(server: ServerProcess) -> None:
    slow = server.new_tenant(quotas={"requests_per_s": 0.01})  # burst 1, then 1 per 100 s
    other = server.new_tenant()
    with server.client(slow) as c:
        assert c.get("/v1/classes").status_code == 200
        r = c.get("/v1/classes")
        assert (r.status_code, error_code(r)) == (429, "rate_limited")
        assert 90 <= int(r.headers["retry-after"]) <= 100
    with server.client(other) as c:  # another tenant is not affected
        for _ in range(20):
            assert c.get("/v1/classes").status_code == 200


def test_storage_quota_refuses_the_write_and_keeps_the_rest(server: ServerProcess) -> None:
    t = server.new_tenant(quotas={"storage_bytes": 100})
    deploy(server, t, "kv", KVTEST())
    with server.client(t) as c:
        assert c.post("/v1/classes/kv/objects/o1/put?key=a", content=b"x" * 59).text == "0"
        # 1 + 59 = 60 bytes stored; 41 more (key b + 40) would make 101 > 100.
        r = c.post("/v1/classes/kv/objects/o2/put?key=b", content=b"y" * 40)
        assert r.status_code == 200 and r.text.startswith("-7 quota_exceeded"), r.text
        assert "storage quota of 100 bytes" in r.text
        # Exactly up to the quota is fine, overwriting with a smaller value too.
        assert c.post("/v1/classes/kv/objects/o2/put?key=b", content=b"y" * 39).text == "0"
        assert c.post("/v1/classes/kv/objects/o1/put?key=a", content=b"x" * 10).text == "0"
        keys = c.get("/v1/classes/kv/objects/o2/storage").json()["entries"]
        assert len(keys) == 1
    with server.admin() as admin:
        name = server.names[t]
        assert admin.get(f"/v1/tenants/{name}").json()["usage"]["storage_bytes"] == 11 + 40


def test_cpu_ms_quota_kills_the_event_and_can_be_raised(server: ServerProcess) -> None:
    t = server.new_tenant(quotas={"cpu_ms": 50})
    deploy(server, t, "kv", KVTEST())
    with server.client(t) as c:
        r = c.get("/v1/classes/kv/objects/o/spin")
        assert (r.status_code, error_code(r)) == (500, "cpu_limit")
        assert "50 ms" in r.json()["error"]["message"]
        assert c.get("/v1/classes/kv/objects/o/now").status_code == 200  # object still usable


def test_module_size_quota_refuses_the_deploy(server: ServerProcess) -> None:
    t = server.new_tenant(quotas={"module_bytes": 1000})
    with server.client(t) as c:
        r = c.put("/v1/classes/counter", content=COUNTER())
        assert (r.status_code, error_code(r)) == (413, "module_too_large")
        assert c.get("/v1/classes/counter").status_code == 404
        assert c.get("/v1/classes").json()["classes"] == []


def test_admin_patch_overrides_and_validation(server: ServerProcess) -> None:
    t = server.new_tenant(quotas={"objects": 1})
    deploy(server, t, "counter", COUNTER())
    name = server.names[t]
    with server.admin() as admin, server.client(t) as c:
        assert c.post("/v1/classes/counter/objects/a/incr").status_code == 200
        assert c.post("/v1/classes/counter/objects/b/incr").status_code == 429
        r = admin.patch(f"/v1/tenants/{name}", json={"quotas": {"objects": 3, "cpu_ms": 1000}})
        assert r.status_code == 200
        assert r.json()["overrides"] == {"objects": 3, "cpu_ms": 1000}
        assert c.post("/v1/classes/counter/objects/b/incr").status_code == 200
        # null removes an override: back to the server default (50).
        r = admin.patch(f"/v1/tenants/{name}", json={"quotas": {"objects": None}})
        assert r.json()["quotas"]["objects"] == 50 and r.json()["overrides"] == {"cpu_ms": 1000}
        for bad in (
            {"quotas": {"objects": -1}},
            {"quotas": {"nope": 1}},
            {"quotas": {"cpu_ms": 0}},
            {"quotas": {"requests_per_s": "fast"}},
            {"quotas": 5},
            {"name": "x"},
        ):
            r = admin.patch(f"/v1/tenants/{name}", json=bad)
            assert r.status_code == 400, bad
        assert admin.patch("/v1/tenants/nobody", json={"quotas": {}}).status_code == 404

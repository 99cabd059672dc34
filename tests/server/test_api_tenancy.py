"""Tenancy over a real `dohost serve` process: independent tenants, 404 for anything of
another tenant, forged and foreign ids, tokens (401) and admin-only routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import ServerProcess, error_code

from dohost.core.ids import ID_HEX_CHARS

ROOT = Path(__file__).resolve().parents[2]
COUNTER = (ROOT / "samples" / "counter" / "counter.wasm").read_bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path_factory.mktemp("tenancy") / "data")
    yield s
    assert s.stop() == 0, s.stderr()


def deploy(s: ServerProcess, token: str, cls: str, wasm: bytes) -> None:
    with s.client(token) as c:
        r = c.put(f"/v1/classes/{cls}", content=wasm)
    assert r.status_code == 201, r.text


def test_two_tenants_same_names_independent_counts(server: ServerProcess) -> None:
    a, b = server.new_tenant("a"), server.new_tenant("b")
    for tok in (a, b):
        deploy(server, tok, "counter", COUNTER())
    with server.client(a) as ca, server.client(b) as cb:
        for _ in range(3):
            assert ca.post("/v1/classes/counter/objects/room/incr").status_code == 200
        for _ in range(5):
            assert cb.post("/v1/classes/counter/objects/room/incr").status_code == 200
        assert cb.post("/v1/classes/counter/objects/other/incr", content=b"7").text == "7"
        assert ca.get("/v1/classes/counter/objects/room/").text == "3"
        assert cb.get("/v1/classes/counter/objects/room/").text == "5"
        # Same class and object names, different ids: each class key is the tenant's own.
        id_a = ca.get("/v1/classes/counter/objects/room").json()["id"]
        id_b = cb.get("/v1/classes/counter/objects/room").json()["id"]
        assert id_a != id_b
        names_a = [o["name"] for o in ca.get("/v1/classes/counter/objects").json()["objects"]]
        names_b = [o["name"] for o in cb.get("/v1/classes/counter/objects").json()["objects"]]
        assert names_a == ["room"]
        assert sorted(names_b) == ["other", "room"]


def test_every_cross_tenant_route_is_404(server: ServerProcess) -> None:
    a, b = server.new_tenant("a"), server.new_tenant("b")
    deploy(server, a, "counter", COUNTER())
    deploy(server, a, "private", COUNTER())
    deploy(server, b, "counter", COUNTER())
    with server.client(a) as ca, server.client(b) as cb:
        assert ca.post("/v1/classes/private/objects/x/incr").text == "1"
        assert ca.post("/v1/classes/counter/objects/x/incr").text == "1"
        a_id = ca.get("/v1/classes/counter/objects/x").json()["id"]
        a_private_id = ca.post("/v1/classes/private/ids").json()["id"]
        assert [c["class"] for c in cb.get("/v1/classes").json()["classes"]] == ["counter"]
        # A class of another tenant answers exactly as a class that does not exist.
        for cls in ("private", "never-deployed"):
            for method, path in [
                ("GET", f"/v1/classes/{cls}"),
                ("GET", f"/v1/classes/{cls}/objects"),
                ("GET", f"/v1/classes/{cls}/objects/x"),
                ("GET", f"/v1/classes/{cls}/objects/x/"),
                ("POST", f"/v1/classes/{cls}/objects/x/incr"),
                ("GET", f"/v1/classes/{cls}/objects/x/storage"),
                ("DELETE", f"/v1/classes/{cls}/objects/x"),
                ("POST", f"/v1/classes/{cls}/ids"),
                ("GET", f"/v1/classes/{cls}/ids/{a_private_id}/"),
                ("GET", f"/v1/classes/{cls}/ids/{a_private_id}/storage"),
            ]:
                r = cb.request(method, path)
                assert r.status_code == 404, (method, path, r.text)
                assert error_code(r) == "unknown_class"
                assert cls in r.json()["error"]["message"]
        # A's object id in B's class of the same name: not B's.
        for method, path in [
            ("GET", f"/v1/classes/counter/ids/{a_id}/"),
            ("POST", f"/v1/classes/counter/ids/{a_id}/incr"),
            ("GET", f"/v1/classes/counter/ids/{a_id}/storage"),
            ("GET", f"/v1/classes/counter/ids/{a_id}"),
            ("DELETE", f"/v1/classes/counter/ids/{a_id}"),
        ]:
            r = cb.request(method, path)
            assert (r.status_code, error_code(r)) == (404, "invalid_id"), (method, path)
        # Nothing of A changed, and B's lists never mention it.
        assert ca.get("/v1/classes/counter/objects/x/").text == "1"
        assert ca.get(f"/v1/classes/counter/ids/{a_id}/").text == "1"
        assert cb.get("/v1/classes/counter/objects").json()["objects"] == []


def test_forged_and_other_class_ids_are_404(server: ServerProcess) -> None:
    t = server.new_tenant()
    deploy(server, t, "counter", COUNTER())
    deploy(server, t, "second", COUNTER())
    with server.client(t) as c:
        good = c.post("/v1/classes/counter/ids").json()["id"]
        assert len(good) == ID_HEX_CHARS
        assert c.post(f"/v1/classes/counter/ids/{good}/incr").text == "1"
        assert c.get(f"/v1/classes/counter/ids/{good}/").text == "1"
        forged = good[:-1] + ("0" if good[-1] != "0" else "1")
        first_half_forged = ("0" if good[0] != "0" else "1") + good[1:]
        for bad in (forged, first_half_forged, "00" * 32, good.upper(), good[:-2], "x" * 64):
            r = c.get(f"/v1/classes/counter/ids/{bad}/")
            assert (r.status_code, error_code(r)) == (404, "invalid_id"), bad
        # A real id of one class is refused by another class of the same tenant.
        r = c.post(f"/v1/classes/second/ids/{good}/incr")
        assert (r.status_code, error_code(r)) == (404, "invalid_id")
        by_name = c.get("/v1/classes/counter/objects/n").json()["id"]
        r = c.get(f"/v1/classes/second/ids/{by_name}/")
        assert (r.status_code, error_code(r)) == (404, "invalid_id")


def test_tokens_missing_wrong_malformed_are_401(server: ServerProcess) -> None:
    t = server.new_tenant()
    deploy(server, t, "counter", COUNTER())
    paths = ["/v1/classes", "/v1/classes/counter/objects/x/", "/v1/tenants", "/metrics", "/v1/x"]
    for headers in (
        {},
        {"authorization": "Bearer wrong-token"},
        {"authorization": f"Basic {t}"},
        {"authorization": "Bearer"},
        {"authorization": f"Bearer {t}x"},
    ):
        with server.client(None) as c:
            for p in paths:
                r = c.get(p, headers=headers)
                assert (r.status_code, error_code(r)) == (401, "unauthorized"), (headers, p)
    with server.client(t) as c:
        assert c.get("/v1/classes/counter/objects/x/").status_code == 200
        assert c.get("/healthz").json() == {"status": "ok"}  # open


def test_admin_routes_refuse_tenant_tokens_and_tenant_routes_refuse_admin(
    server: ServerProcess,
) -> None:
    t = server.new_tenant()
    with server.client(t) as c:
        for method, path in [
            ("GET", "/v1/tenants"),
            ("POST", "/v1/tenants"),
            ("GET", "/v1/tenants/whoever"),
            ("PATCH", "/v1/tenants/whoever"),
            ("DELETE", "/v1/tenants/whoever"),
            ("POST", "/v1/tenants/whoever/token"),
            ("GET", "/metrics"),
        ]:
            r = c.request(method, path, json={"name": "sneaky"})
            assert (r.status_code, error_code(r)) == (401, "unauthorized"), (method, path)
            assert "admin token" in r.json()["error"]["message"]
    with server.admin() as c:
        r = c.get("/v1/classes")
        assert (r.status_code, error_code(r)) == (401, "unauthorized")
        assert "sneaky" not in [x["name"] for x in c.get("/v1/tenants").json()["tenants"]]


def test_token_rotation_and_tenant_deletion_revoke_tokens(server: ServerProcess) -> None:
    with server.admin() as admin:
        r = admin.post("/v1/tenants", json={"name": "rotating"})
        assert r.status_code == 201
        old = r.json()["token"]
        assert "token_hash" not in r.text
        assert admin.post("/v1/tenants", json={"name": "rotating"}).status_code == 409
        deploy(server, old, "counter", COUNTER())
        new = admin.post("/v1/tenants/rotating/token").json()["token"]
        assert new != old
        with server.client(old) as c:
            assert c.get("/v1/classes").status_code == 401
        with server.client(new) as c:
            assert c.post("/v1/classes/counter/objects/x/incr").text == "1"
        assert admin.delete("/v1/tenants/rotating").status_code == 200
        with server.client(new) as c:
            assert c.get("/v1/classes").status_code == 401
        r = admin.get("/v1/tenants/rotating")
        assert (r.status_code, error_code(r)) == (404, "unknown_tenant")
        assert admin.delete("/v1/tenants/rotating").status_code == 404
        # The name can be used again, and nothing of the old tenant is there.
        again = admin.post("/v1/tenants", json={"name": "rotating"}).json()["token"]
    with server.client(again) as c:
        assert c.get("/v1/classes").json() == {"classes": []}
        deploy(server, again, "counter", COUNTER())
        assert c.get("/v1/classes/counter/objects/x/").text == "0"
        assert c.get("/v1/classes/counter/objects").json()["objects"] == []

"""Errors over a real `dohost serve` process: guest traps and CPU kills, malformed
requests (400), bodies over the limit (413), unknown routes and methods, and curl."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import ServerProcess, error_code

ROOT = Path(__file__).resolve().parents[2]
COUNTER_PATH = ROOT / "samples" / "counter" / "counter.wasm"
KVTEST = (ROOT / "tests" / "fixtures" / "build" / "kvtest.wasm").read_bytes
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(
        tmp_path_factory.mktemp("errors") / "data",
        "--cpu-ms",
        "100",
        "--max-body-bytes",
        str(MAX_BODY),
    )
    yield s
    assert s.stop() == 0, s.stderr()


@pytest.fixture(scope="module")
def kv_token(server: ServerProcess) -> str:
    t = server.new_tenant()
    with server.client(t) as c:
        assert c.put("/v1/classes/kv", content=KVTEST()).status_code == 201
    return t


def test_trap_is_500_object_error_with_the_trap_text_and_rolls_back(
    server: ServerProcess, kv_token: str
) -> None:
    with server.client(kv_token) as c:
        r = c.post("/v1/classes/kv/objects/o/put_then_trap")
        assert (r.status_code, error_code(r)) == (500, "object_error")
        msg = r.json()["error"]["message"]
        assert "wasm trap" in msg and "unreachable" in msg, msg
        assert c.get("/v1/classes/kv/objects/o/storage").json()["entries"] == []
        assert c.get("/v1/classes/kv/objects/o/get?key=trap1").status_code == 404


def test_cpu_kill_is_500_cpu_limit(server: ServerProcess, kv_token: str) -> None:
    with server.client(kv_token) as c:
        r = c.get("/v1/classes/kv/objects/o/spin")
        assert (r.status_code, error_code(r)) == (500, "cpu_limit")
        assert "100 ms" in r.json()["error"]["message"]  # --cpu-ms 100
        r = c.get("/v1/classes/kv/objects/o/recurse")
        assert (r.status_code, error_code(r)) == (500, "object_error")


def test_request_reaches_the_guest_without_the_token_or_hop_headers(
    server: ServerProcess, kv_token: str
) -> None:
    with server.client(kv_token) as c:
        r = c.post(
            "/v1/classes/kv/objects/a%2Fb%20c/echo?x=1&y=%20",
            content=b"hello",
            headers={
                "x-custom": "yes",
                "x-hop": "named in Connection",
                "connection": "keep-alive, x-hop",
                "te": "trailers",
            },
        )
        assert r.status_code == 200
        lines = r.text.split("\n")
        assert "method=POST" in lines
        assert "path=/echo" in lines
        assert "query=x=1&y=%20" in lines
        assert "header:x-custom=yes" in lines
        assert "body=hello" in lines
        assert kv_token not in r.text
        assert not any(
            line.startswith(
                ("header:authorization", "header:connection", "header:te=", "header:x-hop")
            )
            for line in lines
        )
        # The name was percent-decoded: "a/b c" is one object.
        names = [o["name"] for o in c.get("/v1/classes/kv/objects").json()["objects"]]
        assert "a/b c" not in names  # echo stored nothing
        assert c.post("/v1/classes/kv/objects/a%2Fb%20c/put?key=k", content=b"v").text == "0"
        names = [o["name"] for o in c.get("/v1/classes/kv/objects").json()["objects"]]
        assert "a/b c" in names
        # Guest responses pass through: status, headers, body.
        r = c.get("/v1/classes/kv/objects/o/status?code=418")
        assert r.status_code == 418 and "x-dohost-error" not in r.headers
        r = c.get("/v1/classes/kv/objects/o/headers")
        assert r.headers["x-one"] == "1" and r.headers.get_list("x-dup") == ["a", "b"]
        assert r.headers.get("connection") != "close"  # hop-by-hop: the guest's is dropped


def test_malformed_requests_are_400(server: ServerProcess, kv_token: str) -> None:
    with server.client(kv_token) as c:
        cases = [
            ("GET", "/v1/classes/kv/objects/%ff%fe/", "invalid_name"),  # not UTF-8
            ("GET", "/v1/classes/kv/objects/" + "n" * 1025 + "/", "invalid_name"),
            ("GET", "/v1/classes/kv/objects//", "invalid_name"),  # empty name
            ("GET", "/v1/classes/kv/objects?limit=many", "invalid_argument"),
            ("GET", "/v1/classes/kv/objects?limit=0", "invalid_argument"),
            ("GET", "/v1/classes/kv/objects?after=zz", "invalid_argument"),
            ("GET", "/v1/classes/kv/objects/o/storage?cursor=***", "invalid_argument"),
            ("PUT", "/v1/classes/Bad_Name", "invalid_name"),
            ("PUT", "/v1/classes/x?storage=floppy", "invalid_argument"),
            ("PUT", "/v1/classes/x", "invalid_module"),
        ]
        for method, path, code in cases:
            r = c.request(method, path, content=b"not wasm" if method == "PUT" else None)
            assert (r.status_code, error_code(r)) == (400, code), (method, path, r.text)
        # A name of exactly 1 KiB of UTF-8 is fine.
        r = c.get("/v1/classes/kv/objects/" + "é" * 512 + "/now")
        assert r.status_code == 200
    with server.admin() as admin:
        for body in (b"{", b"[1]", b'{"name": 5}', b'{"name": "Has Caps"}'):
            r = admin.post("/v1/tenants", content=body)
            assert r.status_code == 400, body
            assert error_code(r) in ("bad_request", "invalid_name")
    # Broken HTTP never reaches the API: the front door answers 400 and closes.
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        data = sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 400"), data[:100]


def test_bodies_over_the_limit_are_413(server: ServerProcess, kv_token: str) -> None:
    with server.client(kv_token) as c:
        r = c.post("/v1/classes/kv/objects/o/echo", content=b"x" * (MAX_BODY + 1))
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "body_too_large"
        r = c.post("/v1/classes/kv/objects/o/put?key=big", content=b"x" * (MAX_BODY - 100))
        assert r.text == "0"
        # A guest response above the limit is refused to the guest (value_too_large).
        r = c.get(f"/v1/classes/kv/objects/o/big_response?len={MAX_BODY + 1}")
        assert r.text.startswith("-5 value_too_large"), r.text[:200]


def test_unknown_routes_and_methods(server: ServerProcess, kv_token: str) -> None:
    with server.client(kv_token) as c:
        for path in ("/", "/v2/classes", "/v1/nothing", "/v1/classes/kv/other/x"):
            r = c.get(path)
            assert (r.status_code, error_code(r)) == (404, "not_found"), path
        r = c.patch("/v1/classes/kv")  # (DELETE deletes the class: docs/http-api.md)
        assert (r.status_code, error_code(r)) == (405, "method_not_allowed")
        assert r.headers["allow"] == "GET, PUT, DELETE"
        r = c.put("/v1/classes/kv/objects/o")
        assert r.status_code == 405 and r.headers["allow"] == "GET, DELETE"
        r = c.get("/v1/classes/kv/ids")
        assert r.status_code == 405 and r.headers["allow"] == "POST"


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "--silent", "--show-error", *args], capture_output=True, timeout=60
    )


@needs_curl
def test_curl_deploy_and_call(server: ServerProcess) -> None:
    t = server.new_tenant()
    auth = f"Authorization: Bearer {t}"
    base = server.url + "/v1/classes/counter"
    r = curl("-H", auth, "-X", "PUT", "--data-binary", f"@{COUNTER_PATH}", base)
    assert json.loads(r.stdout)["version"] == 1, r
    r = curl("-H", auth, "-X", "POST", base + "/objects/room-1/incr")
    assert r.stdout == b"1"
    r = curl("-H", auth, "--data-binary", "41", base + "/objects/room-1/incr")
    assert r.stdout == b"42"
    r = curl("-H", auth, base + "/objects/room-1/")
    assert r.stdout == b"42"
    r = curl("-H", auth, "-w", "%{http_code}", "-o", "/dev/null", base + "/objects/room-1/no")
    assert r.stdout == b"404"
    r = curl("-i", base + "/objects/room-1/")
    assert b"401" in r.stdout.split(b"\r\n")[0]

"""Helpers of the HTTP API tests: a real `dohost serve` process on 127.0.0.1, and an
in-process `Api` over the `host` fixture for tests that are simpler without one."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from dohost.server.http_types import HttpRequest, HttpResponse

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token-" + "x" * 16
START_TIMEOUT_S = 120.0  # two node processes start slowly on a loaded 2-core machine
STOP_TIMEOUT_S = 60.0


# How many node processes a test server runs (`--processes`): 1 unless the test says
# otherwise or DOHOST_TEST_PROCESSES is set (`make test` runs the HTTP API tests both ways).
PROCESSES_ENV = "DOHOST_TEST_PROCESSES"


def test_processes() -> int:
    return int(os.environ.get(PROCESSES_ENV) or "1")


class ServerProcess:
    """`dohost serve --port 0` in a subprocess; `url` is read from its first stdout line.
    `processes`: its `--processes` (default: `test_processes()`)."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        admin_token: str | None = ADMIN_TOKEN,
        processes: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.processes = processes if processes is not None else test_processes()
        env = dict(os.environ)
        env.pop("DOHOST_ADMIN_TOKEN", None)
        if admin_token is not None:
            env["DOHOST_ADMIN_TOKEN"] = admin_token
        self.stderr_path = data_dir.parent / f"{data_dir.name}.stderr"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dohost.cli", "serve", "--data", str(data_dir), "--port", "0",
             "--durability", "os", "--processes", str(self.processes), *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=ROOT,
        )  # fmt: skip
        self.names: dict[str, str] = {}  # token -> tenant name, of new_tenant()
        self.url = self._read_url()
        self.admin_token = admin_token or (data_dir / "admin.token").read_text().strip()

    def _read_url(self) -> str:
        # readline() blocks; a reader thread lets the wait be bounded.
        found: list[str] = []

        def read() -> None:
            assert self.proc.stdout is not None
            found.append(self.proc.stdout.readline().decode())

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(START_TIMEOUT_S)
        m = re.search(r"http://\S+", found[0]) if found else None
        if m is None:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"dohost serve did not start: {self.stderr()}")
        return m.group(0)

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._stderr.close()
        return rc

    def client(self, token: str | None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0)

    def admin(self) -> httpx.Client:
        return self.client(self.admin_token)

    def new_tenant(self, prefix: str = "t", quotas: dict[str, Any] | None = None) -> str:
        """Create a tenant with a fresh name; returns its token (its name: `names`)."""
        name = f"{prefix}-{secrets.token_hex(4)}"
        body: dict[str, Any] = {"name": name}
        if quotas:
            body["quotas"] = quotas
        with self.admin() as c:
            r = c.post("/v1/tenants", json=body)
        assert r.status_code == 201, r.text
        token: str = r.json()["token"]
        self.names[token] = name
        return token

    def wait_for_metric(self, pattern: str, timeout: float = 30.0) -> None:
        """Poll /metrics until a line matches `pattern` (bounded: a subprocess is involved)."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern, re.M)
        with self.admin() as c:
            while time.monotonic() < deadline:
                if rx.search(c.get("/metrics").text):
                    return
                time.sleep(0.01)
        raise AssertionError(f"no metric line matched {pattern!r} within {timeout} s")


def error_code(resp: httpx.Response) -> str:
    code: str = resp.json()["error"]["code"]
    assert resp.headers.get("x-dohost-error") == code
    return code


def http_request(
    method: str,
    target: str,
    *,
    token: str | None = None,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
) -> HttpRequest:
    """An `HttpRequest` as the front door would hand it to the API (raw target split)."""
    path, _, query = target.partition("?")
    hdrs = [("host", "test")]
    if token is not None:
        hdrs.append(("authorization", f"Bearer {token}"))
    hdrs += headers or []
    return HttpRequest(method, path, query, hdrs, body, ("127.0.0.1", 1), "1.1")


def json_of(resp: HttpResponse) -> Any:
    import json

    return json.loads(resp.body)


class As:
    """Requests with one token straight into an in-process `Api` handler; a body that
    is not bytes is sent as JSON."""

    def __init__(self, api: Any, token: str) -> None:
        self.api, self.token = api, token

    async def __call__(
        self,
        method: str,
        target: str,
        body: Any = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> HttpResponse:
        import json

        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        resp: HttpResponse = await self.api.handle(
            http_request(method, target, token=self.token, body=body, headers=headers)
        )
        return resp

    async def ok(self, method: str, target: str, body: Any = b"") -> Any:
        r = await self(method, target, body)
        assert r.status < 300, (r.status, r.body)
        return json_of(r)


def err(r: HttpResponse) -> tuple[int, str]:
    """(status, error code) of a host error."""
    return r.status, json_of(r)["error"]["code"]

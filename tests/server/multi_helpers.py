"""Helpers of the `--processes N` tests: the nodes' pids, connections pinned to a node,
and which node owns which object."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from api_helpers import ServerProcess

PIN_TRIES = 200


def node_pids(server: ServerProcess) -> dict[int, int]:
    """node index -> pid of the parent's live node processes."""
    parent = server.proc.pid
    children = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        # Trio starts processes from worker threads: each thread has its own list.
        try:
            children += (task / "children").read_text().split()
        except OSError:
            continue
    out: dict[int, int] = {}
    for pid in children:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
        except OSError:
            continue
        if "dohost.server.node_main" in argv:
            role = json.loads(argv[argv.index("dohost.server.node_main") + 1])
            out[int(role["index"])] = int(pid)
    return out


@contextlib.contextmanager
def client_on_node(server: ServerProcess, token: str | None, node: int) -> Iterator[httpx.Client]:
    """A client whose one keep-alive connection landed on `node` (the kernel spreads
    connections over the nodes: open new ones until one does)."""
    for _ in range(PIN_TRIES):
        headers = {"authorization": f"Bearer {token}"} if token is not None else {}
        c = httpx.Client(
            base_url=server.url,
            headers=headers,
            timeout=60.0,
            limits=httpx.Limits(max_connections=1),
        )
        r = c.get("/healthz")
        if r.headers.get("x-dohost-node") == str(node):
            try:
                yield c
            finally:
                c.close()
            return
        c.close()
    raise AssertionError(f"no connection landed on node {node} in {PIN_TRIES} tries")


def owned_names(
    server: ServerProcess,
    token: str,
    cls: str,
    n: int,
    *,
    create: bool = True,
    path: str | None = None,
    method: str = "GET",
) -> dict[int, list[str]]:
    """node -> names among o0..o{n-1} it owns, learnt by one request to each (POST /incr
    of the checksum counter when `create`, else GET /verify, or `method path`)."""
    out: dict[int, list[str]] = {}
    with server.client(token) as c:
        for i in range(n):
            name = f"o{i}"
            if path is not None:
                r = c.request(method, f"/v1/classes/{cls}/objects/{name}{path}")
            elif create:
                r = c.post(f"/v1/classes/{cls}/objects/{name}/incr")
            else:
                r = c.get(f"/v1/classes/{cls}/objects/{name}/verify")
            assert r.status_code == 200, r.text
            out.setdefault(int(r.headers["x-dohost-node"]), []).append(name)
    return out


def wait_until(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")

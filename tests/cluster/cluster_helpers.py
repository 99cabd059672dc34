"""Helpers of the cluster tests: a seeded data set per node, `dohost serve --cluster`
processes, a load of counter increments recording a history, bounded polling."""

from __future__ import annotations

import random
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
for helpers in ("server", "replica"):
    if str(ROOT / "tests" / helpers) not in sys.path:
        sys.path.insert(0, str(ROOT / "tests" / helpers))

from api_helpers import ServerProcess  # noqa: E402
from etcd_server import free_ports  # noqa: E402

from dohost.core.counter_history import Op  # noqa: E402

COUNTER = ROOT / "samples" / "counter" / "counter.wasm"
PARTITIONS = 16  # few, so that every node holds some and a pass is quick
LEASE_TTL_S = 3
FORWARD_TIMEOUT_S = 5  # a forward to a stopped owner gives up (indeterminate) after this


def wait_until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `cond` until it returns something true (bounded: processes are involved)."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def seed(root: Path) -> tuple[Path, str]:
    """A data set with a tenant and the counter class, to copy for each node (tenants and
    classes are not shared through the cluster yet: every node starts from the same
    system database). Returns (its directory, the tenant's token)."""
    d = root / "seed"
    d.mkdir(parents=True)
    (d / "PARTITIONS").write_text(f"{PARTITIONS}\n")
    s = ServerProcess(d, processes=1)
    try:
        token = s.new_tenant()
        with s.client(token) as c:
            r = c.put("/v1/classes/counter", content=COUNTER.read_bytes())
            assert r.status_code == 201, r.text
    finally:
        s.stop()
    return d, token


def start_node(
    root: Path,
    seed_dir: Path,
    cluster_url: str,
    name: str,
    replica_args: list[str],
    *extra: str,
) -> ServerProcess:
    d = root / name
    if not d.exists():
        shutil.copytree(seed_dir, d)
    (port,) = free_ports(1)
    return ServerProcess(
        d,
        "--cluster", cluster_url, "--node", name,
        "--advertise", f"http://127.0.0.1:{port}",
        "--lease-ttl", str(LEASE_TTL_S), "--forward-timeout", str(FORWARD_TIMEOUT_S),
        *replica_args, *extra,
        processes=1,
    )  # fmt: skip


def status(node: ServerProcess) -> dict[str, Any] | None:
    try:
        with node.admin() as c:
            r = c.get("/v1/cluster", timeout=5)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def settled(node: ServerProcess, members: set[str]) -> bool:
    """`node` sees exactly `members`, every partition claimed, and each member holding
    some (so rendezvous placement has been applied)."""
    st = status(node)
    if st is None or st["unclaimed"] != 0:
        return False
    seen = {m["name"]: m["partitions"] for m in st["members"]}
    return set(seen) == members and all(seen.values())


class Load:
    """Threads sending `POST /incr` to random objects through random nodes, each
    operation recorded for the checker (core/counter_history.py)."""

    def __init__(self, urls: list[str], token: str, keys: list[str], threads: int = 4) -> None:
        self.urls = urls
        self.token = token
        self.keys = keys
        self.ops: list[Op] = []
        self.errors: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(120)

    def acked(self) -> int:
        with self._lock:
            return sum(op.ok for op in self.ops)

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        clients = {
            u: httpx.Client(
                base_url=u, headers={"authorization": f"Bearer {self.token}"}, timeout=30
            )
            for u in self.urls
        }
        try:
            while not self._stop.is_set():
                key = rng.choice(self.keys)
                url = rng.choice(self.urls)
                start = time.monotonic()
                ok, value, node, problem = False, None, None, ""
                try:
                    r = clients[url].post(f"/v1/classes/counter/objects/{key}/incr")
                    node = r.headers.get("x-dohost-node")
                    if r.status_code == 200:
                        ok, value = True, int(r.text)
                    else:
                        problem = r.headers.get("x-dohost-error") or str(r.status_code)
                except httpx.HTTPError as e:
                    problem = type(e).__name__
                    time.sleep(0.01)  # a dead node: do not spin on its refused port
                op = Op(key, start, time.monotonic(), ok, value, node)
                with self._lock:
                    self.ops.append(op)
                    if problem:
                        self.errors[problem] = self.errors.get(problem, 0) + 1
        finally:
            for c in clients.values():
                c.close()


def final_values(node: ServerProcess, token: str, keys: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    with node.client(token) as c:
        for key in keys:
            r = c.get(f"/v1/classes/counter/objects/{key}/")
            assert r.status_code == 200, (key, r.status_code, r.text)
            out[key] = int(r.text)
    return out

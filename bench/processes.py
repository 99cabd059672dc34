"""`dohost serve --processes 2` against `--processes 1` (issue 13, "Performance").

For each process count, one `dohost serve` over a fresh data directory, the counter
sample deployed, then:

1. **increments over 10,000 objects**: wrk (one thread, c=32, keep-alive) POSTs /incr to
   a random one of 10,000 objects (created by a first pass);
2. **creating objects**: the same, over 10^9 names, so nearly every request creates one;
3. **latency, c=1** (a raw keep-alive socket client, GET / of the counter, a no-op
   read): with 2 processes, on a connection pinned to node 0, requests for an object
   node 0 owns ("on owner") and for one node 1 owns ("forwarded"), interleaved; with 1
   process, the same object. The forwarded p50 minus the on-owner p50 is the forward's
   extra latency.

CPU accounting: "server us/req" is the CPU time (user+system) of the server's whole
process tree (parent and nodes) over the run divided by the requests; "wrk us/req" is
wrk's own CPU (from the children's rusage), so the load generator's share of the
cores is visible rather than hidden in the throughput. Nothing is pinned: with two
processes the server needs both cores, and wrk shares them. "req/core-s" is requests
per second of server CPU (1e6 / server us/req); "cores srv/wrk/idle" says how many of
the machine's cores the server and wrk kept busy, and how many were left idle (a run
with idle cores was not bound by CPU: by fsync, or by waiting). "CPU ceiling" is what 2
processes could reach if the server got every core wrk leaves at its measured cost per
request, against what 1 process did. The disk's fsync rate (4 KiB write + fsync, one
file at a time and two at once, in the data directory) is printed too: the kv
committers of both nodes share the disk, so if two files at once do not get more
fsyncs per second than one, durable commits cannot scale with processes.

    python bench/processes.py [--duration 5] [--durability fsync|os] [--samples 2000]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

_REPO = Path(__file__).resolve().parent.parent
COUNTER = _REPO / "samples" / "counter" / "counter.wasm"
LUA = Path(__file__).resolve().parent / "wrk_stats.lua"
ADMIN_TOKEN = "bench-admin-token-0123456789"
OBJECTS = 10_000


def tree_cpu_s(pid: int) -> float:
    """User + system CPU of a process and all its descendants (Linux /proc)."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


class Server:
    def __init__(self, processes: int, durability: str, tmp: Path) -> None:
        self.processes = processes
        env = {**os.environ, "DOHOST_ADMIN_TOKEN": ADMIN_TOKEN}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dohost.cli", "serve", "--data", str(tmp / f"data{processes}"),
             "--port", "0", "--durability", durability, "--processes", str(processes)],
            stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().split()[-1]
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=self.url, timeout=60) as c:
            r = c.post(
                "/v1/tenants",
                json={"name": "bench", "quotas": {"requests_per_s": 1e9}},
                headers=admin,
            )
            r.raise_for_status()
            self.token = r.json()["token"]
            auth = {"authorization": f"Bearer {self.token}"}
            c.put("/v1/classes/counter", content=COUNTER.read_bytes(), headers=auth)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()

    def wrk(self, method: str, nobj: int, connections: int, duration: int) -> dict[str, float]:
        env = {
            **os.environ,
            "WRK_METHOD": method,
            "WRK_TOKEN": self.token,
            "WRK_RANDOM_OBJS": str(nobj),
            "WRK_PATH_PRE": "/v1/classes/counter/objects/o",
            "WRK_PATH_POST": "/incr" if method == "POST" else "/",
        }
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(LUA), self.url]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0 = tree_cpu_s(self.proc.pid)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        cpu1 = tree_cpu_s(self.proc.pid)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        m = re.search(r"RESULT (.*)", out)
        assert m is not None, out
        res = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
        reqs = max(1.0, res["reqs"])
        res["server_us"] = (cpu1 - cpu0) / reqs * 1e6
        wrk_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        res["wrk_us"] = wrk_cpu / reqs * 1e6
        return res


class RawClient:
    """One keep-alive connection, one request at a time, minimal parsing."""

    def __init__(self, url: str, token: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.auth = f"authorization: Bearer {token}\r\n"
        self.buf = b""

    def get(self, path: str) -> tuple[int, dict[str, str]]:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nhost: b\r\n{self.auth}\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self.buf += self.sock.recv(65536)
        self.buf = self.buf[length:]
        return int(lines[0].split()[1]), headers

    def close(self) -> None:
        self.sock.close()


def pinned_client(server: Server, node: int) -> RawClient:
    for _ in range(200):
        c = RawClient(server.url, server.token)
        if c.get("/healthz")[1].get("x-dohost-node", "0") == str(node):
            return c
        c.close()
    raise RuntimeError(f"no connection landed on node {node}")


def latency(server: Server, samples: int) -> dict[str, float]:
    path = "/v1/classes/counter/objects/{}/"
    c = pinned_client(server, 0)
    try:
        mine = other = None
        for i in range(200):
            status, h = c.get(path.format(f"lat{i}"))
            assert status == 200
            node = h.get("x-dohost-node", "0")
            if node == "0" and mine is None:
                mine = f"lat{i}"
            elif node != "0" and other is None:
                other = f"lat{i}"
        assert mine is not None
        kinds = {"on owner": mine} if other is None else {"on owner": mine, "forwarded": other}
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(samples):
            for kind, name in kinds.items():
                t0 = time.perf_counter()
                c.get(path.format(name))
                times[kind].append(time.perf_counter() - t0)
        out = {k: statistics.median(v) * 1e6 for k, v in times.items()}
        # CPU per request of each kind, one kind at a time (the server's whole tree).
        for kind, name in kinds.items():
            cpu0 = tree_cpu_s(server.proc.pid)
            for _ in range(samples):
                c.get(path.format(name))
            out[f"{kind} cpu"] = (tree_cpu_s(server.proc.pid) - cpu0) / samples * 1e6
        return out
    finally:
        c.close()


def fsync_rate(directory: Path, writers: int = 1, seconds: float = 1.0) -> float:
    """fsyncs per second, all writers together, of `writers` threads each appending
    4 KiB + fsync to a file of its own in `directory`, one at a time (as the kv
    committers of `writers` nodes would)."""
    counts = [0] * writers

    def one(i: int) -> None:
        path = directory / f"fsync-probe-{i}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                os.write(fd, b"x" * 4096)
                os.fsync(fd)
                counts[i] += 1
        finally:
            os.close(fd)
            path.unlink()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--durability", choices=["fsync", "os"], default="fsync")
    ap.add_argument("--samples", type=int, default=2000, help="latency requests per kind")
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    print(f"load average before: {os.getloadavg()}", flush=True)
    results: dict[int, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="dohost-bench-proc-") as tmp:
        fsyncs = fsync_rate(Path(tmp)), fsync_rate(Path(tmp), writers=2)
        for processes in (1, 2):
            server = Server(processes, args.durability, Path(tmp))
            try:
                server.wrk("POST", OBJECTS, args.connections, max(2, args.duration))  # create
                rows = {
                    "incr 10k objects": server.wrk(
                        "POST", OBJECTS, args.connections, args.duration
                    ),
                    "create objects": server.wrk(
                        "POST", 1_000_000_000, args.connections, args.duration
                    ),
                }
                lat = latency(server, args.samples)
                rows["latency"] = lat
                results[processes] = rows
            finally:
                server.stop()
    print(f"load average after: {os.getloadavg()}")
    cores = os.cpu_count() or 1
    print(f"\ndurability {args.durability}, c={args.connections}, {args.duration} s per run; "
          f"{cores} cores; the disk: {fsyncs[0]:.0f} fsyncs/s one at a time, "
          f"{fsyncs[1]:.0f}/s from two files at once")  # fmt: skip
    print(f"{'workload':<18} {'procs':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'server us/req':>13} {'wrk us/req':>10} {'req/core-s':>10} "
          f"{'cores srv/wrk/idle':>18} {'errors':>6}")  # fmt: skip
    for name in ("incr 10k objects", "create objects"):
        for p in (1, 2):
            r = results[p][name]
            srv, wrk = r["server_us"] * r["rps"] / 1e6, r["wrk_us"] * r["rps"] / 1e6
            busy = f"{srv:.2f}/{wrk:.2f}/{max(0.0, cores - srv - wrk):.2f}"
            print(
                f"{name:<18} {p:>5} {r['rps']:>9.0f} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
                f"{r['server_us']:>13.1f} {r['wrk_us']:>10.1f} {1e6 / r['server_us']:>10.0f} "
                f"{busy:>18} {int(r['errors'] + r['non2xx']):>6}"
            )
        one, two = results[1][name], results[2][name]
        ratio = two["rps"] / one["rps"]
        # All the cores wrk leaves (at its cost per request), at 2 processes' cost per request.
        ceiling = cores / (two["server_us"] + two["wrk_us"]) * 1e6
        print(f"{'':<18} 2 vs 1: {ratio:.2f}x; CPU ceiling of 2 processes: {ceiling:.0f} req/s "
              f"= {ceiling / one['rps']:.2f}x of 1 process")  # fmt: skip
    one = results[1]["latency"]["on owner"]
    two = results[2]["latency"]
    one_cpu = results[1]["latency"]["on owner cpu"]
    print(f"\nc=1, GET / ({args.samples} samples each): p50 us, server CPU us/req")
    print(f"  --processes 1:               {one:8.1f}  {one_cpu:8.1f}")
    print(
        f"  --processes 2, on owner:     {two['on owner']:8.1f}  {two['on owner cpu']:8.1f}"
        f"  ({two['on owner'] / one:.2f}x latency)"
    )
    if "forwarded" in two:
        extra = two["forwarded"] - two["on owner"]
        extra_cpu = two["forwarded cpu"] - two["on owner cpu"]
        print(
            f"  --processes 2, forwarded:    {two['forwarded']:8.1f}  {two['forwarded cpu']:8.1f}"
            f"  (+{extra:.1f} us latency, +{extra_cpu:.1f} us CPU)"
        )


if __name__ == "__main__":
    main()

"""The counter sample over HTTP: one object through the whole multi-tenant front door.

Starts `dohost serve` (pinned to CPU 0) over a temporary data directory, creates a
tenant (with a rate quota high enough not to be what is measured), deploys
samples/counter/counter.wasm and drives one object with `wrk` (pinned to CPU 1, one
thread, keep-alive):

    GET  /v1/classes/counter/objects/bench/       a no-op read
    POST /v1/classes/counter/objects/bench/incr   a durable increment (fsync per batch)

at each concurrency, and prints req/s, wrk's p50/p99 and the server's CPU time per
request.

    python bench/http_counter.py [--duration 5] [--connections 1,32] [--repeat 1]
                                 [--durability fsync|os] [--keep-server]

Needs `wrk` (apt-get install wrk) and, for pinning, `taskset` (skipped if absent).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

_REPO = Path(__file__).resolve().parent.parent
COUNTER = _REPO / "samples" / "counter" / "counter.wasm"
ADMIN_TOKEN = "bench-admin-token-0123456789"


def _pin(cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > cpu:
        return ["taskset", "-c", str(cpu)]
    return []


def _to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(
    url: str, token: str, method: str, connections: int, duration: int, script_dir: Path
) -> tuple[float, float, float, int]:
    script = script_dir / f"{method.lower()}.lua"
    script.write_text(f'wrk.method = "{method}"\nwrk.headers["Authorization"] = "Bearer {token}"\n')
    cmd = [*_pin(1), "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    cmd += ["-s", str(script), url]
    print("$", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, p50, p99, int(bad.group(1)) if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per run")
    parser.add_argument("--connections", default="1,32", help="comma-separated list")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row; best shown")
    parser.add_argument("--durability", choices=["fsync", "os"], default="fsync")
    parser.add_argument("--data", type=Path, default=None, help="data dir (default: a temp dir)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    if not COUNTER.exists():
        sys.exit(f"{COUNTER} is not built: run `make build`")
    tmp = tempfile.TemporaryDirectory(prefix="dohost-bench-")
    data = args.data or Path(tmp.name) / "data"
    env = {**os.environ, "DOHOST_ADMIN_TOKEN": ADMIN_TOKEN}
    server = subprocess.Popen(
        [*_pin(0), sys.executable, "-m", "dohost.cli", "serve", "--data", str(data),
         "--port", "0", "--durability", args.durability, "--processes", "1"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    rows = []
    try:
        assert server.stdout is not None
        base = server.stdout.readline().split()[-1]
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=base, timeout=60) as c:
            r = c.post(
                "/v1/tenants",
                json={"name": "bench", "quotas": {"requests_per_s": 1e9}},
                headers=admin,
            )
            r.raise_for_status()
            token = r.json()["token"]
            auth = {"authorization": f"Bearer {token}"}
            c.put("/v1/classes/counter", content=COUNTER.read_bytes(), headers=auth)
            c.post("/v1/classes/counter/objects/bench/incr", headers=auth).raise_for_status()
        obj = f"{base}/v1/classes/counter/objects/bench"
        script_dir = Path(tmp.name)
        _wrk(obj + "/", token, "GET", 1, 1, script_dir)  # warm-up
        for label, method, url in (
            ("GET /", "GET", obj + "/"),
            ("POST /incr", "POST", obj + "/incr"),
        ):
            for connections in (int(x) for x in args.connections.split(",")):
                runs = []
                for _ in range(args.repeat):
                    cpu0 = _cpu_seconds(server.pid)
                    rps, p50, p99, bad = _wrk(
                        url, token, method, connections, args.duration, script_dir
                    )
                    cpu_us = (_cpu_seconds(server.pid) - cpu0) / (rps * args.duration) * 1e6
                    runs.append((label, connections, rps, p50, p99, cpu_us, bad))
                rows.append(max(runs, key=lambda run: run[2]))
    finally:
        server.terminate()
        server.wait()
        tmp.cleanup()
    print(f"\ndurability {args.durability}")
    print(
        f"{'request':<11} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu us/req':>10} {'non-2xx':>7}"
    )
    for label, connections, rps, p50, p99, cpu_us, bad in rows:
        print(
            f"{label:<11} {connections:>5} {rps:>9.0f} {p50:>8.3f} {p99:>8.3f} {cpu_us:>10.1f} {bad:>7}"
        )


if __name__ == "__main__":
    main()

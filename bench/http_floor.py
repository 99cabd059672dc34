"""The HTTP front door's floor: requests/s of `serve_http` with an empty handler.

Starts the server in a subprocess pinned to CPU 0 and drives it with `wrk` pinned to CPU 1
(keep-alive, one wrk thread) at each concurrency for a few seconds, then prints req/s,
the p50/p99 latencies wrk reports, and the server's CPU time per request (steadier than
req/s on a shared machine). Everything above this floor (routing, objects, storage)
costs on top of it.

    python bench/http_floor.py [--duration 5] [--connections 1,32] [--repeat 1]

With --repeat N each concurrency runs N times and the best run (by req/s) is shown:
on a shared machine the best run is the one least disturbed by other work.

Needs `wrk` (apt-get install wrk) and, for pinning, `taskset` (skipped if absent).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def _serve() -> None:
    """Server side: run the empty handler and print the bound port once listening."""
    sys.path.insert(0, str(_REPO / "host"))
    import trio

    from dohost.server.http_server import serve_http
    from dohost.server.http_types import HttpRequest, HttpResponse

    ok = HttpResponse(200, [("Content-Type", "text/plain")], b"ok")

    async def handler(request: HttpRequest) -> HttpResponse:
        return ok

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            _host, port = await nursery.start(serve_http, handler)
            print(port, flush=True)

    trio.run(main)


def _pin(cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > cpu:
        return ["taskset", "-c", str(cpu)]
    return []


def _to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(url: str, connections: int, duration: int) -> tuple[float, float, float]:
    cmd = [
        *_pin(1),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        url,
    ]
    print("$", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    return rps, p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per run")
    parser.add_argument("--connections", default="1,32", help="comma-separated list")
    parser.add_argument("--repeat", type=int, default=1, help="runs per concurrency; best shown")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve()
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    server = subprocess.Popen(
        [*_pin(0), sys.executable, __file__, "--serve"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}/"
        _wrk(url, 1, 1)  # warm-up
        rows = []
        for connections in (int(c) for c in args.connections.split(",")):
            runs = []
            for _ in range(args.repeat):
                cpu_before = _cpu_seconds(server.pid)
                rps, p50, p99 = _wrk(url, connections, args.duration)
                cpu_us = (_cpu_seconds(server.pid) - cpu_before) / (rps * args.duration) * 1e6
                runs.append((connections, rps, p50, p99, cpu_us))
            rows.append(max(runs, key=lambda run: run[1]))
    finally:
        server.terminate()
        server.wait()
    print(f"{'conns':>6} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'cpu us/req':>11}")
    for connections, rps, p50, p99, cpu_us in rows:
        print(f"{connections:>6} {rps:>10.0f} {p50:>8.3f} {p99:>8.3f} {cpu_us:>11.1f}")


if __name__ == "__main__":
    main()

"""Hostile tenants (issue 15): the quiet tenant's latency and the host's memory under attacks.

    flock /work/bench.lock .venv/bin/python -m bench.hostile [--seconds 3] [--json FILE]

One embedded `Host` (durability os) in this process; tenant "quiet" has a no-op object
(tests/fixtures/noop.wat) asked sequentially, each request timed (as
tests/reliability/quiet_probe.py does: a scheduling checkpoint, then `Host.fetch`).
Each phase runs one attack from tests/fixtures/hostile/ for `--seconds` while the quiet
tenant is measured, and reports the quiet p50/p99/max, the attacker's completed events
and the process's peak RSS during the phase (VmHWM, reset before each phase):

- **alone**: no attack.
- **noisy**: the noisy neighbour of tests/reliability/test_noisy_neighbour.py: cpu_burn
  (tens of ms of wasm per event) and mem_churn (32 MiB written per event), 4 objects
  each, 2 clients per object.
- **log**: log_flood (16 MiB of log lines per event), one client over 4 objects; the
  tenant's log rate (1 MiB/s, burst 4 MiB) drops the rest.
- **activation**: heavy_new_objects (a 16 MiB `memory.fill` on a new object's first
  event), two clients, a new object per request.
- **broadcast**: ws_flood (each WebSocket message broadcasts 24 x 64 KiB to every
  connection of the object) over the real HTTP server: 8 connections held by a client
  process (raw sockets, reads everything, no parsing), one of which triggers the next
  broadcast as soon as the last one has arrived everywhere.
- **memory**: memory_bomb (grows to the 128 MiB cap, writing every byte) on 8 objects
  at once, each once: the host holds each activation's memory until the resident
  memory budget (`Supervisor.max_resident_memory`, 4 GiB) or the idle timeout.

The RSS column is the whole process (host, wasmtime, Python, the quiet probe), with
what earlier phases left resident (activations live until the idle timeout). Compare
rows of one run; the machine is shared: quote the load average printed with the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import wasmtime

from dohost import Host, Request

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = ROOT / "tests" / "fixtures" / "hostile"
NOOP = Request("GET", "/")
ADMIN = "bench-hostile-admin-" + "x" * 16

# The broadcast client: N raw WebSocket connections; connection 0 sends a (masked) text
# frame "go" whenever every connection has received the previous broadcast's bytes.
CLIENT = textwrap.dedent(
    """
    import base64, os, selectors, socket, sys, time
    port, token, n, seconds, per_event = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /v1/classes/flood/objects/f/ HTTP/1.1\\r\\nhost: t\\r\\n"
                   f"authorization: Bearer {token}\\r\\nupgrade: websocket\\r\\n"
                   f"connection: upgrade\\r\\nsec-websocket-key: {key}\\r\\n"
                   f"sec-websocket-version: 13\\r\\n\\r\\n").encode())
        head = b""
        while b"\\r\\n\\r\\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101"), head[:200]
        s.setblocking(False)
        socks.append(s)
    go = bytes([0x81, 0x82]) + b"\\0\\0\\0\\0" + b"go"
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    end = time.monotonic() + seconds
    events = 0
    while time.monotonic() < end:
        got = {id(s): 0 for s in socks}
        socks[0].sendall(go)
        while min(got.values()) < per_event and time.monotonic() < end + 5:
            for key, _ in sel.select(0.5):
                try:
                    data = key.fileobj.recv(1 << 20)
                except BlockingIOError:
                    continue
                got[id(key.fileobj)] += len(data)
        events += 1
    print(events)
    """
)


def rss_peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def wat(name: str) -> bytes:
    return wasmtime.wat2wasm((HOSTILE / f"{name}.wat").read_text())


async def quiet_for(host: Host, seconds: float) -> list[float]:
    lat: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        await trio.lowlevel.checkpoint()
        await host.fetch("quiet", "noop", "q", NOOP)
        lat.append(time.perf_counter() - t0)
    return lat


def summary(name: str, lat: list[float], attacker: int, note: str) -> dict[str, Any]:
    ms = sorted(x * 1e3 for x in lat)
    p99 = statistics.quantiles(ms, n=100, method="inclusive")[98] if len(ms) > 1 else ms[0]
    return {
        "phase": name,
        "quiet_requests": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(p99, 3),
        "max_ms": round(ms[-1], 3),
        "attacker_events": attacker,
        "peak_rss_mib": round(rss_peak_mib(), 1),
        "note": note,
    }


async def phase(
    host: Host, name: str, seconds: float, attack: Callable[[trio.Event], Awaitable[int]], note: str
) -> dict[str, Any]:
    await quiet_for(host, 0.05)
    reset_peak()
    stop = trio.Event()
    done: list[int] = []

    async def run_attack() -> None:
        done.append(await attack(stop))

    async with trio.open_nursery() as n:
        n.start_soon(run_attack)
        await trio.sleep(0.2)  # past the first events (inline tries, marks)
        lat = await quiet_for(host, seconds)
        stop.set()
    return summary(name, lat, done[0] if done else 0, note)


async def run(seconds: float) -> list[dict[str, Any]]:
    from dohost.server.api import Api
    from dohost.server.http_server import serve_http
    from dohost.server.http_types import HttpRequest
    from dohost.server.quotas import Quotas
    from dohost.server.state import ServerState

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dohost-bench-hostile-") as tmp:
        async with Host(Path(tmp) / "data", durability="os") as host:
            await host.deploy(
                "quiet", "noop", wasmtime.wat2wasm((ROOT / "tests/fixtures/noop.wat").read_text())
            )
            await host.deploy("noisy", "log", wat("log_flood"))
            await host.deploy("noisy", "fill", wat("heavy_new_objects"))
            await host.deploy("noisy", "bomb", wat("memory_bomb"))
            fixtures = ROOT / "tests" / "fixtures"
            for cls in ("cpu_burn", "mem_churn"):
                await host.deploy(
                    "noisy", cls, wasmtime.wat2wasm((fixtures / f"{cls}.wat").read_text())
                )

            async def nothing(stop: trio.Event) -> int:
                await stop.wait()
                return 0

            async def noisy(stop: trio.Event) -> int:
                n = 0

                async def client(cls: str, obj: str) -> None:
                    nonlocal n
                    while not stop.is_set():
                        await host.fetch("noisy", cls, obj, NOOP)
                        n += 1
                        await trio.lowlevel.checkpoint()

                async with trio.open_nursery() as nursery:
                    for cls in ("cpu_burn", "mem_churn"):
                        for i in range(4):
                            for _ in range(2):
                                nursery.start_soon(client, cls, f"{cls}{i}")
                return n

            async def log_flood(stop: trio.Event) -> int:
                n = 0
                while not stop.is_set():
                    await host.fetch("noisy", "log", f"l{n % 4}", NOOP)
                    n += 1
                return n

            async def new_objects(stop: trio.Event) -> int:
                made = 0

                async def client() -> None:
                    nonlocal made
                    while not stop.is_set():
                        made += 1
                        await host.fetch("noisy", "fill", f"n{made}", NOOP)

                async with trio.open_nursery() as n:
                    n.start_soon(client)
                    n.start_soon(client)
                return made

            async def memory(stop: trio.Event) -> int:
                async with trio.open_nursery() as n:
                    for i in range(8):
                        n.start_soon(host.fetch, "noisy", "bomb", f"b{i}", NOOP)
                await stop.wait()
                return 8

            rows.append(await phase(host, "alone", seconds, nothing, ""))
            rows.append(
                await phase(host, "noisy", seconds, noisy, "cpu_burn + mem_churn, 16 clients")
            )
            rows.append(await phase(host, "log", seconds, log_flood, "16 MiB of log per event"))
            rows.append(
                await phase(
                    host, "activation", seconds, new_objects, "a new 16 MiB object per request"
                )
            )

            api = Api(await ServerState.attach(host, ADMIN, Quotas()))
            async with trio.open_nursery() as server:
                port = (await server.start(serve_http, api.handle))[1]
                req = HttpRequest(
                    "POST", "/v1/tenants", "",
                    [("host", "t"), ("authorization", f"Bearer {ADMIN}")],
                    b'{"name": "wsnoisy"}', ("127.0.0.1", 1), "1.1",
                )  # fmt: skip
                token = json.loads((await api.handle(req)).body)["token"]
                await host.deploy("wsnoisy", "flood", wat("ws_flood"))

                async def broadcast(stop: trio.Event) -> int:
                    per_event = 24 * (65536 + 10)
                    proc = await trio.lowlevel.open_process(
                        [sys.executable, "-c", CLIENT, str(port), token, "8", str(seconds + 0.4),
                         str(per_event)],
                        stdout=subprocess.PIPE,
                    )  # fmt: skip
                    assert proc.stdout is not None
                    out = b""
                    while chunk := await proc.stdout.receive_some():
                        out += chunk
                    await proc.wait()
                    await stop.wait()
                    return int(out or b"0")

                rows.append(
                    await phase(
                        host, "broadcast", seconds, broadcast, "8 connections, 12 MiB per event"
                    )
                )
                assert host.websockets is not None
                host.websockets.close_all()
                server.cancel_scope.cancel()
            rows.append(
                await phase(host, "memory", seconds, memory, "8 objects grown to 128 MiB each")
            )
            resident = getattr(host.supervisor, "resident_memory", None)  # (older trees)
            rows[-1]["resident_memory_mib"] = None if resident is None else resident >> 20
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="quiet measurement per phase")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    rows = trio.run(run, args.seconds)
    load = os.getloadavg()
    print(f"\n`python -m bench.hostile --seconds {args.seconds}` (load average {load[0]:.1f})\n")
    print(
        "| phase | quiet p50 / p99 / max (ms) | quiet requests | attacker events | peak RSS (MiB) | attack |"
    )
    print("|---|--:|--:|--:|--:|---|")
    for r in rows:
        print(
            f"| {r['phase']} | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} / {r['max_ms']:.1f} | "
            f"{r['quiet_requests']} | {r['attacker_events']} | {r['peak_rss_mib']:.0f} | {r['note']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"load": load[0], "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

"""Object-to-object call round trip through `dohost.Host` (abi/README.md "Object calls").

    .venv/bin/python bench/calls_micro.py [--quick] [--workerd PATH]

Two objects of the test guest tests/fixtures/c/calltest.c (build it first:
`.venv/bin/python tools/build_guests.py calltest`); a calls b's `GET /ping` (no storage).

- **round trip**: each call timed on the caller's worker thread around the blocking hand-off
  (runtime/call_imports.py's hook): worker → loop → the callee's event (inline) → loop →
  worker. p50/p99 over single calls.
- **per call, in a loop**: one event of a making N calls, minus an event making none,
  divided by N: the guest's whole cost of a call (SDK encoding, the import crossing, the
  round trip, decoding the response).
- **event with one call**: `Host.fetch` of an event that makes one call, beside one of the
  same object that makes none: what a call adds to a request. (Both run on a worker
  thread: an object that calls skips the inline attempt for a while; a fetch that stays
  inline on the loop costs less.)

With `--workerd`, the same per-call-in-a-loop and event-with-one-call measures for a
workerd Durable Object calling another through a stub (`bench/workerd_calls/`), over HTTP
on 127.0.0.1. The machine is shared and noisy: compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host"))

import trio  # noqa: E402

from dohost import Host, Request  # noqa: E402
from dohost.server.calls import CallRouter  # noqa: E402

CALLTEST = ROOT / "tests" / "fixtures" / "build" / "calltest.wasm"
WORKERD_DIR = Path(__file__).resolve().parent / "workerd_calls"


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def row(name: str, samples_us: list[float], note: str = "") -> dict[str, Any]:
    p50, p99 = pct(samples_us, 50), pct(samples_us, 99)
    print(f"  {name:<46} p50 {p50:8.1f} µs   p99 {p99:8.1f} µs   n={len(samples_us):<6} {note}")
    return {"name": name, "p50_us": p50, "p99_us": p99, "n": len(samples_us)}


async def bench_dohost(quick: bool) -> list[dict[str, Any]]:
    rounds = 2_000 if quick else 20_000
    loops = 30 if quick else 200
    per_loop = 50
    out: list[dict[str, Any]] = []
    timings: list[float] = []
    original = CallRouter.hook

    def timed_hook(self: CallRouter, slot: Any) -> Any:
        inner = original(self, slot)

        def on_call(*args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*args)
            finally:
                timings.append((time.perf_counter() - t0) * 1e6)

        return on_call

    CallRouter.hook = timed_hook  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        async with Host(Path(tmp) / "data", durability="fsync") as host:
            await host.deploy("bench", "calltest", CALLTEST.read_bytes())

            async def fetch(path: str, query: str = "") -> None:
                r = await host.fetch("bench", "calltest", "a", Request("POST", path, query))
                assert r.status == 200 and r.text in ("ok", "pong"), r.text

            for _ in range(200):  # warm up: activations, caches, the spare worker thread
                await fetch("/ping_many", "n=1&name=b")
            # Round trips of single calls, from events making one call each.
            timings.clear()
            for _ in range(rounds):
                await fetch("/ping_many", "n=1&name=b")
            out.append(row("call round trip (caller's thread)", list(timings)))
            # Per call inside one event: N calls minus none, over N.
            per_call: list[float] = []
            for _ in range(loops):
                t0 = time.perf_counter()
                await fetch("/ping_many", f"n={per_loop}&name=b")
                t1 = time.perf_counter()
                await fetch("/ping_many", "n=0&name=b")
                t2 = time.perf_counter()
                per_call.append(((t1 - t0) - (t2 - t1)) / per_loop * 1e6)
            out.append(row(f"per call, {per_loop} calls in one event", per_call, "(guest's view)"))
            # A whole event with one call, beside one with none.
            one, none = [], []
            for _ in range(rounds // 4):
                t0 = time.perf_counter()
                await fetch("/ping_many", "n=1&name=b")
                t1 = time.perf_counter()
                await fetch("/ping_many", "n=0&name=b")
                t2 = time.perf_counter()
                one.append((t1 - t0) * 1e6)
                none.append((t2 - t1) * 1e6)
            out.append(row("Host.fetch: event making one call", one))
            out.append(row("Host.fetch: event making no call", none, "(same object)"))
    CallRouter.hook = original  # type: ignore[method-assign]
    return out


# ---- workerd ---------------------------------------------------------------------------------


def bench_workerd(binary: str, quick: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for f in ("config.capnp", "worker.js"):
            shutil.copy(WORKERD_DIR / f, work / f)
        (work / "data").mkdir()
        ctl = work / "ctl.jsonl"
        # `exec` so that the process started is workerd itself (killed below by its pid).
        cmd = (
            f"exec {shlex.quote(binary)} serve config.capnp -s http=127.0.0.1:0 "
            f"-d do-storage={shlex.quote(str(work / 'data'))} --control-fd 3 "
            "3>ctl.jsonl 2>stderr"
        )
        proc = subprocess.Popen(cmd, shell=True, cwd=work, stdout=subprocess.DEVNULL)
        try:
            port = _wait_port(ctl, proc, work)
            base = f"http://127.0.0.1:{port}"

            def get(path: str) -> None:
                with urllib.request.urlopen(base + path, timeout=30) as r:
                    assert r.status == 200, r.status
                    r.read()

            for _ in range(200):
                get("/a/ping_many?n=1")
            rounds = 2_000 if quick else 10_000
            loops = 30 if quick else 200
            per_loop = 50
            per_call: list[float] = []
            for _ in range(loops):
                t0 = time.perf_counter()
                get(f"/a/ping_many?n={per_loop}")
                t1 = time.perf_counter()
                get("/a/ping_many?n=0")
                t2 = time.perf_counter()
                per_call.append(((t1 - t0) - (t2 - t1)) / per_loop * 1e6)
            out.append(row(f"workerd: per call, {per_loop} calls in one request", per_call))
            one, none = [], []
            for _ in range(rounds // 4):
                t0 = time.perf_counter()
                get("/a/ping_many?n=1")
                t1 = time.perf_counter()
                get("/a/ping_many?n=0")
                t2 = time.perf_counter()
                one.append((t1 - t0) * 1e6)
                none.append((t2 - t1) * 1e6)
            out.append(row("workerd: HTTP request making one call", one))
            out.append(row("workerd: HTTP request making no call", none))
        finally:
            proc.kill()  # only the process this function started
            proc.wait()
    return out


def _wait_port(ctl: Path, proc: subprocess.Popen[bytes], work: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("workerd exited: " + (work / "stderr").read_text()[-2000:])
        m = re.search(r'"socket":"http","port":(\d+)', ctl.read_text() if ctl.exists() else "")
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise RuntimeError("workerd did not report its port")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workerd", help="path to the workerd binary (side by side)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    if not CALLTEST.exists():
        sys.exit("build the test guest first: .venv/bin/python tools/build_guests.py calltest")
    print(f"dohost (cpu count {os.cpu_count()}):")
    rows = trio.run(bench_dohost, args.quick)
    if args.workerd:
        print("workerd:")
        rows += bench_workerd(args.workerd, args.quick)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

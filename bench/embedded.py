"""Benchmarks of the runtime through the embedded API (no HTTP): issue "Object runtime".

    .venv/bin/python bench/embedded.py [--quick] [--durability fsync|os] [--json FILE]

Rows:
- no-op event: `Host.fetch` of a guest that answers without touching storage (p50/p99)
- cached get: one `kv_get` of a key already read in this activation, timed inside one
  event that calls it many times (per-call cost, wasm -> host -> wasm)
- activation: the first event of an object whose instance was dropped (hibernated),
  minus nothing: what a client waits for
- durable increments/s: the counter sample, POST /incr, fsync'd, on one object
  (sequential, and 32 concurrent) and on 1,000 objects (32 concurrent)
Targets (issue): no-op <= 50 us, cached get <= 5 us, activation <= 1 ms.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import trio
import wasmtime

from dohost import Host, Request

ROOT = Path(__file__).resolve().parent.parent

_RESP = (
    bytes([0xA2, 0x66]) + b"status" + bytes([0x18, 0xC8, 0x64]) + b"body" + bytes([0x62]) + b"ok"
)
_ESC = "".join(f"\\{b:02x}" for b in _RESP)

# A no-op guest, and a loop of kv_get calls on one key ("k") for the in-wasm timing.
BENCH_WAT = f"""
(module
  (import "dohost" "response_set" (func $rs (param i32 i32) (result i32)))
  (import "dohost" "kv_get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "dohost" "kv_put" (func $put (param i32 i32 i32 i32) (result i32)))
  (import "dohost" "input_read" (func $in (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{_ESC}")
  (data (i32.const 8) "k")
  (func (export "dohost_abi_v1"))
  (func (export "dohost_fetch") (param $len i32) (result i32)
    (local $i i32) (local $n i32)
    ;; The request's body length decides: 0 = no-op; otherwise loop body-length gets.
    (drop (call $in (i32.const 4096) (i32.const 4096)))
    (local.set $n (i32.load8_u (i32.sub (i32.add (i32.const 4096) (local.get $len)) (i32.const 1))))
    (if (i32.eq (local.get $n) (i32.const 0x40)) (then  ;; body empty: last byte is the 0x40 head
      (drop (call $rs (i32.const 16) (i32.const {len(_RESP)})))
      (return (i32.const 0))))
    (drop (call $put (i32.const 8) (i32.const 1) (i32.const 8) (i32.const 1)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.const 100000)))
      (drop (call $get (i32.const 8) (i32.const 1) (i32.const 1024) (i32.const 64)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (drop (call $rs (i32.const 16) (i32.const {len(_RESP)})))
    (i32.const 0))
)
"""


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


async def measure_noop(host: Host, n: int) -> dict[str, float]:
    """p50/p99 of a no-op event (BENCH_WAT with an empty body) through Host.fetch."""
    noop = Request("GET", "/")
    for _ in range(200):
        await host.fetch("b", "bench", "x", noop)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        await host.fetch("b", "bench", "x", noop)
        lat.append(time.perf_counter() - t)
    return {"p50_us": pct(lat, 50) * 1e6, "p99_us": pct(lat, 99) * 1e6}


async def measure_cached_get(host: Host, events: int) -> dict[str, float]:
    """Per-call cost of kv_get on a cached key: events of 100,000 calls each."""
    per_get = []
    for _ in range(events):
        t = time.perf_counter()
        await host.fetch("b", "bench", "g", Request("POST", "/", "", [], b"x"))
        per_get.append((time.perf_counter() - t) / 100_000)
    return {"p50_us": pct(per_get, 50) * 1e6, "p99_us": max(per_get) * 1e6}


async def measure_activation(host: Host, n: int) -> dict[str, float]:
    """First event of a counter object whose activation was just dropped."""
    noop = Request("GET", "/")
    lat = []
    sup = host.supervisor
    for i in range(n):
        name = f"act{i % 50}"
        await host.fetch("b", "counter", name, noop)
        sup.hibernate_idle(trio.current_time() + 10 * host.idle_timeout)  # drop every instance
        t = time.perf_counter()
        await host.fetch("b", "counter", name, noop)
        lat.append(time.perf_counter() - t)
    return {"p50_us": pct(lat, 50) * 1e6, "p99_us": pct(lat, 99) * 1e6}


async def deploy_bench_classes(host: Host) -> None:
    await host.deploy("b", "bench", wasmtime.wat2wasm(BENCH_WAT))
    await host.deploy("b", "counter", (ROOT / "samples/counter/counter.wasm").read_bytes())


async def run(quick: bool, durability: str) -> dict[str, dict[str, float]]:
    n = 2000 if quick else 20000
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as d:
        async with Host(Path(d) / "data", durability=durability) as host:
            await deploy_bench_classes(host)
            out["no-op event (embedded API)"] = await measure_noop(host, n)
            out["cached kv_get inside wasm"] = await measure_cached_get(host, 5 if quick else 15)
            out["activation (first event after hibernation)"] = await measure_activation(
                host, 300 if quick else 2000
            )

            incr = Request("POST", "/incr")

            async def incr_rate(objects: int, concurrency: int, total: int) -> float:
                counter = iter(range(total))
                t = time.perf_counter()

                async def worker() -> None:
                    for i in counter:
                        r = await host.fetch("b", "counter", f"o{objects}-{i % objects}", incr)
                        assert r.status == 200

                async with trio.open_nursery() as nursery:
                    for _ in range(concurrency):
                        nursery.start_soon(worker)
                return total / (time.perf_counter() - t)

            m = 300 if quick else 3000
            out["durable increments/s, 1 object, sequential"] = {
                "per_s": await incr_rate(1, 1, m // 3)
            }
            out["durable increments/s, 1 object, 32 concurrent"] = {
                "per_s": await incr_rate(1, 32, m)
            }
            out["durable increments/s, 1,000 objects, 32 concurrent"] = {
                "per_s": await incr_rate(1000, 32, m * 2)
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--durability", default="fsync", choices=["fsync", "os"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    res = trio.run(run, args.quick, args.durability)
    label = "" if args.durability == "fsync" else " (durability=os: no fsync, dev only)"
    print(f"| embedded API{label} | p50 µs | p99 µs | per s |")
    print("|---|---|---|---|")
    for k, v in res.items():
        p50 = f"{v['p50_us']:.1f}" if "p50_us" in v else ""
        p99 = f"{v['p99_us']:.1f}" if "p99_us" in v else ""
        rate = f"{v['per_s']:,.0f}" if "per_s" in v else ""
        print(f"| {k} | {p50} | {p99} | {rate} |")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

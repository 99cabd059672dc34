"""Micro-benchmarks, each beside the physical floor it is measured against.

    guest→host storage get   a cached kv_get, timed inside one event that calls it 100,000
                             times (bench/embedded.py)      vs an empty import: the same
                             wasm loop calling a ctypes callback that returns 0 (the
                             crossing alone), and an empty Python→C ctypes call
    event dispatch           a no-op event through Host.fetch (embedded, p50)
                             vs an empty wasm export called through the same raw ctypes path
    activation               first event of an object whose activation was dropped (p50)
                             vs a bare wasmtime Store + InstancePre.instantiate of the module
    uncached storage get     KvShard.get                  vs a raw apsw point read
    group-commit batch       kv commits from 1,000 objects, FSYNC: time per batch
                             vs a raw 4 KiB append + fdatasync (bench/storage_micro.py)
    commit latency           one event waiting for its own commit vs the same raw fsync

In-process, no HTTP; the process is pinned to the server CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import trio
import wasmtime

from bench import embedded, storage_micro
from bench.common import SERVER_CPU
from bench.model import MicroRow

LOOP = 100_000

_FLOOR_WAT = f"""
(module
  (import "env" "empty" (func $empty (param i32 i32 i32 i32) (result i32)))
  (func (export "loop")
    (local $i i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.const {LOOP})))
      (drop (call $empty (i32.const 8) (i32.const 1) (i32.const 1024) (i32.const 64)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))
  (func (export "nop")))
"""


def _best(fn: object, n: int, repeat: int = 7) -> float:
    """Best of `repeat` runs of fn() doing n operations: seconds per operation."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def crossing_floors() -> dict[str, float]:
    """µs per empty import call from wasm, per empty export call, per Python→C call."""
    from dohost.runtime import fastcall

    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    i32 = wasmtime.ValType.i32()
    ty = wasmtime.FuncType([i32, i32, i32, i32], [i32])
    cb = fastcall.make_callback(("i32",) * 4, True, lambda a, b, c, d: 0, lambda e: -1)
    fastcall.define_unchecked(linker, "env", "empty", ty, cb)
    store = wasmtime.Store(engine)
    inst = linker.instantiate(store, wasmtime.Module(engine, _FLOOR_WAT))
    exports = inst.exports(store)
    loop = fastcall.FastExport(store, exports["loop"], 0, 0)
    nop = fastcall.FastExport(store, exports["nop"], 0, 0)
    import_us = _best(loop, LOOP) * 1e6

    def nops() -> None:
        for _ in range(LOOP):
            nop()

    export_us = _best(nops, LOOP) * 1e6
    labs = ctypes.CDLL(None).labs
    labs.argtypes, labs.restype = [ctypes.c_long], ctypes.c_long

    def cs() -> None:
        for _ in range(LOOP):
            labs(1)

    c_us = _best(cs, LOOP) * 1e6
    return {"import_us": import_us, "export_us": export_us, "ctypes_us": c_us}


async def _embedded(quick: bool, durability: str) -> dict[str, float]:
    from dohost import Host

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="dohost-micro-") as d:
        async with Host(Path(d) / "data", durability=durability) as host:
            await embedded.deploy_bench_classes(host)
            out["get_us"] = (await embedded.measure_cached_get(host, 5 if quick else 15))["p50_us"]
            noop = await embedded.measure_noop(host, 2000 if quick else 10000)
            out["noop_p50_us"], out["noop_p99_us"] = noop["p50_us"], noop["p99_us"]
            act = await embedded.measure_activation(host, 200 if quick else 1000)
            out["act_p50_us"], out["act_p99_us"] = act["p50_us"], act["p99_us"]
            compiled = host.classes.compiled(host.classes.get("b", "counter"))
            lat = []
            for _ in range(200 if quick else 1000):
                t0 = time.perf_counter()
                store = wasmtime.Store(compiled.engine)
                # (data segments are copied in under the epoch deadline: arm it, as
                # an activation does)
                store.set_epoch_deadline(1 << 30)
                compiled.instance_pre.instantiate(store)
                lat.append(time.perf_counter() - t0)
            out["instantiate_us"] = statistics.median(lat) * 1e6
    return out


def run(quick: bool, durability: str, work: Path) -> list[MicroRow]:
    cpus = os.sched_getaffinity(0)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {SERVER_CPU})
    try:
        floors = crossing_floors()
        emb = trio.run(_embedded, quick, durability)
        d = work / "micro-storage"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        storage_micro.ROWS.clear()
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            storage_micro.bench_kv_reads(d, quick)
            storage_micro.bench_fsync(d, quick)
            storage_micro.bench_commit_latency(d, 100 if quick else 300)
            commits = storage_micro.bench_commits(d, "kv", 1000, 5_000 if quick else 20_000)
        shutil.rmtree(d, ignore_errors=True)
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)
    sm = {name: value for name, value, _unit, _note in storage_micro.ROWS}
    append_us = sm["floor: raw 4 KiB append + os.fdatasync"]
    overwrite_us = sm["floor: raw 4 KiB overwrite + os.fsync"]
    nb = max(commits["batches"], 1)
    sql_us, fsync_us = commits["commit_s"] / nb * 1e6, commits["fsync_s"] / nb * 1e6
    batch_us = sql_us + fsync_us
    per_batch = commits["secs"] * commits["ev_per_s"] / nb
    label = "" if durability == "fsync" else " [durability=os]"
    return [
        MicroRow("guest→host storage get (cached kv_get, in-wasm loop)", emb["get_us"], "µs",
                 "empty import from wasm (ctypes callback)", floors["import_us"],
                 f"Python→C empty ctypes call: {floors['ctypes_us']:.3f} µs"),
        MicroRow("event dispatch (no-op event, Host.fetch p50)" + label, emb["noop_p50_us"], "µs",
                 "empty wasm export via raw ctypes call", floors["export_us"],
                 f"p99 {emb['noop_p99_us']:.0f} µs"),
        MicroRow("activation (first event after hibernation, p50)" + label, emb["act_p50_us"],
                 "µs", "bare Store + InstancePre.instantiate", emb["instantiate_us"],
                 f"p99 {emb['act_p99_us']:.0f} µs"),
        MicroRow("uncached storage get (KvShard.get)", sm["KvShard.get (thread's read connection)"],
                 "µs", "raw apsw point read", sm["floor: raw apsw point read, same db"]),
        MicroRow("group-commit batch (kv, 1,000 objects, FSYNC): committer time per batch",
                 batch_us, "µs", "raw 4 KiB append + fdatasync", append_us,
                 f"{per_batch:,.0f} events/batch: {sql_us:,.0f} µs SQLite ({sql_us / per_batch:.0f} µs "
                 f"per event) + {fsync_us:,.0f} µs fsync; {commits['ev_per_s']:,.0f} events/s "
                 f"from one producer thread; "
                 f"4 KiB overwrite + fsync: {overwrite_us:,.0f} µs"),
        MicroRow("commit latency (one event, waited)", sm["kv commit latency (one event, waited)"],
                 "µs", "raw 4 KiB append + fdatasync", append_us),
    ]  # fmt: skip

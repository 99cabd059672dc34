"""The guest SDKs compared: the counter (same routes in each language) per language.

For each of C (samples/counter), Zig, Rust and AssemblyScript (guest-sdk/<lang>/examples/
counter) it reports:

  size       the counter module, bytes (and a WAT floor: no SDK, a canned response)
  instantiate  p50 CPU time of constructing a `dohost.runtime.activation.Activation` (a
             wasmtime store and instance from the pre-linked module, plus `_initialize`)
  cold       p50 of the first event after the object's activation was dropped, through
             `Host.fetch` (the activation is built on that event's path)
  no-op      p50 of `GET /noop` (a 404 route: decode the request, encode a response, no
             storage) through `Host.fetch`
  incr       p50 of `POST /incr` (kv_get, kv_put, commit, durability "os") through
             `Host.fetch`
  guest no-op / guest incr
             p50 CPU time of the same events run directly with `Activation.run_event` on
             this thread: the guest, its import crossings and the host's side of them
             (request encoding, response decoding, the storage write set), without the
             supervisor, trio and waiting for the commit

The three CPU-time columns are this thread's CPU time, steadier than wall time on a busy
machine; the Host.fetch columns are wall time.

    .venv/bin/python bench/sdk_compare.py [--events 3000] [--cold 300] [--rounds 10] [--json F]

All four classes live in one Host, and the measurements run in rounds that interleave the
languages, so a busy moment of the machine spreads over all rows. Run `make build` first.
Numbers move with the machine; compare rows, not runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_REPO / "host"))

import trio  # noqa: E402

from dohost import Host, Request  # noqa: E402
from dohost.core.envelopes import encode_request  # noqa: E402
from dohost.runtime.activation import Activation  # noqa: E402
from dohost.runtime.event import ObjectIdent  # noqa: E402

COUNTERS = {
    "C": _REPO / "samples" / "counter" / "counter.wasm",
    "Zig": _REPO / "guest-sdk" / "zig" / "examples" / "counter" / "counter.wasm",
    "Rust": _REPO / "guest-sdk" / "rust" / "examples" / "counter" / "counter.wasm",
    "AssemblyScript": _REPO
    / "guest-sdk"
    / "assemblyscript"
    / "examples"
    / "counter"
    / "counter.wasm",
}
# The host's floor: a WAT module that answers a precomputed response without reading the
# request (no SDK). Only the no-op columns apply to it.
BASELINE = ("WAT floor (no SDK)", _REPO / "tests" / "fixtures" / "build" / "noop.wasm")
NOOP = Request("GET", "/noop")
INCR = Request("POST", "/incr")


def p50_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


async def timed(n: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t0)
    return out


class Lang:
    """One language's counter, deployed as its own class in the shared host."""

    def __init__(self, host: Host, name: str, wasm: bytes, incr: bool = True) -> None:
        self.host, self.name, self.wasm, self.incr = host, name, wasm, incr
        self.cls = "counter-" + "".join(c for c in name.lower() if c.isalnum())
        self.samples: dict[str, list[float]] = {}

    async def setup(self) -> None:
        await self.host.deploy("bench", self.cls, self.wasm)
        await timed(200, lambda: self.fetch(NOOP))  # warm up: compile, first activation
        if self.incr:
            await timed(200, lambda: self.fetch(INCR))
        await self.fetch(NOOP, "cold")
        self.cold_slot = next(
            s
            for s in self.host.supervisor._slots.values()
            if s.class_name == self.cls and s.name == "cold"
        )
        runtime = self.host.classes.get("bench", self.cls)
        self.compiled = self.host.classes.compiled(runtime)
        oid = self.host.id_from_name("bench", self.cls, "direct")
        self.storage = self.host.storage.open_object("bench", self.cls, oid.raw, oid.name)
        self.ident = ObjectIdent("bench", self.cls, oid.hex)
        self.act = Activation(self.compiled, self.ident, self.storage, self.host.limits)
        for req in (NOOP, INCR) if self.incr else (NOOP,):
            for _ in range(200):
                self.act.run_event("fetch", encode_request(req))

    async def fetch(self, req: Request, obj: str = "hot") -> object:
        r = await self.host.fetch("bench", self.cls, obj, req)
        assert r.status in (200, 404), (self.name, r.status, r.body)
        return r

    def add(self, key: str, values: list[float]) -> None:
        self.samples.setdefault(key, []).extend(values)

    async def round(self, events: int, cold_n: int) -> None:
        """One batch of every measurement. Rounds interleave the languages, so that a
        busy moment of the machine does not land on one language only."""
        self.add("noop_us", await timed(events, lambda: self.fetch(NOOP)))
        if self.incr:
            self.add("incr_us", await timed(events, lambda: self.fetch(INCR)))
        cold = []
        for _ in range(cold_n):  # drop the object's activation, then time the next event
            self.cold_slot.activation = None
            t0 = time.perf_counter()
            await self.fetch(NOOP, "cold")
            cold.append(time.perf_counter() - t0)
        self.add("cold_us", cold)
        inst = []
        for _ in range(cold_n):
            t0 = time.thread_time()
            Activation(self.compiled, self.ident, self.storage, self.host.limits)
            inst.append(time.thread_time() - t0)
        self.add("instantiate_us", inst)
        for key, req in (("guest_noop_us", NOOP), ("guest_incr_us", INCR))[: 2 if self.incr else 1]:
            data_in = encode_request(req)
            samples = []
            for _ in range(events):
                t0 = time.thread_time()
                result = self.act.run_event("fetch", data_in)
                samples.append(time.thread_time() - t0)
                assert result.error is None, result.error
            self.add(key, samples)

    def row(self) -> dict[str, float]:
        return {"size": len(self.wasm), **{k: p50_us(v) for k, v in self.samples.items()}}


def table(rows: dict[str, dict[str, float]]) -> str:
    cols = [
        ("module size", "size", "{:,.0f} B"),
        ("instantiate (CPU)", "instantiate_us", "{:.0f} µs"),
        ("cold event", "cold_us", "{:.0f} µs"),
        ("no-op event", "noop_us", "{:.0f} µs"),
        ("incr event", "incr_us", "{:.0f} µs"),
        ("guest no-op (CPU)", "guest_noop_us", "{:.1f} µs"),
        ("guest incr (CPU)", "guest_incr_us", "{:.1f} µs"),
    ]
    lines = ["| language | " + " | ".join(c[0] for c in cols) + " |"]
    lines.append("|---|" + "---:|" * len(cols))
    for lang, row in rows.items():
        cells = [fmt.format(row[key]) if key in row else "—" for _, key, fmt in cols]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def main(events: int, cold_n: int, rounds: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        async with Host(Path(tmp), durability="os") as host:
            langs = []
            for name, path in [*COUNTERS.items(), BASELINE]:
                if not path.exists():
                    raise SystemExit(f"{path} is not built: run `make build`")
                langs.append(Lang(host, name, path.read_bytes(), incr=name in COUNTERS))
                await langs[-1].setup()
            for r in range(rounds):
                for lang in langs:
                    await lang.round(events // rounds, max(1, cold_n // rounds))
                print(f"round {r + 1}/{rounds}", file=sys.stderr)
            for lang in langs:
                lang.storage.close()
            return {lang.name: lang.row() for lang in langs}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=3000, help="events per p50 (default 3000)")
    ap.add_argument("--cold", type=int, default=300, help="cold activations (default 300)")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    result = trio.run(main, args.events, args.cold, args.rounds)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")

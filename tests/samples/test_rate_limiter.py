"""samples/rate-limiter (Rust SDK) end to end through `dohost.Host`, with a controlled clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from dohost import Host, Request


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000.0

    def __call__(self) -> float:
        return self.ms


@pytest.fixture
async def limiter(tmp_path: Path, wasm: Any) -> Any:
    clock = Clock()
    async with Host(tmp_path / "data", durability="os", wall_clock_ms=clock) as host:
        await host.deploy("acme", "limiter", wasm("rate-limiter"))

        async def call(method: str, path: str, body: Any = b"", key: str = "api-key-1") -> Any:
            p, _, q = path.partition("?")
            data = json.dumps(body).encode() if isinstance(body, dict) else body
            r = await host.fetch("acme", "limiter", key, Request(method, p, q, [], data))
            is_json = (r.header("content-type") or "").startswith("application/json")
            return r.status, (json.loads(r.body) if is_json else r.text), r

        call.clock = clock  # type: ignore[attr-defined]
        yield call


async def test_bucket_allows_capacity_then_denies_then_refills(limiter: Any) -> None:
    status, config, _ = await limiter("GET", "/config")
    assert (status, config) == (200, {"capacity": 10, "refill_per_sec": 1})
    assert (await limiter("PUT", "/config", {"capacity": 3, "refill_per_sec": 2}))[0] == 200
    for remaining in (2, 1, 0):
        status, body, _ = await limiter("POST", "/take")
        assert (status, body) == (200, {"allowed": True, "remaining": remaining})
    status, body, r = await limiter("POST", "/take")
    assert (status, body) == (429, {"allowed": False, "remaining": 0, "retry_after_ms": 500})
    assert r.header("retry-after") == "1"
    limiter.clock.ms += 499
    assert (await limiter("POST", "/take"))[1]["retry_after_ms"] == 1
    limiter.clock.ms += 1
    assert (await limiter("POST", "/take"))[1] == {"allowed": True, "remaining": 0}
    limiter.clock.ms += 60_000  # refills up to the capacity, not beyond
    status, state, _ = await limiter("GET", "/")
    assert state == {"tokens": 3, "capacity": 3, "refill_per_sec": 2}
    assert (await limiter("POST", "/take?n=3"))[1] == {"allowed": True, "remaining": 0}


async def test_keys_are_independent(limiter: Any) -> None:
    await limiter("PUT", "/config", {"capacity": 1, "refill_per_sec": 0.001})
    assert (await limiter("POST", "/take"))[0] == 200
    assert (await limiter("POST", "/take"))[0] == 429
    assert (await limiter("POST", "/take", key="api-key-2"))[0] == 200  # default config, full


async def test_concurrent_takes_never_overspend(limiter: Any) -> None:
    await limiter("PUT", "/config", {"capacity": 50, "refill_per_sec": 0.001})
    results: list[int] = []

    async def take() -> None:
        results.append((await limiter("POST", "/take"))[0])

    async with trio.open_nursery() as nursery:
        for _ in range(80):
            nursery.start_soon(take)
    assert sorted(results) == [200] * 50 + [429] * 30


async def test_config_changes_and_validation(limiter: Any) -> None:
    await limiter("PUT", "/config", {"capacity": 5, "refill_per_sec": 1})
    assert (await limiter("POST", "/take"))[1] == {"allowed": True, "remaining": 4}
    assert (await limiter("PUT", "/config", {"capacity": 2}))[1] == {
        "capacity": 2,
        "refill_per_sec": 1,
    }
    assert (await limiter("GET", "/"))[1]["tokens"] == 2  # clamped to the new capacity
    await limiter("PUT", "/config", {"capacity": 9})
    assert (await limiter("GET", "/"))[1]["tokens"] == 2  # raising it grants nothing
    await limiter("PUT", "/config", {"capacity": 2})
    for bad in ({"capacity": 0}, {"capacity": 1.5}, {"refill_per_sec": 0}, {"speed": 1}):
        assert (await limiter("PUT", "/config", bad))[0] == 400, bad
    assert (await limiter("PUT", "/config", b"[1]"))[0] == 400
    assert (await limiter("POST", "/take?n=0"))[0] == 400
    status, body, _ = await limiter("POST", "/take?n=3")
    assert status == 400 and "capacity" in body["error"]
    assert (await limiter("GET", "/take"))[0] == 405
    assert (await limiter("GET", "/nope"))[0] == 404
    assert (await limiter("GET", "/config"))[1] == {"capacity": 2, "refill_per_sec": 1}

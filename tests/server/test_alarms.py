"""Alarms end to end through the C test guest (tests/fixtures/c/kvtest.c), with trio's
MockClock driving time: the guests' now_ms and the alarm loop read a wall clock tied to
it, and a test moves time with `advance` (jump, then wait until the loop has delivered
everything due). Nothing sleeps in real time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from dohost import Code, DohostError, Host, Request
from dohost.core.limits import EventLimits

BASE = 1_800_000_000_000  # ms since the epoch at trio time 0


class World:
    def __init__(self, host: Host, clock: MockClock, wasm: Any) -> None:
        self.host, self.clock, self.wasm = host, clock, wasm

    def now(self) -> int:
        return int(BASE + self.clock.current_time() * 1000)

    async def advance(self, seconds: float) -> None:
        self.clock.jump(seconds)
        await self.host.alarms.settled()

    async def req(self, obj: str, method: str, path: str, body: bytes = b"", cls: str = "k") -> str:
        p, _, q = path.partition("?")
        r = await self.host.fetch("acme", cls, obj, Request(method, p, q, [], body))
        assert r.status < 400, (path, r.status, r.text)
        return r.text

    async def put(self, obj: str, key: str, value: str) -> None:
        await self.req(obj, "POST", f"/put?key={key}", value.encode())

    async def get(self, obj: str, key: str) -> str | None:
        p = f"/get?key={key}"
        r = await self.host.fetch("acme", "k", obj, Request("GET", "/get", f"key={key}", [], b""))
        assert r.status in (200, 404), (p, r.text)
        return r.text if r.status == 200 else None

    async def runs(self, obj: str) -> list[str]:
        text = await self.get(obj, "__alarm_runs")
        return [] if text is None else text.splitlines()


def open_host(path: Path, clock: MockClock, **kw: Any) -> Host:
    return Host(
        path,
        durability="os",
        wall_clock_ms=lambda: BASE + clock.current_time() * 1000,
        alarm_jitter=lambda: 0.0,
        **kw,
    )


@pytest.fixture
async def world(tmp_path: Path, mock_clock: MockClock, wasm: Any) -> AsyncIterator[World]:
    async with open_host(tmp_path / "data", mock_clock, limits=EventLimits(cpu_ms=300)) as host:
        await host.deploy("acme", "k", wasm("kvtest"))
        yield World(host, mock_clock, wasm)


async def test_fires_once_at_its_time_and_not_before(world: World) -> None:
    due = world.now() + 5_000
    await world.req("a", "POST", f"/alarm_set?ms={due}")
    assert await world.req("a", "GET", "/alarm_get") == str(due)
    await world.advance(4.999)
    assert await world.runs("a") == []
    await world.advance(0.001)
    assert await world.runs("a") == [f"{due} 0 false"]
    assert await world.req("a", "GET", "/alarm_get") == "none"  # consumed by the handler
    await world.advance(60)
    assert await world.runs("a") == [f"{due} 0 false"]
    assert world.host.alarm_index.entries() == []


async def test_a_time_in_the_past_fires_at_once(world: World) -> None:
    due = world.now() - 60_000
    await world.req("a", "POST", f"/alarm_set?ms={due}")
    await world.advance(0)
    assert await world.runs("a") == [f"{due} 0 false"]


async def test_setting_replaces_and_delete_cancels(world: World) -> None:
    t0 = world.now()
    await world.req("a", "POST", f"/alarm_set?ms={t0 + 1000}")
    await world.req("a", "POST", f"/alarm_set?ms={t0 + 3000}")
    await world.req("b", "POST", f"/alarm_set?ms={t0 + 1000}")
    await world.req("b", "POST", "/alarm_delete")
    await world.advance(2)
    assert await world.runs("a") == [] and await world.runs("b") == []
    await world.advance(2)
    assert await world.runs("a") == [f"{t0 + 3000} 0 false"]
    assert await world.runs("b") == []
    assert world.host.alarm_index.entries() == []  # stale index entries were cleaned up


async def test_alarm_change_rolls_back_with_a_failed_event(world: World) -> None:
    with pytest.raises(DohostError) as ei:
        await world.req("a", "POST", "/put_then_alarm_then_trap")
    assert ei.value.code is Code.OBJECT_ERROR
    assert await world.req("a", "GET", "/alarm_get") == "none"
    assert await world.get("a", "t") is None
    await world.advance(10)
    assert world.host.alarms.stats.runs == 0


async def test_a_handler_that_always_fails_runs_seven_times_then_is_dropped(world: World) -> None:
    await world.put("a", "__alarm_fail", "100")
    due = world.now() + 1000
    await world.req("a", "POST", f"/alarm_set?ms={due}")
    await world.advance(1)
    expected_gaps = [2, 4, 8, 16, 32, 64]  # seconds: 2 s * 2^n, jitter 0
    for n, gap in enumerate(expected_gaps, start=1):
        ((_entry, next_ms, retries),) = world.host.pending_alarms()
        assert (retries, next_ms) == (n, world.now() + gap * 1000)
        assert world.host.alarm_index.entries()[0].retry_count == n  # visible to `dohost alarms`
        await world.advance(gap - 0.001)
        assert world.host.alarms.stats.failures == n  # not yet
        await world.advance(0.001)
    stats = world.host.alarms.stats
    assert (stats.runs, stats.failures, stats.retries, stats.dropped) == (7, 7, 6, 1)
    assert world.host.pending_alarms() == []
    assert await world.req("a", "GET", "/alarm_get") == "none"  # the dropped alarm is gone
    assert world.host.alarm_index.entries() == []


async def test_fails_twice_then_succeeds(world: World) -> None:
    await world.put("a", "__alarm_fail", "2")
    due = world.now() + 1000
    await world.req("a", "POST", f"/alarm_set?ms={due}")
    await world.advance(1)
    await world.advance(2)
    await world.advance(4)
    assert await world.runs("a") == [f"{due} 2 true"]
    assert (world.host.alarms.stats.runs, world.host.alarms.stats.failures) == (3, 2)
    await world.advance(100)
    assert world.host.alarms.stats.runs == 3


async def test_a_failing_handler_that_sets_an_alarm_replaces_the_retry(world: World) -> None:
    await world.put("a", "__alarm_reset_in", "10000")
    await world.req("a", "POST", f"/alarm_set?ms={world.now() + 1000}")
    await world.advance(1)
    ((_entry, next_ms, retries),) = world.host.pending_alarms()
    assert (retries, next_ms) == (0, world.now() + 10_000)
    assert await world.req("a", "GET", "/alarm_get") == str(world.now() + 10_000)


async def test_a_cpu_kill_in_the_handler_counts_as_a_failure(world: World) -> None:
    await world.put("a", "__alarm_spin", "1")
    await world.req("a", "POST", f"/alarm_set?ms={world.now()}")
    await world.advance(0)
    assert world.host.alarms.stats.failures == 1
    ((_entry, _next_ms, retries),) = world.host.pending_alarms()
    assert retries == 1


async def test_a_handler_can_chain_the_next_alarm(world: World) -> None:
    await world.put("a", "__alarm_chain", "1000")
    start = world.now()
    await world.req("a", "POST", f"/alarm_set?ms={start + 1000}")
    for _ in range(5):
        await world.advance(1)
    assert await world.runs("a") == [f"{start + 1000 * i} 0 false" for i in range(1, 6)]


async def test_a_thousand_objects_due_in_the_same_second_all_fire(world: World) -> None:
    due = world.now() + 5_000
    for i in range(1000):
        await world.req(f"o{i}", "POST", f"/alarm_set?ms={due + i % 1000}")
    await world.advance(6)
    assert world.host.alarms.stats.runs == 1000
    for i in (0, 499, 999):
        assert await world.runs(f"o{i}") == [f"{due + i % 1000} 0 false"]


async def test_overdue_alarms_fire_at_start_in_due_order(
    tmp_path: Path, mock_clock: MockClock, wasm: Any
) -> None:
    data = tmp_path / "data"
    async with open_host(data, mock_clock) as host:
        await host.deploy("acme", "k", wasm("kvtest"))
        w = World(host, mock_clock, wasm)
        t0 = w.now()
        for name, delay in (("late", 3000), ("early", 1000), ("mid", 2000)):
            await w.req(name, "POST", f"/alarm_set?ms={t0 + delay}")
    # The host is down while the alarms become due.
    mock_clock.jump(3600)
    async with open_host(data, mock_clock, trace_alarms=True) as host:
        w = World(host, mock_clock, wasm)
        await host.alarms.settled()
        assert host.alarms.stats.trace is not None
        assert [key[2] for key in host.alarms.stats.trace] == [
            host.id_from_name("acme", "k", n).raw for n in ("early", "mid", "late")
        ]
        assert await w.runs("early") == [f"{t0 + 1000} 0 false"]


async def test_hibernation_after_idle_timeout(
    tmp_path: Path, mock_clock: MockClock, wasm: Any
) -> None:
    async with open_host(tmp_path / "data", mock_clock, idle_timeout=10.0) as host:
        await host.deploy("acme", "k", wasm("kvtest"))
        w = World(host, mock_clock, wasm)
        await w.put("a", "x", "kept")
        assert await w.req("a", "GET", "/init_count") == "1"
        acts = host.supervisor.stats.activations
        mock_clock.jump(5)
        await trio.testing.wait_all_tasks_blocked()
        assert await w.req("a", "GET", "/init_count") == "1"  # same instance, constructor once
        mock_clock.jump(11)
        await trio.testing.wait_all_tasks_blocked()
        assert host.supervisor.resident_slots() == []  # the instance is gone
        assert await w.get("a", "x") == "kept"  # durable state is not
        assert host.supervisor.stats.activations == acts + 1  # the constructor ran again
        assert await w.req("a", "GET", "/init_count") == "1"


@pytest.mark.parametrize("inline", [True, False], ids=["inline-first", "workers-only"])
async def test_lru_cap_is_never_exceeded(
    tmp_path: Path, mock_clock: MockClock, wasm: Any, inline: bool
) -> None:
    """With events on worker threads, activations are created concurrently (and an
    abandoned inline attempt creates one twice): the cap counts those being created and
    a delivery waits for room when every activation is busy."""
    async with open_host(tmp_path / "data", mock_clock, max_resident=5) as host:
        if not inline:
            host.supervisor.inline_ticks = 0
        await host.deploy("acme", "counter", wasm("counter"))
        seen = 0

        async def touch(i: int) -> None:
            nonlocal seen
            r = await host.fetch("acme", "counter", f"o{i % 12}", Request("POST", "/incr"))
            assert r.status == 200
            seen = max(seen, host.supervisor.resident)

        async with trio.open_nursery() as n:
            for i in range(120):
                n.start_soon(touch, i)
        assert 0 < seen <= 5 and host.supervisor.resident <= 5
        assert host.supervisor.stats.evictions > 0
        for i in range(12):
            r = await host.fetch("acme", "counter", f"o{i}", Request("GET", "/"))
            assert r.text == "10"  # nothing lost to eviction

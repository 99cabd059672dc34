"""Alarms through every language's SDK: the same spec against the C, Zig, Rust and
AssemblyScript conformance guests, with trio's MockClock driving time (the guests'
now_ms and the host's alarm loop read a wall clock tied to it; nothing sleeps).

The guests' alarm handler follows keys a test sets (see tests/fixtures/c/kvtest.c):
__alarm_fail N fails while retry_count < N, __alarm_reset_in N sets a new alarm and
fails, __alarm_chain N sets the next alarm; a successful run appends
"<scheduled_ms> <retry_count> <is_retry>" to __alarm_runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conformance_helpers import Guest, deploy
from trio.testing import MockClock

from dohost import Code, DohostError, Host
from dohost.core.limits import EventLimits

BASE = 1_800_000_000_000  # ms since the epoch at trio time 0


class World(Guest):
    clock: MockClock

    def now(self) -> int:
        return int(BASE + self.clock.current_time() * 1000)

    async def advance(self, seconds: float) -> None:
        self.clock.jump(seconds)
        await self.host.alarms.settled()

    async def runs(self, obj: str = "o") -> list[str]:
        status, body = await self.get(b"__alarm_runs", obj)
        return body.decode().splitlines() if status == 200 else []


@pytest.fixture
async def world(lang: str, tmp_path: Path, mock_clock: MockClock) -> AsyncIterator[World]:
    async with Host(
        tmp_path / "data",
        durability="os",
        wall_clock_ms=lambda: BASE + mock_clock.current_time() * 1000,
        alarm_jitter=lambda: 0.0,
        limits=EventLimits(cpu_ms=300),
    ) as host:
        guest = await deploy(host, lang)
        w = World(guest.host, guest.lang)
        w.clock = mock_clock
        yield w


async def test_set_get_fire_and_consume(world: World) -> None:
    due = world.now() + 5_000
    assert await world.text("GET", "/alarm_get") == "none"
    assert await world.text("POST", f"/alarm_set?ms={due}") == "0"
    assert await world.text("GET", "/alarm_get") == str(due)
    await world.advance(4.999)
    assert await world.runs() == []
    await world.advance(0.001)
    assert await world.runs() == [f"{due} 0 false"]
    assert await world.text("GET", "/alarm_get") == "none"  # consumed by the handler
    assert await world.text("GET", "/alarm_calls") == "1"


async def test_relative_set_replace_delete_and_bad_times(world: World) -> None:
    t0 = world.now()
    assert await world.text("POST", "/alarm_in?ms=1000") == "0"
    assert await world.text("GET", "/alarm_get") == str(t0 + 1000)
    assert await world.text("POST", f"/alarm_set?ms={t0 + 3000}") == "0"  # replaces
    assert await world.text("POST", "/alarm_in?ms=1000", obj="b") == "0"
    assert await world.text("POST", "/alarm_delete", obj="b") == "0"
    assert await world.text("POST", "/alarm_delete", obj="b") == "0"  # none set: no error
    text = await world.text("POST", "/alarm_set?ms=-1")
    assert (
        text == "-11 invalid_argument alarm time must be milliseconds since the Unix epoch (>= 0)"
    )
    assert (await world.req("POST", "/alarm_set?ms=soon"))[0] == 400
    await world.advance(4)
    assert await world.runs() == [f"{t0 + 3000} 0 false"]
    assert await world.runs("b") == []


async def test_alarm_change_rolls_back_with_a_trap(world: World) -> None:
    with pytest.raises(DohostError) as ei:
        await world.req("POST", "/put_then_alarm_then_trap")
    assert ei.value.code is Code.OBJECT_ERROR
    assert await world.text("GET", "/alarm_get") == "none"
    assert (await world.get(b"t"))[0] == 404
    await world.advance(10)
    assert world.host.alarms.stats.runs == 0


async def test_failing_handler_is_retried_then_succeeds(world: World) -> None:
    assert await world.put(b"__alarm_fail", b"2") == "0"
    due = world.now() + 1000
    await world.text("POST", f"/alarm_set?ms={due}")
    for seconds in (1, 2, 4):  # first run, then retries after 2 s and 4 s
        await world.advance(seconds)
    assert await world.runs() == [f"{due} 2 true"]  # the failed runs' writes were rolled back
    stats = world.host.alarms.stats
    assert (stats.runs, stats.failures) == (3, 2)
    # A failed event discards its instance: only the successful run's instance is left.
    assert await world.text("GET", "/alarm_calls") == "1"


async def test_failing_handler_that_sets_an_alarm_replaces_the_retry(world: World) -> None:
    assert await world.put(b"__alarm_reset_in", b"10000") == "0"
    await world.text("POST", f"/alarm_set?ms={world.now() + 1000}")
    await world.advance(1)
    ((_entry, next_ms, retries),) = world.host.pending_alarms()
    assert (retries, next_ms) == (0, world.now() + 10_000)
    assert await world.text("GET", "/alarm_get") == str(world.now() + 10_000)


async def test_handler_chains_the_next_alarm(world: World) -> None:
    assert await world.put(b"__alarm_chain", b"1000") == "0"
    start = world.now()
    await world.text("POST", f"/alarm_set?ms={start + 1000}")
    for _ in range(3):
        await world.advance(1)
    assert await world.runs() == [f"{start + 1000 * i} 0 false" for i in range(1, 4)]


async def test_cpu_kill_in_the_handler_is_a_failure(world: World) -> None:
    assert await world.put(b"__alarm_spin", b"1") == "0"
    await world.text("POST", f"/alarm_set?ms={world.now()}")
    await world.advance(0)
    assert world.host.alarms.stats.failures == 1
    ((_entry, _next_ms, retries),) = world.host.pending_alarms()
    assert retries == 1

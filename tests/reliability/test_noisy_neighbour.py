"""Noisy neighbour (issue 8, item 5): while tenant "noisy" keeps a CPU-bound guest
(tests/fixtures/cpu_burn.wat, tens of ms of wasm per event) and a memory-bound guest
(mem_churn.wat, writes 32 MiB per event) busy at full concurrency, tenant "quiet"'s no-op
requests keep their latency, because the noisy guest code does not run on the event
loop's thread: every event is watched (a spy on `Supervisor._run`, which runs each
event on the loop for an inline attempt or on a worker), and the test asserts how often
and how much noisy guest code ran on the loop, in thread CPU time (the host's GC time
excluded): not in wall time, which a loaded machine makes meaningless.

The quiet tenant's p99 (without and with the load, in alternating rounds) is printed,
not asserted: on a shared 2-core machine at load 15 the quiet p99 alone is ~12 ms of
scheduling noise. The latency figures are bench/hostile.py's `noisy` row.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest
import trio
from quiet_probe import NOOP, quiet_round
from trio.testing import MockClock

from dohost import Host
from dohost.server import supervisor
from dohost.server.supervisor import HEAVY_FOR_S

ROUNDS = 5
CPU_OBJECTS = 4
MEM_OBJECTS = 4
CLIENTS_PER_OBJECT = 2


async def test_noisy_guest_code_stays_off_the_loop(
    tmp_path: Path, wasm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Host(tmp_path / "data", durability="os") as host:
        await host.deploy("quiet", "noop", wasm("noop"))
        await host.deploy("noisy", "cpu", wasm("cpu_burn"))
        await host.deploy("noisy", "mem", wasm("mem_churn"))
        await quiet_round(host)  # warm: activation, caches
        # (tenant, on the loop?, guest CPU) of every run of an event
        runs: list[tuple[str, bool, float]] = []
        run = host.supervisor._run

        def spy(slot: Any, cls: Any, kind: str, data: bytes, inline_ticks: int, *a: Any) -> Any:
            result = run(slot, cls, kind, data, inline_ticks, *a)
            runs.append((slot.tenant, inline_ticks > 0, result.cpu_s - result.gc_s))
            return result

        monkeypatch.setattr(host.supervisor, "_run", spy)
        noisy_events = 0
        quiet_p99: list[float] = []
        loaded_p99: list[float] = []
        during: list[int] = []  # noisy events completed during each loaded round
        for _ in range(ROUNDS):
            quiet_p99.append(await quiet_round(host))
            stop = trio.Event()

            async def hammer(cls: str, obj: str, stop: trio.Event) -> None:
                nonlocal noisy_events
                while not stop.is_set():
                    await host.fetch("noisy", cls, obj, NOOP)
                    noisy_events += 1
                    await trio.lowlevel.checkpoint()  # (as above: a client on the network)

            async with trio.open_nursery() as nursery:
                for i in range(CPU_OBJECTS):
                    for _ in range(CLIENTS_PER_OBJECT):
                        nursery.start_soon(hammer, "cpu", f"c{i}", stop)
                for i in range(MEM_OBJECTS):
                    for _ in range(CLIENTS_PER_OBJECT):
                        nursery.start_soon(hammer, "mem", f"m{i}", stop)
                # Let the load settle (first events, inline attempts that move to workers):
                # a bounded wait for a condition.
                before = noisy_events
                with trio.fail_after(60):
                    while noisy_events < before + 2 * (CPU_OBJECTS + MEM_OBJECTS):
                        await trio.sleep(0.01)
                before = noisy_events
                loaded_p99.append(await quiet_round(host))
                during.append(noisy_events - before)
                stop.set()
        print(
            f"\nquiet no-op p99: {statistics.median(quiet_p99) * 1e3:.3f} ms (rounds "
            f"{', '.join(f'{x * 1e3:.3f}' for x in quiet_p99)}); loaded: "
            f"{statistics.median(loaded_p99) * 1e3:.3f} ms (rounds "
            f"{', '.join(f'{x * 1e3:.3f}' for x in loaded_p99)}); noisy events {noisy_events}, "
            f"during the loaded rounds {during}"
        )
        noisy = [(inline, cpu) for tenant, inline, cpu in runs if tenant == "noisy"]
        on_loop = [cpu for inline, cpu in noisy if inline]
        on_workers = sum(cpu for inline, cpu in noisy if not inline)
        # The load was real: the noisy events kept running, on the workers.
        assert noisy_events >= 3 * ROUNDS and len(noisy) >= noisy_events
        # Each noisy object ran guest code on the loop at most twice (its first event,
        # charged to its class and tenant, and the next, which marks it heavy for 10 s:
        # longer than the test), whatever the machine's speed. (An attempt preempted
        # before it ran much is stopped by the wall-clock deadline with under 1 ms of
        # CPU and may be tried again: that costs the loop nothing to speak of.)
        objects = CPU_OBJECTS + MEM_OBJECTS
        heavy_tries = [cpu for cpu in on_loop if cpu > supervisor.INLINE_SLOW_CPU_S]
        assert len(heavy_tries) <= 2 * objects, heavy_tries
        # The CPU those tries took is bounded (each stopped by the inline budget, or one
        # 32 MiB fill), and a small part of what the noisy guests ran.
        assert sum(heavy_tries) <= 2 * objects * 0.05, heavy_tries
        assert sum(on_loop) < 0.25 * on_workers, (sum(on_loop), on_workers)


async def test_an_event_that_stays_under_the_inline_budget_but_is_slow_leaves_the_loop(
    tmp_path: Path, wasm: Any, mock_clock: MockClock
) -> None:
    """mem_churn's events fill 32 MiB in one instruction (no epoch check inside): once its
    memory is faulted in, an event fits the inline budget yet takes milliseconds of the
    loop. Such an object must go to the workers like one that ran out of budget, also
    after its "heavy" mark expired, or a few of them would hold the loop back to back."""
    async with Host(tmp_path / "data", durability="os") as host:
        await host.deploy("noisy", "mem", wasm("mem_churn"))
        stats = host.supervisor.stats
        for _ in range(3):
            await host.fetch("noisy", "mem", "m", NOOP)
        mock_clock.jump(HEAVY_FOR_S + 1)  # the heavy mark (if any) has expired
        inline_before = stats.inline + stats.offloads
        await host.fetch("noisy", "mem", "m", NOOP)  # one inline attempt, whatever its end
        assert stats.inline + stats.offloads == inline_before + 1
        inline_before = stats.inline
        for _ in range(5):
            await host.fetch("noisy", "mem", "m", NOOP)
        assert stats.inline == inline_before  # the rest went to workers


async def test_a_persistently_heavy_object_is_retried_inline_less_and_less_often(
    tmp_path: Path, wasm: Any, mock_clock: MockClock
) -> None:
    """Each inline try of a CPU-bound object holds the loop for up to the inline budget
    (5-10 ms), so one that proves heavy again right after its mark expired stays on the
    workers twice as long each time (10 s, 20 s, 40 s, ...)."""
    async with Host(tmp_path / "data", durability="os") as host:
        await host.deploy("noisy", "cpu", wasm("cpu_burn"))
        stats = host.supervisor.stats

        async def tried_inline() -> bool:
            before = stats.offloads
            await host.fetch("noisy", "cpu", "c", NOOP)
            return stats.offloads == before + 1

        assert await tried_inline()  # then heavy for 10 s
        assert not await tried_inline()
        mock_clock.jump(HEAVY_FOR_S + 1)
        assert await tried_inline()  # heavy again: 20 s now
        mock_clock.jump(HEAVY_FOR_S + 1)
        assert not await tried_inline()
        mock_clock.jump(HEAVY_FOR_S)
        assert await tried_inline()  # 40 s
        mock_clock.jump(2 * HEAVY_FOR_S + 1)
        assert not await tried_inline()
        mock_clock.jump(2 * HEAVY_FOR_S)
        assert await tried_inline()


async def test_a_slow_first_event_charges_the_class_and_tenant_not_the_object(
    tmp_path: Path, wasm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first event of an activation pays one-time costs (`dohost_init`, loading the
    object, fresh memory): a hot object marked heavy for it went to the workers, two
    thread hand-offs per event, for the next 10 s. It marks the class and charges the
    tenant's inline budget instead (an attacker's new objects are all first events)."""
    monkeypatch.setattr(supervisor, "INLINE_SLOW_CPU_S", 0.0)  # every event is "slow"
    async with Host(tmp_path / "data", durability="os") as host:
        await host.deploy("t", "noop", wasm("noop"))
        stats, limits = host.supervisor.stats, host.tenant_limits
        await host.fetch("t", "noop", "n", NOOP)  # creates the activation: not heavy
        assert limits.tenant_heavy_marks.get("t", 0) == 0
        await host.fetch("t", "noop", "n", NOOP)  # inline again; slow: heavy
        assert stats.inline == 2
        # Both were charged to the tenant: its budget (2) is spent.
        assert limits.tenant_heavy_marks["t"] == 1
        await host.fetch("t", "noop", "n", NOOP)
        assert stats.inline == 2  # on a worker


async def test_an_inline_attempt_stopped_by_the_deadline_with_little_cpu_is_not_heavy(
    tmp_path: Path, wasm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inline deadline is wall time: a loop thread preempted on a busy machine reaches
    it without running the guest. Such an attempt still moves to a worker, but only CPU
    really used (`INLINE_SLOW_CPU_S`) marks the object heavy. Here every attempt counts as
    using little (the bound is set above what cpu_burn uses)."""
    monkeypatch.setattr(supervisor, "INLINE_SLOW_CPU_S", 60.0)
    async with Host(tmp_path / "data", durability="os") as host:
        await host.deploy("noisy", "cpu", wasm("cpu_burn"))
        stats = host.supervisor.stats
        for n in range(1, 3):
            await host.fetch("noisy", "cpu", "c", NOOP)
            assert stats.offloads == n  # tried inline each time: never marked heavy

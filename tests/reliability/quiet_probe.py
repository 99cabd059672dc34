"""The quiet tenant's probe, shared by the noisy-neighbour test and the hostile tenants
tests: sequential no-op requests of tenant "quiet" for ROUND_S, each timed, in rounds
alternating without and with a load; the bound on the median of the loaded rounds' p99
is RATIO x the quiet median + SLACK_MS (tests/reliability/test_noisy_neighbour.py says
why the slack)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable

import trio

from dohost import Host, Request

ROUND_S = 0.3
MIN_SAMPLES = 200
RATIO = 3.0
SLACK_MS = 2.0
NOOP = Request("GET", "/")


def p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[98]


async def quiet_round(host: Host, round_s: float = ROUND_S) -> float:
    """Sequential no-op requests for `round_s` seconds; their p99 latency."""
    lat = []
    end = time.perf_counter() + round_s
    while time.perf_counter() < end or len(lat) < MIN_SAMPLES:
        t0 = time.perf_counter()
        # As a request from the network would: wait for the loop's turn (other tasks
        # that are ready run first), then the event. (An inline event that writes
        # nothing never yields, so without this the noisy tasks would not run at all
        # during a round.)
        await trio.lowlevel.checkpoint()
        r = await host.fetch("quiet", "noop", "q", NOOP)
        lat.append(time.perf_counter() - t0)
        assert r.status in (200, 204)
    return p99(lat)


def within_bound(quiet: float, loaded: float) -> bool:
    return loaded <= RATIO * quiet + SLACK_MS / 1e3


Attack = Callable[[trio.Event], Awaitable[None]]


async def p99_during(
    host: Host, attack: Attack, rounds: int = 5, settle: Callable[[], bool] | None = None
) -> tuple[list[float], list[float]]:
    """The quiet tenant's p99 per round, without and with `attack` running (it runs until
    the event it is given is set). `settle`, if given, is polled (bounded) before each
    loaded round starts: the attack has reached its steady state."""
    await quiet_round(host, 0.05)  # warm: activation, caches
    quiet: list[float] = []
    loaded: list[float] = []
    for _ in range(rounds):
        quiet.append(await quiet_round(host))
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(attack, stop)
            await trio.lowlevel.checkpoint()
            if settle is not None:
                deadline = time.perf_counter() + 30
                while not settle() and time.perf_counter() < deadline:
                    await trio.sleep(0.005)
                assert settle(), "the attack did not reach its steady state"
            loaded.append(await quiet_round(host))
            stop.set()
    return quiet, loaded


def assert_quiet_kept(quiet: list[float], loaded: list[float]) -> None:
    q, lo = statistics.median(quiet), statistics.median(loaded)
    print(
        f"\nquiet no-op p99 {q * 1e3:.3f} ms, under attack {lo * 1e3:.3f} ms "
        f"(rounds {', '.join(f'{x * 1e3:.2f}' for x in quiet)} / "
        f"{', '.join(f'{x * 1e3:.2f}' for x in loaded)})"
    )
    assert within_bound(q, lo), (quiet, loaded)

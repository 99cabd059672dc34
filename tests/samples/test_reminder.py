"""samples/reminder (C SDK) end to end through `dohost.Host`, with time on trio's MockClock.

The host's wall clock (guests' `now_ms` and the alarm loop) is tied to the MockClock, which
moves only when a test jumps it; `host.alarms.settled()` then waits until every alarm
that fell due has been delivered. No sleeps, so due times are exact.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from trio.testing import MockClock

from dohost import Host, Request

BASE_MS = 1_700_000_000_000
TENANT, CLASS, OBJ = "acme", "reminder", "alice"
BACKENDS = ["kv", "sqlite"]


@asynccontextmanager
async def open_host(
    data: Path, clock: MockClock, start_ms: int, deploy: tuple[bytes, str] | None = None
) -> AsyncIterator[Host]:
    """A host whose wall clock reads `start_ms` now and moves with `clock`. `deploy`
    (module, storage backend) deploys the sample; a restart over the same data has it."""
    t0 = clock.current_time()

    def wall() -> float:
        return start_ms + (clock.current_time() - t0) * 1000

    async with Host(data, durability="os", wall_clock_ms=wall) as host:
        if deploy is not None:
            await host.deploy(TENANT, CLASS, *deploy)
        yield host


async def call(host: Host, method: str, path: str, body: Any = b"") -> tuple[int, Any]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    r = await host.fetch(TENANT, CLASS, OBJ, Request(method, path, "", [], data))
    assert r.header("content-type") == "application/json"
    return r.status, json.loads(r.body)


async def remind(host: Host, delay_ms: int, message: str) -> int:
    status, body = await call(host, "POST", "/remind", {"delay_ms": delay_ms, "message": message})
    assert status == 201, body
    return int(body["due_ms"])


async def advance(host: Host, clock: MockClock, seconds: float) -> None:
    clock.jump(seconds)
    await host.alarms.settled()


async def state(host: Host) -> tuple[list[tuple[str, int, int]], int]:
    """(delivered as (message, due_ms, delivered_ms) in order, pending count)."""
    status, body = await call(host, "GET", "/")
    assert status == 200
    assert set(body) == {"delivered", "pending"}
    delivered = [(d["message"], d["due_ms"], d["delivered_ms"]) for d in body["delivered"]]
    return delivered, body["pending"]


def alarm_due(host: Host) -> list[int]:
    return [due for _, due, _ in host.pending_alarms(TENANT, CLASS)]


@pytest.mark.parametrize("storage", BACKENDS)
async def test_reminders_arrive_in_due_order_as_time_passes(
    tmp_path: Path, mock_clock: MockClock, wasm: Any, storage: str
) -> None:
    async with open_host(
        tmp_path / "data", mock_clock, BASE_MS, (wasm("reminder"), storage)
    ) as host:
        # Queued out of order; "second" and "second too" fall due together.
        assert await remind(host, 3000, "third") == BASE_MS + 3000
        assert alarm_due(host) == [BASE_MS + 3000]
        assert await remind(host, 1000, "first") == BASE_MS + 1000
        assert await remind(host, 2000, "second") == BASE_MS + 2000
        assert await remind(host, 2000, "second too") == BASE_MS + 2000
        assert alarm_due(host) == [BASE_MS + 1000]  # always the earliest pending one
        assert await state(host) == ([], 4)

        await advance(host, mock_clock, 0.75)
        assert await state(host) == ([], 4)  # not early
        await advance(host, mock_clock, 0.25)  # exactly at the first due time
        first = ("first", BASE_MS + 1000, BASE_MS + 1000)
        assert await state(host) == ([first], 3)
        assert alarm_due(host) == [BASE_MS + 2000]

        await advance(host, mock_clock, 1.5)  # both "second"s, in one delivery, late by 500
        seconds = [
            ("second", BASE_MS + 2000, BASE_MS + 2500),
            ("second too", BASE_MS + 2000, BASE_MS + 2500),
        ]
        assert await state(host) == ([first, *seconds], 1)
        await advance(host, mock_clock, 0.25)
        assert await state(host) == ([first, *seconds], 1)

        await advance(host, mock_clock, 0.25)
        third = ("third", BASE_MS + 3000, BASE_MS + 3000)
        assert await state(host) == ([first, *seconds, third], 0)
        assert alarm_due(host) == []  # nothing pending: no alarm left

        await advance(host, mock_clock, 3600)  # nothing more happens
        assert await state(host) == ([first, *seconds, third], 0)


@pytest.mark.parametrize("storage", BACKENDS)
async def test_reminders_survive_a_restart(
    tmp_path: Path, mock_clock: MockClock, wasm: Any, storage: str
) -> None:
    data = tmp_path / "data"
    async with open_host(data, mock_clock, BASE_MS, (wasm("reminder"), storage)) as host:
        await remind(host, 60_000, "b")
        await remind(host, 10_000, "a")
        await remind(host, 5_000, "early")
        await remind(host, 600_000, "later")
        await advance(host, mock_clock, 5)
        early = ("early", BASE_MS + 5000, BASE_MS + 5000)
        assert await state(host) == ([early], 3)

    # Down for two minutes: "a" and "b" fell due meanwhile and fire at start, in due order.
    restart_ms = BASE_MS + 120_000
    async with open_host(data, mock_clock, restart_ms) as host:
        await host.alarms.settled()
        overdue = [("a", BASE_MS + 10_000, restart_ms), ("b", BASE_MS + 60_000, restart_ms)]
        assert await state(host) == ([early, *overdue], 1)
        assert alarm_due(host) == [BASE_MS + 600_000]  # the next one was re-armed

        await advance(host, mock_clock, 479.5)
        assert await state(host) == ([early, *overdue], 1)
        await advance(host, mock_clock, 0.5)
        later = ("later", BASE_MS + 600_000, BASE_MS + 600_000)
        assert await state(host) == ([early, *overdue, later], 0)


async def test_messages_round_trip_through_json(
    tmp_path: Path, mock_clock: MockClock, wasm: Any
) -> None:
    messages = ['quote " backslash \\ slash /', "lines\r\n\ttab \x00 \x1f", "é € 😀", ""]
    async with open_host(tmp_path / "data", mock_clock, BASE_MS, (wasm("reminder"), "kv")) as host:
        for i, m in enumerate(messages):
            await remind(host, i, m)
        # Escaped forms decode to the same text: \u00e9 is é, a surrogate pair is 😀.
        raw = b'{"message": "\\u00e9\\ud83d\\ude00\\/", "delay_ms": 10, "extra": [{"x": null}]}'
        status, body = await call(host, "POST", "/remind", raw)
        assert (status, body) == (201, {"due_ms": BASE_MS + 10})
        await advance(host, mock_clock, 1)
        delivered, pending = await state(host)
        assert [m for m, _, _ in delivered] == [*messages, "é😀/"]
        assert pending == 0


BAD_BODIES = [
    b"",
    b"not json",
    b"[1, 2]",
    b'{"delay_ms": 5, "message": "x"} trailing',
    b'{"delay_ms": 5, "message": "x",}',
    b'{"delay_ms": 5, "message": "lone \\ud800 surrogate"}',
    b'{"delay_ms": 5, "message": "raw \xff byte"}',
    b'{"delay_ms": 5, "message": "raw\nnewline"}',
    b'{"delay_ms": 1.5, "message": "x"}',
    b'{"delay_ms": 1e3, "message": "x"}',
    b'{"delay_ms": -1, "message": "x"}',
    b'{"delay_ms": 31536000001, "message": "x"}',
    b'{"delay_ms": 99999999999999999999, "message": "x"}',
    b'{"delay_ms": "5", "message": "x"}',
    b'{"message": "x"}',
    b'{"delay_ms": 5}',
    b'{"delay_ms": 5, "message": 7}',
    b'{"delay_ms": 5, "message": null}',
    json.dumps({"delay_ms": 5, "message": "x" * 16385}).encode(),
]


async def test_bad_input_is_400_and_queues_nothing(
    tmp_path: Path, mock_clock: MockClock, wasm: Any
) -> None:
    async with open_host(tmp_path / "data", mock_clock, BASE_MS, (wasm("reminder"), "kv")) as host:
        for body in BAD_BODIES:
            status, answer = await call(host, "POST", "/remind", body)
            assert status == 400, body
            assert set(answer) == {"error"} and isinstance(answer["error"], str), body
        assert await state(host) == ([], 0)
        assert alarm_due(host) == []
        # The limits themselves are allowed.
        assert await remind(host, 31_536_000_000, "x" * 16384) == BASE_MS + 31_536_000_000


async def test_unknown_paths_and_wrong_methods(
    tmp_path: Path, mock_clock: MockClock, wasm: Any
) -> None:
    async with open_host(tmp_path / "data", mock_clock, BASE_MS, (wasm("reminder"), "kv")) as host:
        assert await call(host, "GET", "/nope") == (404, {"error": "not found"})
        for method, path, allow in [("POST", "/", "GET"), ("GET", "/remind", "POST")]:
            r = await host.fetch(TENANT, CLASS, OBJ, Request(method, path))
            assert (r.status, r.header("allow")) == (405, allow)
            assert json.loads(r.body) == {"error": "method not allowed"}

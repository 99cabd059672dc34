"""samples/chat-room (Zig SDK) end to end through `dohost.Host`. trio's MockClock drives
time: the guest's now_ms and the host's alarm loop read a wall clock tied to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from trio.testing import MockClock

from dohost import Host, Request

START = 1_700_000_000_000  # ms since the epoch at trio time 0


class Clock:
    def __init__(self, host: Host, mock: MockClock) -> None:
        self.host, self.mock = host, mock

    async def advance(self, ms: int) -> None:
        """Moves time, then waits until every alarm due has run."""
        self.mock.jump(ms / 1000)
        await self.host.alarms.settled()


@pytest.fixture
async def room(tmp_path: Path, wasm: Any, mock_clock: MockClock) -> Any:
    async with Host(
        tmp_path / "data",
        durability="os",
        wall_clock_ms=lambda: START + mock_clock.current_time() * 1000,
        alarm_jitter=lambda: 0.0,
    ) as host:
        await host.deploy("acme", "chat", wasm("chat-room"))

        async def call(
            method: str, path: str, body: Any = b"", room: str = "lobby"
        ) -> tuple[int, Any]:
            p, _, q = path.partition("?")
            data = json.dumps(body).encode() if isinstance(body, dict) else body
            r = await host.fetch("acme", "chat", room, Request(method, p, q, [], data))
            is_json = (r.header("content-type") or "").startswith("application/json")
            return r.status, json.loads(r.body) if is_json else r.text

        call.clock = Clock(host, mock_clock)  # type: ignore[attr-defined]
        call.host = host  # type: ignore[attr-defined]
        yield call


async def test_post_and_read_history(room: Any) -> None:
    status, msg = await room("POST", "/messages", {"author": "ann", "text": "hello"})
    assert status == 201 and msg == {"author": "ann", "text": "hello", "time": START}
    await room.clock.advance(5)
    await room("POST", "/messages", {"author": "bob", "text": 'hi "ann" — ✓\n', "extra": 1})
    status, body = await room("GET", "/messages")
    assert status == 200 and body["more"] is False
    assert [(m["author"], m["text"], m["time"]) for m in body["messages"]] == [
        ("ann", "hello", START),
        ("bob", 'hi "ann" — ✓\n', START + 5),
    ]
    assert (await room("GET", "/messages", room="other"))[1][
        "messages"
    ] == []  # one object per room


async def test_since_returns_newer_messages_and_times_increase(room: Any) -> None:
    times = []
    for i in range(5):  # the clock does not move: times are nudged to stay unique
        _, msg = await room("POST", "/messages", {"author": "a", "text": f"m{i}"})
        times.append(msg["time"])
    assert times == [START + i for i in range(5)]
    _, body = await room("GET", f"/messages?since={times[1]}")
    assert [m["text"] for m in body["messages"]] == ["m2", "m3", "m4"]
    _, body = await room("GET", f"/messages?since={times[4]}")
    assert body == {"messages": [], "more": False}
    _, body = await room("GET", "/messages?since=0&limit=2")
    assert [m["text"] for m in body["messages"]] == ["m0", "m1"] and body["more"] is True
    _, body = await room("GET", f"/messages?since={body['messages'][-1]['time']}&limit=2")
    assert [m["text"] for m in body["messages"]] == ["m2", "m3"] and body["more"] is True


async def test_retention_hides_at_once_and_an_alarm_deletes(room: Any) -> None:
    assert await room("GET", "/retention") == (200, "0")  # keeps everything by default
    for i in range(3):
        await room("POST", "/messages", {"author": "a", "text": f"m{i}"})
        await room.clock.advance(1000)
    assert room.host.pending_alarms() == []  # nothing expires without a retention
    assert await room("PUT", "/retention", b"10000") == (200, "10000")
    ((_entry, due, _retries),) = room.host.pending_alarms()
    assert due == START + 10_000  # when the oldest message expires
    await room.clock.advance(7000)  # now START + 10 s: m0 is due
    ((_entry, due, _retries),) = room.host.pending_alarms()
    assert due == START + 11_000  # the alarm deleted m0 and waits for m1
    _, body = await room("GET", "/messages")
    assert [m["text"] for m in body["messages"]] == ["m1", "m2"]
    await room.clock.advance(500)  # m1 expires at +11 s: hidden only once it has
    assert [m["text"] for m in (await room("GET", "/messages"))[1]["messages"]] == ["m1", "m2"]
    await room.clock.advance(60_000)  # the room is idle: the alarm prunes it anyway
    assert room.host.pending_alarms() == []  # and stops once the room is empty
    # With the retention off, expired messages would show again: they are really gone.
    assert await room("PUT", "/retention", b"0") == (200, "0")
    assert (await room("GET", "/messages"))[1]["messages"] == []
    await room("POST", "/messages", {"author": "a", "text": "kept"})
    assert room.host.pending_alarms() == []


async def test_shorter_retention_prunes_soon(room: Any) -> None:
    for i in range(3):
        await room("POST", "/messages", {"author": "a", "text": f"m{i}"})
    await room.clock.advance(60_000)
    await room("POST", "/messages", {"author": "a", "text": "new"})
    assert await room("PUT", "/retention", b"30000") == (200, "30000")
    await room.clock.advance(0)  # already expired: the alarm is due now
    await room("PUT", "/retention", b"0")
    _, body = await room("GET", "/messages")
    assert [m["text"] for m in body["messages"]] == ["new"]


async def test_pruning_more_than_a_run_holds(room: Any) -> None:
    for i in range(1205):  # times START .. START + 1204 (nudged: the clock stands still)
        await room("POST", "/messages", {"author": "a", "text": f"m{i}"})
    await room("PUT", "/retention", b"1000")
    await room.clock.advance(3000)  # all expired: runs of 1,000 deletions, rescheduling at once
    await room("PUT", "/retention", b"0")
    assert (await room("GET", "/messages"))[1]["messages"] == []
    assert room.host.alarms.stats.runs == 2


async def test_bad_requests(room: Any) -> None:
    assert (await room("POST", "/messages", b"not json"))[0] == 400
    assert (await room("POST", "/messages", {"author": "a"}))[0] == 400
    assert (await room("POST", "/messages", {"author": "", "text": "x"}))[0] == 400
    assert (await room("POST", "/messages", {"author": "a", "text": "x" * 20000}))[0] == 400
    assert (await room("GET", "/messages?since=yesterday"))[0] == 400
    assert (await room("PUT", "/retention", b"-1"))[0] == 400
    assert (await room("DELETE", "/messages"))[0] == 405
    assert (await room("GET", "/nope"))[0] == 404
    assert (await room("GET", "/messages"))[1]["messages"] == []

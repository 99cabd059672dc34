"""samples/chat-room (Zig SDK) end to end through `dohost.Host`, with a controlled clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dohost import Host, Request

START = 1_700_000_000_000


class Clock:
    def __init__(self) -> None:
        self.ms = float(START)

    def __call__(self) -> float:
        return self.ms


@pytest.fixture
async def room(tmp_path: Path, wasm: Any) -> Any:
    clock = Clock()
    async with Host(tmp_path / "data", durability="os", wall_clock_ms=clock) as host:
        await host.deploy("acme", "chat", wasm("chat-room"))

        async def call(
            method: str, path: str, body: Any = b"", room: str = "lobby"
        ) -> tuple[int, Any]:
            p, _, q = path.partition("?")
            data = json.dumps(body).encode() if isinstance(body, dict) else body
            r = await host.fetch("acme", "chat", room, Request(method, p, q, [], data))
            is_json = (r.header("content-type") or "").startswith("application/json")
            return r.status, json.loads(r.body) if is_json else r.text

        call.clock = clock  # type: ignore[attr-defined]
        yield call


async def test_post_and_read_history(room: Any) -> None:
    status, msg = await room("POST", "/messages", {"author": "ann", "text": "hello"})
    assert status == 201 and msg == {"author": "ann", "text": "hello", "time": START}
    room.clock.ms += 5
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


async def test_retention_prunes_on_write(room: Any) -> None:
    assert await room("GET", "/retention") == (200, "0")  # keeps everything by default
    for i in range(3):
        await room("POST", "/messages", {"author": "a", "text": f"old{i}"})
    room.clock.ms += 60_000
    assert await room("PUT", "/retention", b"30000") == (200, "30000")
    _, body = await room("GET", "/messages")
    assert body["messages"] == []  # PUT /retention pruned them
    await room("POST", "/messages", {"author": "a", "text": "new"})
    room.clock.ms += 20_000
    await room("POST", "/messages", {"author": "a", "text": "newer"})
    room.clock.ms += 20_000  # "new" is now 40 s old: hidden at once, deleted on the next write
    _, body = await room("GET", "/messages")
    assert [m["text"] for m in body["messages"]] == ["newer"]
    await room("POST", "/messages", {"author": "a", "text": "newest"})
    _, body = await room("GET", "/messages?since=0")
    assert [m["text"] for m in body["messages"]] == ["newer", "newest"]


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

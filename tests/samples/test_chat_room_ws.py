"""samples/chat-room over WebSockets, through a real HTTP server on 127.0.0.1 (in-process:
the host's idle timeout runs on trio's MockClock, so hibernation needs no sleeping).

What the issue asks to see: 1,000 members, the room hibernates, one speaks, all receive
it and the constructor ran once more; the auto-response answered with no activation;
close and error events, also for a client that vanishes without a close frame."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from chat_ws_helpers import ChatServer, WsClosed, WsRejected, chat_server, raise_fd_limit
from trio.testing import MockClock

MEMBERS = 1000


@pytest.fixture
async def chat(tmp_path: Path, mock_clock: MockClock) -> AsyncIterator[ChatServer]:
    """(Each test names `mock_clock` too: pytest-trio runs a test on that clock only
    when the test itself asks for it.)"""
    async with chat_server(tmp_path / "data", mock_clock) as server:
        yield server


def message(author: str, text: str, time: int) -> dict[str, Any]:
    return {"author": author, "text": text, "time": time}


async def test_a_thousand_members_hibernate_and_one_message_wakes_the_room_once(
    chat: ChatServer, mock_clock: MockClock
) -> None:
    raise_fd_limit(4 * MEMBERS + 256)  # both ends of each connection, and the host's files
    members = await chat.connect_many("big", MEMBERS)
    assert len(members) == MEMBERS
    chat.without_inline_attempts()  # from now on the constructions are exact
    stats = await chat.get_json("big", "/stats")
    assert stats["members"] == MEMBERS
    constructed = stats["constructed"]  # 1, or more if joins re-ran after inline attempts
    activations = chat.host.supervisor.stats.activations

    await chat.hibernate()
    assert not chat.resident("big")  # no instance: only the host holds the 1,000 sockets

    speaker = members[MEMBERS // 2]
    await speaker.send_json({"author": "ann", "text": "anyone here?"})
    expected = message("ann", "anyone here?", chat.now_ms())
    for m in members:  # the speaker too: its copy carries the time the room gave it
        assert await m.recv_json() == expected
    assert chat.resident("big")
    # The constructor ran exactly once more: the room's own count and the host's agree.
    assert chat.host.supervisor.stats.activations == activations + 1
    stats = await chat.get_json("big", "/stats")
    assert stats == {"members": MEMBERS, "constructed": constructed + 1}
    assert (await chat.get_json("big", "/messages"))["messages"] == [expected]


async def test_auto_response_needs_no_activation(chat: ChatServer, mock_clock: MockClock) -> None:
    chat.without_inline_attempts()
    a = await chat.connect("quiet", "?name=ann")
    await chat.hibernate()
    assert not chat.resident("quiet")
    events = chat.host.supervisor.stats.events
    activations = chat.host.supervisor.stats.activations
    pinged_at = chat.now_ms()
    for _ in range(3):
        await a.send("ping")
        assert await a.recv() == "pong"
    assert chat.host.supervisor.stats.events == events  # the host answered, not the room
    assert chat.host.supervisor.stats.activations == activations
    assert not chat.resident("quiet")
    # Only the exact text is answered by the host: anything else reaches the room.
    await a.send("PING")
    assert (await a.recv_json())["error"].startswith("body must be JSON")
    assert chat.host.supervisor.stats.activations == activations + 1
    (member,) = (await chat.get_json("quiet", "/members"))["members"]
    assert member["name"] == "ann" and member["pinged"] == pinged_at


async def test_new_member_gets_the_last_50_messages_and_both_views_agree(
    chat: ChatServer, mock_clock: MockClock
) -> None:
    for i in range(60):
        r = await chat.post("lobby", "/messages", {"author": "bot", "text": f"m{i}"})
        assert r.status_code == 201
    a = await chat.connect("lobby")
    history = [await a.recv_json() for _ in range(50)]
    assert [m["text"] for m in history] == [f"m{i}" for i in range(10, 60)]  # oldest first
    assert [m["time"] for m in history] == [chat.now_ms() + i for i in range(10, 60)]

    # POST /messages reaches connected members; a WebSocket message is stored like one.
    r = await chat.post("lobby", "/messages", {"author": "bob", "text": "over HTTP"})
    assert await a.recv_json() == r.json()
    await a.send_json({"author": "ann", "text": "over the socket", "extra": 1})
    sent = await a.recv_json()
    assert sent == message("ann", "over the socket", history[-1]["time"] + 2)
    stored = (await chat.get_json("lobby", f"/messages?since={history[-1]['time']}"))["messages"]
    assert stored == [r.json(), sent]

    # Bad input is answered to the sender only, and nothing is stored.
    for bad in ('{"author": "ann"}', "not json", '{"author": "", "text": "x"}'):
        await a.send(bad)
        assert "error" in await a.recv_json()
    await a.send(b"\x00binary")
    assert await a.recv_json() == {"error": "send text frames"}
    assert len((await chat.get_json("lobby", "/messages?limit=1000"))["messages"]) == 62


async def test_members_leaving_cleanly_vanishing_and_failing_are_announced(
    chat: ChatServer, mock_clock: MockClock
) -> None:
    watcher = await chat.connect("room", "?presence=1&name=watcher")
    me = await watcher.recv_json()
    assert me == {"event": "joined", "id": me["id"], "name": "watcher", "members": 1}
    ann, bob, cat = [await chat.connect("room", f"?name={n}") for n in ("ann", "bob", "cat")]
    joined = [await watcher.recv_json() for _ in range(3)]
    assert [(j["event"], j["name"], j["members"]) for j in joined] == [
        ("joined", "ann", 2),
        ("joined", "bob", 3),
        ("joined", "cat", 4),
    ]
    ids = {j["name"]: j["id"] for j in joined}
    await chat.hibernate()  # close events wake the room like messages do

    # A clean close: the client's code and reason reach the room.
    assert (await ann.close(4000, "bye")).code == 4000
    assert await watcher.recv_json() == {
        "event": "left", "id": ids["ann"], "name": "ann", "members": 3, "code": 4000, "clean": True,
    }  # fmt: skip

    # A client that vanishes without a close frame: an error event, then close 1006.
    await bob.vanish()
    failed = await watcher.recv_json()
    assert failed == {
        "event": "error",
        "id": ids["bob"],
        "name": "bob",
        "message": failed["message"],
    }
    assert failed["message"]
    assert await watcher.recv_json() == {
        "event": "left", "id": ids["bob"], "name": "bob", "members": 2, "code": 1006, "clean": False,
    }  # fmt: skip

    # A message above the host's limit fails the connection (close 1009 to the client).
    await cat.send("x" * (1024 * 1024 + 1))
    with pytest.raises(WsClosed) as closed:
        await cat.recv()
    assert closed.value.code == 1009
    failed = await watcher.recv_json()
    assert failed["event"] == "error" and failed["id"] == ids["cat"]
    assert "1048576" in failed["message"]
    left = await watcher.recv_json()
    assert (left["event"], left["id"], left["members"], left["clean"]) == (
        "left",
        ids["cat"],
        1,
        False,
    )
    members = (await chat.get_json("room", "/members"))["members"]
    assert [(m["id"], m["name"]) for m in members] == [(me["id"], "watcher")]


async def test_page_and_plain_requests(chat: ChatServer, mock_clock: MockClock) -> None:
    r = await chat.get("lobby", "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "new WebSocket(" in r.text and 'location.pathname.replace(/\\/+$/, "")' in r.text
    r = await chat.get("lobby", "/ws")  # not an upgrade
    assert r.status_code == 426
    assert (await chat.http.post(chat.path("lobby", "/ws"))).status_code == 405
    with pytest.raises(WsRejected) as refused:
        await chat.connect("lobby", "?name=" + "n" * 101)
    assert refused.value.status == 400
    assert await chat.get_json("lobby", "/members") == {"members": []}
    # The members' JSON follows the time the host gave the join.
    a = await chat.connect("lobby", "?name=Zo%C3%AB")
    (m,) = (await chat.get_json("lobby", "/members"))["members"]
    assert m == {"id": m["id"], "name": "Zoë", "joined": chat.now_ms(), "pinged": None}
    assert (await a.close()).code == 1000  # the host answers the closing handshake
    assert json.loads((await chat.get("lobby", "/stats")).text)["members"] == 0


async def test_members_stay_through_several_hibernations(
    chat: ChatServer, mock_clock: MockClock
) -> None:
    """Several sleep/wake cycles: every wake is one construction, members stay."""
    chat.without_inline_attempts()
    a, b = await chat.connect("cycle"), await chat.connect("cycle")
    for i in range(3):
        await chat.hibernate()
        assert not chat.resident("cycle")
        await a.send_json({"author": "a", "text": f"round {i}"})
        assert (await b.recv_json())["text"] == f"round {i}"
        assert (await a.recv_json())["text"] == f"round {i}"
    assert await chat.get_json("cycle", "/stats") == {"members": 2, "constructed": 4}
    assert not a.messages and not b.messages  # nothing else arrived

"""WebSockets, one script against the same test guest written with each SDK: C
(tests/fixtures/c/wstest.c, ws.h), Zig (tests/conformance/guests/wstest.zig,
dohost.websocket), Rust (wstest.rs, dohost::ws) and AssemblyScript (wstest.ts, ws.ts).
Each runs over a real HTTP server on 127.0.0.1 (the host's idle timeout on trio's
MockClock); the transcripts must be equal, and right."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from trio.testing import MockClock

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "samples"))
from chat_ws_helpers import ChatServer, WsClosed, WsRejected, chat_server  # noqa: E402

GUESTS = ["wstest", "wstest_zig", "wstest_rust", "wstest_as"]


async def script(s: ChatServer) -> list[Any]:
    """Every answer the guest gives, in order."""
    out: list[Any] = []
    a = await s.connect("r", "?tags=t1,t2&att=A&hello=hi")
    out.append(await a.recv())
    b = await s.connect("r", "?tags=t2")
    for text in ("echo:x", "getatt", "att:B", "getatt", "list", "list:t1", "inits", "nope"):
        await a.send(text)
        out.append(await a.recv())
    await a.send("bcast:t2:yo")  # to a and b, then the count to a
    out += [await a.recv(), await a.recv(), await b.recv()]
    await a.send("bcast::all")
    out += [await a.recv(), await a.recv(), await b.recv()]
    await a.send(b"\x00\x01bin")
    out.append(await a.recv())
    await a.send("fail")  # its send is dropped with the event: the next answer is echo's
    await a.send("echo:after")
    out.append(await a.recv())

    s.without_inline_attempts()  # so that the constructions counted are exact
    await s.hibernate()
    assert not s.resident("r")
    await a.send("ping")
    out.append(await a.recv())
    assert not s.resident("r")  # the host answered
    for text in ("inits", "list"):
        await a.send(text)
        out.append(await a.recv())

    await b.send("close:1001")  # not a code an object may send
    out.append(await b.recv())
    await b.send("close:4001")
    with pytest.raises(WsClosed) as closed:
        await b.recv()
    out.append((closed.value.code, closed.value.reason))
    out.append((await a.close(4002, "done")).code)
    c = await s.connect("r", "?tags=gone")
    await c.vanish()
    log = ""
    for _ in range(100):  # the close and error events run after the socket ends
        log = (await s.get("r", "/log")).text
        if "unclean" in log:
            break
        await s.wait_until(lambda: True)
    out.append(log)
    with pytest.raises(WsRejected) as rejected:  # the accepting event failed
        await s.connect("r", "?fail=1")
    out.append(rejected.value.status)
    r = await s.get("r", "/other")
    out.append((r.status_code, r.text))
    r = await s.get("r", "/ws?tags=t1")  # plain HTTP: accept fails, its status and detail
    out.append((r.status_code, r.text))
    return out


@pytest.mark.parametrize("guest", GUESTS)
async def test_ws_script(tmp_path: Path, mock_clock: MockClock, wasm: Any, guest: str) -> None:
    async with chat_server(tmp_path / "data", mock_clock, wasm(guest), "ws") as s:
        out = await script(s)
    assert out == [
        "hi",
        "x", "att=A", "ok", "att=B", "1[t1,t2];2[t2];", "1[t1,t2];", "inits=1", "?",
        "yo", "sent 2", "yo",
        "all", "sent 2", "all",
        b"\x00\x01bin",
        "after",
        "pong",
        # 3: the failed event's instance was dropped, the next one constructed (2), then
        # the wake from hibernation (3).
        "inits=3", "1[t1,t2]@auto;2[t2];",
        "-11",  # invalid_argument
        (4001, "by object"),
        4002,
        out[-4],  # the log, checked below
        500,
        (403, "nope"),
        out[-1],  # checked below
    ]  # fmt: skip
    closes, _, errors = out[-4].partition("|")
    # The object's own ws_close gives no close event; the client's close and the vanished
    # client do; the vanished one gets an error event first.
    assert closes.startswith("1 4002 done clean;3 1006  unclean;"), closes
    assert errors.startswith("3 ") and errors.endswith(";"), errors
    status, text = out[-1]
    assert status == 426 and text.startswith("-9 not_supported "), out[-1]


async def test_every_sdk_gives_the_same_transcript(
    tmp_path: Path, mock_clock: MockClock, wasm: Any
) -> None:
    outs = []
    for i, guest in enumerate(GUESTS):
        async with chat_server(tmp_path / f"d{i}", mock_clock, wasm(guest), "ws") as s:
            outs.append(await script(s))
    assert all(out == outs[0] for out in outs[1:]), dict(zip(GUESTS, outs, strict=True))


@pytest.mark.parametrize("guest", GUESTS)
async def test_closing_in_the_accepting_event_sends_the_handshake_then_the_close(
    tmp_path: Path, mock_clock: MockClock, wasm: Any, guest: str
) -> None:
    async with chat_server(tmp_path / "data", mock_clock, wasm(guest), "ws") as s:
        d = await s.connect("r", "?close=1&hello=first")
        assert await d.recv() == "first"
        with pytest.raises(WsClosed) as closed:
            await d.recv()
        assert (closed.value.code, closed.value.reason) == (4000, "bye")

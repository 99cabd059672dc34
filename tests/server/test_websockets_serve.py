"""WebSockets through `dohost serve` (a real process): SIGTERM closes every connection
with 1001 at once, so the server stops without waiting out its grace period."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import trio
from api_helpers import ServerProcess
from test_websockets import Client
from wsproto.events import CloseConnection


async def test_sigterm_closes_websockets_with_1001(tmp_path: Path, wasm: Any) -> None:
    server = ServerProcess(tmp_path / "data", "--grace", "60", "--ws-max-message-bytes", "2048")
    try:
        token = server.new_tenant("ws")
        with server.client(token) as http:
            assert http.put("/v1/classes/ws", content=wasm("wstest")).status_code == 201
        port = int(server.url.rsplit(":", 1)[1])
        a = Client()
        await a.connect(port, "/v1/classes/ws/objects/room/ws", token)
        assert a.rejected is None
        assert await a.ask("echo:up") == "up"
        big = Client()
        await big.connect(port, "/v1/classes/ws/objects/room/ws", token)
        await big.send("x" * 3000)  # above --ws-max-message-bytes
        got = await big.recv()
        assert isinstance(got, CloseConnection) and got.code == 1009
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            got = await a.recv()
        assert isinstance(got, CloseConnection) and got.code == 1001
        rc = await trio.to_thread.run_sync(server.proc.wait, 30)
        assert rc == 0, server.stderr()
        # Closed at once: far below the 60 s grace that a held connection would cost.
        assert time.monotonic() - t0 < 30
    finally:
        server.stop(signal.SIGKILL)

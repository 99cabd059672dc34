"""The HTTP/1.1 front door: framing, keep-alive, limits, timeouts, errors, shutdown.

Raw-socket tests run the server and the client in one trio run on a MockClock (autojump),
so every timeout is exercised in virtual time. httpx and curl tests run the server in a
background thread with its own trio run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from dohost.server.http_server import HttpServer, serve_http
from dohost.server.http_types import (
    HttpRequest,
    HttpResponse,
    ServerLimits,
    UpgradeResponse,
)

# Deadlines are checked every `tick` seconds: min(0.5, shortest timeout / 10).
TICK = 0.5


async def echo(request: HttpRequest) -> HttpResponse:
    """Describe the request back as JSON."""
    info = {
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "headers": request.headers,
        "body_len": len(request.body),
        "body_sha": hashlib.sha256(request.body).hexdigest(),
        "client": list(request.client) if request.client else None,
        "version": request.http_version,
    }
    return HttpResponse(200, [("Content-Type", "application/json")], json.dumps(info).encode())


# ---------------------------------------------------------------------------------------
# Raw client over trio


@dataclass
class Resp:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""
        self.buf += data
        return bool(data)

    async def read_head(self) -> tuple[int, list[tuple[str, str]]]:
        while b"\r\n\r\n" not in self.buf:
            if not await self._fill():
                raise EOFError(bytes(self.buf))
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        version, status, *_ = lines[0].split(" ", 2)
        assert version == "HTTP/1.1"
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.lower(), value.strip()))
        return int(status), headers

    async def read_response(self, *, head_request: bool = False) -> Resp:
        status, headers = await self.read_head()
        lengths = [v for k, v in headers if k == "content-length"]
        assert len(lengths) <= 1
        length = int(lengths[0]) if lengths else 0
        if head_request or status < 200 or status in (204, 304):
            length = 0
        while len(self.buf) < length:
            if not await self._fill():
                raise EOFError(bytes(self.buf))
        body = bytes(self.buf[:length])
        del self.buf[:length]
        return Resp(status, headers, body)

    async def assert_closed(self) -> None:
        """The server closed the connection and sent nothing more."""
        assert not await self._fill(), bytes(self.buf)
        assert not self.buf


async def send_ignoring_close(client: RawClient, pieces: list[bytes], pause: float = 0) -> None:
    """Send pieces (pausing between them) until done or the server hangs up."""
    try:
        for piece in pieces:
            await client.send(piece)
            await trio.sleep(pause)
    except trio.BrokenResourceError:
        pass


async def drip_until_answered(
    client: RawClient, pieces: list[bytes], pause: float
) -> tuple[Resp, float]:
    """Send pieces `pause` seconds apart until a response arrives; return it and the
    time it took."""
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_ignoring_close, client, pieces, pause)
        resp = await client.read_response()
        elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    return resp, elapsed


async def connect(port: int) -> RawClient:
    return RawClient(await trio.open_tcp_stream("127.0.0.1", port))


def run_mock(
    test: Callable[[int], Awaitable[None]],
    handler: Callable[[HttpRequest], Awaitable[HttpResponse]] = echo,
    limits: ServerLimits | None = None,
) -> None:
    """Run `test(port)` against a server, all on a MockClock, then shut down."""

    async def main() -> None:
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(
                partial(serve_http, handler, limits=limits, shutdown=shutdown)
            )
            await test(port)
            shutdown.set()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def assert_error(resp: Resp, status: int, code: str) -> None:
    assert resp.status == status
    assert resp.header("content-type") == "application/json"
    assert resp.header("connection") == "close"
    error = resp.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]


GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


# ---------------------------------------------------------------------------------------
# Server in a thread, for httpx and curl


@contextmanager
def server_thread(
    handler: Callable[[HttpRequest], Awaitable[HttpResponse]] = echo,
    limits: ServerLimits | None = None,
) -> Iterator[str]:
    started = threading.Event()
    state: dict[str, Any] = {}

    def runner() -> None:
        async def main() -> None:
            state["token"] = trio.lowlevel.current_trio_token()
            state["shutdown"] = shutdown = trio.Event()
            async with trio.open_nursery() as nursery:
                state["addr"] = await nursery.start(
                    partial(serve_http, handler, limits=limits, shutdown=shutdown)
                )
                started.set()

        try:
            trio.run(main)
        except BaseException as exc:
            state["error"] = exc
            started.set()

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    assert started.wait(10)
    if "error" in state:
        raise state["error"]
    host, port = state["addr"]
    try:
        yield f"http://{host}:{port}"
    finally:
        state["token"].run_sync_soon(state["shutdown"].set)
        thread.join(10)
        assert not thread.is_alive()
        assert "error" not in state, state.get("error")


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")


def curl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "--silent", "--show-error", "--http1.1", *args],
        input=stdin,
        capture_output=True,
        timeout=30,
        check=True,
    )


# ---------------------------------------------------------------------------------------
# httpx


def test_httpx_get_request_fields() -> None:
    with server_thread() as url, httpx.Client() as client:
        resp = client.get(url + "/a%20b/c?x=1&y=%2F", headers={"X-Multi": "1"})
        assert resp.status_code == 200
        assert resp.headers["server"] == "dohost"
        assert resp.headers["content-length"] == str(len(resp.content))
        assert "date" in resp.headers
        info = resp.json()
        assert info["method"] == "GET"
        # Raw, not percent-decoded.
        assert info["path"] == "/a%20b/c"
        assert info["query"] == "x=1&y=%2F"
        assert info["version"] == "1.1"
        assert info["client"][0] == "127.0.0.1"
        assert ["x-multi", "1"] in info["headers"]
        assert all(name == name.lower() for name, _ in info["headers"])


def test_httpx_keepalive_reuses_one_connection() -> None:
    with server_thread() as url, httpx.Client() as client:
        ports = {tuple(client.get(url + f"/{i}").json()["client"]) for i in range(5)}
        assert len(ports) == 1


def test_httpx_post_body_and_large_response() -> None:
    big = bytes(range(256)) * 4096  # 1 MiB, more than one write

    async def handler(request: HttpRequest) -> HttpResponse:
        if request.path == "/big":
            return HttpResponse(200, [], big)
        return await echo(request)

    with server_thread(handler) as url, httpx.Client() as client:
        body = b"hello" * 10000
        info = client.post(url + "/p", content=body).json()
        assert info["body_len"] == len(body)
        assert info["body_sha"] == hashlib.sha256(body).hexdigest()
        resp = client.get(url + "/big")
        assert resp.content == big
        # Still usable after the large response.
        assert client.get(url + "/again").json()["path"] == "/again"


def test_httpx_handler_exception_is_500_json_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        if request.path == "/boom":
            raise RuntimeError("secret internal detail")
        return await echo(request)

    with (
        caplog.at_level(logging.ERROR, logger="dohost.server.http_server"),
        server_thread(handler) as url,
        httpx.Client() as client,
    ):
        resp = client.get(url + "/boom")
        assert resp.status_code == 500
        assert resp.headers["content-type"] == "application/json"
        assert resp.json() == {"error": {"code": "internal", "message": "internal server error"}}
        assert b"secret" not in resp.content and b"Traceback" not in resp.content
        # The connection survives a handler failure.
        assert client.get(url + "/ok").status_code == 200
    assert any("secret internal detail" in (r.exc_text or "") for r in caplog.records)


# ---------------------------------------------------------------------------------------
# curl


@needs_curl
def test_curl_keepalive() -> None:
    with server_thread() as url:
        proc = curl("-v", url + "/one", url + "/two")
        assert b"Re-using existing connection" in proc.stderr
        first, second = proc.stdout.split(b"}{")
        assert json.loads(first + b"}")["client"] == json.loads(b"{" + second)["client"]


@needs_curl
def test_curl_chunked_upload() -> None:
    body = b"chunky " * 50000
    with server_thread() as url:
        proc = curl(
            "-v",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "@-",
            url + "/up",
            stdin=body,
        )
        assert b"Transfer-Encoding: chunked" in proc.stderr
        info = json.loads(proc.stdout)
        assert info["method"] == "POST"
        assert info["body_len"] == len(body)
        assert info["body_sha"] == hashlib.sha256(body).hexdigest()


@needs_curl
def test_curl_expect_100_continue() -> None:
    body = b"x" * 200_000
    with server_thread() as url:
        proc = curl(
            "-v",
            "-H",
            "Expect: 100-continue",
            "--expect100-timeout",
            "20",
            "--data-binary",
            "@-",
            url + "/up",
            stdin=body,
        )
        assert b"HTTP/1.1 100 Continue" in proc.stderr
        assert json.loads(proc.stdout)["body_len"] == len(body)


@needs_curl
def test_curl_body_too_large_is_413() -> None:
    limits = ServerLimits(max_body_bytes=1000)
    with server_thread(limits=limits) as url:
        proc = curl("-v", "--data-binary", "@-", url + "/up", stdin=b"y" * 5000)
        assert b"HTTP/1.1 413" in proc.stderr
        assert json.loads(proc.stdout)["error"]["code"] == "body_too_large"


# ---------------------------------------------------------------------------------------
# Keep-alive, HTTP/1.0, Connection: close, pipelining (raw sockets, MockClock)


def test_http11_keepalive_many_requests_one_connection() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        for i in range(3):
            await client.send(f"GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            resp = await client.read_response()
            assert resp.status == 200
            assert resp.header("connection") is None
            assert resp.json()["path"] == f"/{i}"

    run_mock(test)


def test_connection_close_is_honoured() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        resp = await client.read_response()
        assert resp.status == 200
        assert resp.header("connection") == "close"
        await client.assert_closed()

    run_mock(test)


def test_http10_closes_by_default() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(b"GET /old HTTP/1.0\r\n\r\n")
        resp = await client.read_response()
        assert resp.status == 200
        assert resp.json()["version"] == "1.0"
        assert resp.header("connection") == "close"
        await client.assert_closed()

    run_mock(test)


def test_http10_keepalive_when_asked() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        for i in range(2):
            await client.send(f"GET /{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
            resp = await client.read_response()
            assert resp.status == 200
            assert resp.header("connection") == "keep-alive"
            assert resp.json()["path"] == f"/{i}"
        await client.send(b"GET /last HTTP/1.0\r\n\r\n")
        assert (await client.read_response()).header("connection") == "close"
        await client.assert_closed()

    run_mock(test)


def test_pipelined_requests_answered_in_order() -> None:
    # Earlier requests take longer, so answering out of order would show.
    async def slow_echo(request: HttpRequest) -> HttpResponse:
        await trio.sleep(10 - int(request.path[1:]))
        return await echo(request)

    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(
            b"".join(
                f"POST /{i} HTTP/1.1\r\nHost: t\r\nContent-Length: {i}\r\n\r\n".encode() + b"b" * i
                for i in range(5)
            )
            + b"GET /9 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        for i in [0, 1, 2, 3, 4, 9]:
            resp = await client.read_response()
            assert resp.json()["path"] == f"/{i}"
            assert resp.json()["body_len"] == (i if i < 9 else 0)
        await client.assert_closed()

    run_mock(test, slow_echo)


def test_request_split_into_single_bytes() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        data = (
            b"POST /split?q=1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        for byte in data:
            await client.send(bytes([byte]))
            await trio.sleep(0.001)
        info = (await client.read_response()).json()
        assert info["path"] == "/split" and info["query"] == "q=1"
        assert info["body_sha"] == hashlib.sha256(b"hello world").hexdigest()

    run_mock(test)


def test_header_names_lowercased_order_and_duplicates_kept() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(
            b"GET / HTTP/1.1\r\nHost: t\r\nX-B: 1\r\nx-a: 2\r\nX-B: 3\r\nX-Space:  v w \t\r\n\r\n"
        )
        headers = (await client.read_response()).json()["headers"]
        assert headers == [
            ["host", "t"],
            ["x-b", "1"],
            ["x-a", "2"],
            ["x-b", "3"],
            ["x-space", "v w"],
        ]

    run_mock(test)


# ---------------------------------------------------------------------------------------
# Bodies


def test_chunked_body_with_extensions_and_trailers() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n" + GET
        )
        info = (await client.read_response()).json()
        assert info["body_sha"] == hashlib.sha256(b"abc0123456789").hexdigest()
        assert "x-trailer" not in [name for name, _ in info["headers"]]
        # The next request on the connection parses cleanly.
        assert (await client.read_response()).json()["method"] == "GET"

    run_mock(test)


def test_content_length_over_limit_is_413_before_body() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n")
        assert_error(await client.read_response(), 413, "body_too_large")
        await client.assert_closed()

    run_mock(test, limits=ServerLimits(max_body_bytes=100))


def test_content_length_at_limit_is_accepted() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n" + b"z" * 100)
        assert (await client.read_response()).json()["body_len"] == 100

    run_mock(test, limits=ServerLimits(max_body_bytes=100))


def test_chunked_over_limit_is_413() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            await client.send(b"28\r\n" + b"c" * 40 + b"\r\n")
        assert_error(await client.read_response(), 413, "body_too_large")
        await client.assert_closed()

    run_mock(test, limits=ServerLimits(max_body_bytes=100))


def test_expect_100_continue_sent_before_body() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await client.read_response()
        assert interim.status == 100 and interim.body == b""
        await client.send(b"data")
        info = (await client.read_response()).json()
        assert info["body_len"] == 4
        # A plain request afterwards gets no stray 100.
        await client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx")
        assert (await client.read_response()).status == 200

    run_mock(test)


def test_expect_100_continue_over_limit_is_413_without_continue() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
        )
        assert_error(await client.read_response(), 413, "body_too_large")
        await client.assert_closed()

    run_mock(test, limits=ServerLimits(max_body_bytes=1000))


def test_expect_100_continue_ignored_for_http10() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(b"POST / HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        await trio.sleep(1)
        await client.send(b"ok")
        resp = await client.read_response()
        assert resp.status == 200 and resp.json()["body_len"] == 2

    run_mock(test)


# ---------------------------------------------------------------------------------------
# Malformed and hostile input


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"garbage\r\n\r\n", 400, "bad_request"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, "bad_request"),  # TLS hello
        (b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\nHost: t\n\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "bad_request"),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad_request"),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", 400, "bad_request"),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400, "bad_request"),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1, 1\r\n\r\nx", 400, "bad_request"),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
            400,
            "bad_request",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            400,
            "bad_request",
        ),
        # Request smuggling: both framings, in either order.
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 5\r\n\r\n0\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n",
            400,
            "bad_request",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
            "not_implemented",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
            "not_implemented",
        ),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, "http_version_not_supported"),
        (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request"),
    ],
)
def test_malformed_requests_rejected_and_closed(raw: bytes, status: int, code: str) -> None:
    seen: list[HttpRequest] = []

    async def recording(request: HttpRequest) -> HttpResponse:
        seen.append(request)
        return await echo(request)

    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(raw)
        resp = await client.read_response()
        assert_error(resp, status, code)
        assert b"Traceback" not in resp.body
        await client.assert_closed()

    run_mock(test, recording)
    assert seen == []


def test_requests_before_a_malformed_one_are_still_answered() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(GET + GET + b"BROKEN\r\n\r\n")
        assert (await client.read_response()).status == 200
        assert (await client.read_response()).status == 200
        assert_error(await client.read_response(), 400, "bad_request")
        await client.assert_closed()

    run_mock(test)


def test_too_many_headers_is_431() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        headers = b"".join(b"X-%d: v\r\n" % i for i in range(11))
        await client.send(b"GET / HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
        assert_error(await client.read_response(), 431, "headers_too_large")
        await client.assert_closed()

    run_mock(test, limits=ServerLimits(max_headers=10))


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"v" * 5000 + b"\r\n\r\n",
        b"GET /" + b"u" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 90) for i in range(50))
        + b"\r\n",
    ],
    ids=["one-big-header", "long-url", "many-headers"],
)
def test_oversized_head_is_431(raw: bytes) -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(raw)
        assert_error(await client.read_response(), 431, "headers_too_large")
        await client.assert_closed()

    run_mock(test, limits=ServerLimits(max_header_bytes=4096))


def test_endless_header_value_is_cut_off() -> None:
    # The header never ends, so no callback ever sees it: the raw byte cap must act.
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Endless: ")
        await send_ignoring_close(client, [b"v" * 16384] * 20)
        assert_error(await client.read_response(), 431, "headers_too_large")
        await client.assert_closed()

    run_mock(test, limits=ServerLimits(max_header_bytes=4096))


def test_client_disconnect_mid_request_does_not_hurt_server() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        await client.stream.aclose()
        other = await connect(port)
        await other.send(GET)
        assert (await other.read_response()).status == 200

    run_mock(test)


# ---------------------------------------------------------------------------------------
# Timeouts (MockClock)


def test_idle_keepalive_connection_closed_after_timeout() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(GET)
        await client.read_response()
        # Activity resets the idle timer.
        await trio.sleep(4)
        await client.send(GET)
        await client.read_response()
        start = trio.current_time()
        await client.assert_closed()
        assert 5 <= trio.current_time() - start <= 5 + TICK

    run_mock(test)


def test_silent_new_connection_closed_after_header_timeout() -> None:
    async def test(port: int) -> None:
        start = trio.current_time()
        client = await connect(port)
        await client.assert_closed()
        assert 10 <= trio.current_time() - start <= 10 + TICK

    run_mock(test)


def test_slowloris_partial_head_gets_408() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(GET)
        await client.read_response()
        # One header byte a second: each read makes progress, but the head as a whole
        # must arrive within header_read_timeout of its first byte.
        head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"s" * 100
        resp, elapsed = await drip_until_answered(client, [bytes([b]) for b in head], 1)
        assert_error(resp, 408, "request_timeout")
        assert "head" in resp.json()["error"]["message"]
        assert 10 <= elapsed <= 10 + TICK
        await client.assert_closed()

    run_mock(test)


def test_first_head_deadline_counts_from_accept() -> None:
    async def test(port: int) -> None:
        start = trio.current_time()
        client = await connect(port)
        await trio.sleep(8)
        await client.send(b"GET / HTTP/1.1\r\n")
        resp = await client.read_response()
        assert_error(resp, 408, "request_timeout")
        assert 10 <= trio.current_time() - start <= 10 + TICK

    run_mock(test)


def test_slow_body_gets_408() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
        resp, elapsed = await drip_until_answered(client, [b"b"] * 1000, 1)
        assert_error(resp, 408, "request_timeout")
        assert "body" in resp.json()["error"]["message"]
        assert 30 <= elapsed <= 30 + TICK
        await client.assert_closed()

    run_mock(test)


def test_client_that_does_not_read_is_abandoned_after_send_timeout() -> None:
    big = b"x" * (64 * 1024 * 1024)

    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, [], big)

    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(GET)
        await trio.sleep(31)
        received = 0
        with pytest.raises(EOFError):
            while True:
                if not await client._fill():
                    raise EOFError
                received += len(client.buf)
                client.buf.clear()
        assert received < len(big)

    run_mock(test, handler)


# ---------------------------------------------------------------------------------------
# Responses


def test_slow_reader_gets_every_pipelined_large_response() -> None:
    big = bytes(range(256)) * 16384  # 4 MiB: more than the socket buffers hold

    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, [], big)

    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(GET * 3)
        for _ in range(3):
            # Let the server run into a full send buffer before each read.
            await trio.sleep(1)
            assert (await client.read_response()).body == big

    run_mock(test, handler)


def test_head_gets_headers_without_body() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, [], b"twelve bytes")

    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
        resp = await client.read_response(head_request=True)
        assert resp.status == 200 and resp.header("content-length") == "12"
        # No body bytes were sent: the next response starts right away.
        resp = await client.read_response()
        assert resp.body == b"twelve bytes"

    run_mock(test, handler)


def test_head_keeps_handler_content_length_when_body_empty() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, [("Content-Length", "12345")], b"")

    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        resp = await client.read_response(head_request=True)
        assert resp.header("content-length") == "12345"

    run_mock(test, handler)


def test_server_owns_framing_headers() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        headers = [
            ("Content-Length", "999"),
            ("Transfer-Encoding", "chunked"),
            ("X-Kept", "yes"),
            ("X-Kept", "twice"),
        ]
        return HttpResponse(201, headers, b"abc")

    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(GET)
        resp = await client.read_response()
        assert resp.status == 201
        assert resp.header("content-length") == "3"
        assert resp.header("transfer-encoding") is None
        assert [v for k, v in resp.headers if k == "x-kept"] == ["yes", "twice"]
        assert resp.header("server") == "dohost"
        assert resp.body == b"abc"

    run_mock(test, handler)


def test_204_has_no_content_length_or_body() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(204, [], b"ignored")

    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(GET + GET)
        for _ in range(2):
            resp = await client.read_response()
            assert resp.status == 204 and resp.header("content-length") is None

    run_mock(test, handler)


def test_handler_connection_close_closes() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, [("Connection", "close")], b"bye")

    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(GET)
        resp = await client.read_response()
        assert resp.body == b"bye" and resp.header("connection") == "close"
        await client.assert_closed()

    run_mock(test, handler)


@pytest.mark.parametrize(
    "response",
    [
        HttpResponse(200, [("X-Evil", "a\r\nSet-Cookie: stolen=1")], b""),
        HttpResponse(200, [("X-Evil\r\nSet-Cookie", "stolen=1")], b""),
        HttpResponse(200, [("X-Evil", "a\nb")], b""),
        HttpResponse(200, [("X-Snow", "\u2603")], b""),
        HttpResponse(42, [], b""),
        HttpResponse(103, [], b""),
        HttpResponse(200, [], "not bytes"),  # type: ignore[arg-type]
    ],
    ids=["crlf-value", "crlf-name", "lf-value", "non-latin1", "bad-status", "1xx", "str-body"],
)
def test_invalid_handler_response_becomes_500(
    response: HttpResponse, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return response

    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(GET)
        resp = await client.read_response()
        assert resp.status == 500
        assert resp.json()["error"]["code"] == "internal"
        assert resp.header("set-cookie") is None
        # The connection is still in sync.
        await client.send(GET)
        assert (await client.read_response()).status == 500

    with caplog.at_level(logging.ERROR, logger="dohost.server.http_server"):
        run_mock(test, handler)
    assert caplog.records


def test_handler_returning_wrong_type_is_500() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return "nope"  # type: ignore[return-value]

    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(GET)
        assert (await client.read_response()).status == 500

    run_mock(test, handler)


def test_unknown_status_code_is_sent() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(599, [], b"x")

    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(GET)
        assert (await client.read_response()).status == 599

    run_mock(test, handler)


# ---------------------------------------------------------------------------------------
# Upgrade hook


UPGRADE = b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"


def test_upgrade_response_hands_over_the_stream() -> None:
    async def on_upgrade(stream: trio.abc.Stream, buffered: bytes) -> None:
        await stream.send_all(b"[" + buffered + b"]")
        while data := await stream.receive_some(100):
            await stream.send_all(data.upper())

    async def handler(request: HttpRequest) -> HttpResponse:
        assert request.header("upgrade") == "echo"
        return UpgradeResponse(
            headers=[("Upgrade", "echo"), ("Connection", "Upgrade")], on_upgrade=on_upgrade
        )

    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(UPGRADE + b"early")
        status, headers = await client.read_head()
        assert status == 101
        assert ("upgrade", "echo") in headers
        assert "content-length" not in dict(headers)
        while len(client.buf) < 7:
            assert await client._fill()
        assert bytes(client.buf) == b"[early]"
        client.buf.clear()
        await client.send(b"abc")
        assert await client._fill()
        assert bytes(client.buf) == b"ABC"
        client.buf.clear()
        await client.stream.send_eof()
        await client.assert_closed()

    run_mock(test, handler)


def test_declined_upgrade_answers_then_closes() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(UPGRADE)
        resp = await client.read_response()
        assert resp.status == 200 and resp.header("connection") == "close"
        await client.assert_closed()

    run_mock(test)


def test_upgrade_response_to_plain_request_is_500() -> None:
    async def on_upgrade(stream: trio.abc.Stream, buffered: bytes) -> None:
        raise AssertionError("must not be called")

    async def handler(request: HttpRequest) -> HttpResponse:
        return UpgradeResponse(on_upgrade=on_upgrade)

    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(GET)
        assert (await client.read_response()).status == 500

    run_mock(test, handler)


def test_upgrade_request_with_body_is_refused() -> None:
    async def test(port: int) -> None:
        client = await connect(port)
        await client.send(
            b"POST / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
            b"Content-Length: 2\r\n\r\nab"
        )
        assert_error(await client.read_response(), 501, "not_implemented")
        await client.assert_closed()

    run_mock(test)


# ---------------------------------------------------------------------------------------
# Graceful shutdown


def test_graceful_shutdown_finishes_in_flight_and_closes_idle() -> None:
    async def slow(request: HttpRequest) -> HttpResponse:
        if request.path == "/slow":
            await trio.sleep(3)
        return await echo(request)

    async def main() -> None:
        shutdown = trio.Event()
        done = trio.Event()
        async with trio.open_nursery() as nursery:

            async def serve(task_status: trio.TaskStatus[tuple[str, int]]) -> None:
                await serve_http(slow, shutdown=shutdown, task_status=task_status)
                done.set()

            _, port = await nursery.start(serve)
            idle = await connect(port)
            await idle.send(GET)
            await idle.read_response()
            busy = await connect(port)
            await busy.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            await trio.sleep(1)
            start = trio.current_time()
            shutdown.set()
            # The idle connection is closed at once...
            await idle.assert_closed()
            assert trio.current_time() == start
            # ...new connections are refused...
            with pytest.raises(OSError):
                await connect(port)
            # ...and the in-flight request completes, then its connection closes.
            resp = await busy.read_response()
            assert resp.status == 200 and resp.header("connection") == "close"
            assert trio.current_time() - start == pytest.approx(2)
            await busy.assert_closed()
            await done.wait()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_graceful_shutdown_is_bounded() -> None:
    async def forever(request: HttpRequest) -> HttpResponse:
        await trio.sleep_forever()
        raise AssertionError

    async def main() -> None:
        server = HttpServer(forever, limits=ServerLimits(graceful_shutdown_timeout=7))
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(server.serve)
            client = await connect(port)
            await client.send(GET)
            await trio.sleep(1)
            start = trio.current_time()
            server.shutdown()
            await client.assert_closed()
            assert trio.current_time() - start == pytest.approx(7)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_shutdown_with_no_connections_returns_promptly() -> None:
    async def main() -> None:
        server = HttpServer(echo)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            start = trio.current_time()
            server.shutdown()
        assert trio.current_time() == start

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_request_arriving_during_shutdown_is_completed() -> None:
    async def main() -> None:
        server = HttpServer(echo)
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(server.serve)
            client = await connect(port)
            await client.send(b"POST /late HTTP/1.1\r\nHost: t\r\nContent-Le")
            await trio.sleep(1)
            server.shutdown()
            await trio.sleep(1)
            await client.send(b"ngth: 2\r\n\r\nhi" + GET)
            resp = await client.read_response()
            assert resp.json()["path"] == "/late"
            # The pipelined GET is not served: the connection closes after /late.
            assert resp.header("connection") == "close"
            await client.assert_closed()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# ---------------------------------------------------------------------------------------
# Fuzzing: whatever arrives, the server answers with well-formed HTTP or closes, and
# never hits an unexpected exception.

_VALID = [
    GET,
    b"POST /p?q HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"PUT / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
]


@settings(max_examples=150, deadline=None)
@given(
    pieces=st.lists(
        st.one_of(st.sampled_from(_VALID), st.binary(max_size=40)), min_size=1, max_size=6
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=50), max_size=8),
)
def test_fuzz_never_breaks_the_server(pieces: list[bytes], cuts: list[int]) -> None:
    data = b"".join(pieces)
    chunks = []
    for cut in cuts:
        if not data:
            break
        chunks.append(data[:cut])
        data = data[cut:]
    chunks.append(data)
    failures: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            failures.append(record)

    async def test(port: int) -> None:
        client = await connect(port)
        await send_ignoring_close(client, [c for c in chunks if c], pause=0.01)
        await client.stream.send_eof()
        while True:
            try:
                status, headers = await client.read_head()
            except EOFError as exc:
                # Only whole responses: nothing may be left half-sent.
                assert exc.args[0] == b""
                break
            assert 100 <= status <= 599
            if status == 100:
                continue
            lengths = [v for k, v in headers if k == "content-length"]
            length = int(lengths[0]) if lengths else 0
            # (No HEAD requests here, so every body is exactly Content-Length long.)
            while len(client.buf) < length and await client._fill():
                pass
            del client.buf[:length]

    logger = logging.getLogger("dohost.server.http_server")
    catcher = Catch(logging.ERROR)
    logger.addHandler(catcher)
    try:
        run_mock(test)
    finally:
        logger.removeHandler(catcher)
    assert failures == []

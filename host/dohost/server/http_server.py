"""The HTTP/1.1 front door: a small server on trio over httptools' C parser (llhttp).

One trio task per connection reads, parses, calls the `Handler`, and writes one complete,
`Content-Length`-framed response per request, in order (pipelining is answered
sequentially). It enforces `ServerLimits` (head and body sizes, header count, header, body,
idle and send timeouts), rejects ambiguous framing (request smuggling), answers
`Expect: 100-continue`, and shuts down gracefully. Errors the server produces itself carry
JSON bodies `{"error": {"code": ..., "message": ...}}`.

Entry points: `serve_http(handler, host, port, ...)`, or `HttpServer(handler).serve(...)`
plus `HttpServer.shutdown()`.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import NoReturn

import httptools
import trio

from dohost.server.http_types import (
    Handler,
    HttpRequest,
    HttpResponse,
    ServerLimits,
    StreamResponse,
    UpgradeResponse,
)

__all__ = ["HttpServer", "serve_http"]

_log = logging.getLogger(__name__)

# One receive buffer: also bounds how far ahead a pipelining client can get, since
# nothing more is read while parsed requests are waiting.
RECV_SIZE = 64 * 1024
# Bodies at least this big go out in a second write, so a large body is not copied
# just to glue the head on.
_JOIN_LIMIT = 64 * 1024
# After the server decides to close, it keeps reading (and discarding) for this long
# so that unread client bytes do not turn the close into a TCP reset that could destroy
# the response before the client reads it.
LINGER_SECONDS = 2.0

_ACCEPT_RETRY_ERRNOS = {
    getattr(errno, name)
    for name in ("EMFILE", "ENFILE", "ENOMEM", "ENOBUFS")
    if hasattr(errno, name)
}

_STATUS_LINES: dict[int, str] = {int(s): f"HTTP/1.1 {int(s)} {s.phrase}\r\n" for s in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# Headers the server owns in responses: framing must match what is actually sent.
_OWNED_RESPONSE_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "server", "date"}
)
# Request headers that affect framing or protocol handling; all others are only stored.
_SPECIAL_REQUEST_HEADERS = frozenset({"content-length", "transfer-encoding", "expect", "host"})

_METHOD_NAMES: dict[bytes, str] = {}


def _method_name(raw: bytes) -> str:
    name = _METHOD_NAMES.get(raw)
    if name is None:
        name = _METHOD_NAMES[raw] = raw.decode("ascii")
    return name


_date_second = -1
_date_server_lines = ""


def _date_and_server() -> str:
    """`Date` and `Server` lines, recomputed at most once per wall-clock second."""
    global _date_second, _date_server_lines
    now = int(time.time())
    if now != _date_second:
        _date_second = now
        _date_server_lines = f"Date: {formatdate(now, usegmt=True)}\r\nServer: dohost\r\n"
    return _date_server_lines


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def _error_headers(code: str) -> list[tuple[str, str]]:
    # The code in `x-dohost-error` too, as on every error the API makes (api_util.py):
    # clients tell host errors from guest statuses by it (docs/http-api.md, "Errors").
    return [("Content-Type", "application/json"), ("x-dohost-error", code)]


_INTERNAL_ERROR = HttpResponse(
    500, _error_headers("internal"), _error_body("internal", "internal server error")
)


class _Reject:
    """A response the server makes itself for a request it will not pass on; the
    connection is closed after it."""

    __slots__ = ("response",)

    def __init__(self, status: int, code: str, message: str) -> None:
        self.response = HttpResponse(status, _error_headers(code), _error_body(code, message))


class _StopParsing(Exception):
    """Raised from a parser callback to abandon the connection's input."""


class _RequestReader:
    """The httptools callback object: turns parser events into queued requests.

    Completed requests are queued as `(request, keep_alive)`; a request the server
    refuses is queued as a `_Reject` after which nothing more is parsed.
    """

    __slots__ = (
        "_body_parts",
        "_body_size",
        "_chunked",
        "_content_length",
        "_expect_continue",
        "_head_size",
        "_headers",
        "_host_count",
        "_limits",
        "_method",
        "_url",
        "_version",
        "body_deadline",
        "client",
        "continue_sent",
        "head_deadline",
        "head_raw",
        "headers_done",
        "in_message",
        "parser",
        "ready",
        "reject",
    )

    def __init__(self, limits: ServerLimits, client: tuple[str, int] | None) -> None:
        self._limits = limits
        self.client = client
        self.parser = httptools.HttpRequestParser(self)
        self.ready: deque[tuple[HttpRequest, bool] | _Reject] = deque()
        self.reject: _Reject | None = None
        self.in_message = False
        self.headers_done = False
        self.continue_sent = False
        self.head_raw = 0
        self.head_deadline: float | None = None
        self.body_deadline: float | None = None
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._body_parts: list[bytes] = []
        self._body_size = 0
        self._head_size = 0
        self._host_count = 0
        self._content_length = -1
        self._chunked = False
        self._expect_continue = False
        self._method = ""
        self._version = ""

    @property
    def wants_continue(self) -> bool:
        """The current request's head is in, it asked for `100 Continue`, and none has
        been sent yet."""
        return self._expect_continue and not self.continue_sent

    def _fail(self, status: int, code: str, message: str) -> NoReturn:
        self.reject = _Reject(status, code, message)
        raise _StopParsing

    # httptools callbacks.

    def on_message_begin(self) -> None:
        self.in_message = True
        self.headers_done = False
        self.continue_sent = False
        self.head_raw = 0
        self.head_deadline = None
        self.body_deadline = None
        self._url = b""
        self._headers = []
        self._body_parts = []
        self._body_size = 0
        self._head_size = 0
        self._host_count = 0
        self._content_length = -1
        self._chunked = False
        self._expect_continue = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self._limits.max_header_bytes:
            self._fail(
                431,
                "headers_too_large",
                f"the request head exceeds {self._limits.max_header_bytes} bytes; "
                "send a shorter URL or fewer/smaller headers",
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self._limits
        if self.headers_done:
            # A trailer after a chunked body: not exposed, but it costs the body budget
            # so that trailers cannot grow without bound.
            self._body_size += len(name) + len(value)
            if self._body_size > limits.max_body_bytes:
                self._fail_body_too_large()
            return
        self._head_size += len(name) + len(value) + 4
        if self._head_size > limits.max_header_bytes:
            self._fail(
                431,
                "headers_too_large",
                f"the request head exceeds {limits.max_header_bytes} bytes; "
                "send fewer or smaller headers",
            )
        if len(self._headers) >= limits.max_headers:
            self._fail(
                431,
                "headers_too_large",
                f"the request has more than {limits.max_headers} header fields",
            )
        key = name.decode("latin-1").lower()
        text = value.rstrip(b" \t").decode("latin-1")
        self._headers.append((key, text))
        if key in _SPECIAL_REQUEST_HEADERS:
            self._special_header(key, text)

    def _special_header(self, key: str, value: str) -> None:
        if key == "content-length":
            # llhttp has already refused non-digits, overflow and duplicates.
            self._content_length = int(value)
        elif key == "transfer-encoding":
            if value.lower() != "chunked":
                self._fail(
                    501,
                    "not_implemented",
                    f"Transfer-Encoding {value!r} is not supported; only 'chunked' is",
                )
            self._chunked = True
        elif key == "expect":
            if value.lower() == "100-continue":
                self._expect_continue = True
        else:
            self._host_count += 1

    def on_headers_complete(self) -> None:
        self.headers_done = True
        parser = self.parser
        version = parser.get_http_version()
        self._version = version
        self._method = _method_name(parser.get_method())
        if version != "1.1":
            if version != "1.0":
                self._fail(
                    505,
                    "http_version_not_supported",
                    f"HTTP/{version} is not supported; use HTTP/1.1",
                )
            # RFC 9110 10.1.1: a 1.0 client cannot be relied on to understand 100.
            self._expect_continue = False
        elif self._host_count != 1:
            self._fail(
                400,
                "bad_request",
                "an HTTP/1.1 request needs exactly one Host header",
            )
        if self._content_length > self._limits.max_body_bytes:
            self._fail_body_too_large()
        if (
            (self._content_length > 0 or self._chunked)
            and parser.should_upgrade()
            and self._method != "CONNECT"
        ):
            # llhttp skips the body of an upgrade request, so it could not be read.
            self._fail(
                501,
                "not_implemented",
                "protocol upgrade requests with a body are not supported; "
                "send the request without 'Connection: upgrade'",
            )

    def _fail_body_too_large(self) -> NoReturn:
        self._fail(
            413,
            "body_too_large",
            f"the request body exceeds the limit of {self._limits.max_body_bytes} bytes",
        )

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._limits.max_body_bytes:
            self._fail_body_too_large()
        self._body_parts.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        self._expect_continue = False
        url = self._url.decode("latin-1")
        path, _, query = url.partition("?")
        parts = self._body_parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        request = HttpRequest(
            self._method, path, query, self._headers, body, self.client, self._version
        )
        self.ready.append((request, self.parser.should_keep_alive()))


class _Abort(Exception):
    """The connection is unusable (peer gone, send failed): close it quietly."""


# What a connection is doing. It decides what an expired deadline means and whether a
# graceful shutdown may close the connection right away.
_IDLE = 0  # waiting for the first byte of a request: expiry closes quietly
_HEAD = 1  # reading a request head: expiry answers 408
_BODY = 2  # reading a request body: expiry answers 408
_BUSY = 3  # handler or upgraded protocol running: no deadline
_SEND = 4  # writing a response: expiry abandons the connection
_LINGER = 5  # draining input before close: expiry just closes

_NEVER = float("inf")


# What an upgraded connection keeps as its request reader: one shared, never used again.
_UPGRADED_READER = _RequestReader(ServerLimits(), None)


class _Connection:
    """One client connection: read a request, call the handler, write, repeat.

    Two things keep the per-request cost down, measured with bench/http_floor.py:

    - Deadlines are plain floats (`deadline`) that the server's reaper task checks a few
      times a second, cancelling `scope` when one has passed. Moving a trio cancel
      scope's deadline, or entering a new scope, on every read and write cost more
      than parsing the request.
    - I/O goes straight to a non-blocking stdlib socket sharing the connection's file
      descriptor, waiting with trio only when the kernel says it would block. Trio's
      socket methods yield to the scheduler even when the call succeeds at once, which
      is one extra scheduler round trip per response.
    """

    __slots__ = (
        "_raw",
        "_server",
        "_stream",
        "deadline",
        "phase",
        "reader",
        "scope",
        "served",
        "upgrade_tail",
    )

    def __init__(self, server: HttpServer, stream: trio.SocketStream) -> None:
        self._server = server
        self._stream = stream
        # Shares the descriptor (no dup): must be detached, never closed; the trio
        # socket owns the descriptor and closes it.
        self._raw = socket.socket(fileno=stream.socket.fileno())
        try:
            self._raw.setblocking(False)
        except OSError:
            self._raw.detach()
            raise
        try:
            peer = self._raw.getpeername()
            client: tuple[str, int] | None = (str(peer[0]), int(peer[1]))
        except (OSError, IndexError, TypeError):
            client = None
        self.reader = _RequestReader(server.limits, client)
        self.served = 0
        self.phase = _IDLE
        self.deadline = trio.current_time() + server.limits.header_read_timeout
        self.scope = trio.CancelScope()
        self.upgrade_tail: bytes | None = None

    def close_if_idle(self) -> None:
        if self.phase == _IDLE:
            self.scope.cancel()

    def detach(self) -> None:
        self._raw.detach()

    async def run(self) -> None:
        limits = self._server.limits
        with self.scope:
            await self._serve_requests()
            return
        # Only an expired deadline (or shutdown, while idle) ends the scope early.
        if self.phase not in (_HEAD, _BODY):
            return
        if self.phase == _HEAD:
            message = f"the request head did not arrive within {limits.header_read_timeout:g} s"
        else:
            message = f"the request body did not arrive within {limits.body_read_timeout:g} s"
        reject = _Reject(408, "request_timeout", message)
        with trio.move_on_after(limits.send_timeout):
            await self._send(self._encode(reject.response, False, False, False)[0])
        with trio.move_on_after(LINGER_SECONDS):
            await self._linger()

    async def _serve_requests(self) -> None:
        server = self._server
        ready = self.reader.ready
        handler = server.handler
        first_deadline = self.deadline
        while True:
            item = ready.popleft() if ready else await self._read_message(first_deadline)
            if item is None:
                return
            if isinstance(item, _Reject):
                await self._send(self._encode(item.response, False, False, False)[0])
                await self._close_after_response()
                return
            request, keep_alive = item
            upgrade = self.upgrade_tail is not None and not ready
            self.phase = _BUSY
            self.deadline = _NEVER
            try:
                response = await handler(request)
                if not isinstance(response, HttpResponse):
                    raise TypeError(f"handler returned {type(response).__name__}")
            except Exception:
                _log.exception("handler failed on %s %s", request.method, request.path)
                response = _INTERNAL_ERROR
            if isinstance(response, UpgradeResponse):
                if upgrade:
                    # The new protocol may keep the connection for days: hold nothing of
                    # the HTTP request, or of the parser, meanwhile (~3 KB a connection).
                    del item, request, ready
                    self.reader = _UPGRADED_READER
                    await self._upgrade(response)
                    return
                _abandon(response)
                _log.error(
                    "handler returned UpgradeResponse for %s %s, which is not an upgrade request",
                    request.method,
                    request.path,
                )
                response = _INTERNAL_ERROR
            if isinstance(response, StreamResponse):
                await self._send_streamed(response, request.method == "HEAD")
                return
            self.served += 1
            # Bytes after an upgrade request belong to the other protocol, so plain HTTP
            # cannot go on after declining it.
            keep_alive = keep_alive and not upgrade and not server.draining
            head, body, close = self._encode(
                response, request.method == "HEAD", keep_alive, request.http_version == "1.0"
            )
            await self._send(head, body)
            if close:
                await self._close_after_response()
                return

    async def _read_message(
        self, first_deadline: float
    ) -> tuple[HttpRequest, bool] | _Reject | None:
        """Read until a request (or a rejection) is queued; None means close quietly."""
        reader = self.reader
        ready = reader.ready
        limits = self._server.limits
        while True:
            if reader.in_message:
                if reader.headers_done:
                    if reader.wants_continue:
                        reader.continue_sent = True
                        await self._send(_CONTINUE)
                    if reader.body_deadline is None:
                        reader.body_deadline = trio.current_time() + limits.body_read_timeout
                    self.phase = _BODY
                    self.deadline = reader.body_deadline
                else:
                    if reader.head_deadline is None:
                        reader.head_deadline = (
                            first_deadline
                            if self.served == 0
                            else trio.current_time() + limits.header_read_timeout
                        )
                    self.phase = _HEAD
                    self.deadline = reader.head_deadline
            else:
                if self._server.draining:
                    return None
                self.phase = _IDLE
                self.deadline = (
                    first_deadline
                    if self.served == 0
                    else trio.current_time() + limits.keepalive_idle_timeout
                )
            data = await self._recv()
            if not data:
                return None
            try:
                reader.parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                self.upgrade_tail = data[exc.args[0] :]
            except httptools.HttpParserError as exc:
                reject = reader.reject
                if reject is None:
                    reason = str(exc) or "unparseable request"
                    reject = _Reject(400, "bad_request", f"malformed request: {reason}")
                ready.append(reject)
            else:
                if reader.in_message and not reader.headers_done:
                    # The callbacks see a header only once it is complete, and httptools
                    # buffers partial ones, so cap the raw bytes of an unfinished head too.
                    reader.head_raw += len(data)
                    if reader.head_raw > limits.max_header_bytes + RECV_SIZE:
                        ready.append(
                            _Reject(
                                431,
                                "headers_too_large",
                                f"the request head exceeds {limits.max_header_bytes} bytes; "
                                "send fewer or smaller headers",
                            )
                        )
            if ready:
                return ready.popleft()

    async def _recv(self) -> bytes:
        """Next bytes from the client; b"" on EOF or a broken connection."""
        raw = self._raw
        try:
            while True:
                # Wait first rather than try first: we read only when the parser has
                # nothing queued, which is nearly always right after answering, when
                # the client cannot have sent its next request yet; a failed recv would
                # be a wasted syscall and exception per request. The wait is also this
                # task's checkpoint, so a busy connection cannot starve the others.
                await trio.lowlevel.wait_readable(raw)
                if self.scope.cancel_called:
                    # A deadline or shutdown fired after the data arrived but before
                    # this task ran. Honour it here: later it would cancel the handler.
                    await trio.lowlevel.checkpoint()
                try:
                    return raw.recv(RECV_SIZE)
                except BlockingIOError:
                    continue
        except OSError:
            return b""

    async def _send(self, data: bytes, more: bytes = b"") -> None:
        """Write everything, waiting (under the send deadline) only if the kernel's
        buffer fills up."""
        try:
            try:
                sent = self._raw.send(data)
            except BlockingIOError:
                sent = 0
            if sent == len(data) and not more:
                return
            await self._send_slowly(memoryview(data)[sent:], memoryview(more))
        except OSError:
            raise _Abort from None

    async def _send_slowly(self, *views: memoryview) -> None:
        raw = self._raw
        self.phase = _SEND
        self.deadline = trio.current_time() + self._server.limits.send_timeout
        for view in views:
            while view:
                try:
                    sent = raw.send(view)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(raw)
                    continue
                view = view[sent:]

    async def _close_after_response(self) -> None:
        self.phase = _LINGER
        self.deadline = trio.current_time() + LINGER_SECONDS
        await self._linger()

    async def _linger(self) -> None:
        try:
            self._raw.shutdown(socket.SHUT_WR)
        except OSError:
            return
        while await self._recv():
            pass

    async def _send_streamed(self, response: StreamResponse, is_head: bool) -> None:
        """Send a chunked body as `produce` writes it; close the connection after it.
        Server shutdown ends the stream (it would otherwise hold the drain)."""
        head = _encode_response(
            HttpResponse(response.status, [*response.headers, ("connection", "close")]),
            False,
            False,
            False,
        )[0]
        head = head.replace(b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n", 1)
        await self._send(head)
        if is_head:
            return

        async def write(data: bytes) -> None:
            if data:
                await self._send(b"%x\r\n" % len(data), data + b"\r\n")
                self.phase = _BUSY
                self.deadline = _NEVER

        async with trio.open_nursery() as nursery:

            async def stop_at_shutdown() -> None:
                await self._server._shutdown.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_at_shutdown)
            await response.produce(write)
            nursery.cancel_scope.cancel()
        await self._send(b"0\r\n\r\n")
        await self._close_after_response()

    async def _upgrade(self, response: UpgradeResponse) -> None:
        try:
            head = _encode_upgrade_head(response)
        except Exception:
            _log.exception("handler returned an invalid upgrade response")
            _abandon(response)
            await self._send(_encode_response(_INTERNAL_ERROR, False, False, False)[0])
            await self._close_after_response()
            return
        try:
            await self._send(head)
        except BaseException:
            _abandon(response)
            raise
        tail = self.upgrade_tail or b""
        self.upgrade_tail = None
        self.phase = _BUSY
        self.deadline = _NEVER
        await response.on_upgrade(self._stream, tail)

    def _encode(
        self, response: HttpResponse, is_head: bool, keep_alive: bool, http10: bool
    ) -> tuple[bytes, bytes, bool]:
        """Serialize a response as (bytes, more bytes to send after them, close_after).

        A response the handler got wrong (bad status, header with CR/LF, non-latin-1
        text, body not bytes) becomes a logged 500 instead of a broken stream.
        """
        try:
            return _encode_response(response, is_head, keep_alive, http10)
        except Exception:
            _log.exception("handler returned an invalid response")
            return _encode_response(_INTERNAL_ERROR, is_head, keep_alive, http10)


def _encode_response(
    response: HttpResponse, is_head: bool, keep_alive: bool, http10: bool
) -> tuple[bytes, bytes, bool]:
    status = response.status
    line = _STATUS_LINES.get(status)
    if line is None or status < 200:
        # 1xx cannot end an exchange (101 comes only through UpgradeResponse).
        if not 200 <= status <= 999:
            raise ValueError(f"invalid final status {status!r}")
        line = f"HTTP/1.1 {status} \r\n"
    body = response.body
    parts = [line, _date_and_server()]
    lines = 4  # status line, Date, Server, blank line
    close = not keep_alive
    given_length: str | None = None
    for name, value in response.headers:
        lname = name.lower()
        if lname in _OWNED_RESPONSE_HEADERS:
            if lname == "connection":
                if "close" in value.lower():
                    close = True
            elif lname == "content-length":
                given_length = value
            continue
        parts += (name, ": ", value, "\r\n")
        lines += 1
    if status == 204:
        # RFC 9110 8.6: no Content-Length (and no body) on 204.
        body = b""
    elif status == 304 or (is_head and not body):
        body = b""
        if given_length is not None:
            parts += ("Content-Length: ", str(int(given_length)), "\r\n")
            lines += 1
    else:
        parts += ("Content-Length: ", str(len(body)), "\r\n")
        lines += 1
        if is_head:
            body = b""
    if close:
        parts.append("Connection: close\r\n")
        lines += 1
    elif http10:
        parts.append("Connection: keep-alive\r\n")
        lines += 1
    parts.append("\r\n")
    head = "".join(parts)
    # Each part was expected to add exactly its own line end; any extra CR or LF came
    # from the handler and would let it forge headers or whole responses.
    if head.count("\n") != lines or head.count("\r") != lines:
        raise ValueError("response header contains CR or LF")
    encoded = head.encode("latin-1")
    if len(body) < _JOIN_LIMIT:
        return encoded + body, b"", close
    return encoded, bytes(body), close


def _abandon(response: UpgradeResponse) -> None:
    if response.on_abandon is not None:
        try:
            response.on_abandon()
        except Exception:
            _log.exception("an upgrade's on_abandon failed")


def _encode_upgrade_head(response: UpgradeResponse) -> bytes:
    status = response.status
    parts = [_STATUS_LINES.get(status) or f"HTTP/1.1 {status} \r\n", _date_and_server()]
    lines = 4
    for name, value in response.headers:
        if name.lower() in ("content-length", "transfer-encoding", "server", "date"):
            continue
        parts += (name, ": ", value, "\r\n")
        lines += 1
    parts.append("\r\n")
    head = "".join(parts)
    if head.count("\n") != lines or head.count("\r") != lines:
        raise ValueError("response header contains CR or LF")
    return head.encode("latin-1")


class HttpServer:
    """An HTTP/1.1 server; `serve()` runs it, `shutdown()` starts a graceful stop."""

    def __init__(self, handler: Handler, *, limits: ServerLimits | None = None) -> None:
        self.handler = handler
        self.limits = limits = limits if limits is not None else ServerLimits()
        self.draining = False
        self._shutdown = trio.Event()
        self._connections: set[_Connection] = set()
        self._wake_reaper = trio.Event()
        self._reaper_scope = trio.CancelScope()
        # Deadlines are checked this often, so each timeout fires up to this late.
        shortest = min(
            limits.keepalive_idle_timeout,
            limits.header_read_timeout,
            limits.body_read_timeout,
            limits.send_timeout,
        )
        self.tick = min(0.5, max(0.001, shortest / 10))

    def shutdown(self) -> None:
        """Stop accepting, finish in-flight requests, close idle connections, return
        from `serve()`. Safe to call more than once, and before `serve()` starts."""
        self._shutdown.set()

    async def serve(
        self,
        host: str | None = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on (host, port) and serve until `shutdown()`.

        Reports the bound (host, port) through `task_status` (port 0 picks a free one).
        """
        listeners = await trio.open_tcp_listeners(port, host=host)
        await self.serve_listeners(listeners, task_status=task_status)

    async def serve_listeners(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """`serve` on listeners the caller opened (a port shared with SO_REUSEPORT, a
        Unix socket); they are closed when it returns. Reports the first one's address
        (a Unix socket's path, port 0)."""
        try:
            sockname = listeners[0].socket.getsockname()
            bound = (
                (sockname, 0) if isinstance(sockname, str) else (str(sockname[0]), int(sockname[1]))
            )
            async with trio.open_nursery() as connections:
                connections.start_soon(self._reap)
                async with trio.open_nursery() as acceptors:
                    for listener in listeners:
                        acceptors.start_soon(self._accept_loop, listener, connections)
                    task_status.started(bound)
                    await self._shutdown.wait()
                    acceptors.cancel_scope.cancel()
                for listener in listeners:
                    listener.socket.close()
                self.draining = True
                for conn in self._connections:
                    conn.close_if_idle()
                self._stop_reaper_when_drained()
                connections.cancel_scope.deadline = (
                    trio.current_time() + self.limits.graceful_shutdown_timeout
                )
        finally:
            for listener in listeners:
                listener.socket.close()

    async def _reap(self) -> None:
        """Cancel connections whose deadline has passed, until draining is done."""
        connections = self._connections
        with self._reaper_scope:
            while True:
                if not connections:
                    # Sleep until a connection arrives rather than tick for nothing.
                    self._wake_reaper = trio.Event()
                    await self._wake_reaper.wait()
                    continue
                await trio.sleep(self.tick)
                now = trio.current_time()
                for conn in connections:
                    if conn.deadline <= now:
                        conn.scope.cancel()

    def _stop_reaper_when_drained(self) -> None:
        if self.draining and not self._connections:
            self._reaper_scope.cancel()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                    raise
                # Out of descriptors or memory: back off instead of spinning, as trio's
                # own serve_listeners does.
                _log.error("accept failed (%s); retrying in 100 ms", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self._serve_connection, stream)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        try:
            conn = _Connection(self, stream)
        except OSError:
            stream.socket.close()
            return
        self._connections.add(conn)
        self._wake_reaper.set()
        try:
            await conn.run()
        except _Abort:
            pass
        except Exception:
            # Never let one connection's bug take the server (and its nursery) down.
            _log.exception("HTTP connection failed")
        finally:
            self._connections.discard(conn)
            self._stop_reaper_when_drained()
            conn.detach()
            stream.socket.close()


async def serve_http(
    handler: Handler,
    host: str | None = "127.0.0.1",
    port: int = 0,
    *,
    limits: ServerLimits | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    shutdown: trio.Event | None = None,
    listeners: list[trio.SocketListener] | None = None,
) -> None:
    """Serve `handler` on (host, port), or on `listeners` when given, until `shutdown`
    is set (or forever if None).

    Use with `await nursery.start(serve_http, handler)` to get the bound (host, port).
    When `shutdown` is set the server stops accepting, lets in-flight requests finish
    (bounded by `limits.graceful_shutdown_timeout`), closes idle keep-alive connections,
    and returns.
    """
    server = HttpServer(handler, limits=limits)
    if shutdown is None and listeners is None:
        await server.serve(host, port, task_status=task_status)
        return
    if shutdown is None:
        shutdown = trio.Event()
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            assert shutdown is not None
            await shutdown.wait()
            server.shutdown()

        nursery.start_soon(watch)
        if listeners is None:
            await server.serve(host, port, task_status=task_status)
        else:
            await server.serve_listeners(listeners, task_status=task_status)
        nursery.cancel_scope.cancel()

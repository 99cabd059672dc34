"""Plain data types shared by the HTTP/1.1 front door and the code it calls.

`HttpRequest` is what the server hands a `Handler`; `HttpResponse` is what the handler
gives back. `UpgradeResponse` is the hook for protocol upgrades (WebSocket): returning it
from a handler makes the server write the response head and then give the raw stream to
`on_upgrade`. `ServerLimits` holds every limit and timeout the server enforces.

All strings here are decoded as latin-1, which maps bytes 0-255 one to one, so nothing is
lost: `s.encode("latin-1")` gives back the exact bytes the client sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

__all__ = [
    "Handler",
    "HttpRequest",
    "HttpResponse",
    "ServerLimits",
    "StreamResponse",
    "StreamWriter",
    "UpgradeHandler",
    "UpgradeResponse",
]


@dataclass(slots=True)
class HttpRequest:
    """One fully received HTTP request.

    `path` is the raw request target up to the first `?` (not percent-decoded) and
    `query` is the raw text after it, without the `?` (empty if there was none). For
    absolute-form (`GET http://h/p`) and asterisk-form (`OPTIONS *`) targets, `path` is
    the target as sent. Header names are lowercased; values are as sent, minus the
    surrounding whitespace the grammar allows; order and duplicates are preserved.
    Trailer fields of chunked bodies are not included.
    """

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    client: tuple[str, int] | None
    http_version: str

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header `name` (which must be lowercase), or `default`."""
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def header_all(self, name: str) -> list[str]:
        """Every value of header `name` (which must be lowercase), in order."""
        return [value for key, value in self.headers if key == name]


@dataclass(slots=True)
class HttpResponse:
    """A complete response, sent in one piece and framed with `Content-Length`.

    The server owns the framing: any `content-length` or `transfer-encoding` given here
    is dropped and the body's real length sent, except that (per RFC 9110) a 204 gets
    no `Content-Length` and no body, and that a 304, or a HEAD response
    whose body is empty, keeps the handler's `content-length` (the size a GET would
    get) and sends no body; a HEAD response with a body sends its length but not the body.
    A `connection: close` header here makes the server close the connection after the
    response. `Server` and `Date` are always the server's own (any given are dropped).
    The status must be final (200-999): 1xx, other than 101 through `UpgradeResponse`,
    is a handler bug and becomes a 500.
    """

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


UpgradeHandler = Callable[[trio.abc.Stream, bytes], Awaitable[None]]
"""Takes over a connection after a `101`: the stream and any bytes the client already
sent past the request head (they belong to the new protocol)."""


@dataclass(slots=True)
class UpgradeResponse(HttpResponse):
    """Accept a protocol upgrade (e.g. WebSocket) for a request that asked for one.

    The server writes `status` (normally 101) and `headers` with no body and no
    `Content-Length`, then awaits `on_upgrade(stream, buffered)` and closes the stream
    when it returns. Only valid for requests sent with `Connection: upgrade` and an
    `Upgrade` header and no body; otherwise the server answers 500.
    """

    status: int = 101
    on_upgrade: UpgradeHandler = field(kw_only=True)
    # Called instead of `on_upgrade` when the upgrade cannot go ahead (the head could not
    # be written, the request turned out not to be an upgrade), so the handler can let go
    # of what it set up for the new protocol.
    on_abandon: Callable[[], None] | None = field(default=None, kw_only=True)


StreamWriter = Callable[[bytes], Awaitable[None]]


@dataclass(slots=True)
class StreamResponse(HttpResponse):
    """A response whose body is produced over time (`dohost tail`): the server writes
    `status` and `headers` with `Transfer-Encoding: chunked`, then awaits
    `produce(write)`; each `write(data)` sends one chunk (waiting, under the send
    timeout, while the client does not read). The connection closes after the stream,
    which ends when `produce` returns or the server shuts down."""

    produce: Callable[[StreamWriter], Awaitable[None]] = field(kw_only=True)


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Limits and timeouts (seconds, on trio's clock) the server enforces.

    Timeout rules:
    - `header_read_timeout`: once the first byte of a request arrives (or, for the first
      request, from the moment the connection is accepted), the whole head must arrive
      within this; otherwise 408 and close.
    - `body_read_timeout`: once the head is complete, the whole body must arrive within
      this (a whole-body deadline rather than a per-read one, so a client dripping one
      byte at a time cannot hold a connection forever); otherwise 408 and close.
    - `keepalive_idle_timeout`: a kept-alive connection with no bytes of a next request
      for this long is closed without a response.
    - `send_timeout`: a response that the client does not read within this is abandoned
      and the connection closed.
    - `graceful_shutdown_timeout`: after shutdown starts, in-flight requests get this
      long to finish before their connections are cancelled.

    Pipelined requests are answered one at a time, in order; the server reads no more
    from a connection while parsed requests are waiting, so a pipelining client is held
    to one receive buffer of requests ahead.
    """

    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    max_body_bytes: int = 32 * 1024 * 1024
    keepalive_idle_timeout: float = 5.0
    header_read_timeout: float = 10.0
    body_read_timeout: float = 30.0
    send_timeout: float = 30.0
    graceful_shutdown_timeout: float = 10.0

"""Forwarding between the nodes of one machine: HTTP/1.1 over each node's Unix socket.

A node that receives a request for an object another node owns sends it on to the
owner's `DATA/run/node-<i>.sock` and relays the answer. Connections are kept alive in a
pool per peer, one request at a time on each: the peer's HTTP server answers the
requests of one connection in order, one after the other, so pipelining requests for
different objects on one connection would serialize them; a pool of connections lets
the owner run them concurrently.

What a failure means for the request (the caller decides what to answer):
- `NotDelivered`: the owner certainly did not get the whole request (no socket to
  connect to, the connection refused, or the send failed before the last byte): safe to
  send again, to the same node once it is back or to a new owner.
- `OwnerLost`: the whole request was sent and the connection ended before a complete
  answer: the owner may or may not have run it. Never sent again (that could run a
  non-idempotent event twice); the client gets a 503 `owner_unavailable` saying so.
- A timeout (`forward_timeout`): the same, for an owner that does not answer (stopped,
  or overloaded).

The peer only ever is our own server (server/http_server.py), which frames every
response with Content-Length (none on HEAD, 204 and 304), so the reply parser here is
that small.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import trio

RECV_SIZE = 64 * 1024
MAX_IDLE_PER_PEER = 256
MAX_HEAD = 256 * 1024
FORWARDED_HEADER = "x-dohost-forwarded"
CLUSTER_KEY_HEADER = "x-dohost-cluster-key"  # proves a peer of the cluster (server/cluster.py)
NODE_HEADER = "x-dohost-node"  # the node that served a request
VIA_HEADER = "x-dohost-via"  # the node that received it, when another served it
# Request headers re-made for the hop (framing) or never taken from a client.
_SKIP = frozenset(
    {"content-length", "transfer-encoding", "expect", FORWARDED_HEADER, CLUSTER_KEY_HEADER}
)

# Where a peer listens: a Unix socket (nodes of one machine) or (host, port) over TCP
# (nodes of a cluster, server/cluster.py).
Address = Path | tuple[str, int]


class NotDelivered(Exception):
    """The request did not reach the peer whole: it cannot have run."""


class OwnerLost(Exception):
    """The peer took the whole request and ended without answering it."""


@dataclass(slots=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    close: bool

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


def encode_request(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    from_node: int,
    *,
    keep_connection: bool = False,
    cluster_key: str | None = None,
) -> bytes:
    """The request as the owner will read it. `keep_connection`: pass Connection and
    Upgrade on (a WebSocket handshake); otherwise a `close` token is dropped so the
    pooled connection stays open (other Connection tokens still reach the owner, which
    strips the headers they name)."""
    parts = [method, " ", target, " HTTP/1.1\r\n"]
    has_host = False
    for k, v in headers:
        if k in _SKIP:
            continue
        if k == "host":
            has_host = True
        elif k == "connection" and not keep_connection:
            tokens = [t.strip() for t in v.split(",") if t.strip().lower() not in ("close", "")]
            if not tokens:
                continue
            v = ", ".join(tokens)
        parts += (k, ": ", v, "\r\n")
    if not has_host:
        parts.append("host: dohost-node\r\n")
    parts += ("content-length: ", str(len(body)), "\r\n", FORWARDED_HEADER, ": ")
    if cluster_key is not None:
        parts += (str(from_node), "\r\n", CLUSTER_KEY_HEADER, ": ", cluster_key)
    else:
        parts.append(str(from_node))
    parts.append("\r\n\r\n")
    return "".join(parts).encode("latin-1") + body


def parse_head(head: bytes) -> tuple[int, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers.append((k.strip().lower(), v.strip()))
    return status, headers


class _Conn:
    __slots__ = ("buf", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def close(self) -> None:
        self.sock.close()


async def _connect(addr: Address) -> socket.socket:
    if isinstance(addr, tuple):
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        where = f"{addr[0]}:{addr[1]}"
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        where = addr.name
    sock.setblocking(False)
    try:
        try:
            sock.connect(addr if isinstance(addr, tuple) else str(addr))
        except BlockingIOError:  # the listener's backlog is full: wait for room
            await trio.lowlevel.wait_writable(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, errno.errorcode.get(err, str(err))) from None
    except OSError as e:
        sock.close()
        raise NotDelivered(f"cannot connect to {where}: {e.strerror or e}") from None
    except BaseException:
        sock.close()
        raise
    return sock


class Peers:
    """Keep-alive connections to the other nodes (Unix sockets, or TCP in a cluster)."""

    def __init__(self, socket_path: list[Address], node: int) -> None:
        self.paths = socket_path
        self.node = node
        self._idle: list[list[_Conn]] = [[] for _ in socket_path]

    def add(self, addr: Address) -> int:
        """A new peer (a cluster member that joined): its index."""
        self.paths.append(addr)
        self._idle.append([])
        return len(self.paths) - 1

    def move(self, peer: int, addr: Address) -> None:
        """A peer now listens elsewhere (a member that rejoined with a new address)."""
        self.drop_idle(peer)
        self.paths[peer] = addr

    def close(self) -> None:
        for idle in self._idle:
            for c in idle:
                c.close()
            idle.clear()

    def drop_idle(self, peer: int) -> None:
        """The peer restarted: its old connections are dead."""
        for c in self._idle[peer]:
            c.close()
        self._idle[peer].clear()

    async def exchange(self, peer: int, data: bytes, *, head_only: bool) -> Reply:
        """Send one request, return the peer's reply. Raises NotDelivered or OwnerLost;
        a cancellation (the caller's timeout) closes the connection.

        A pooled connection is used without probing it first (a syscall per request):
        if the peer closed it (it restarted), the send fails at once (a Unix socket
        whose peer is gone refuses writes: EPIPE), nothing was delivered, and the
        request goes again on a new connection."""
        idle = self._idle[peer]
        while idle:
            conn = idle.pop()
            try:
                return await self._exchange_on(peer, conn, data, head_only)
            except NotDelivered:
                continue  # a stale connection: the next, or a new one
        conn = _Conn(await _connect(self.paths[peer]))
        return await self._exchange_on(peer, conn, data, head_only)

    async def _exchange_on(self, peer: int, conn: _Conn, data: bytes, head_only: bool) -> Reply:
        ok = False
        try:
            await _send_all(conn.sock, data)
            reply = await _read_reply(conn, head_only)
            ok = not reply.close
            return reply
        finally:
            if ok and len(self._idle[peer]) < MAX_IDLE_PER_PEER:
                self._idle[peer].append(conn)
            else:
                conn.close()

    async def open_upgrade(
        self, peer: int, data: bytes
    ) -> tuple[Reply, trio.SocketStream | None, bytes]:
        """Send an upgrade request on a connection of its own. Returns the reply, and
        for a 101 the connection and the bytes that followed the head (the new
        protocol's); for any other status the whole reply and no connection."""
        sock = await _connect(self.paths[peer])
        conn = _Conn(sock)
        try:
            await _send_all(sock, data)
            head = await _read_head(conn)
            status, headers = parse_head(head)
            if status != 101:
                reply = await _finish_reply(conn, status, headers, head_only=False)
                sock.close()
                return reply, None, b""
        except BaseException:
            sock.close()
            raise
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        return Reply(status, headers, b"", False), stream, conn.buf

    async def stream_lines(
        self, peer: int, data: bytes, on_line: Callable[[bytes], Awaitable[None]]
    ) -> None:
        """Send a request for a streamed (chunked) answer on a connection of its own and
        hand each line of its body to `on_line` (without the newline), until the peer
        ends the stream. Raises NotDelivered, or OwnerLost when the answer is not a 200
        stream or the connection breaks."""
        conn = _Conn(await _connect(self.paths[peer]))
        try:
            await _send_all(conn.sock, data)
            status, headers = parse_head(await _read_head(conn))
            if status != 200 or ("transfer-encoding", "chunked") not in headers:
                raise OwnerLost(f"the peer answered {status} to a stream request")
            pending = b""
            while True:
                chunk = await _read_chunk(conn)
                if chunk is None:
                    return
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if len(pending) > MAX_HEAD:
                    raise OwnerLost("a streamed line is too long")
                for line in lines:
                    await on_line(line)
        finally:
            conn.close()


async def _read_chunk(conn: _Conn) -> bytes | None:
    """One chunk of a chunked body (None at its end)."""
    while b"\r\n" not in conn.buf:
        if len(conn.buf) > 64:
            raise OwnerLost("a malformed chunk size line")
        conn.buf += await _recv(conn)
    size_line, conn.buf = conn.buf.split(b"\r\n", 1)
    try:
        size = int(size_line.split(b";")[0], 16)
    except ValueError:
        raise OwnerLost("a malformed chunk size line") from None
    if size == 0:
        return None
    while len(conn.buf) < size + 2:
        conn.buf += await _recv(conn)
    chunk, conn.buf = conn.buf[:size], conn.buf[size + 2 :]
    return chunk


async def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            try:
                sent = sock.send(view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                continue
            view = view[sent:]
    except OSError as e:
        # The peer cannot have read a whole request that was never whole in its socket.
        raise NotDelivered(f"the connection failed while sending: {e.strerror or e}") from None


async def _recv(conn: _Conn) -> bytes:
    sock = conn.sock
    while True:
        # Wait first: an answer is never there the moment a request has been sent, and
        # a failed recv would cost a syscall and an exception per exchange.
        await trio.lowlevel.wait_readable(sock)
        try:
            data = sock.recv(RECV_SIZE)
        except BlockingIOError:
            continue
        except OSError as e:
            raise OwnerLost(f"the connection failed: {e.strerror or e}") from None
        if not data:
            raise OwnerLost("the owner closed the connection without answering")
        return data


async def _read_head(conn: _Conn) -> bytes:
    while True:
        end = conn.buf.find(b"\r\n\r\n")
        if end >= 0:
            head = conn.buf[:end]
            conn.buf = conn.buf[end + 4 :]
            return head
        if len(conn.buf) > MAX_HEAD:
            raise OwnerLost("the owner's answer has an oversized head")
        conn.buf += await _recv(conn)


async def _read_reply(conn: _Conn, head_only: bool) -> Reply:
    head = await _read_head(conn)
    status, headers = parse_head(head)
    return await _finish_reply(conn, status, headers, head_only)


async def _finish_reply(
    conn: _Conn, status: int, headers: list[tuple[str, str]], head_only: bool
) -> Reply:
    length = 0
    close = False
    for k, v in headers:
        if k == "content-length":
            length = int(v)
        elif k == "connection" and "close" in v.lower():
            close = True
    if head_only or status in (204, 304):
        length = 0
    while len(conn.buf) < length:
        conn.buf += await _recv(conn)
    body, conn.buf = conn.buf[:length], conn.buf[length:]
    return Reply(status, headers, body, close)


async def splice(
    client: trio.abc.Stream, tail: bytes, owner: trio.SocketStream, early: bytes
) -> None:
    """Pass bytes both ways between an upgraded client connection and the owner's, until
    either side ends; then close both. `tail`: what the client sent after its handshake;
    `early`: what the owner sent after its 101."""

    async def pump(src: trio.abc.Stream, dst: trio.abc.Stream, first: bytes) -> None:
        try:
            if first:
                await dst.send_all(first)
            while True:
                data = await src.receive_some(RECV_SIZE)
                if not data:
                    break
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        nursery.cancel_scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, client, owner, tail)
            nursery.start_soon(pump, owner, client, early)
    finally:
        await trio.aclose_forcefully(owner)

"""A deliberately dumb HTTP/1.1 client over a raw socket, for sending requests no real
client would build (arbitrary bytes in the target, odd methods, any header) and reading
back exactly what the server wrote."""

from __future__ import annotations

import json
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any

TIMEOUT_S = 30.0


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]  # names lower-cased
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    """One keep-alive connection, reopened whenever the server closes it."""

    def __init__(self, url: str) -> None:
        u = urllib.parse.urlsplit(url)
        assert u.hostname is not None and u.port is not None
        self.addr = (u.hostname, u.port)
        self.sock: socket.socket | None = None
        self.buf = b""
        self.connections = 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.buf = b""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]] = [],  # noqa: B006 (never mutated)
        body: bytes = b"",
    ) -> RawResponse:
        head = [method + b" " + target + b" HTTP/1.1", b"host: fuzz"]
        head += [k + b": " + v for k, v in headers]
        head.append(b"content-length: %d" % len(body))
        data = b"\r\n".join(head) + b"\r\n\r\n" + body
        return self.send(data, head_only=method == b"HEAD")

    def send(self, data: bytes, head_only: bool = False) -> RawResponse:
        # A kept-alive connection the server has since closed fails on first use: one
        # retry on a new connection (only then; a failure on a fresh one is real).
        for attempt in (0, 1):
            fresh = self.sock is None
            if fresh:
                self.sock = socket.create_connection(self.addr, timeout=TIMEOUT_S)
                self.connections += 1
            assert self.sock is not None
            try:
                self.sock.sendall(data)
                return self._read(head_only)
            except (ConnectionError, EOFError):
                self.close()
                if fresh or attempt:
                    raise
        raise AssertionError("unreachable")

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def _read(self, head_only: bool) -> RawResponse:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status_text = lines[0].split(" ", 2)[:2]
        assert version == "HTTP/1.1", lines[0]
        status = int(status_text)
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            assert sep and name == name.strip(), f"malformed response header {line!r}"
            headers.append((name.lower(), value.strip()))
        length = next((int(v) for k, v in headers if k == "content-length"), 0)
        if head_only or status in (204, 304) or status < 200:
            length = 0
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        if any(k == "connection" and "close" in v.lower() for k, v in headers):
            self.close()
        return RawResponse(status, headers, body)

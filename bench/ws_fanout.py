"""WebSocket broadcast fan-out: one samples/chat-room room with 1,000 members on `dohost serve`.

    .venv/bin/python -m bench.ws_fanout [--members 1000] [--messages 300] [--durability os]
                                        [--workerd]   # the same room on workerd beside
    .venv/bin/python -m bench ws          # the dohost rows inside the suite (micro table)

Build the sample first (`make build`). The server is the real one (HTTP front door,
WebSocket upgrade, fsync'd commits unless `--durability os`) pinned to CPU 0, started
with a 2 s idle timeout; the clients are one process pinned to CPU 1: every connection
in one epoll loop, with a hand-written frame codec (wsproto would cost the client more
than the server spends, and the client would be what is measured).

One member (the first) speaks: `{"author": "bench", "text": "<seq>"}`. The room stores
each message (one durable write) and sends it to all members, the speaker included.

- **latency** (unloaded): messages one at a time, the next once every member has the last;
  delivery latency = when a member's client read the message - when the speaker's client
  sent it (one clock). p50/p99 over every (message, member), and the time until the last
  member has it.
- **throughput**: `--messages` messages, at most `--window` in flight (sent but not yet
  at every member); messages/s and deliveries/s from the first send to the last
  delivery, p99 delivery latency under that load, and the server's CPU per delivery.
- **memory per idle connection**: the server's RSS with the room awake and no member,
  then with every member connected and idle, after the room has hibernated (only the
  host holds the connections): (RSS delta) / members.

With `--workerd`, bench/workerd_ws/ is the same room as a workerd Durable Object using
the hibernation API (acceptWebSocket, getWebSockets, setWebSocketAutoResponse), the same
work per message (a growing time, one stored message, the JSON to every member), driven
by the same client; workerd has no metric for hibernation, so its idle phase is 15 s.

Latencies include the client's own queueing (one Python thread reading 1,000 sockets):
they are upper bounds of what the server adds.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import selectors
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import CLIENT_CPU, REPO, WORK, BenchError, cpu_seconds, pct, rss_kib
from bench.model import MicroRow
from bench.servers import Dohost

CHAT_WASM = REPO / "samples" / "chat-room" / "chat-room.wasm"
CLASS = "chat-room"
IDLE_TIMEOUT_S = 2.0


# ---------------------------------------------------------------- a minimal client


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame (RFC 6455 5.2), FIN set."""
    n = len(payload)
    head = bytearray([0x80 | opcode])
    if n < 126:
        head.append(0x80 | n)
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return bytes(head) + mask + masked


@dataclass
class Member:
    sock: socket.socket
    buf: bytearray = field(default_factory=bytearray)
    got: int = 0  # messages with a sequence number received
    closed: bool = False


class Room:
    """N members of one room; `poll` reads what arrived and calls `on_message`."""

    def __init__(self, port: int, path: str, token: str) -> None:
        self.port, self.path, self.token = port, path, token
        self.members: list[Member] = []
        self.sel = selectors.DefaultSelector()
        self.sent_at: dict[int, float] = {}
        self.delivered: dict[int, int] = {}  # seq -> members that have it
        self.latencies: list[float] = []
        self.complete = 0  # messages every member has, counted in order

    def join(self) -> None:
        s = socket.create_connection(("127.0.0.1", self.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {self.token}\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(65536)
            if not chunk:
                raise BenchError("the server closed a connection during the handshake")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise BenchError(f"handshake refused: {head[:200]!r}")
        s.setblocking(False)
        m = Member(s, bytearray(rest))
        self.members.append(m)
        self.sel.register(s, selectors.EVENT_READ, m)

    def send(self, seq: int) -> None:
        text = json.dumps({"author": "bench", "text": str(seq)}).encode()
        frame = client_frame(text)
        self.sent_at[seq] = time.perf_counter()
        self.members[0].sock.setblocking(True)
        self.members[0].sock.sendall(frame)
        self.members[0].sock.setblocking(False)

    def _frames(self, m: Member, now: float) -> None:
        buf = m.buf
        pos = 0
        while len(buf) - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n, off = b1 & 0x7F, pos + 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n, off = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n, off = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if b1 & 0x80:
                raise BenchError("the server sent a masked frame")
            if len(buf) < off + n:
                break
            payload = bytes(buf[off : off + n])
            pos = off + n
            op = b0 & 0x0F
            if op == 0x1:
                self._message(m, payload, now)
            elif op == 0x9:  # ping: pong with the same payload
                m.sock.setblocking(True)
                m.sock.sendall(client_frame(payload, 0xA))
                m.sock.setblocking(False)
            elif op == 0x8:
                m.closed = True
        del buf[:pos]

    def _message(self, m: Member, payload: bytes, now: float) -> None:
        msg = json.loads(payload)
        if "text" not in msg:
            raise BenchError(f"unexpected message {payload[:200]!r}")
        seq = int(msg["text"])
        self.latencies.append(now - self.sent_at[seq])
        m.got += 1
        d = self.delivered[seq] = self.delivered.get(seq, 0) + 1
        if d == len(self.members):
            del self.delivered[seq]
            self.complete += 1

    def poll(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout):
            m: Member = key.data
            try:
                data = m.sock.recv(1 << 18)
            except BlockingIOError:
                continue
            if not data:
                raise BenchError("the server closed a member's connection")
            now = time.perf_counter()
            m.buf += data
            self._frames(m, now)
            if m.closed:
                raise BenchError("the server sent a close frame")

    def wait_complete(self, n: int, timeout_s: float = 120.0) -> None:
        deadline = time.perf_counter() + timeout_s
        while self.complete < n:
            if time.perf_counter() > deadline:
                raise BenchError(f"only {self.complete} of {n} messages reached every member")
            self.poll(1.0)

    def close(self) -> None:
        for m in self.members:
            with contextlib.suppress(OSError):
                m.sock.close()
        self.sel.close()


# ---------------------------------------------------------------- the measures


@dataclass
class Result:
    server: str
    members: int
    latency_p50_ms: float
    latency_p99_ms: float
    last_member_p50_ms: float
    messages: int
    window: int
    messages_per_s: float
    deliveries_per_s: float
    loaded_p99_ms: float
    server_cpu_us_per_delivery: float
    client_cpu_us_per_delivery: float
    rss_awake_kib: int
    rss_connected_kib: int
    rss_hibernated_kib: int
    kib_per_connection: float
    durability: str
    notes: list[str] = field(default_factory=list)


def _resident(server: Dohost) -> float:
    return server.metrics().get("dohost_resident_objects", 0.0)


@dataclass
class Target:
    """One server under test: where the room's WebSocket is and how to see its process."""

    name: str
    pid: int
    port: int
    ws_path: str
    token: str
    wait_hibernated: Any  # (Room) -> None: returns once the room's instance is gone


def start_dohost(work: Path, durability: str) -> tuple[Target, Any]:
    server = Dohost(work / "data", work, durability, idle_timeout=IDLE_TIMEOUT_S)
    server.start()
    try:
        server.setup()
        server.deploy(CLASS, CHAT_WASM.read_bytes())
        assert server.token is not None
        base = f"/v1/classes/{CLASS}/objects/fanout-{int(time.time())}"
        import httpx

        auth = {"authorization": f"Bearer {server.token}"}
        r = httpx.get(server.url + base + "/stats", headers=auth, timeout=60)  # wakes it
        if r.status_code != 200:
            raise BenchError(f"GET /stats: {r.status_code} {r.text[:200]}")
    except BaseException:
        server.stop()
        raise

    def wait_hibernated(room: Room) -> None:
        deadline = time.perf_counter() + 10 * IDLE_TIMEOUT_S + 30
        while _resident(server) > 0:
            if time.perf_counter() > deadline:
                raise BenchError("the room did not hibernate")
            room.poll(0.25)
        room.poll(1.0)  # let the freed memory settle

    return Target(
        "dohost", server.pid, server.port, base + "/ws", server.token, wait_hibernated
    ), server.stop


def start_workerd(work: Path) -> tuple[Target, Any]:
    from bench.servers import Workerd, ensure_workerd

    ensure_workerd()
    config = Path(__file__).resolve().parent / "workerd_ws" / "config.capnp"
    server = Workerd(work / "workerd-data", work, config=config, sockets=("http",))
    server.start()
    port = server.ports["http"]
    import httpx

    r = httpx.get(f"http://127.0.0.1:{port}/fanout/stats", timeout=60)  # wakes it
    if r.status_code != 200:
        server.stop()
        raise BenchError(f"workerd GET /stats: {r.status_code} {r.text[:200]}")

    def wait_hibernated(room: Room) -> None:
        # workerd has no metric for it; it hibernates an idle object after about 10 s.
        deadline = time.perf_counter() + 15.0
        while time.perf_counter() < deadline:
            room.poll(0.25)

    return Target("workerd", server.pid, port, "/fanout/ws", "none", wait_hibernated), server.stop


def measure(
    target: Target, members: int, messages: int, window: int, latency_msgs: int, durability: str
) -> Result:
    rss_awake = rss_kib(target.pid)
    room = Room(target.port, target.ws_path, target.token)
    try:
        for _ in range(members):
            room.join()
        rss_connected = rss_kib(target.pid)
        target.wait_hibernated(room)  # idle members: the room's instance goes
        rss_hibernated = rss_kib(target.pid)

        # Unloaded latency: one message at a time (the first wakes the room: not counted).
        seq = 0
        room.send(seq)
        room.wait_complete(1)
        room.latencies.clear()
        last_member: list[float] = []
        for _ in range(latency_msgs):
            seq += 1
            t0 = time.perf_counter()
            room.send(seq)
            room.wait_complete(seq + 1)
            last_member.append(time.perf_counter() - t0)
        unloaded = list(room.latencies)
        room.latencies.clear()

        # Throughput: a window of messages in flight.
        first = seq + 1
        last = seq + messages
        cpu0, client0 = cpu_seconds(target.pid), time.process_time()
        t0 = time.perf_counter()
        next_seq = first
        while room.complete < last + 1:
            # in flight: sent (seq < next_seq) but not yet at every member (complete)
            while next_seq <= last and next_seq - room.complete < window:
                room.send(next_seq)
                next_seq += 1
            room.poll(1.0)
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(target.pid) - cpu0
        client_cpu = time.process_time() - client0
    finally:
        room.close()
    deliveries = messages * members
    return Result(
        server=target.name,
        members=members,
        latency_p50_ms=pct(unloaded, 50) * 1e3,
        latency_p99_ms=pct(unloaded, 99) * 1e3,
        last_member_p50_ms=pct(last_member, 50) * 1e3,
        messages=messages,
        window=window,
        messages_per_s=messages / elapsed,
        deliveries_per_s=deliveries / elapsed,
        loaded_p99_ms=pct(room.latencies, 99) * 1e3,
        server_cpu_us_per_delivery=cpu / deliveries * 1e6,
        client_cpu_us_per_delivery=client_cpu / deliveries * 1e6,
        rss_awake_kib=rss_awake,
        rss_connected_kib=rss_connected,
        rss_hibernated_kib=rss_hibernated,
        kib_per_connection=(rss_hibernated - rss_awake) / members,
        durability=durability if target.name == "dohost" else "workerd default",
    )


def run_bench(
    work: Path,
    members: int,
    messages: int,
    window: int,
    latency_msgs: int,
    durability: str,
    server: str = "dohost",
) -> Result:
    if not CHAT_WASM.exists():
        raise BenchError(f"{CHAT_WASM} is not built: run `make build`")
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {CLIENT_CPU})
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < members + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, members + 256), hard))
    target, stop = start_workerd(work) if server == "workerd" else start_dohost(work, durability)
    try:
        return measure(target, members, messages, window, latency_msgs, durability)
    finally:
        stop()


def table(results: list[Result]) -> str:
    def row(r: Result) -> list[str]:
        return [
            f"{r.latency_p50_ms:.2f} / {r.latency_p99_ms:.2f} ms",
            f"{r.last_member_p50_ms:.2f} ms",
            f"{r.messages_per_s:,.0f} msg/s = {r.deliveries_per_s:,.0f} deliveries/s",
            f"{r.loaded_p99_ms:.1f} ms",
            f"{r.server_cpu_us_per_delivery:.1f} / {r.client_cpu_us_per_delivery:.1f} µs",
            f"{r.rss_awake_kib / 1024:.1f} MiB",
            f"{r.rss_connected_kib / 1024:.1f} MiB",
            f"{r.rss_hibernated_kib / 1024:.1f} MiB",
            f"{r.kib_per_connection:.1f} KiB",
        ]

    r0 = results[0]
    names = [
        "delivery latency, one message at a time: p50 / p99",
        "time until the last member has it (p50)",
        f"fan-out throughput ({r0.messages} messages, window {r0.window})",
        "delivery latency under that load: p99",
        "CPU per delivery: server / client",
        "server RSS: room awake, no member",
        "server RSS: members connected",
        "server RSS: members connected, room hibernated",
        "memory per idle connection (hibernated - awake) / members",
    ]
    cols = [row(r) for r in results]
    out = [
        f"| {r0.members:,} members | "
        + " | ".join(f"{r.server} ({r.durability})" for r in results)
        + " |",
        "|---|" + "--:|" * len(results),
    ]
    for i, name in enumerate(names):
        out.append(f"| {name} | " + " | ".join(c[i] for c in cols) + " |")
    return "\n".join(out)


def micro_rows(r: Result) -> list[MicroRow]:
    """The result as rows of the suite's micro table (no floors)."""
    label = "" if r.durability == "fsync" else " [durability=os]"
    n = f"{r.members:,} members"
    return [
        MicroRow(f"ws fan-out (dohost serve, HTTP): messages/s to {n}{label}", r.messages_per_s, "msg/s",
                 note=f"{r.deliveries_per_s:,.0f} deliveries/s; window {r.window}"),
        MicroRow(f"ws fan-out: delivery p99, one at a time ({n})", r.latency_p99_ms, "ms",
                 note=f"p50 {r.latency_p50_ms:.2f} ms; under load p99 {r.loaded_p99_ms:.1f} ms"),
        MicroRow("ws memory per idle connection (room hibernated)", r.kib_per_connection, "KiB",
                 note=f"server RSS delta / {r.members:,} connections"),
    ]  # fmt: skip


def run(quick: bool, durability: str, work: Path) -> list[MicroRow]:
    """For bench/suite.py."""
    d = work / "ws-fanout"
    d.mkdir(parents=True, exist_ok=True)
    r = run_bench(d, 1000, 100 if quick else 300, 16, 20 if quick else 50, durability)
    return micro_rows(r)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.ws_fanout", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=300, help="messages of the throughput phase")
    ap.add_argument("--window", type=int, default=16, help="messages in flight at most")
    ap.add_argument("--latency-messages", type=int, default=50)
    ap.add_argument("--durability", choices=["fsync", "os"], default="fsync")
    ap.add_argument("--workerd", action="store_true", help="the same room on workerd beside")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    work = WORK / "ws-fanout"
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    results: list[Result] = []
    try:
        for server in ["dohost", "workerd"] if args.workerd else ["dohost"]:
            results.append(
                run_bench(
                    work,
                    args.members,
                    args.messages,
                    args.window,
                    args.latency_messages,
                    args.durability,
                    server,
                )
            )
    except BenchError as e:
        print(f"ws_fanout: {e}", file=sys.stderr)
        return 1
    cmd = "python -m bench.ws_fanout " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"`{cmd.strip()}` (server on CPU 0, clients on CPU {CLIENT_CPU}; "
          f"load average {os.getloadavg()[0]:.1f})\n")  # fmt: skip
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One node of `dohost serve --processes N`: which node owns an object, and how this
node reaches the others (ARCHITECTURE.md, "Process model").

Placement is static: partition p belongs to node `static_owner(p, N)` (p mod N), so a
restarted node claims exactly the partitions it served before. A request for an object
another node owns is forwarded to it over its Unix socket, one hop at most: the owner
gets it marked (`x-dohost-forwarded`, honoured only on the Unix socket) and never
forwards it again; an owner that no longer owns answers 503 `not_owner`, and the node
that forwarded re-reads the owner and tries once more.

When the owner cannot be reached:
- nothing listens on its socket (it is restarting): the request certainly did not run,
  so it waits for the owner (polling, up to `owner_wait_s`) and is then sent;
- the connection ends after the whole request was sent (the owner died under it), or
  the owner does not answer within `forward_timeout_s` (stopped, overloaded): the
  request may have run, so it is never sent again; the client gets 503
  `owner_unavailable` saying so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from dohost.core.envelopes import Response, decode_response
from dohost.core.errors import Code, DohostError
from dohost.core.partitions import partition_of, static_owner
from dohost.server.forward import (
    NODE_HEADER,
    NotDelivered,
    OwnerLost,
    Peers,
    Reply,
    encode_request,
    splice,
)
from dohost.server.http_types import HttpRequest, HttpResponse, UpgradeResponse
from dohost.storage.ownership_local import LocalOwnership

log = logging.getLogger("dohost.node")

OWNER_POLL_S = 0.05
TAIL_RETRY_S = 0.5  # a peer's tail stream ended (it restarted): follow its next life
CALL_PATH = "/_node/call"
METRICS_PATH = "/_node/metrics"
ALARMS_PATH = "/_node/alarms"
TAIL_PATH = "/_node/tail"
STATUS_PATH = "/_node/status"
CLASS_PATH = "/_node/class"
CALL_HEADER = "x-dohost-call"


def claim_static_partitions(data_dir: Path, role: NodeRole, durability: str) -> LocalOwnership:
    """Claim this node's partitions under static placement (blocking: waits up to
    `owner_wait_s` for a previous holder, e.g. this node's last incarnation, to let go).
    Raises OWNER_UNAVAILABLE if some stay held by another process."""
    own = LocalOwnership(data_dir, f"node-{role.index}", role.partitions, durability=durability)
    mine = [p for p in range(role.partitions) if static_owner(p, role.count) == role.index]
    got = own.claim(mine, wait=role.owner_wait_s)
    if len(got) != len(mine):
        own.close()
        raise DohostError(
            Code.OWNER_UNAVAILABLE,
            f"node {role.index} could not claim {len(mine) - len(got)} of its partitions "
            f"within {role.owner_wait_s:g} s: another process holds them",
        )
    return own


def socket_path(run_dir: Path, node: int) -> Path:
    return run_dir / f"node-{node}.sock"


@dataclass(frozen=True)
class NodeRole:
    """What the parent tells a node about itself (JSON on its command line)."""

    index: int
    count: int
    run_dir: Path
    partitions: int
    forward_timeout_s: float = 60.0
    owner_wait_s: float = 10.0
    lock_fd: int | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "index": self.index,
                "count": self.count,
                "run_dir": str(self.run_dir),
                "partitions": self.partitions,
                "forward_timeout_s": self.forward_timeout_s,
                "owner_wait_s": self.owner_wait_s,
                "lock_fd": self.lock_fd,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> NodeRole:
        d = json.loads(text)
        return cls(
            int(d["index"]),
            int(d["count"]),
            Path(d["run_dir"]),
            int(d["partitions"]),
            float(d["forward_timeout_s"]),
            float(d["owner_wait_s"]),
            d["lock_fd"],
        )


class NodeContext:
    """A running node's view of the others."""

    def __init__(self, role: NodeRole) -> None:
        self.role = role
        self.index = role.index
        self.count = role.count
        self.name = str(role.index)
        self.peers = Peers([socket_path(role.run_dir, i) for i in range(role.count)], role.index)
        # Refreshes the placement after a `not_owner` (a claim moved); static here.
        self.refresh: Callable[[], None] = lambda: None
        self.forwarded = 0  # requests this node sent on (metrics)
        self.cluster_key: str | None = None  # proves a cluster node to its peers (cluster.py)

    @property
    def socket_path(self) -> Path:
        return socket_path(self.role.run_dir, self.index)

    def owner(self, object_id: bytes) -> int:
        return static_owner(partition_of(object_id, self.role.partitions), self.count)

    def owns(self, object_id: bytes) -> bool:
        return self.owner(object_id) == self.index

    # ---------------------------------------------------------------- sending

    async def _send(self, owner: int, data: bytes, head_only: bool) -> Reply:
        """One exchange with the owner, waiting for it while it is certainly not there."""
        deadline = trio.current_time() + self.role.owner_wait_s
        while True:
            try:
                with trio.fail_after(self.role.forward_timeout_s):
                    return await self.peers.exchange(owner, data, head_only=head_only)
            except NotDelivered as e:
                if trio.current_time() >= deadline:
                    raise DohostError(
                        Code.OWNER_UNAVAILABLE,
                        f"node {owner}, which owns this object, has not been reachable for "
                        f"{self.role.owner_wait_s:g} s ({e}); the request did not run, "
                        "retry it later",
                    ) from None
                self.peers.drop_idle(owner)
                await trio.sleep(OWNER_POLL_S)
            except OwnerLost as e:
                raise DohostError(
                    Code.OWNER_UNAVAILABLE,
                    f"node {owner}, which owns this object, ended while handling the request "
                    f"({e}); it may or may not have run: check before retrying",
                ) from None
            except trio.TooSlowError:
                raise DohostError(
                    Code.OWNER_UNAVAILABLE,
                    f"node {owner}, which owns this object, did not answer within "
                    f"{self.role.forward_timeout_s:g} s; the request may still run: check "
                    "before retrying",
                ) from None

    async def forward(self, req: HttpRequest, object_id: bytes) -> HttpResponse:
        """Send an HTTP request on to the object's owner and relay the answer."""
        target = req.path + ("?" + req.query if req.query else "")
        data = encode_request(req.method, target, req.headers, req.body, self.index)
        head_only = req.method == "HEAD"
        owner = self.owner(object_id)
        self.forwarded += 1
        reply = await self._send(owner, data, head_only)
        if _not_owner(reply):
            # The claim moved: re-read the placement and try once more (the first owner
            # refused before running anything).
            self.refresh()
            owner = self.owner(object_id)
            if owner == self.index:
                raise DohostError(
                    Code.NOT_OWNER, "the object's partition is moving to this node; retry"
                )
            reply = await self._send(owner, data, head_only)
        return HttpResponse(reply.status, reply.headers, reply.body)

    async def forward_upgrade(self, req: HttpRequest, object_id: bytes) -> HttpResponse:
        """A WebSocket handshake for an object of another node: the owner accepts (or
        not), and the accepted connection is spliced through this node."""
        target = req.path + ("?" + req.query if req.query else "")
        data = encode_request(
            req.method,
            target,
            req.headers,
            req.body,
            self.index,
            keep_connection=True,
            cluster_key=self.cluster_key,
        )
        owner = self.owner(object_id)
        self.forwarded += 1
        try:
            with trio.fail_after(self.role.forward_timeout_s):
                reply, stream, early = await self.peers.open_upgrade(owner, data)
        except (NotDelivered, OwnerLost, trio.TooSlowError) as e:
            raise DohostError(
                Code.OWNER_UNAVAILABLE,
                f"node {owner}, which owns this object, could not take the WebSocket ({e!r})",
            ) from None
        if stream is None:
            return HttpResponse(reply.status, reply.headers, reply.body)
        owner_stream = stream

        async def on_upgrade(client: trio.abc.Stream, tail: bytes) -> None:
            await splice(client, tail, owner_stream, early)

        def on_abandon() -> None:
            owner_stream.socket.close()

        headers = [(k, v) for k, v in reply.headers if k not in ("date", "server")]
        return UpgradeResponse(101, headers, on_upgrade=on_upgrade, on_abandon=on_abandon)

    async def call(
        self, owner: int, meta: Mapping[str, object], data: bytes
    ) -> Response | DohostError:
        """An object call to an object of node `owner` (server/calls.py): the callee's
        response, or the error of a call that could not be made."""
        head = [("host", "dohost-node"), (CALL_HEADER, json.dumps(meta))]
        payload = encode_request("POST", CALL_PATH, head, data, self.index)
        try:
            reply = await self._send(owner, payload, False)
            if _not_owner(reply):
                self.refresh()
                reply = await self._send(owner, payload, False)
        except DohostError as e:
            return DohostError(Code.CALL_FAILED, f"call to another node failed: {e.message}")
        if reply.status == 200:
            return decode_response(reply.body)
        code, message = _error_of(reply)
        return DohostError(code, message)

    async def ask(self, peer: int, path: str, body: Mapping[str, object]) -> dict[str, Any]:
        """A JSON request to one of the nodes' own routes on another node: its JSON
        answer, or its error raised as a DohostError with the peer's code."""
        head = [("host", "dohost-node"), ("content-type", "application/json")]
        payload = encode_request("POST", path, head, json.dumps(body).encode(), self.index)
        reply = await self._send(peer, payload, False)
        if reply.status != 200:
            code, message = _error_of(reply, Code.OWNER_UNAVAILABLE)
            raise DohostError(code, f"node {peer}: {message}")
        try:
            answer = json.loads(reply.body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise DohostError(Code.INTERNAL, f"node {peer} answered {path} with no JSON object")
        return answer

    async def peer_metrics(self) -> list[tuple[int, bytes | None]]:
        """Every other node's own metrics (None for a node that did not answer)."""
        return await self.ask_peers(METRICS_PATH)

    async def ask_peers(self, target: str) -> list[tuple[int, bytes | None]]:
        """GET `target` (a node route) of every other node: see `ask_nodes`."""
        timeout_s = min(5.0, self.role.forward_timeout_s)
        return await ask_nodes(self.peers, self.others(), target, self.index, timeout_s)

    def others(self) -> list[int]:
        return [i for i in range(self.count) if i != self.index]

    async def relay_tail(self, peer: int, target: str, send: trio.MemorySendChannel[bytes]) -> None:
        """Pass the lines of a peer's own tail stream (`target`: TAIL_PATH with the
        filter) into `send` until cancelled, following the peer across restarts."""
        data = encode_request("GET", target, [("host", "dohost-node")], b"", self.index)

        async def on_line(line: bytes) -> None:
            if line:  # (not its heartbeats: the receiving node sends its own)
                await send.send(line + b"\n")

        async with send:
            while True:
                with contextlib.suppress(NotDelivered, OwnerLost):
                    await self.peers.stream_lines(peer, data, on_line)
                await trio.sleep(TAIL_RETRY_S)

    def tag(self, resp: HttpResponse) -> HttpResponse:
        resp.headers.append((NODE_HEADER, self.name))
        return resp


async def ask_nodes(
    peers: Peers, nodes: list[int], target: str, from_node: int, timeout_s: float = 5.0
) -> list[tuple[int, bytes | None]]:
    """GET `target` of each node at once: (node, body of a 200 answer or None), in node
    order. A node that does not answer within `timeout_s` gives None."""
    out: list[tuple[int, bytes | None]] = []
    data = encode_request("GET", target, [("host", "dohost-node")], b"", from_node)

    async def one(node: int) -> None:
        try:
            with trio.fail_after(timeout_s):
                reply = await peers.exchange(node, data, head_only=False)
            out.append((node, reply.body if reply.status == 200 else None))
        except (NotDelivered, OwnerLost, trio.TooSlowError):
            out.append((node, None))

    async with trio.open_nursery() as nursery:
        for node in nodes:
            nursery.start_soon(one, node)
    return sorted(out, key=lambda x: x[0])


async def watch_parent() -> None:
    """Stop this node (as SIGTERM would) when its parent dies, even by SIGKILL: the
    parent holds the write end of the node's stdin, so its death reads as end of file.
    A node never outlives its supervisor. (Not PR_SET_PDEATHSIG: it fires when the
    *thread* that started the node ends, and trio starts processes from worker threads
    that end after 10 s idle.)"""
    stream = trio.lowlevel.FdStream(os.dup(0))
    try:
        while await stream.receive_some(4096):
            pass
    finally:
        await stream.aclose()
    log.warning("the parent process ended: stopping")
    os.kill(os.getpid(), signal.SIGTERM)


def _not_owner(reply: Reply) -> bool:
    return reply.status == 503 and reply.header("x-dohost-error") == Code.NOT_OWNER.code


def _error_of(reply: Reply, unknown: Code = Code.CALL_FAILED) -> tuple[Code, str]:
    try:
        err = json.loads(reply.body)["error"]
        code = next(c for c in Code if c.code == err["code"])
        return code, str(err["message"])
    except (ValueError, KeyError, TypeError, StopIteration):
        return unknown, f"the owner answered {reply.status}"

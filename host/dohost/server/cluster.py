"""Cluster mode: nodes on many machines, one owner per partition, coordinated through etcd
(`dohost serve --cluster etcd://HOST:PORT[,...] --node NAME --advertise URL`;
ARCHITECTURE.md, "Cluster mode"; docs/cluster.md).

etcd holds, under `/dohost/<cluster>/`:

    partitions          the data set's partition count (written by the first node)
    members/<node>      {"advertise": URL, "location": LABEL}, under the node's lease
    claims/<partition>  the owner's node name, under its lease; epoch = create revision

`ClusterNode` is a node's membership, on the event loop:
- **join**: check the partition count, take a lease, register the member key (refused if
  a live member has the name), start renewing.
- **renew**: a keep-alive every TTL/4; each one granted moves the local deadline of
  `EtcdOwnership` (server/ownership_etcd.py) to `sent + TTL - margin`. When the deadline
  passes (etcd unreachable) or etcd says the lease is gone, the node has lost its claims:
  it answers nothing more (`gate`: `fenced`), stops serving every partition and drops
  their activations, then takes a new lease and registers again (retrying while etcd
  is unreachable), and claims afresh.
- **reconcile** (every `poll_s`, and at once when poked): read members and claims in one
  range; rendezvous placement over the live members (core/placement.py) says which
  partitions this node should own. Those it holds and should not are drained by
  `Host.release` (new events refused, running ones finish and commit), then their keys
  deleted; those it should hold that nobody claims are created in transactions under its
  lease, then taken by `Host.claim` (storage fenced with the new epoch, alarms loaded).
  A partition claimed by a node that died stays claimed until its lease expires in
  etcd; then its key is gone and the next pass claims it.

`ClusterContext` is the routing (a `NodeContext`, so the API, object calls and the
node routes use it unchanged): an object is served here when this Host serves its
partition; otherwise the request goes to the claim holder's advertised address, one hop,
over pooled keep-alive connections (server/forward.py), and comes back with
`x-dohost-node` naming the node that served it. Requests between nodes carry a key
derived from the admin token (`x-dohost-cluster-key`); the node port refuses others.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import trio

from dohost.core.envelopes import Response, decode_response
from dohost.core.errors import Code, DohostError
from dohost.core.partitions import partition_of
from dohost.core.placement import owner_of
from dohost.server.api_util import error_response
from dohost.server.etcd_client import EtcdClient, KeyValue
from dohost.server.forward import (
    CLUSTER_KEY_HEADER,
    NODE_HEADER,
    NotDelivered,
    OwnerLost,
    Peers,
    Reply,
    encode_request,
)
from dohost.server.http_types import HttpRequest, HttpResponse
from dohost.server.node import CALL_HEADER, CALL_PATH, NodeContext, NodeRole
from dohost.server.node import _error_of as error_of
from dohost.server.ownership_etcd import EtcdOwnership

if TYPE_CHECKING:
    from dohost.server.host import Host

log = logging.getLogger("dohost.cluster")

TXN_BATCH = 48  # claims per etcd transaction (etcd allows 128 operations by default)
OWNER_POLL_S = 0.05


def _valid_name(name: str) -> bool:
    return 0 < len(name) <= 63 and all(c.isalnum() or c in "-_." for c in name)


def parse_advertise(url: str) -> tuple[str, int]:
    """`http://HOST:PORT` -> (host, port): where the other nodes reach this one."""
    parts = urlsplit(url)
    if (
        parts.scheme != "http"
        or not parts.hostname
        or parts.port is None
        or parts.path not in ("", "/")
    ):
        raise DohostError(
            Code.INVALID_ARGUMENT,
            f"--advertise {url!r}: give the URL other nodes reach this node at, as "
            "http://HOST:PORT (its port is this node's node port)",
        )
    return parts.hostname, parts.port


def cluster_key(admin_token: str) -> str:
    """What nodes of one cluster show each other: derived from the admin token they
    share, never the token itself."""
    return hmac.new(admin_token.encode(), b"dohost-cluster-node-v1", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ClusterConfig:
    endpoints: list[str]  # etcd client URLs
    name: str  # the cluster's name: its keys live under /dohost/<name>/
    node: str  # this node's name (unique among live members)
    advertise: str  # http://HOST:PORT the other nodes reach this node at
    location: str | None = None
    lease_ttl_s: int = 10
    poll_s: float = 0.5
    forward_timeout_s: float = 60.0  # a forwarded request's wait for the owner's answer

    @property
    def prefix(self) -> bytes:
        return f"/dohost/{self.name}/".encode()

    def margin_s(self) -> float:
        """How long before etcd could expire the lease this node stops acknowledging:
        a quarter of the TTL, at least 0.5 s (clock rate differences, a late check)."""
        return max(0.5, self.lease_ttl_s / 4)


def check_cluster_config(config: ClusterConfig) -> None:
    if not _valid_name(config.node):
        raise DohostError(
            Code.INVALID_ARGUMENT,
            f"--node {config.node!r}: a node name is 1 to 63 letters, digits, '-', '_' or '.'",
        )
    if not _valid_name(config.name):
        raise DohostError(Code.INVALID_ARGUMENT, f"cluster name {config.name!r} is not valid")
    if config.lease_ttl_s < 2:
        raise DohostError(
            Code.INVALID_ARGUMENT, "--lease-ttl must be at least 2 seconds (etcd's minimum)"
        )
    if config.location is not None and not _valid_name(config.location):
        raise DohostError(Code.INVALID_ARGUMENT, f"--location {config.location!r} is not valid")
    parse_advertise(config.advertise)


@dataclass(frozen=True)
class Member:
    name: str
    advertise: str
    location: str | None


class ClusterNode:
    """This node's membership, claims and view of the cluster (see the module doc)."""

    def __init__(
        self,
        config: ClusterConfig,
        client: EtcdClient,
        ownership: EtcdOwnership,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.client = client
        self.ownership = ownership
        self.clock = clock
        self.lease = 0
        self.members: dict[str, Member] = {}
        self.claims: dict[int, tuple[str, int]] = {}  # partition -> (node, epoch)
        self.on_view: Callable[[], None] = lambda: None  # the routing re-reads the view
        # Runs (on a thread) once new claims are fenced, before they are served: the
        # restore from the replica store (server/cluster_restore.py).
        self.before_serving: Callable[[dict[int, int]], None] | None = None
        self._poke = trio.Event()
        self.reconciled = 0  # passes done (tests wait on it)
        self.lost: str | None = None  # why the lease was lost, until rejoined
        self.losses = 0
        self._lost_event = trio.Event()
        self.host: Host | None = None  # set by reconcile_forever

    def _key(self, *parts: str) -> bytes:
        return self.config.prefix + "/".join(parts).encode()

    # ------------------------------------------------------------------ join and leave

    async def join(self, *, again: bool = False) -> None:
        """Check the partition count, take a lease, register as a member. `again`: a
        rejoin after a lost lease (the claims start afresh)."""
        count = str(self.ownership.count).encode()
        _, kv = await self.client.create(self._key("partitions"), count)
        if kv.value != count:
            raise DohostError(
                Code.INVALID_CONFIG,
                f"cluster {self.config.name} has {kv.value.decode(errors='replace')} "
                f"partitions but this node's data set has {self.ownership.count}: every node "
                "of a cluster needs a data set of the same partition count",
            )
        sent = self.clock()
        self.lease, ttl = await self.client.lease_grant(self.config.lease_ttl_s)
        me = json.dumps(
            {"advertise": self.config.advertise, "location": self.config.location}
        ).encode()
        created, kv = await self.client.create(
            self._key("members", self.config.node), me, lease=self.lease
        )
        if not created:
            await self.client.lease_revoke(self.lease)
            raise DohostError(
                Code.ALREADY_EXISTS,
                f"node {self.config.node} is already a live member of cluster "
                f"{self.config.name} (advertising {json.loads(kv.value).get('advertise')}): "
                "give this node another --node name, or stop the other one (its "
                f"membership ends {self.config.lease_ttl_s} s after it stops)",
            )
        if again:
            self.ownership.rejoined(sent, ttl, self.config.margin_s())
        else:
            self.ownership.renewed(sent, ttl, self.config.margin_s())
        log.warning(
            "%s cluster %s as %s (lease %x)",
            "rejoined" if again else "joined",
            self.config.name,
            self.config.node,
            self.lease,
        )

    async def leave(self, host: Host) -> None:
        """Graceful leave: hand every partition over (drained), then end the lease."""
        held = host.serving()
        if held and self.ownership.valid():
            await host.release(held)
            await self._delete_released()
        try:
            await self.client.lease_revoke(self.lease)
        except DohostError as e:
            log.warning("leaving: could not revoke the lease (%s); it expires by itself", e)

    # ------------------------------------------------------------------ loops

    def poke(self) -> None:
        """Reconcile now (a forward found the view stale)."""
        self._poke.set()

    def _lose(self, reason: str) -> None:
        """The lease is lost (or may have lapsed): acknowledge nothing from now on. The
        renew task then drops every partition and rejoins (`_recover`)."""
        self.ownership.lose(reason)
        if self.lost is None:
            self.lost = reason
            self.losses += 1
            log.error(
                "node %s lost its cluster membership (%s): it acknowledges nothing more, "
                "drops its partitions and rejoins",
                self.config.node,
                reason,
            )
            self._lost_event.set()

    async def _recover(self) -> None:
        """After a loss: stop serving everything (at once: the Host's serving set is
        emptied before anything waits), drop the activations, then take a new lease and
        register again; the reconcile loop then claims afresh, with new epochs."""
        host = self.host
        if host is not None:
            await host.release(range(self.ownership.count), lost=True)
        self.ownership.take_released()  # their keys die with the old lease
        old = self.lease
        while True:
            # The old lease may still stand in etcd (this node was cut off, or etcd lost
            # its quorum and extended every lease when it came back): end it, so that
            # the others can claim at once and this node's name is free again.
            with trio.move_on_after(self.config.lease_ttl_s), contextlib.suppress(DohostError):
                await self.client.lease_revoke(old)
            try:
                await self.join(again=True)
                break
            except DohostError as e:
                log.warning("rejoining cluster %s: %s", self.config.name, e.message)
                await trio.sleep(min(1.0, self.config.lease_ttl_s / 4))
        if host is not None:
            host.claims_broken = False
        self.lost = None
        self._lost_event = trio.Event()
        self.poke()

    async def renew(self) -> None:
        """Keep the lease; after a loss, recover and keep the new one."""
        interval = self.config.lease_ttl_s / 4
        margin = self.config.margin_s()
        while True:
            if self.lost is not None:
                await self._recover()
            sent = self.clock()
            left = self.ownership.deadline() - sent
            if left <= 0:
                self._lose("it could not renew its lease in time")
                continue
            try:
                ttl = await self.client.lease_keepalive(
                    self.lease, timeout_s=max(0.2, min(left, interval))
                )
            except DohostError as e:
                log.warning(
                    "lease keep-alive failed (%.1f s of validity left): %s", left, e.message
                )
                await trio.sleep(min(0.2, max(0.0, left)))
                continue
            if ttl <= 0:
                self._lose("etcd says its lease expired")
                continue
            self.ownership.renewed(sent, ttl, margin)
            with trio.move_on_after(interval):
                await self._lost_event.wait()

    async def reconcile_forever(self, host: Host) -> None:
        self.host = host
        while True:
            try:
                await self.reconcile(host)
            except DohostError as e:
                log.warning("cluster reconcile failed: %s", e.message)
            with trio.move_on_after(self.config.poll_s):
                await self._poke.wait()
            self._poke = trio.Event()

    async def read_view(self) -> None:
        """Members and claims, in one range read."""
        kvs, _ = await self.client.get_prefix(self.config.prefix)
        members: dict[str, Member] = {}
        claims: dict[int, tuple[str, int]] = {}
        plen = len(self.config.prefix)
        for kv in kvs:
            rest = kv.key[plen:].decode(errors="replace")
            kind, _, name = rest.partition("/")
            if kind == "members":
                members[name] = _member(name, kv)
            elif kind == "claims" and name.isdigit():
                claims[int(name)] = (kv.value.decode(errors="replace"), kv.create_revision)
        self.members, self.claims = members, claims
        self.on_view()

    async def reconcile(self, host: Host) -> None:
        """One pass: release what placement gives to others, claim what it gives here."""
        if self.lost is not None or not self.ownership.valid():
            return  # the renew task recovers first
        await self.read_view()
        me = self.config.node
        if me not in self.members:
            self._lose("its member key is gone from etcd")
            return
        held = host.serving()
        for p, epoch in held.items():
            if self.claims.get(p) != (me, epoch):
                self._lose(f"its claim of partition {p} (epoch {epoch}) is gone from etcd")
                return
        live = sorted(self.members)
        count = self.ownership.count
        want = {p for p in range(count) if owner_of(p, live) == me}
        give = sorted(p for p in held if p not in want)
        if give:
            await host.release(give)
        await self._delete_released()
        free = [p for p in sorted(want) if p not in held and p not in self.claims]
        # Our own keys we do not serve (a create that timed out but was applied).
        stray = {p: e for p, (n, e) in self.claims.items() if n == me and p not in held}
        got = {p: e for p, e in stray.items() if p in want}
        got.update(await self._create_claims(free))
        drop = {p: e for p, e in stray.items() if p not in want}
        if drop:
            await self._delete_claims(drop)
        if got and self.ownership.valid() and self.lost is None:
            self.ownership.adopt(got)
            await host.claim(sorted(got), before_serving=self.before_serving)
            for p, e in got.items():
                self.claims[p] = (me, e)
            self.on_view()
        self.reconciled += 1

    async def _create_claims(self, partitions: list[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        value = self.config.node.encode()
        for i in range(0, len(partitions), TXN_BATCH):
            batch = partitions[i : i + TXN_BATCH]
            items = [(self._key("claims", str(p)), value) for p in batch]
            revision = await self.client.create_many(items, lease=self.lease)
            if revision is not None:
                out.update(dict.fromkeys(batch, revision))
                continue
            for p, (key, _) in zip(batch, items, strict=True):  # someone claimed one: each alone
                created, kv = await self.client.create(key, value, lease=self.lease)
                if created or (kv.value == value and kv.lease == self.lease):
                    out[p] = kv.create_revision
        return out

    async def _delete_released(self) -> None:
        released = self.ownership.take_released()
        if released:
            await self._delete_claims(released)

    async def _delete_claims(self, claims: dict[int, int]) -> None:
        ps = sorted(claims)
        for i in range(0, len(ps), TXN_BATCH):
            batch = [(self._key("claims", str(p)), claims[p]) for p in ps[i : i + TXN_BATCH]]
            if not await self.client.delete_many_if(batch):
                for key, revision in batch:  # one was not ours any more: each alone
                    await self.client.delete_if(key, revision)
            for p in ps[i : i + TXN_BATCH]:
                self.claims.pop(p, None)

    def status(self) -> dict[str, Any]:
        """What `GET /v1/cluster` shows: members, and partitions per node with epochs."""
        per_node: dict[str, int] = {}
        for node, _ in self.claims.values():
            per_node[node] = per_node.get(node, 0) + 1
        return {
            "cluster": self.config.name,
            "node": self.config.node,
            "partitions": self.ownership.count,
            "members": [
                {
                    "name": m.name,
                    "advertise": m.advertise,
                    "location": m.location,
                    "partitions": per_node.get(m.name, 0),
                }
                for m in sorted(self.members.values(), key=lambda m: m.name)
            ],
            "unclaimed": self.ownership.count - len(self.claims),
            "lease_valid_s": max(0.0, self.ownership.deadline() - self.clock()),
        }


def _member(name: str, kv: KeyValue) -> Member:
    try:
        d = json.loads(kv.value)
        return Member(name, str(d.get("advertise", "")), d.get("location"))
    except (ValueError, AttributeError):
        return Member(name, "", None)


class ClusterContext(NodeContext):
    """Routing between the nodes of a cluster (see the module doc)."""

    def __init__(
        self,
        node: ClusterNode,
        host: Host,
        key: str,
        *,
        run_dir: Path,
        forward_timeout_s: float = 60.0,
        owner_wait_s: float = 10.0,
    ) -> None:
        role = NodeRole(0, 1, run_dir, node.ownership.count, forward_timeout_s, owner_wait_s)
        super().__init__(role)
        self.cluster = node
        self.host = host
        self.key = key
        self.cluster_key = key
        self.name = node.config.node
        self.peers = Peers([], 0)
        self._peer_of: dict[str, int] = {}
        self._owner_index: dict[int, int] = {}  # partition -> peer index (-1: this node)
        node.on_view = self._update
        self.refresh = node.poke
        # Serves a request here after all (its partition moved to this node while it
        # waited to be forwarded): the API's handler of forwarded requests (set by serve).
        self.serve_here: Callable[[HttpRequest], Awaitable[HttpResponse]] = _not_here

    def _update(self) -> None:
        """Re-read the members' addresses and the claims (after each etcd read)."""
        for m in self.cluster.members.values():
            if m.name == self.name or not m.advertise:
                continue
            try:
                addr = parse_advertise(m.advertise)
            except DohostError:
                continue
            i = self._peer_of.get(m.name)
            if i is None:
                self._peer_of[m.name] = self.peers.add(addr)
            elif self.peers.paths[i] != addr:
                self.peers.move(i, addr)
        index: dict[int, int] = {}
        for p, (node, _) in self.cluster.claims.items():
            if node == self.name:
                index[p] = -1
            elif node in self._peer_of and node in self.cluster.members:
                index[p] = self._peer_of[node]
        self._owner_index = index

    def owns(self, object_id: bytes) -> bool:
        return self.host.owns(object_id)

    def owner(self, object_id: bytes) -> int:
        """The peer index of the object's owner; -1 when it is this node or none is known."""
        return self._owner_index.get(partition_of(object_id, self.cluster.ownership.count), -1)

    def cluster_status(self) -> dict[str, Any]:
        """GET /v1/cluster: this node's view of the cluster."""
        out = self.cluster.status()
        out["serving"] = len(self.host.serving())
        return out

    def tag(self, resp: HttpResponse) -> HttpResponse:
        resp.headers.append((NODE_HEADER, self.name))
        return resp

    def gate(self, resp: HttpResponse) -> HttpResponse:
        """Every response of this node passes here: once the lease may have lapsed,
        nothing is acknowledged (whatever the event did, it is answered as fenced)."""
        if self.cluster.ownership.valid():
            return resp
        return error_response(
            DohostError(
                Code.FENCED,
                f"node {self.name} lost its cluster lease ({self.cluster.ownership.lost()}): "
                "this request's outcome is unknown; retry it on another node",
            )
        )

    async def _exchange(self, object_id: bytes, data: bytes, head_only: bool) -> Reply | None:
        """Send to the object's owner, following the claim: waits (bounded) while no
        node holds the partition or the owner cannot be reached (the request certainly
        did not run), and tries once more if the owner answers `not_owner`. None: the
        partition has moved to this node meanwhile (serve it here)."""
        deadline = trio.current_time() + self.role.owner_wait_s
        moved = False
        while True:
            owner = self.owner(object_id)
            if self.host.owns(object_id):
                return None
            if owner < 0:
                problem = "no node holds its partition now (a failover in progress?)"
            else:
                try:
                    with trio.fail_after(self.role.forward_timeout_s):
                        reply = await self.peers.exchange(owner, data, head_only=head_only)
                except NotDelivered as e:
                    self.peers.drop_idle(owner)
                    problem = str(e)
                except OwnerLost as e:
                    raise DohostError(
                        Code.OWNER_UNAVAILABLE,
                        f"the node that owns this object ended while handling the request "
                        f"({e}); it may or may not have run: check before retrying",
                    ) from None
                except trio.TooSlowError:
                    raise DohostError(
                        Code.OWNER_UNAVAILABLE,
                        f"the node that owns this object did not answer within "
                        f"{self.role.forward_timeout_s:g} s; the request may still run: check "
                        "before retrying",
                    ) from None
                else:
                    if not _not_owner(reply) or moved:
                        return reply
                    moved = True
                    problem = "its owner moved"
            if trio.current_time() >= deadline:
                raise DohostError(
                    Code.OWNER_UNAVAILABLE,
                    f"this object's owner was not reachable for {self.role.owner_wait_s:g} s "
                    f"({problem}); the request did not run, retry it later",
                )
            self.cluster.poke()
            await trio.sleep(OWNER_POLL_S)

    async def forward(self, req: HttpRequest, object_id: bytes) -> HttpResponse:
        target = req.path + ("?" + req.query if req.query else "")
        data = encode_request(req.method, target, req.headers, req.body, 0, cluster_key=self.key)
        self.forwarded += 1
        reply = await self._exchange(object_id, data, req.method == "HEAD")
        if reply is None:
            return await self.serve_here(req)
        return HttpResponse(reply.status, reply.headers, reply.body)

    async def forward_upgrade(self, req: HttpRequest, object_id: bytes) -> HttpResponse:
        """A WebSocket handshake for an object of another node: spliced through this
        node once the owner accepts (NodeContext's; no retry: the owner must be there)."""
        if self.owner(object_id) < 0:
            raise DohostError(
                Code.OWNER_UNAVAILABLE,
                "no node holds this object's partition now (a failover in progress?); retry",
            )
        return await super().forward_upgrade(req, object_id)

    async def call(
        self, owner: int, meta: Mapping[str, object], data: bytes
    ) -> Response | DohostError:
        """An object call to an object another node owns (server/calls.py), following
        its claim like a forwarded request."""
        head = [("host", "dohost-node"), (CALL_HEADER, json.dumps(meta))]
        payload = encode_request("POST", CALL_PATH, head, data, 0, cluster_key=self.key)
        try:
            reply = await self._exchange(bytes.fromhex(str(meta["id"])), payload, False)
        except DohostError as e:
            return DohostError(Code.CALL_FAILED, f"call to another node failed: {e.message}")
        if reply is None:
            return DohostError(
                Code.CALL_FAILED, "the called object's partition just moved to this node; retry"
            )
        if reply.status == 200:
            return decode_response(reply.body)
        code, message = error_of(reply)
        return DohostError(code, message)

    async def peer_metrics(self) -> list[tuple[int, bytes | None]]:
        return []  # each node of a cluster shows its own /metrics


async def _not_here(req: HttpRequest) -> HttpResponse:
    return error_response(DohostError(Code.NOT_OWNER, "the object's partition moved; retry"))


def _not_owner(reply: Reply) -> bool:
    return reply.status == 503 and reply.header("x-dohost-error") == Code.NOT_OWNER.code


def check_cluster_key(req: HttpRequest, key: str) -> HttpResponse | None:
    """The node port serves only the cluster's nodes."""
    given = req.header(CLUSTER_KEY_HEADER) or ""
    if hmac.compare_digest(given.encode(), key.encode()):
        return None
    return error_response(
        DohostError(
            Code.FORBIDDEN,
            "this is a cluster node port: only the cluster's nodes may send requests here "
            "(they prove it with a key derived from the admin token)",
        )
    )

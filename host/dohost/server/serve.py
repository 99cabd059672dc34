"""`dohost serve`: the multi-tenant HTTP server over one data directory.

Start: take the data set lock (`DATA/dohost.lock`: a second program on the same data
directory stops here with `data_in_use`), create the data directory and the admin token (`DATA/admin.token`, mode 0600,
unless `DOHOST_ADMIN_TOKEN` is set), open the `Host`, remove the directories of tenants
deleted before the last stop, attach tenancy, quotas and metrics, listen, and print the
URL as one line on stdout (so scripts and tests can read the port chosen for `--port 0`).

Stop (SIGINT or SIGTERM): say on stderr what the server waits for, stop accepting, let
in-flight requests and their events finish (bounded by `--grace`), then close the host:
its commits are flushed and every database closed. Exit status 0. A second signal ends
the running events at once (they trap, their writes roll back) and exits.

Start-up failures (port in use, an address that cannot be bound, an unusable data
directory) are `DohostError`s with one line that says what to do (server/startup.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from dohost.core.limits import EventLimits
from dohost.core.partitions import DEFAULT_PARTITIONS
from dohost.replica import GATE_TIMEOUT_S
from dohost.replica.maintenance import RETENTION_MS, MaintenancePolicy
from dohost.replica.store import ReplicaStore, S3Options, open_replica_store
from dohost.server.api import Api
from dohost.server.cluster import (
    ClusterConfig,
    ClusterContext,
    ClusterNode,
    check_cluster_key,
    cluster_key,
    parse_advertise,
)
from dohost.server.cluster_restore import restore_claimed
from dohost.server.etcd_client import EtcdClient
from dohost.server.host import Host
from dohost.server.http_server import serve_http
from dohost.server.http_types import HttpRequest, HttpResponse, ServerLimits
from dohost.server.node import NodeContext, NodeRole, claim_static_partitions, watch_parent
from dohost.server.ownership_etcd import EtcdOwnership
from dohost.server.quotas import Quotas
from dohost.server.startup import listen_error_of, prepare_data_dir
from dohost.server.state import ServerState
from dohost.server.tail import TailRecord
from dohost.server.tenancy import load_admin_token, remove_orphan_tenant_dirs
from dohost.storage.dataset_lock import DataSetLock
from dohost.storage.fencing import Ownership
from dohost.storage.fsutil import sync_data
from dohost.storage.partition_count import partition_count

log = logging.getLogger("dohost.serve")


@dataclass(frozen=True)
class ServeConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    durability: str = "fsync"
    max_body_bytes: int = 32 * 1024 * 1024
    grace_s: float = 30.0
    workers: int | None = None
    quotas: dict[str, Any] = field(default_factory=dict)  # server-wide quota defaults
    ws_max_message_bytes: int = 1024 * 1024
    ws_max_connections_per_object: int = 32_768
    node: NodeRole | None = None  # one node of `--processes N` (server/parent.py)
    access_log: bool = False  # one line per event on stderr (server/tail.py)
    replica: str | None = None  # replica store URL (docs/replication.md)
    replica_s3: S3Options = field(default_factory=S3Options)
    replica_sync: bool = True  # a response waits for the replica store (the output gate)
    replica_timeout_s: float = GATE_TIMEOUT_S  # how long it waits before a 503
    replica_retention_ms: int = RETENTION_MS  # the point-in-time-recovery window
    cluster: ClusterConfig | None = None  # `--cluster`: a node of an etcd cluster


@contextlib.asynccontextmanager
async def _closing(store: ReplicaStore | None) -> AsyncIterator[None]:
    """Closes the replica store once the Host (entered after it) has shipped and exited."""
    try:
        yield
    finally:
        if store is not None:
            store.close()


async def serve(config: ServeConfig, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run the server until SIGINT/SIGTERM (or cancellation)."""
    prepare_data_dir(config.data_dir)
    # The data set lock first: a second server must not even write the admin token. A
    # node of `--processes N` checks the one its parent holds and passed down instead.
    role = config.node
    if role is not None and role.lock_fd is not None:
        lock = DataSetLock.inherited(config.data_dir, role.lock_fd)
    else:
        lock = DataSetLock.acquire(config.data_dir)
    try:
        if config.cluster is not None:
            await _serve_cluster_member(config, config.cluster, lock, task_status)
            return
        ownership = None
        if role is not None:
            ownership = await trio.to_thread.run_sync(
                claim_static_partitions, config.data_dir, role, config.durability
            )
        try:
            await _serve_locked(config, lock, ownership, task_status)
        finally:
            if ownership is not None:
                ownership.close()
    finally:
        lock.release()


async def _serve_cluster_member(
    config: ServeConfig, cluster: ClusterConfig, lock: DataSetLock, task_status: Any
) -> None:
    """Join the etcd cluster, renew the lease from then on (also while the Host opens),
    serve, and leave. A lost lease ends the node with `fenced` (server/cluster.py)."""
    count = partition_count(config.data_dir, DEFAULT_PARTITIONS, sync_data)
    client = EtcdClient(cluster.endpoints)
    ownership = EtcdOwnership(cluster.node, count)
    member = ClusterNode(cluster, client, ownership)
    try:
        await member.join()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(member.renew)
            await _serve_locked(config, lock, ownership, task_status, member)
            nursery.cancel_scope.cancel()
    finally:
        ownership.close()
        await client.aclose()


async def _serve_locked(
    config: ServeConfig,
    lock: DataSetLock,
    ownership: Ownership | None,
    task_status: Any,
    member: ClusterNode | None = None,
) -> None:
    admin_token, admin_source = load_admin_token(config.data_dir)
    defaults = replace(Quotas(), **config.quotas)
    limits = EventLimits(cpu_ms=defaults.cpu_ms, response_bytes=config.max_body_bytes)
    replica = (
        None if config.replica is None else open_replica_store(config.replica, config.replica_s3)
    )
    host = Host(
        config.data_dir,
        durability=config.durability,
        limits=limits,
        workers=config.workers,
        max_module_bytes=max(defaults.module_bytes, config.max_body_bytes),
        shutdown_timeout=config.grace_s,
        ws_max_message_bytes=config.ws_max_message_bytes,
        ws_max_connections_per_object=config.ws_max_connections_per_object,
        dataset_lock=lock,
        ownership=ownership,
        replica=replica,
        replica_sync=config.replica_sync,
        replica_gate_timeout_s=config.replica_timeout_s,
        replica_policy=MaintenancePolicy(retention_ms=config.replica_retention_ms),
    )
    node: NodeContext | None = None
    key = cluster_key(admin_token)
    if config.node is not None:
        node = NodeContext(config.node)
    async with _closing(replica), host:
        if member is not None:
            node = ClusterContext(
                member,
                host,
                key,
                run_dir=config.data_dir / "run",
                forward_timeout_s=member.config.forward_timeout_s,
            )
            store = replica
            if store is not None:

                def restore(claimed: dict[int, int]) -> None:
                    assert store is not None
                    restore_claimed(host, store, claimed)

                member.before_serving = restore
        if config.access_log:
            host.tail.add_listener(_access_log)
        if config.node is None:
            # (The parent of `--processes N` does this before any node starts.)
            known = {row.name for row in host.system.tenants()}
            for name in remove_orphan_tenant_dirs(config.data_dir, known):
                log.info("removed the data of deleted tenant %s", name)
        # (A cluster node keeps its own quotas and usage: no state shared between machines.)
        state = await ServerState.attach(
            host, admin_token, defaults, node if member is None else None
        )
        api = Api(state, node)
        handle = api.handle
        if isinstance(node, ClusterContext):
            handle = _gated(node, api.handle)
            node.serve_here = api.handle_forwarded
        if node is not None:
            host.supervisor.calls.remote = node
        http_limits = ServerLimits(
            max_body_bytes=config.max_body_bytes,
            graceful_shutdown_timeout=config.grace_s,
        )
        shutdown = trio.Event()
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as inner:
                outer.start_soon(_watch_signals, shutdown, inner.cancel_scope, host, config)
                outer.start_soon(_close_websockets, shutdown, host)
                if isinstance(node, ClusterContext) and member is not None:
                    outer.start_soon(member.reconcile_forever, host)
                    advertise = parse_advertise(member.config.advertise)
                    peer_listeners = await trio.open_tcp_listeners(advertise[1], host=advertise[0])
                    peer_handler = _node_port(node, api, key)
                    await inner.start(
                        lambda task_status: serve_http(
                            peer_handler,
                            limits=replace(
                                http_limits,
                                keepalive_idle_timeout=24 * 3600.0,
                                send_timeout=3600.0,
                            ),
                            task_status=task_status,
                            shutdown=shutdown,
                            listeners=peer_listeners,
                        )
                    )
                elif node is not None:
                    outer.start_soon(watch_parent)
                    assert state.class_holds is not None
                    await outer.start(state.class_holds.run)
                    # Forwarded requests from the other nodes: connections stay open
                    # (pooled by the senders) until shutdown.
                    node_limits = replace(
                        http_limits, keepalive_idle_timeout=24 * 3600.0, send_timeout=3600.0
                    )
                    unix = [await unix_listener(node.socket_path)]
                    await inner.start(
                        lambda task_status: serve_http(
                            api.handle_forwarded,
                            limits=node_limits,
                            task_status=task_status,
                            shutdown=shutdown,
                            listeners=unix,
                        )
                    )
                try:
                    listeners = (
                        [await reuse_port_listener(config.host, config.port)]
                        if config.node is not None
                        else None
                    )
                    bound = await inner.start(
                        lambda task_status: serve_http(
                            handle,
                            config.host,
                            config.port,
                            limits=http_limits,
                            task_status=task_status,
                            shutdown=shutdown,
                            listeners=listeners,
                        )
                    )
                except BaseException as e:
                    raise listen_error_of(e, config.host, config.port) from None
                url = _url(bound)
                print(f"dohost listening on {url}", flush=True)
                if config.node is None:
                    print_admin_line(config, admin_source)
                task_status.started(url)
            if member is not None and member.lost is None:
                # Graceful leave: hand the partitions over, drained, then end the lease.
                await member.leave(host)
            if node is not None:
                node.peers.close()
            state.close()
            # serve_http returned: no connection is left (or a second signal cut them).
            outer.cancel_scope.cancel()
        log.info("closing the host: flushing commits")
    if shutdown.is_set() and config.node is None:  # (the parent of N nodes says it once)
        print("dohost stopped", file=sys.stderr, flush=True)


# What a fenced node still answers: it acknowledges nothing there, and an operator needs
# them most when the node cannot reach etcd.
UNGATED = frozenset({"/healthz", "/metrics", "/v1/cluster"})


def _gated(node: ClusterContext, handler: Any) -> Any:
    """A cluster node's public handler: every response passes the lease gate (but the
    health, metrics and cluster status reads)."""

    async def handle(req: HttpRequest) -> HttpResponse:
        resp: HttpResponse = await handler(req)
        if req.path in UNGATED and req.method in ("GET", "HEAD"):
            return resp
        return node.gate(resp)

    return handle


def _node_port(node: ClusterContext, api: Api, key: str) -> Any:
    """The handler of a cluster node's node port: other nodes only (the cluster key),
    forwarded requests and node routes, every response through the lease gate."""

    async def handle(req: HttpRequest) -> HttpResponse:
        refused = check_cluster_key(req, key)
        if refused is not None:
            return refused
        return node.gate(await api.handle_forwarded(req))

    return handle


def _access_log(record: TailRecord) -> None:
    if record.kind != "log":
        print(record.line(), file=sys.stderr, flush=True)


def print_admin_line(config: ServeConfig, admin_source: str) -> None:
    where = "$DOHOST_ADMIN_TOKEN" if admin_source == "env" else admin_source
    note = " (durability os: survives a process crash, not a power loss)"
    print(
        f"admin token: {where}; data: {config.data_dir}"
        + (note if config.durability == "os" else ""),
        file=sys.stderr,
        flush=True,
    )


async def reuse_port_listener(host: str, port: int) -> trio.SocketListener:
    """A listening socket on a port other processes of this user listen on too: the
    kernel spreads new connections over them (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await sock.bind((host, port))
        sock.listen(4096)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def unix_listener(path: Path) -> trio.SocketListener:
    """A listening Unix socket only this user can connect to (mode 0600); a stale file
    left by a killed node is replaced."""
    path.unlink(missing_ok=True)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            await sock.bind(str(path))
        finally:
            os.umask(old)
        sock.listen(4096)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


def _url(bound: tuple[str, int]) -> str:
    host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return f"http://{host}:{bound[1]}"


async def _close_websockets(shutdown: trio.Event, host: Host) -> None:
    """Open WebSockets would hold the HTTP drain for the whole grace period: close them
    (1001) as soon as shutdown starts; each ends when its client answers (or 5 s)."""
    await shutdown.wait()
    host.websockets.close_all()


async def _watch_signals(
    shutdown: trio.Event, scope: trio.CancelScope, host: Host, config: ServeConfig
) -> None:
    # A node of `--processes N` says nothing: its parent tells the whole host's truth
    # once (server/parent.py), counting every node's events.
    quiet = config.node is not None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if not shutdown.is_set():
                if not quiet:
                    events = host.supervisor.events_in_flight()
                    line = waiting_line(events, host.websockets.open_count(), config.grace_s)
                    print(line, file=sys.stderr, flush=True)
                shutdown.set()
                continue
            # A second signal: end the running events now (the host still closes cleanly).
            if not quiet:
                print(STOPPING_NOW, file=sys.stderr, flush=True)
            host.stop_now()
            scope.cancel()
            return


STOPPING_NOW = "stopping now: ending in-flight events"


def waiting_line(events: int, sockets: int, grace_s: float, unknown: str = "") -> str:
    """The first signal's line: what the server still waits for, and how to stop at
    once. `unknown`: what could not be counted (nodes that did not answer)."""
    parts = [f"{events} event{'s' if events != 1 else ''} in flight"]
    if sockets:
        parts.append(f"{sockets} WebSocket{'s' if sockets != 1 else ''} to close")
    return (
        f"shutting down: waiting for {' and '.join(parts)}{unknown} (at most {grace_s:g} s); "
        "send the signal again (Ctrl-C) to stop now"
    )

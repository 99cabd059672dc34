"""`dohost serve`: the command-line face of `dohost.server.serve`."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import trio

from dohost import config_file
from dohost.cli_replica import replica_options, s3_options
from dohost.core.errors import Code, DohostError
from dohost.replica import GATE_TIMEOUT_S

if TYPE_CHECKING:
    from dohost.server.cluster import ClusterConfig


def _parse_quota(text: str) -> object:
    from dohost.server.quotas import parse_quota_option

    return parse_quota_option(text)


@click.command()
@config_file.option("serve", {"quotas": lambda q: _parse_quota(q)})
@click.option(
    "--data",
    "data_dir",
    default="./dohost-data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory (created on first start).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="0: any free port.",
)
@click.option(
    "--durability",
    type=click.Choice(["fsync", "os"]),
    default="fsync",
    show_default=True,
    help="fsync: commits survive power loss. os: a process crash only (development).",
)
@click.option(
    "--cpu-ms",
    type=click.IntRange(min=1),
    default=None,
    help="Default CPU time limit per event, in ms (the cpu_ms quota; default 30000).",
)
@click.option(
    "--quota",
    "quotas",
    multiple=True,
    metavar="KEY=VALUE",
    help="A default tenant quota, e.g. objects=1000 or requests_per_s=500 (repeatable).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=32 * 1024 * 1024,
    show_default=True,
    help="Largest request and response body (413 beyond).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds in-flight requests get to finish on SIGTERM/SIGINT.",
)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Wasm worker threads.")
@click.option(
    "--ws-max-message-bytes",
    type=click.IntRange(min=1),
    default=1024 * 1024,
    show_default=True,
    help="Largest WebSocket message in either direction (a larger incoming one: close 1009).",
)
@click.option(
    "--ws-max-connections-per-object",
    type=click.IntRange(min=1),
    default=32_768,
    show_default=True,
    help="Open WebSocket connections one object may have.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Node processes sharing the port, each owning a share of the objects "
    "(default: one per core; 1: one process, no forwarding).",
)
@click.option(
    "--forward-timeout",
    type=click.FloatRange(min=0.001),
    default=60.0,
    show_default=True,
    help="With --processes > 1 or --cluster: seconds a node waits for the owner of a forwarded "
    "request before answering 503 owner_unavailable.",
)
@click.option(
    # Both forms, so that a flag can switch off what a config file switches on.
    "--access-log/--no-access-log",
    default=False,
    help="Print one line per event on stderr: method, path, object, status, duration, CPU.",
)
@click.option(
    "--cluster",
    "cluster_url",
    default=None,
    metavar="etcd://HOST:PORT[,HOST:PORT...][/NAME]",
    help="Run as a node of a cluster coordinated by these etcd members (docs/cluster.md); "
    "needs --node, --advertise and --replica.",
)
@click.option("--node", "node_name", default=None, help="With --cluster: this node's name.")
@click.option(
    "--advertise",
    default=None,
    metavar="http://HOST:PORT",
    help="With --cluster: where the other nodes reach this node (its node port).",
)
@click.option("--location", default=None, help="With --cluster: this node's location label.")
@click.option(
    "--lease-ttl",
    type=click.IntRange(min=2),
    default=10,
    show_default=True,
    help="With --cluster: seconds of this node's etcd lease (failover takes about this long).",
)
@replica_options(required=False)
@click.option(
    "--replica-sync",
    type=click.Choice(["on", "off"]),
    default="on",
    show_default=True,
    help="With --replica: on = a response waits until its changes are in the replica store; "
    "off = it is released after the local commit and shipped right after.",
)
@click.option(
    "--replica-timeout",
    type=click.FloatRange(min=0.1),
    default=GATE_TIMEOUT_S,
    show_default=True,
    help="With --replica-sync on: seconds a response waits for the replica store before "
    "the event fails with 503 replica_unavailable.",
)
@click.option(
    "--replica-retention",
    type=click.FloatRange(min=0.01),
    default=30.0,
    show_default=True,
    help="With --replica: days of point-in-time recovery kept in the replica store; older "
    "segments and snapshots are deleted.",
)
def serve(
    data_dir: Path,
    host: str,
    port: int,
    durability: str,
    cpu_ms: int | None,
    quotas: tuple[str, ...],
    max_body_bytes: int,
    grace: float,
    workers: int | None,
    ws_max_message_bytes: int,
    ws_max_connections_per_object: int,
    processes: int | None,
    forward_timeout: float,
    access_log: bool,
    replica_url: str | None,
    replica_endpoint: str | None,
    replica_region: str | None,
    replica_access_key: str | None,
    replica_secret_key: str | None,
    replica_sync: str,
    replica_timeout: float,
    replica_retention: float,
    cluster_url: str | None,
    node_name: str | None,
    advertise: str | None,
    location: str | None,
    lease_ttl: int,
) -> None:
    """Serve the HTTP API (docs/http-api.md) for many tenants until SIGINT/SIGTERM."""
    from dohost.server.quotas import parse_quota_option
    from dohost.server.serve import ServeConfig
    from dohost.server.serve import serve as run_server

    defaults: dict[str, Any] = {}
    try:
        for q in quotas:
            key, value = parse_quota_option(q)
            defaults[key] = value
    except DohostError as e:
        raise click.BadParameter(e.message, param_hint="--quota") from None
    if cpu_ms is not None:
        defaults["cpu_ms"] = cpu_ms
    config = ServeConfig(
        data_dir=data_dir,
        host=host,
        port=port,
        durability=durability,
        max_body_bytes=max_body_bytes,
        grace_s=grace,
        workers=workers,
        quotas=defaults,
        ws_max_message_bytes=ws_max_message_bytes,
        ws_max_connections_per_object=ws_max_connections_per_object,
        access_log=access_log,
        replica=replica_url,
        replica_s3=s3_options(
            replica_endpoint, replica_region, replica_access_key, replica_secret_key
        ),
        replica_sync=replica_sync == "on",
        replica_timeout_s=replica_timeout,
        replica_retention_ms=int(replica_retention * 86_400_000),
    )
    if cluster_url is not None:
        config = replace(
            config,
            cluster=cluster_config(
                cluster_url,
                node_name,
                advertise,
                location,
                lease_ttl,
                replica_url,
                processes,
                forward_timeout,
            ),
        )
        trio.run(run_server, config)
        return
    if node_name is not None or advertise is not None or location is not None:
        raise DohostError(
            Code.INVALID_ARGUMENT, "--node, --advertise and --location need --cluster"
        )
    if processes is None:
        processes = default_processes()
    if processes == 1:
        trio.run(run_server, config)
        return
    from dohost.server.parent import Parent

    parent = Parent(config, processes, forward_timeout_s=forward_timeout)
    sys.exit(trio.run(parent.run))


def cluster_config(
    url: str,
    node: str | None,
    advertise: str | None,
    location: str | None,
    lease_ttl: int,
    replica_url: str | None,
    processes: int | None,
    forward_timeout: float = 60.0,
) -> ClusterConfig:
    """`serve --cluster`'s options, checked (each mistake one line)."""
    from dohost.server.cluster import ClusterConfig, check_cluster_config
    from dohost.server.etcd_client import parse_cluster_url

    missing = [
        flag
        for flag, value in (
            ("--node", node),
            ("--advertise", advertise),
            ("--replica", replica_url),
        )
        if value is None
    ]
    if missing:
        raise DohostError(
            Code.INVALID_ARGUMENT,
            f"--cluster needs {', '.join(missing)}: a node's name, the URL other nodes reach "
            "it at, and the replica store its partitions are restored from when they move",
        )
    if processes not in (None, 1):
        raise DohostError(
            Code.NOT_SUPPORTED, "--cluster runs one process per node: leave out --processes"
        )
    endpoints, name = parse_cluster_url(url)
    assert node is not None and advertise is not None
    config = ClusterConfig(
        endpoints,
        name,
        node,
        advertise,
        location=location,
        lease_ttl_s=lease_ttl,
        forward_timeout_s=forward_timeout,
    )
    check_cluster_config(config)
    return config


def default_processes() -> int:
    """One node per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1

"""`dohost restore`: rebuild a data set from a replica store
(replica/restore.py), and the replica options shared by the commands that take a
replica URL."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dohost.core.time_text import parse_time_ms
from dohost.replica.store import S3Options, open_replica_store


def replica_options(required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--replica URL and the S3 settings (each also from the usual AWS_* variables)."""
    return lambda f: _add_replica_options(f, required)


def _add_replica_options(f: Callable[..., Any], required: bool) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--replica",
                "replica_url",
                required=required,
                default=None,
                help="file:///absolute/path or s3://bucket/prefix"
                + ("" if required else ": ship every committed kv change there"),
            ),
            click.option(
                "--replica-endpoint",
                default=None,
                help="S3 endpoint URL (default: AWS_ENDPOINT_URL, else AWS for the region).",
            ),
            click.option("--replica-region", default=None, help="S3 region (default: AWS_REGION)."),
            click.option("--replica-access-key", default=None, help="default: AWS_ACCESS_KEY_ID"),
            click.option(
                "--replica-secret-key",
                default=None,
                help="default: AWS_SECRET_ACCESS_KEY (prefer it: flags show in ps)",
            ),
        ]
    ):
        f = option(f)
    return f


def s3_options(
    endpoint: str | None, region: str | None, access_key: str | None, secret_key: str | None
) -> S3Options:
    return S3Options(endpoint=endpoint, region=region, access_key=access_key, secret_key=secret_key)


@click.command()
@replica_options(required=True)
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="New (or empty) directory to restore into.",
)
@click.option(
    "--at", "at", default=None, help="Restore the state as of this time (default: newest)."
)
@click.option(
    "--durability",
    type=click.Choice(["fsync", "os"]),
    default="fsync",
    show_default=True,
    help="How the restored files are written.",
)
def restore(
    replica_url: str,
    replica_endpoint: str | None,
    replica_region: str | None,
    replica_access_key: str | None,
    replica_secret_key: str | None,
    data_dir: Path,
    at: str | None,
    durability: str,
) -> None:
    """Rebuild a replicated data set into a new directory, as of now or of --at:
    tenants, tokens, classes and modules, kv objects and their alarms. (SQL-backed
    objects are not replicated yet.)"""
    from dohost.replica.restore import restore_kv

    at_ms = None if at is None else parse_time_ms(at)
    store = open_replica_store(
        replica_url,
        s3_options(replica_endpoint, replica_region, replica_access_key, replica_secret_key),
    )
    try:
        started = time.monotonic()
        report = restore_kv(
            store, data_dir, now_ms=time.time_ns() // 1_000_000, at_ms=at_ms, durability=durability
        )
    finally:
        store.close()
    took = time.monotonic() - started
    click.echo(
        f"restored {report.objects} objects ({report.alarms} with alarms) of "
        f"{report.partitions} partitions from {report.segments} segments into {data_dir} "
        f"in {took:.1f} s"
        + (f", with tenants, classes and {report.modules} modules" if report.catalog else "")
    )
    if not report.catalog:
        click.echo(
            "the replica holds no catalog (written by servers before this version): "
            "create the tenants and deploy the classes again",
            err=True,
        )
    if report.ignored:
        click.echo(
            f"ignored {len(report.ignored)} segments outside the acknowledged history "
            f"(written after a newer claim, or after a gap): {', '.join(report.ignored[:5])}"
            + (" ..." if len(report.ignored) > 5 else ""),
            err=True,
        )

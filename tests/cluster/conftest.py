"""Fixtures of the cluster tests: a real etcd on loopback (Debian's etcd-server), one
member per test session (each test a cluster of its own in it), a three-member one for
the tests that kill members, and SeaweedFS as the replica store."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_helpers import ROOT  # noqa: F401 (puts tests/replica on sys.path)
from etcd_server import Etcd, start_etcd
from seaweedfs_server import SeaweedFS, start_seaweedfs

BUCKET = "dohost-cluster"


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    server = start_etcd(tmp_path_factory.mktemp("etcd"), members=1)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def etcd3(tmp_path: Path) -> Iterator[Etcd]:
    """Three members of their own (a test may kill some)."""
    server = start_etcd(tmp_path / "etcd3", members=3)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """The replica store of the cluster tests (S3 on loopback, tests/replica)."""
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs-cluster"), BUCKET)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def replica_args(seaweedfs: SeaweedFS) -> list[str]:
    """`serve` options of a fresh replica prefix on SeaweedFS (one per test)."""
    return [
        "--replica", f"s3://{BUCKET}/c-{secrets.token_hex(6)}",
        "--replica-endpoint", seaweedfs.endpoint,
        "--replica-access-key", seaweedfs.access_key,
        "--replica-secret-key", seaweedfs.secret_key,
    ]  # fmt: skip


@pytest.fixture
def cluster_url(etcd: Etcd) -> str:
    """A cluster of its own in the shared etcd (one per test)."""
    return f"{etcd.url}/c{secrets.token_hex(4)}"

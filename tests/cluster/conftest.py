"""Fixtures of the cluster tests: a real etcd on loopback (Debian's etcd-server), one
member per test session, and a three-member one for the tests that kill members."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_server import Etcd, start_etcd


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

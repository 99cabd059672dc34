"""Fixtures of the replica tests: one SeaweedFS per test session (started on first use,
stopped by pid at the end), and a fresh store per test on each backend."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from seaweedfs_server import SeaweedFS, start_seaweedfs

from dohost.replica.file_store import FileReplicaStore
from dohost.replica.s3_store import S3ReplicaStore
from dohost.replica.store import ReplicaStore

BUCKET = "dohost-test"


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"), BUCKET)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_store(seaweedfs: SeaweedFS) -> Iterator[S3ReplicaStore]:
    # A fresh prefix per test: tests share the bucket, never each other's keys.
    store = seaweedfs.store(BUCKET, f"t-{secrets.token_hex(6)}")
    yield store
    store.close()


@pytest.fixture
def file_store(tmp_path: Path) -> FileReplicaStore:
    return FileReplicaStore(str(tmp_path / "replica"))


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest) -> ReplicaStore:
    """The contract tests run once against each backend."""
    name = "file_store" if request.param == "file" else "s3_store"
    result: ReplicaStore = request.getfixturevalue(name)
    return result

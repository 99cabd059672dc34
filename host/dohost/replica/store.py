"""The replica store: where a data set's log segments and snapshots are kept.

Four operations, the least that log shipping with fencing needs (DESIGN.md,
"Replication"): `put_new` creates an object only if its key is free (`If-None-Match: *`
on S3, an exclusive link on a file system), so two owners of one partition can never
overwrite each other's segments; `get`, `list` by prefix, and `delete` (retention).
An object is visible whole or not at all.

Stores are synchronous and thread-safe: the host calls them from threads, never from its
trio loop. Failures raise `DohostError`: `ALREADY_EXISTS` (`ReplicaKeyExists`) from
`put_new`, `NOT_FOUND` from `get`, `REPLICA_UNAVAILABLE` for anything the store itself
failed at (unreachable, refused, timed out); retrying is the caller's decision.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

from dohost.core.errors import Code, DohostError


class ReplicaKeyExists(DohostError):
    """`put_new` found the key taken: another writer (or an earlier try of this one)."""

    def __init__(self, where: str) -> None:
        super().__init__(Code.ALREADY_EXISTS, f"{where} already exists in the replica store")


def replica_unavailable(message: str) -> DohostError:
    return DohostError(Code.REPLICA_UNAVAILABLE, message)


class ReplicaStore(Protocol):
    # Where the store is, for messages and logs (never a secret).
    description: str

    def put_new(self, key: str, data: bytes) -> None:
        """Create `key` holding `data`; `ReplicaKeyExists` if the key already exists."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes of `key`; `NOT_FOUND` if there is no such object."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Every key starting with `prefix`, in ascending order."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key` (no error if it is already gone)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class S3Options:
    """What `s3://` needs beyond the URL. Each unset field comes from the usual AWS
    environment variables (`from_env`)."""

    endpoint: str | None = None  # e.g. http://127.0.0.1:8333; default: AWS for the region
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    timeout_s: float = 30.0

    def from_env(self, env: Mapping[str, str]) -> S3Options:
        def pick(value: str | None, *names: str) -> str | None:
            if value:
                return value
            for name in names:
                if env.get(name):
                    return env[name]
            return None

        return S3Options(
            endpoint=pick(self.endpoint, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
            region=pick(self.region, "AWS_REGION", "AWS_DEFAULT_REGION"),
            access_key=pick(self.access_key, "AWS_ACCESS_KEY_ID"),
            secret_key=pick(self.secret_key, "AWS_SECRET_ACCESS_KEY"),
            session_token=pick(self.session_token, "AWS_SESSION_TOKEN"),
            timeout_s=self.timeout_s,
        )


def open_replica_store(
    url: str, s3: S3Options | None = None, env: Mapping[str, str] | None = None
) -> ReplicaStore:
    """A store for `file:///absolute/path` or `s3://bucket[/prefix]`."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise DohostError(
                Code.INVALID_ARGUMENT,
                f"{url!r}: a file replica is file:///absolute/path (no host part)",
            )
        from dohost.replica.file_store import FileReplicaStore

        return FileReplicaStore(unquote(parts.path))
    if parts.scheme == "s3":
        from dohost.replica.s3_store import S3ReplicaStore

        options = (s3 or S3Options()).from_env(os.environ if env is None else env)
        return S3ReplicaStore(parts.netloc, parts.path.strip("/"), options)
    raise DohostError(
        Code.INVALID_ARGUMENT,
        f"{url!r} is not a replica URL: use file:///absolute/path or s3://bucket/prefix",
    )

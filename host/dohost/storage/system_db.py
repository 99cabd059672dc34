"""The host's own database: tenants, their token hashes and quotas, scoped tokens,
classes and versions.

Written rarely (deploys, tenant changes) and read once at start, so it runs with
`synchronous=FULL` and no batching: every change is durable when the call returns.
Module bytes live beside it in `DATA/modules/<sha256>.wasm`, written atomically.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from dohost.core.errors import Code, DohostError
from dohost.storage.fsutil import fsync_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants(
    name TEXT PRIMARY KEY,
    token_hash BLOB,
    created_ms INTEGER NOT NULL,
    quotas TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS classes(
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    storage TEXT NOT NULL,
    class_key BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY(tenant, name)
);
CREATE TABLE IF NOT EXISTS class_versions(
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY(tenant, name, version)
);
CREATE TABLE IF NOT EXISTS class_renames(
    tenant TEXT NOT NULL,
    old TEXT NOT NULL,
    new TEXT NOT NULL,
    PRIMARY KEY(tenant, old)
);
CREATE TABLE IF NOT EXISTS tokens(
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    token_hash BLOB NOT NULL,
    scope TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class TenantRow:
    name: str
    token_hash: bytes | None
    created_ms: int
    quotas: dict[str, Any]


@dataclass(frozen=True)
class TokenRow:
    """A scoped token: `scope` is `core.token_scope.Scope.to_json()`."""

    id: str
    tenant: str
    token_hash: bytes
    scope: dict[str, Any]
    created_ms: int


@dataclass(frozen=True)
class ClassRow:
    tenant: str
    name: str
    version: int
    sha256: str
    storage: str
    class_key: bytes
    created_ms: int
    updated_ms: int


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SystemDb:
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        self.modules_dir = data_dir / "modules"
        self.modules_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = apsw.Connection(str(data_dir / "system.db"))
        self._db.setbusytimeout(5000)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._db:
            self._db.execute(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---------------------------------------------------------------- tenants

    def create_tenant(self, name: str, token_hash: bytes | None) -> TenantRow:
        with self._lock, self._db:
            if self._db.execute("SELECT 1 FROM tenants WHERE name=?", (name,)).fetchone():
                raise DohostError(Code.INVALID_NAME, f"tenant {name!r} already exists")
            now = _now_ms()
            self._db.execute(
                "INSERT INTO tenants(name, token_hash, created_ms) VALUES(?,?,?)",
                (name, token_hash, now),
            )
        return TenantRow(name, token_hash, now, {})

    def ensure_tenant(self, name: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO tenants(name, token_hash, created_ms) VALUES(?,NULL,?)",
                (name, _now_ms()),
            )

    def tenants(self) -> list[TenantRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, token_hash, created_ms, quotas FROM tenants ORDER BY name"
            ).fetchall()
        return [TenantRow(r[0], r[1], r[2], json.loads(r[3])) for r in rows]  # type: ignore[arg-type]

    def set_tenant_token(self, name: str, token_hash: bytes) -> bool:
        """Replace a tenant's token hash; False if there is no such tenant."""
        with self._lock, self._db:
            self._db.execute("UPDATE tenants SET token_hash=? WHERE name=?", (token_hash, name))
            changed = self._db.changes()
        return bool(changed)

    def set_tenant_quotas(self, name: str, quotas: dict[str, Any]) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE tenants SET quotas=? WHERE name=?", (json.dumps(quotas), name))

    def delete_tenant(self, name: str) -> bool:
        with self._lock, self._db:
            existed = (
                self._db.execute("SELECT 1 FROM tenants WHERE name=?", (name,)).fetchone()
                is not None
            )
            self._db.execute("DELETE FROM tenants WHERE name=?", (name,))
            self._db.execute("DELETE FROM classes WHERE tenant=?", (name,))
            self._db.execute("DELETE FROM class_versions WHERE tenant=?", (name,))
            self._db.execute("DELETE FROM tokens WHERE tenant=?", (name,))
            self._db.execute("DELETE FROM class_renames WHERE tenant=?", (name,))
        return existed

    # ---------------------------------------------------------------- scoped tokens

    def tokens(self) -> list[TokenRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, tenant, token_hash, scope, created_ms FROM tokens ORDER BY id"
            ).fetchall()
        return [TokenRow(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]  # type: ignore[arg-type]

    def put_token(self, row: TokenRow) -> None:
        """Insert or replace (a rotation keeps the id and scope, changes the hash)."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO tokens(id, tenant, token_hash, scope, created_ms)"
                " VALUES(?,?,?,?,?)",
                (row.id, row.tenant, row.token_hash, json.dumps(row.scope), row.created_ms),
            )

    def delete_token(self, token_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM tokens WHERE id=?", (token_id,))

    # ---------------------------------------------------------------- classes

    def classes(self, tenant: str | None = None) -> list[ClassRow]:
        q = "SELECT tenant, name, version, sha256, storage, class_key, created_ms, updated_ms FROM classes"
        with self._lock:
            if tenant is None:
                rows = self._db.execute(q + " ORDER BY tenant, name").fetchall()
            else:
                rows = self._db.execute(q + " WHERE tenant=? ORDER BY name", (tenant,)).fetchall()
        return [ClassRow(*r) for r in rows]  # type: ignore[arg-type]

    def get_class(self, tenant: str, name: str) -> ClassRow | None:
        rows = [c for c in self.classes(tenant) if c.name == name]
        return rows[0] if rows else None

    def put_class_version(
        self, tenant: str, name: str, sha256: str, storage: str, class_key: bytes
    ) -> ClassRow:
        """Record a new version of a class (creating it at version 1)."""
        now = _now_ms()
        with self._lock, self._db:
            row = self._db.execute(
                "SELECT version, storage, class_key, created_ms FROM classes WHERE tenant=? AND name=?",
                (tenant, name),
            ).fetchone()
            if row is None:
                version, created = 1, now
            else:
                if row[1] != storage:
                    raise DohostError(
                        Code.INVALID_ARGUMENT,
                        f"class {name!r} uses {row[1]} storage; a class's storage backend cannot change "
                        "(deploy under a new class name instead)",
                    )
                version, class_key, created = row[0] + 1, row[2], row[3]
            self._db.execute(
                "INSERT OR REPLACE INTO classes(tenant, name, version, sha256, storage, class_key, created_ms, updated_ms)"
                " VALUES(?,?,?,?,?,?,?,?)",
                (tenant, name, version, sha256, storage, class_key, created, now),
            )
            self._db.execute(
                "INSERT INTO class_versions(tenant, name, version, sha256, created_ms) VALUES(?,?,?,?,?)",
                (tenant, name, version, sha256, now),
            )
        return ClassRow(tenant, name, version, sha256, storage, class_key, created, now)

    def class_versions(self, tenant: str, name: str) -> list[tuple[int, str, int]]:
        """(version, sha256, created_ms) of every recorded version, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT version, sha256, created_ms FROM class_versions"
                " WHERE tenant=? AND name=? ORDER BY version",
                (tenant, name),
            ).fetchall()
        return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]  # type: ignore[arg-type]

    def delete_class(self, tenant: str, name: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM classes WHERE tenant=? AND name=?", (tenant, name))
            self._db.execute("DELETE FROM class_versions WHERE tenant=? AND name=?", (tenant, name))

    def rename_class(self, tenant: str, old: str, new: str) -> None:
        """Rename the class rows and journal the rename, in one transaction: the storage
        moves that follow are finished from the journal after a crash
        (`pending_renames`, then `finish_rename`)."""
        with self._lock, self._db:
            taken = self._db.execute(
                "SELECT 1 FROM classes WHERE tenant=? AND name=?", (tenant, new)
            ).fetchone()
            if taken is not None:
                raise DohostError(Code.ALREADY_EXISTS, f"a class named {new!r} already exists")
            self._db.execute(
                "UPDATE classes SET name=?, updated_ms=? WHERE tenant=? AND name=?",
                (new, _now_ms(), tenant, old),
            )
            self._db.execute(
                "UPDATE class_versions SET name=? WHERE tenant=? AND name=?", (new, tenant, old)
            )
            self._db.execute(
                "INSERT OR REPLACE INTO class_renames(tenant, old, new) VALUES(?,?,?)",
                (tenant, old, new),
            )

    def pending_renames(self) -> list[tuple[str, str, str]]:
        with self._lock:
            rows = self._db.execute("SELECT tenant, old, new FROM class_renames").fetchall()
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]  # type: ignore[arg-type]

    def finish_rename(self, tenant: str, old: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM class_renames WHERE tenant=? AND old=?", (tenant, old))

    # ---------------------------------------------------------------- module bytes

    def module_path(self, sha256: str) -> Path:
        return self.modules_dir / f"{sha256}.wasm"

    def save_module(self, sha256: str, wasm: bytes) -> None:
        path = self.module_path(sha256)
        if path.exists():
            return
        tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        with open(tmp, "wb") as f:
            f.write(wasm)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(str(self.modules_dir))

    def load_module(self, sha256: str) -> bytes:
        return self.module_path(sha256).read_bytes()

"""Tenants and their tokens: who is calling the HTTP API.

Tokens are `secrets.token_urlsafe(32)` (256 random bits), shown once when created and
stored only as their SHA-256 (`tenants.token_hash` in system.db); a plain hash is enough
for secrets of this entropy, and it lets a request be matched with one dict lookup. The
final comparison is `hmac.compare_digest` all the same. The admin token comes from
`DOHOST_ADMIN_TOKEN`, or from `DATA/admin.token` (created mode 0600 on first start).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from dohost.core.errors import Code, DohostError
from dohost.core.names import check_name
from dohost.storage.system_db import SystemDb, TenantRow

log = logging.getLogger("dohost.tenancy")

ADMIN_TOKEN_FILE = "admin.token"
ADMIN_TOKEN_ENV = "DOHOST_ADMIN_TOKEN"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request authenticated as: the admin, or one tenant."""

    admin: bool
    tenant: str | None


ADMIN_PRINCIPAL = Principal(True, None)


def load_admin_token(data_dir: Path) -> tuple[str, str]:
    """The admin token and where it came from ("env" or the file's path). Creates the
    file (mode 0600, never overwritten) when there is neither."""
    env = os.environ.get(ADMIN_TOKEN_ENV)
    if env:
        if len(env) < 16:
            raise DohostError(
                Code.INVALID_ARGUMENT, f"{ADMIN_TOKEN_ENV} is too short: use at least 16 characters"
            )
        return env, "env"
    path = data_dir / ADMIN_TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
        if not token:
            raise DohostError(
                Code.INVALID_ARGUMENT, f"{path} is empty: delete it to make a new admin token"
            ) from None
        if path.stat().st_mode & 0o077:
            log.warning("%s is readable by other users: chmod 600 it", path)
        return token, str(path)
    token = new_token()
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    return token, str(path)


class Tenancy:
    """Tenants and tokens, backed by system.db (loop thread; system.db calls are short)."""

    def __init__(self, system: SystemDb, admin_token: str) -> None:
        self._system = system
        self._admin_hash = token_hash(admin_token)
        self._by_hash: dict[bytes, str] = {}
        self._rows: dict[str, TenantRow] = {}
        for row in system.tenants():
            self._remember(row)

    def _remember(self, row: TenantRow) -> None:
        self._rows[row.name] = row
        if row.token_hash is not None:
            self._by_hash[row.token_hash] = row.name

    # ---------------------------------------------------------------- authentication

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an `Authorization: Bearer <token>` header; raises
        UNAUTHORIZED for a missing, malformed or unknown token."""
        if authorization is None:
            raise DohostError(
                Code.UNAUTHORIZED, "missing token: send 'Authorization: Bearer <token>'"
            )
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise DohostError(
                Code.UNAUTHORIZED, "malformed Authorization header: use 'Bearer <token>'"
            )
        h = token_hash(token)
        if hmac.compare_digest(h, self._admin_hash):
            return ADMIN_PRINCIPAL
        name = self._by_hash.get(h)
        if name is not None:
            row = self._rows.get(name)
            if row is not None and row.token_hash and hmac.compare_digest(h, row.token_hash):
                return Principal(False, name)
        raise DohostError(Code.UNAUTHORIZED, "unknown token")

    # ---------------------------------------------------------------- tenants

    def exists(self, name: str) -> bool:
        return name in self._rows

    def row(self, name: str) -> TenantRow:
        row = self._rows.get(name)
        if row is None:
            raise DohostError(Code.UNKNOWN_TENANT, f"no tenant named {name[:80]!r}")
        return row

    def rows(self) -> list[TenantRow]:
        return [self._rows[n] for n in sorted(self._rows)]

    def create(self, name: str) -> tuple[TenantRow, str]:
        """A new tenant and its token (the only time the token is known)."""
        check_name("tenant", name)
        if name in self._rows:
            raise DohostError(Code.ALREADY_EXISTS, f"tenant {name!r} already exists")
        token = new_token()
        row = self._system.create_tenant(name, token_hash(token))
        self._remember(row)
        return row, token

    def rotate(self, name: str) -> str:
        """Replace a tenant's token; the old one stops working at once."""
        row = self.row(name)
        token = new_token()
        h = token_hash(token)
        self._system.set_tenant_token(name, h)
        if row.token_hash is not None:
            self._by_hash.pop(row.token_hash, None)
        self._remember(TenantRow(row.name, h, row.created_ms, row.quotas))
        return token

    def set_quotas(self, name: str, quotas: dict[str, object]) -> None:
        row = self.row(name)
        self._system.set_tenant_quotas(name, quotas)
        self._rows[name] = TenantRow(row.name, row.token_hash, row.created_ms, dict(quotas))

    def forget(self, name: str) -> None:
        """Stop authenticating a tenant (before its deletion starts)."""
        row = self._rows.pop(name, None)
        if row is not None and row.token_hash is not None:
            self._by_hash.pop(row.token_hash, None)


def remove_orphan_tenant_dirs(data_dir: Path, tenants: set[str]) -> list[str]:
    """Delete `DATA/tenants/<name>` directories of tenants that no longer exist (their
    objects were deleted when the tenant was; this removes the emptied files). Call
    before any storage of those tenants is opened, i.e. at start."""
    root = data_dir / "tenants"
    removed: list[str] = []
    try:
        entries = list(root.iterdir())
    except FileNotFoundError:
        return removed
    for d in entries:
        if d.is_dir() and d.name not in tenants:
            shutil.rmtree(d)
            removed.append(d.name)
    return removed

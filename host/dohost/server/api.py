"""HTTP API v1: the router, authentication, and the tenant routes (docs/http-api.md).

    GET    /healthz, /v1/openapi.json (server/openapi.py) open
    GET    /metrics                                       admin
    POST   /v1/tenants, GET /v1/tenants                   admin (api_admin.py)
    GET|PATCH|DELETE /v1/tenants/{name}                   admin
    POST   /v1/tenants/{name}/token                       admin
    GET    /v1/classes                                    tenant
    PUT    /v1/classes/{class}?storage=kv|sqlite&update=immediate|deferred&max_delay_s=
                                                          tenant, body = wasm
    GET|DELETE /v1/classes/{class}                        tenant
    GET    /v1/classes/{class}/versions                   tenant (api_classes.py)
    POST   /v1/classes/{class}/rollback, .../rename       tenant (api_classes.py)
    GET    /v1/classes/{class}/objects                    tenant, paginated
    POST   /v1/classes/{class}/ids                        tenant, a new unique id
    GET|DELETE /v1/classes/{class}/objects/{name}         tenant (ids/{id} alike)
    GET    /v1/classes/{class}/objects/{name}/storage     tenant, paginated (ids/{id} alike)
    ANY    /v1/classes/{class}/objects/{name}/{path...}   tenant: the object's fetch event
    ANY    /v1/classes/{class}/ids/{id}/{path...}         tenant: the same, by id
    GET|POST /v1/tokens, GET|DELETE /v1/tokens/{id}, POST /v1/tokens/{id}/rotate
                                                          tenant: scoped tokens (api_tokens.py)
    GET    /v1/tail, GET /v1/alarms                       tenant (api_dev.py)
    POST   /v1/classes/{class}/objects/{name}/storage/sql tenant, read-only SQL (api_dev.py)

A tenant sees only its own classes and objects: anything of another tenant answers
exactly as if it did not exist (404); a scoped token sees other classes of its tenant
the same way (404) and answers 403 for a method or route its scope lacks. Every error the host makes is JSON
`{"error": {"code", "message"}}` with the code also in the `x-dohost-error` header.
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass

import trio

from dohost.core.calls import CALLER_HEADERS
from dohost.core.envelopes import Request, Response
from dohost.core.errors import Code, DohostError
from dohost.core.ids import ObjectId
from dohost.core.time_text import parse_time_ms
from dohost.core.token_scope import Scope
from dohost.core.websocket import accept_token, handshake_key
from dohost.server import api_admin, api_classes, api_dev, api_tokens, node_routes, openapi
from dohost.server.api_util import (
    ERROR_HEADER,
    JSON_TYPE,
    MethodNotAllowed,
    b64,
    b64url,
    b64url_param,
    decode_segment,
    error_response,
    int_param,
    json_body,
    json_response,
    not_found,
    query_params,
)
from dohost.server.forward import FORWARDED_HEADER, VIA_HEADER
from dohost.server.host import ObjectRef
from dohost.server.http_types import HttpRequest, HttpResponse, UpgradeResponse
from dohost.server.metrics import CONTENT_TYPE as METRICS_TYPE
from dohost.server.metrics_merge import merge_metrics
from dohost.server.node import NodeContext
from dohost.server.state import ServerState
from dohost.server.tenancy import Principal
from dohost.storage.api import ListOptions
from dohost.storage.manager import ObjectPage

log = logging.getLogger("dohost.api")

# Request headers that describe this hop (or carry the tenant's credentials) and so
# never reach guest code. The body reaches it whole, so its framing headers go too.
DROP_REQUEST_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",
        FORWARDED_HEADER,  # the hop between two nodes (server/forward.py)
    }
    | CALLER_HEADERS  # only the host names a caller (object calls: core/calls.py)
)
MAX_PAGE = 1000


@dataclass(slots=True)
class _Labels:
    """Who and what a request was about, for its metrics (filled while routing)."""

    tenant: str = ""
    class_name: str = ""
    forwarded: bool = False  # came from another node (already counted and rate-checked there)
    relayed: bool = False  # answered by another node (it named itself)


class Api:
    """The request handler given to `serve_http`."""

    def __init__(self, state: ServerState, node: NodeContext | None = None) -> None:
        self.state = state
        self.host = state.host
        self.node = node

    async def handle(self, req: HttpRequest) -> HttpResponse:
        labels = _Labels()
        resp = await self._handle(req, labels)
        if self.node is not None:
            if labels.relayed:
                resp.headers.append((VIA_HEADER, self.node.name))
            else:
                self.node.tag(resp)
        return resp

    async def handle_forwarded(self, req: HttpRequest) -> HttpResponse:
        """The handler of this node's Unix socket: requests other nodes forwarded (and
        the nodes' own routes, which only exist there)."""
        assert self.node is not None
        labels = _Labels(forwarded=True)
        if req.path.startswith("/_node/"):
            try:
                if self.state.stale():
                    await self.state.sync()
                resp = await node_routes.handle(self.state, self.node, req)
            except DohostError as e:
                resp = error_response(e)
        else:
            resp = await self._handle(req, labels)
        return self.node.tag(resp)

    async def _handle(self, req: HttpRequest, labels: _Labels) -> HttpResponse:
        try:
            if self.state.stale():
                await self.state.sync()
            resp = await self._route(req, labels)
            error = None
        except DohostError as e:
            resp = error_response(e)
            error = e.code.code
        except Exception:
            log.exception("API handler failed on %s %s", req.method, req.path[:200])
            internal = DohostError(Code.INTERNAL, "internal error; the server log has the details")
            resp = error_response(internal)
            error = internal.code.code
        if not labels.forwarded:
            self.state.metrics.request(labels.tenant, labels.class_name, resp.status, error)
        return resp

    # ---------------------------------------------------------------- routing

    async def _route(self, req: HttpRequest, labels: _Labels) -> HttpResponse:
        path = req.path
        if path.startswith("/v1/classes/"):
            if "access_token=" in req.query and _is_object_traffic(path):
                req.query = self._query_token(req)
            principal = self._tenant(req, labels)
            assert principal.tenant is not None
            if principal.scope is not None:
                api_tokens.check_class_route(principal.scope, req)
            return await self._classes(req, principal.tenant, path, labels)
        if path == "/v1/openapi.json":  # open, like /healthz: it describes, it reveals nothing
            if req.method not in ("GET", "HEAD"):
                raise MethodNotAllowed(req.method, "GET, HEAD")
            return HttpResponse(200, [("content-type", JSON_TYPE)], openapi.spec_bytes())
        if path == "/healthz":
            if req.method not in ("GET", "HEAD"):
                raise MethodNotAllowed(req.method, "GET, HEAD")
            return json_response(200, {"status": "ok"})
        if path == "/v1/cluster":  # `dohost cluster status` (server/cluster.py)
            self._admin(req)
            if req.method not in ("GET", "HEAD"):
                raise MethodNotAllowed(req.method, "GET, HEAD")
            status = getattr(self.node, "cluster_status", None)
            if status is None:
                raise DohostError(
                    Code.NOT_FOUND, "this server is not a cluster node (serve --cluster)"
                )
            return json_response(200, status())
        if path == "/metrics":
            self._admin(req)
            if req.method not in ("GET", "HEAD"):
                raise MethodNotAllowed(req.method, "GET, HEAD")
            body = self.state.metrics.render()
            if self.node is not None and not labels.forwarded:
                body = merge_metrics(self.node, body, await self.node.peer_metrics())
            return HttpResponse(200, [("content-type", METRICS_TYPE)], body)
        if path == "/v1/classes":
            principal = self._tenant(req, labels)
            assert principal.tenant is not None
            if req.method != "GET":
                raise MethodNotAllowed(req.method, "GET")
            if principal.scope is not None:
                principal.scope.check(None, False, req.method)
            return self._list_classes(principal.tenant, principal.scope)
        if path == "/v1/tokens" or path.startswith("/v1/tokens/"):
            principal = self._tenant(req, labels)
            resp = api_tokens.handle(self.state.tenancy, req, principal, int(self.host.wall_ms()))
            if req.method != "GET":
                self.state.changed()  # a token minted, rotated or revoked
            return resp
        if path == "/v1/tenants" or path.startswith("/v1/tenants/"):
            self._admin(req)
            return await api_admin.handle(self.state, req, path[len("/v1/tenants") :])
        if path in api_dev.ROUTES:
            principal = self._tenant(req, labels)
            assert principal.tenant is not None
            return await api_dev.handle(self.state, req, principal, path)
        if path.startswith("/v1/") or path == "/v1":
            # Unknown v1 routes still need a valid token, so they reveal nothing.
            self._principal(req)
        if not path.startswith("/"):
            raise DohostError(Code.BAD_REQUEST, "the request target must be a path")
        raise not_found(path)

    def _principal(self, req: HttpRequest) -> Principal:
        return self.state.tenancy.authenticate(req.header("authorization"))

    def _query_token(self, req: HttpRequest) -> str:
        """A browser can send no Authorization header with a page load or a WebSocket
        handshake, so object traffic also takes the tenant token as an `access_token`
        query parameter (RFC 6750, 2.3) when the request has no Authorization header.
        Returns the query without it: the object never sees the token. Anything but one
        well-formed parameter is refused rather than guessed at."""
        kept: list[str] = []
        found: list[str] = []
        for part in req.query.split("&"):
            name, eq, value = part.partition("=")
            if name == "access_token" and eq:
                try:
                    found.append(urllib.parse.unquote(value, errors="strict"))
                except UnicodeDecodeError:
                    raise DohostError(Code.UNAUTHORIZED, "malformed access_token") from None
            else:
                kept.append(part)
        if req.header("authorization") is not None:
            raise DohostError(
                Code.UNAUTHORIZED,
                "send the token either in the Authorization header or as access_token, not both",
            )
        if len(found) != 1 or not found[0]:
            raise DohostError(Code.UNAUTHORIZED, "give exactly one non-empty access_token")
        req.headers = [*req.headers, ("authorization", "Bearer " + found[0])]
        return "&".join(kept)

    def _admin(self, req: HttpRequest) -> None:
        if not self._principal(req).admin:
            raise DohostError(Code.UNAUTHORIZED, "this route needs the admin token")

    def _tenant(self, req: HttpRequest, labels: _Labels) -> Principal:
        principal = self._principal(req)
        if principal.tenant is None:
            raise DohostError(
                Code.UNAUTHORIZED,
                "this route needs a tenant token (the admin token is not a tenant's)",
            )
        labels.tenant = principal.tenant
        if not labels.forwarded:
            self.state.quotas.check_rate(principal.tenant, trio.current_time())
        return principal

    async def _classes(
        self, req: HttpRequest, tenant: str, path: str, labels: _Labels
    ) -> HttpResponse:
        # ['', 'v1', 'classes', class, kind, object, rest]
        parts = path.split("/", 6)
        class_name = parts[3]
        labels.class_name = class_name
        method = req.method
        n = len(parts)
        if n == 4:
            if method == "PUT":
                return await self._deploy(req, tenant, class_name)
            if method == "GET":
                return self._class_info(tenant, class_name)
            if method == "DELETE":
                try:
                    return await api_classes.delete(self.state, tenant, class_name)
                finally:
                    self.state.changed()
            raise MethodNotAllowed(method, "GET, PUT, DELETE")
        kind = parts[4]
        if n == 5 and kind in api_classes.KINDS:
            try:
                return await api_classes.handle(self.state, req, tenant, class_name, kind)
            finally:
                if method != "GET":
                    self.state.changed()  # a rollback or a rename
        if kind == "objects":
            if n == 5:
                if method != "GET":
                    raise MethodNotAllowed(method, "GET")
                return await self._list_objects(req, tenant, class_name)
            # The class and the id are resolved once here, for the whole request.
            ref = self.host.resolve(tenant, class_name, _object_name(parts[5]))
        elif kind == "ids":
            if n == 5:
                if method != "POST":
                    raise MethodNotAllowed(method, "POST")
                new = self.host.new_unique_id(tenant, class_name)
                return json_response(200, {"id": new.hex})
            ref = self.host.resolve_id_text(tenant, class_name, parts[5])
        else:
            self.host.class_info(tenant, class_name)  # an unknown class is 404 first
            raise not_found(path)
        oid = ref.oid
        if n == 6 and method == "GET":
            return json_response(200, {"class": class_name, "id": oid.hex, "name": oid.name})
        if self.node is not None and not self.node.owns(oid.raw):
            # Another node owns the object: it serves every request that touches it.
            if labels.forwarded:
                raise DohostError(
                    Code.NOT_OWNER,
                    f"node {self.node.name} does not own this object (sent here by mistake)",
                )
            labels.relayed = True
            if handshake_key(req.headers, req.method) is not None and not req.body:
                return await self.node.forward_upgrade(req, oid.raw)
            return await self.node.forward(req, oid.raw)
        if n == 6:
            if method == "DELETE":
                return await self._delete_object(tenant, class_name, oid)
            raise MethodNotAllowed(method, "GET, DELETE")
        rest = parts[6]
        if rest == "storage" and method == "GET":
            return await self._storage(req, tenant, class_name, oid)
        if rest == "storage/sql" and method == "POST":
            return await api_dev.sql(self.state, req, tenant, class_name, oid)
        if rest == "storage/restore" and method == "POST":
            return await self._restore(req, tenant, class_name, oid)
        return await self._fetch(req, ref, "/" + rest)

    # ---------------------------------------------------------------- object traffic

    async def _fetch(self, req: HttpRequest, ref: ObjectRef, path: str) -> HttpResponse:
        headers = [(k, v) for k, v in req.headers if k not in DROP_REQUEST_HEADERS]
        connection = req.header("connection")
        if connection is not None and connection.lower() not in ("keep-alive", "close"):
            # Headers named in Connection are hop-by-hop too (RFC 9110, 7.6.1).
            named = {t.strip().lower() for t in connection.split(",")}
            headers = [(k, v) for k, v in headers if k not in named]
        ws_key = handshake_key(req.headers, req.method) if not req.body else None
        if ws_key is not None:
            headers.append(("upgrade", "websocket"))  # the object sees what was asked
        request = Request(req.method, path, req.query, headers, req.body)
        usage = self.state.usage.get(ref.tenant)
        key = (ref.class_name, ref.oid.raw)
        usage.admit(key)
        try:
            if ws_key is None:
                resp = await self.host.fetch_object(ref, request)
            else:
                got = await self.host.fetch_upgrade(ref, request, ws_key)
                if not isinstance(got, Response):
                    return UpgradeResponse(
                        101,
                        [
                            ("Upgrade", "websocket"),
                            ("Connection", "Upgrade"),
                            ("Sec-WebSocket-Accept", accept_token(ws_key)),
                        ],
                        on_upgrade=got.serve,
                        on_abandon=got.abandon,
                    )
                resp = got
        finally:
            usage.release(key)
        if resp.status < 200:
            # The ABI lets a response carry 100-599 (a call's caller may see any), but a
            # 1xx cannot end an HTTP exchange: the HTTP layer would take it for a handler
            # bug (a logged 500 `internal`). Found by tests/reliability/test_fuzz_codec.py.
            raise DohostError(
                Code.OBJECT_ERROR,
                f"the object answered status {resp.status}; an HTTP response needs 200-599",
            )
        # A guest must not pass itself off as a host error.
        out = [(k, v) for k, v in resp.headers if k.lower() != ERROR_HEADER]
        return HttpResponse(resp.status, out, resp.body)

    async def _delete_object(self, tenant: str, class_name: str, oid: ObjectId) -> HttpResponse:
        usage = self.state.usage.get(tenant)
        usage.learn((class_name, oid.raw))  # its size, before it is gone
        await self.host.delete_object(tenant, class_name, oid)
        usage.forget((class_name, oid.raw))
        return json_response(200, {"class": class_name, "id": oid.hex, "deleted": True})

    async def _restore(
        self, req: HttpRequest, tenant: str, class_name: str, oid: ObjectId
    ) -> HttpResponse:
        """`POST …/storage/restore` {"at", "from" | "from_id"}: this object's state at a
        time, or (fork) another object's, from the replica (server/object_restore.py)."""
        body = json_body(req.body)
        unknown = sorted(set(body) - {"at", "from", "from_id"})
        if unknown:
            raise DohostError(
                Code.BAD_REQUEST, f"unknown field {unknown[0][:64]!r}: use at, from, from_id"
            )
        at = body.get("at")
        if isinstance(at, bool) or not isinstance(at, int | str):
            raise DohostError(
                Code.BAD_REQUEST,
                '"at" is required: milliseconds since 1970, or an ISO 8601 time with its zone',
            )
        at_ms = at if isinstance(at, int) else parse_time_ms(at, '"at"')
        if at_ms < 0:
            raise DohostError(Code.INVALID_ARGUMENT, '"at" must be >= 0')
        source: str | ObjectId | None = None
        if "from" in body and "from_id" in body:
            raise DohostError(Code.BAD_REQUEST, 'give "from" (a name) or "from_id", not both')
        if "from" in body:
            if not isinstance(body["from"], str):
                raise DohostError(Code.BAD_REQUEST, '"from" is an object name (a string)')
            source = body["from"]
        elif "from_id" in body:
            if not isinstance(body["from_id"], str):
                raise DohostError(Code.BAD_REQUEST, '"from_id" is an object id (64 hex)')
            source = self.host.id_from_string(tenant, class_name, body["from_id"])
        done = await self.host.restore_object(tenant, class_name, oid, at_ms, source=source)
        return json_response(200, done.to_json())

    async def _storage(
        self, req: HttpRequest, tenant: str, class_name: str, oid: ObjectId
    ) -> HttpResponse:
        params = query_params(req.query)
        limit = int_param(params, "limit", 100, 1, MAX_PAGE)
        start = b64url_param(params, "cursor")
        prefix = b64url_param(params, "prefix") or b""
        backend = self.host.class_info(tenant, class_name).storage
        opts = ListOptions(prefix=prefix, start=start, limit=limit + 1)
        result = await trio.to_thread.run_sync(
            self.host.storage.object_entries, tenant, class_name, oid.raw, backend, opts
        )
        entries = result.entries
        nxt: str | None = None
        if len(entries) > limit:
            nxt = b64url(entries[limit][0])
            entries = entries[:limit]
        elif result.more and entries:
            nxt = b64url(entries[-1][0] + b"\x00")  # the next key after the last
        return json_response(
            200,
            {
                "class": class_name,
                "id": oid.hex,
                "entries": [{"key": b64(k), "value": b64(v)} for k, v in entries],
                "next": nxt,
            },
        )

    # ---------------------------------------------------------------- classes

    async def _deploy(self, req: HttpRequest, tenant: str, class_name: str) -> HttpResponse:
        params = query_params(req.query)
        storage = params.get("storage", "kv")
        limit = self.state.quotas.get(tenant).module_bytes
        if len(req.body) > limit:
            raise DohostError(
                Code.MODULE_TOO_LARGE,
                f"the module is {len(req.body)} bytes; this tenant's limit is {limit}",
            )
        update, max_delay_s = api_classes.deploy_options(req)
        try:
            before: int | None = self.host.class_info(tenant, class_name).version
        except DohostError:
            before = None
        info = await self.host.deploy(
            tenant, class_name, req.body, storage, update=update, max_delay_s=max_delay_s
        )
        if info.version != before:
            self.state.changed()
        return json_response(
            201 if info.version != before else 200,
            {
                "class": info.name,
                "version": info.version,
                "sha256": info.sha256,
                "storage": info.storage,
                "size": len(req.body),
            },
        )

    def _class_info(self, tenant: str, class_name: str) -> HttpResponse:
        return json_response(200, api_classes.class_json(self.state, tenant, class_name))

    def _list_classes(self, tenant: str, scope: Scope | None) -> HttpResponse:
        names = [c.row.name for c in self.host.classes.list(tenant)]
        if scope is not None:
            names = [n for n in names if scope.sees_class(n)]
        return json_response(
            200, {"classes": [api_classes.class_json(self.state, tenant, n) for n in names]}
        )

    async def _list_objects(self, req: HttpRequest, tenant: str, class_name: str) -> HttpResponse:
        params = query_params(req.query)
        limit = int_param(params, "limit", 100, 1, MAX_PAGE)
        after_hex = params.get("after") or None
        after: bytes | None = None
        if after_hex is not None:
            try:
                after = bytes.fromhex(after_hex)
            except ValueError:
                raise DohostError(Code.INVALID_ARGUMENT, "after must be an object id") from None
        backend = self.host.class_info(tenant, class_name).storage

        def page() -> ObjectPage:
            return self.host.storage.list_objects(
                tenant, class_name, backend, after=after, limit=limit
            )

        result = await trio.to_thread.run_sync(page)
        return json_response(
            200,
            {
                "class": class_name,
                "objects": [
                    {
                        "id": o.object_id.hex(),
                        "name": o.name,
                        "bytes": o.bytes,
                        "created_ms": o.created_ms,
                    }
                    for o in result.objects
                ],
                "next": result.next_after.hex() if result.next_after is not None else None,
            },
        )


def _is_object_traffic(path: str) -> bool:
    """/v1/classes/{class}/objects/{name}/... or /v1/classes/{class}/ids/{id}/...: a
    request for the object itself (where `access_token` is taken)."""
    parts = path.split("/", 6)
    return len(parts) == 7 and parts[4] in ("objects", "ids")


def _object_name(segment: str) -> str:
    name = decode_segment(segment, "object name")
    if not name:
        raise DohostError(Code.INVALID_NAME, "the object name is empty")
    return name

"""The OpenAPI 3.1 description of HTTP API v1, served at `GET /v1/openapi.json`.

Written as data beside the router (docs/http-api.md is the prose). It is kept true by
tests/server/test_openapi.py, which probes every route shape the router could serve with
every method, requires each one it serves to be described here, and validates the real
responses against these schemas.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object schema with these required (and optional) properties; more may appear
    in later versions (additionalProperties stays open)."""
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
    }


INT = {"type": "integer"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
NUM = {"type": "number"}
NULL_INT = {"type": ["integer", "null"]}
NULL_STR = {"type": ["string", "null"]}
NULL_NUM = {"type": ["number", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": obj({"error": obj({"code": STR, "message": STR})}),
    "Health": obj({"status": {"const": "ok"}}),
    "Tenant": obj(
        {
            "name": STR,
            "created_ms": INT,
            "classes": {"type": "array", "items": STR},
            "quotas": {"type": "object"},
            "overrides": {"type": "object"},
            "usage": obj({"storage_bytes": INT, "objects": INT}),
        }
    ),
    "TenantCreated": {"allOf": [ref("Tenant"), obj({"token": STR})]},
    "TenantList": obj({"tenants": {"type": "array", "items": ref("Tenant")}}),
    "TenantToken": obj({"name": STR, "token": STR}),
    "TenantDeleted": obj({"name": STR, "deleted": {"const": True}}),
    "Class": obj(
        {
            "class": STR,
            "version": INT,
            "sha256": STR,
            "storage": {"enum": ["kv", "sqlite"]},
            "size": NULL_INT,
            "created_ms": INT,
            "updated_ms": INT,
            "update": {"enum": ["immediate", "deferred"]},
            "deferred_until_ms": NULL_NUM,
        }
    ),
    "ClassList": obj({"classes": {"type": "array", "items": ref("Class")}}),
    "Deployed": obj(
        {
            "class": STR,
            "version": INT,
            "sha256": STR,
            "storage": {"enum": ["kv", "sqlite"]},
            "size": INT,
        }
    ),
    "Versions": obj(
        {
            "class": STR,
            "current": INT,
            "versions": {
                "type": "array",
                "items": obj({"version": INT, "sha256": STR, "created_ms": INT}),
            },
        }
    ),
    "RolledBack": {"allOf": [ref("Class"), obj({"rolled_back_to": INT})]},
    "Renamed": {"allOf": [ref("Class"), obj({"renamed_from": STR})]},
    "ClassDeleted": obj({"class": STR, "deleted": {"const": True}, "objects": INT}),
    "ObjectList": obj(
        {
            "class": STR,
            "objects": {
                "type": "array",
                "items": obj({"id": STR, "name": NULL_STR, "bytes": INT, "created_ms": NULL_INT}),
            },
            "next": NULL_STR,
        }
    ),
    "NewId": obj({"id": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}),
    "ObjectRef": obj({"class": STR, "id": STR, "name": NULL_STR}),
    "Restored": obj(
        {
            "class": STR,
            "id": STR,
            "name": NULL_STR,
            "source": STR,
            "at_ms": INT,
            "keys": INT,
            "alarm": NULL_INT,
            "fork": BOOL,
        }
    ),
    "ObjectDeleted": obj({"class": STR, "id": STR, "deleted": {"const": True}}),
    "SqlResult": obj(
        {
            "class": STR,
            "id": STR,
            "columns": {"type": "array", "items": STR},
            "rows": {"type": "array", "items": {"type": "array"}},
            "truncated": BOOL,
        }
    ),
    "Alarms": obj(
        {
            "alarms": {
                "type": "array",
                "items": obj(
                    {
                        "class": STR,
                        "id": STR,
                        "name": NULL_STR,
                        "due_ms": INT,
                        "retry_count": INT,
                    }
                ),
            }
        }
    ),
    "StoragePage": obj(
        {
            "class": STR,
            "id": STR,
            "entries": {
                "type": "array",
                "items": obj({"key": STR, "value": STR}),
            },
            "next": NULL_STR,
        }
    ),
    "Token": obj(
        {
            "id": STR,
            "created_ms": INT,
            "classes": {"type": ["array", "null"], "items": STR},
            "objects_only": BOOL,
            "read_only": BOOL,
            "expires_ms": NULL_INT,
            "label": STR,
        }
    ),
    "TokenCreated": {"allOf": [ref("Token"), obj({"token": STR})]},
    "TokenList": obj({"tokens": {"type": "array", "items": ref("Token")}}),
    "TokenRevoked": obj({"id": STR, "revoked": {"const": True}}),
    "TokenRequest": obj(
        {},
        {
            "classes": {"type": "array", "items": STR, "minItems": 1, "maxItems": 64},
            "objects_only": BOOL,
            "read_only": BOOL,
            "expires_ms": INT,
            "expires_in_s": NUM,
            "label": STR,
        },
    ),
    "Quotas": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
}


def _json_response(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ref(schema)}}}


ERROR_RESPONSE = {
    "description": "An error the host made (also named in the x-dohost-error header)",
    "content": {JSON: {"schema": ref("Error")}},
}


def op(
    summary: str,
    ok: dict[str, Any],
    *,
    status: str = "200",
    security: str | None = "tenant",
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "summary": summary,
        "responses": {status: ok, "default": ERROR_RESPONSE},
    }
    out["security"] = [] if security is None else [{security: []}]
    if params:
        out["parameters"] = params
    if body is not None:
        out["requestBody"] = body
    return out


def path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": STR, "description": description}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


CLASS = path_param("class", "Class name: [a-z0-9][a-z0-9_-]{0,62}")
NAME = path_param("name", "Object name (percent-encoded UTF-8, 1-1024 bytes)")
ID = path_param("id", "Object id (64 hex characters)")
TENANT = path_param("tenant", "Tenant name")
TOKEN_ID = path_param("token_id", "Scoped token id (tok_...)")
PAGE = [
    query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size (default 100)"),
]
UPDATE = [
    query("update", {"enum": ["immediate", "deferred"]}, "How live objects get the version"),
    query("max_delay_s", {"type": "number", "minimum": 0}, "Deferred: the longest wait"),
]
ANY_RESPONSE = {
    "description": "Whatever the object answered (any status, headers and body)",
    "content": {"*/*": {"schema": {}}},
}
GUEST_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _object_routes(kind: str, param: dict[str, Any]) -> dict[str, Any]:
    base = f"/v1/classes/{{class}}/{kind}/{{{param['name']}}}"
    params = [CLASS, param]
    fetch = {
        m: {
            "summary": "The object's fetch event (or a WebSocket upgrade with GET)",
            "description": "`path` is the rest of the request path, `/` included: it may hold more segments.",
            "parameters": [*params, path_param("path", "Path inside the object")],
            "security": [{"tenant": []}, {"access_token": []}],
            "responses": {"default": ANY_RESPONSE},
        }
        for m in GUEST_METHODS
    }
    return {
        base: {
            "get": op(
                "The object's id and name", _json_response("ObjectRef", "The object"), params=params
            ),
            "delete": op(
                "Delete the object's storage",
                _json_response("ObjectDeleted", "Deleted"),
                params=params,
            ),
        },
        base + "/storage": {
            "get": op(
                "The object's committed keys and values (GET only; other methods reach the object)",
                _json_response("StoragePage", "One page"),
                params=[
                    *params,
                    *PAGE,
                    query("cursor", STR, "`next` of the previous page"),
                    query("prefix", STR, "Key prefix, URL-safe base64"),
                ],
            ),
        },
        base + "/storage/sql": {
            "post": op(
                "A read-only SQL query on a sqlite-backed object (POST only)",
                _json_response("SqlResult", "The rows (at most 1,000)"),
                params=params,
                body=json_body(obj({"sql": STR}, {"params": {"type": "array"}})),
            ),
        },
        base + "/storage/restore": {
            "post": op(
                "Restore the object's state at a time from the server's replica; with "
                "`from`/`from_id`, fork another object's state at that time into this new "
                "or empty object (POST only; kv-backed classes)",
                _json_response("Restored", "Restored: the object now holds that state"),
                params=params,
                body=json_body(
                    obj(
                        {"at": {"type": ["integer", "string"]}},
                        {"from": STR, "from_id": STR},
                    )
                ),
            ),
        },
        base + "/{path}": fetch,
    }


def _paths() -> dict[str, Any]:
    admin = "admin"
    paths: dict[str, Any] = {
        "/healthz": {
            "get": op("Liveness", _json_response("Health", "Alive"), security=None),
            "head": op("Liveness", {"description": "Alive"}, security=None),
        },
        "/metrics": {
            "get": op(
                "Prometheus metrics",
                {"description": "Metrics", "content": {"text/plain": {"schema": STR}}},
                security=admin,
            ),
            "head": op("Prometheus metrics", {"description": "Metrics"}, security=admin),
        },
        "/v1/openapi.json": {
            "get": op(
                "This description",
                {"description": "OpenAPI 3.1", "content": {JSON: {"schema": {"type": "object"}}}},
                security=None,
            ),
            "head": op("This description", {"description": "OpenAPI 3.1"}, security=None),
        },
        "/v1/tenants": {
            "get": op("List tenants", _json_response("TenantList", "Tenants"), security=admin),
            "post": op(
                "Create a tenant (its token is shown only here)",
                _json_response("TenantCreated", "Created"),
                status="201",
                security=admin,
                body=json_body(obj({"name": STR}, {"quotas": ref("Quotas")})),
            ),
        },
        "/v1/tenants/{tenant}": {
            "get": op(
                "A tenant", _json_response("Tenant", "The tenant"), security=admin, params=[TENANT]
            ),
            "patch": op(
                "Change quotas (null: back to the default)",
                _json_response("Tenant", "The tenant"),
                security=admin,
                params=[TENANT],
                body=json_body(obj({"quotas": ref("Quotas")})),
            ),
            "delete": op(
                "Delete a tenant and all its data",
                _json_response("TenantDeleted", "Deleted"),
                security=admin,
                params=[TENANT],
            ),
        },
        "/v1/tenants/{tenant}/token": {
            "post": op(
                "A new tenant token (the old one stops working)",
                _json_response("TenantToken", "The new token"),
                security=admin,
                params=[TENANT],
            ),
        },
        "/v1/tokens": {
            "get": op("List scoped tokens", _json_response("TokenList", "Tokens")),
            "post": op(
                "Mint a scoped token (its secret is shown only here)",
                _json_response("TokenCreated", "Created"),
                status="201",
                body=json_body(ref("TokenRequest")),
            ),
        },
        "/v1/tokens/{token_id}": {
            "get": op("A scoped token", _json_response("Token", "The token"), params=[TOKEN_ID]),
            "delete": op(
                "Revoke a scoped token",
                _json_response("TokenRevoked", "Revoked"),
                params=[TOKEN_ID],
            ),
        },
        "/v1/tokens/{token_id}/rotate": {
            "post": op(
                "A new secret for a scoped token (same id and scope)",
                _json_response("TokenCreated", "The new secret"),
                params=[TOKEN_ID],
            ),
        },
        "/v1/classes": {
            "get": op("List classes", _json_response("ClassList", "Classes")),
        },
        "/v1/alarms": {
            "get": op(
                "The tenant's pending alarms, earliest first",
                _json_response("Alarms", "Pending alarms"),
                params=[query("class", STR, "Only this class")],
            ),
        },
        "/v1/tail": {
            "get": op(
                "A live stream of the tenant's events and guest log lines",
                {
                    "description": "One JSON record per line; an empty line every 15 s",
                    "content": {"application/x-ndjson": {"schema": {}}},
                },
                params=[
                    query("class", STR, "Only this class"),
                    query("object", STR, "Only this object (name or id)"),
                    query("status", STR, "ok, error, or one HTTP status"),
                    query("logs", {"enum": ["0", "1"]}, "0: events only"),
                ],
            ),
        },
        "/v1/classes/{class}": {
            "get": op("A class", _json_response("Class", "The class"), params=[CLASS]),
            "put": {
                **op(
                    "Deploy the next version",
                    _json_response("Deployed", "Deployed"),
                    status="201",
                    params=[
                        CLASS,
                        query(
                            "storage", {"enum": ["kv", "sqlite"]}, "Storage backend (first deploy)"
                        ),
                        *UPDATE,
                    ],
                    body={"required": True, "content": {"application/wasm": {"schema": {}}}},
                ),
            },
            "delete": op(
                "Delete the class, its objects' storage and alarms",
                _json_response("ClassDeleted", "Deleted"),
                params=[CLASS],
            ),
        },
        "/v1/classes/{class}/versions": {
            "get": op("Recorded versions", _json_response("Versions", "Versions"), params=[CLASS]),
        },
        "/v1/classes/{class}/rollback": {
            "post": op(
                "Deploy an earlier version's module as the next version",
                _json_response("RolledBack", "Rolled back"),
                status="201",
                params=[CLASS],
                body=json_body(
                    obj(
                        {"version": INT},
                        {"update": {"enum": ["immediate", "deferred"]}, "max_delay_s": NUM},
                    )
                ),
            ),
        },
        "/v1/classes/{class}/rename": {
            "post": op(
                "Rename the class, keeping its objects and ids",
                _json_response("Renamed", "Renamed"),
                params=[CLASS],
                body=json_body(obj({"to": STR})),
            ),
        },
        "/v1/classes/{class}/objects": {
            "get": op(
                "Objects that stored something",
                _json_response("ObjectList", "One page"),
                params=[CLASS, *PAGE, query("after", STR, "`next` of the previous page")],
            ),
        },
        "/v1/classes/{class}/ids": {
            "post": op("A new unique id", _json_response("NewId", "The id"), params=[CLASS]),
        },
    }
    paths.update(_object_routes("objects", NAME))
    paths.update(_object_routes("ids", ID))
    return paths


@cache
def spec() -> dict[str, Any]:
    try:
        from importlib.metadata import version

        host_version = version("dohost")
    except Exception:  # not installed as a distribution (a bare checkout)
        host_version = "unknown"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dohost HTTP API",
            "version": f"1 (dohost {host_version})",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
            "description": "Durable objects compiled to WebAssembly. Prose: docs/http-api.md.",
        },
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "tenant": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A tenant or scoped token",
                },
                "admin": {"type": "http", "scheme": "bearer", "description": "The admin token"},
                "access_token": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "access_token",
                    "description": "Object routes only, for browsers",
                },
            },
        },
    }


@cache
def spec_bytes() -> bytes:
    return json.dumps(spec(), separators=(",", ":")).encode() + b"\n"

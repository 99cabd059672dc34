"""The OpenAPI description (GET /v1/openapi.json, server/openapi.py) is kept true: every
route shape the router could serve is probed with every method; each one it serves must
be described, each described operation must be served, and every real response (the
successes and the errors) must validate against the described schema."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import ADMIN_TOKEN, http_request, json_of

from dohost import Host
from dohost.replica.store import open_replica_store
from dohost.server.api import Api
from dohost.server.http_types import HttpResponse
from dohost.server.quotas import Quotas
from dohost.server.state import ServerState

ROOT = Path(__file__).resolve().parents[2]
COUNTER = (ROOT / "samples" / "counter" / "counter.wasm").read_bytes()
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

# Every path shape the router distinguishes, with neighbours it must refuse. {t}, {tok},
# {id} are filled per probe; "counter" is a deployed class, "o" an object that stored.
SHAPES = [
    "/healthz", "/metrics", "/v1", "/v1/nope", "/v1/openapi.json", "/nope",
    "/v1/tenants", "/v1/tenants/{t}", "/v1/tenants/{t}/token", "/v1/tenants/{t}/nope",
    "/v1/tokens", "/v1/tokens/{tok}", "/v1/tokens/{tok}/rotate", "/v1/tokens/{tok}/nope",
    "/v1/classes", "/v1/classes/counter", "/v1/classes/counter/versions",
    "/v1/classes/counter/rollback", "/v1/classes/counter/rename",
    "/v1/classes/counter/objects", "/v1/classes/counter/ids", "/v1/classes/counter/nope",
    "/v1/classes/counter/objects/o", "/v1/classes/counter/objects/o/storage",
    "/v1/classes/counter/objects/o/incr", "/v1/classes/counter/objects/o/a/b",
    "/v1/classes/counter/ids/{id}", "/v1/classes/counter/ids/{id}/storage",
    "/v1/classes/counter/ids/{id}/incr", "/v1/classes/counter/objects/o/storage/sql",
    "/v1/classes/counter/ids/{id}/storage/sql", "/v1/alarms", "/v1/tail",
    "/v1/classes/counter/objects/o/storage/restore",
    "/v1/classes/counter/ids/{id}/storage/restore",
]  # fmt: skip


def body_for(method: str, shape: str, n: int) -> bytes:
    """A plausible request body, so that operations answer their success responses."""
    if shape == "/v1/classes/counter" and method == "PUT":
        return COUNTER + b"\0\x07\x06custom"  # a new version
    bodies = {
        ("POST", "/v1/tenants"): {"name": f"new-{n}"},
        ("PATCH", "/v1/tenants/{t}"): {"quotas": {"objects": 50}},
        ("POST", "/v1/tokens"): {"classes": ["counter"], "expires_in_s": 60},
        ("POST", "/v1/classes/counter/rollback"): {"version": 1},
        ("POST", "/v1/classes/counter/rename"): {"to": f"renamed-{n}"},
        ("POST", "/v1/classes/counter/objects/o/storage/sql"): {"sql": "SELECT 1 AS one"},
        ("POST", "/v1/classes/counter/ids/{id}/storage/sql"): {"sql": "SELECT 1 AS one"},
    }
    if shape.endswith("/storage/restore"):
        bodies[(method, shape)] = {"at": int(time.time() * 1000)}  # after "o" stored
    found = bodies.get((method, shape))
    return json.dumps(found).encode() if found is not None else b""


class Env:
    """A fresh tenant per probe (probes delete, rename and rotate things)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.n = 0

    async def call(self, method: str, target: str, token: str, body: bytes = b"") -> HttpResponse:
        return await self.api.handle(http_request(method, target, token=token, body=body))

    async def probe(self, method: str, shape: str) -> tuple[str, HttpResponse]:
        self.n += 1
        t = f"t{self.n}"
        made = json_of(
            await self.call("POST", "/v1/tenants", ADMIN_TOKEN, json.dumps({"name": t}).encode())
        )
        token = made["token"]
        # The SQL inspection route answers only for a sqlite-backed class.
        storage = "sqlite" if shape.endswith("/storage/sql") else "kv"
        deploy = await self.call("PUT", f"/v1/classes/counter?storage={storage}", token, COUNTER)
        assert deploy.status == 201
        assert (await self.call("POST", "/v1/classes/counter/objects/o/incr", token)).status == 200
        oid = json_of(await self.call("GET", "/v1/classes/counter/objects/o", token))["id"]
        tok = json_of(await self.call("POST", "/v1/tokens", token, b"{}"))["id"]
        path = shape.replace("{t}", t).replace("{tok}", tok).replace("{id}", oid)
        use = ADMIN_TOKEN if shape.startswith(("/v1/tenants", "/metrics")) else token
        return path, await self.call(method, path, use, body_for(method, shape, self.n))


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    # With a replica store, so the restore route answers its success too.
    replica = open_replica_store(f"file://{tmp_path / 'replica'}")
    async with Host(tmp_path / "data", durability="os", workers=2, replica=replica) as host:
        yield Env(Api(await ServerState.attach(host, ADMIN_TOKEN, Quotas())))


def served(resp: HttpResponse) -> bool:
    """The router has a route here (whatever the outcome), as opposed to no such route
    (404 not_found) or no such method on it (405)."""
    # (An object's own 404 or 405 is served: only the host's error header says otherwise.)
    return dict(resp.headers).get("x-dohost-error") not in ("not_found", "method_not_allowed")


def templates(spec: dict[str, Any]) -> list[tuple[str, re.Pattern[str]]]:
    out = []
    for t in spec["paths"]:
        rx = re.escape(t).replace(r"\{path\}", ".+")
        rx = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", rx)
        out.append((t, re.compile(f"^{rx}$")))
    return out


def operation_for(
    spec: dict[str, Any], path: str, method: str
) -> tuple[str, dict[str, Any]] | None:
    """The described operation a request reaches: the most specific template (one
    without the catch-all {path}) that has the method."""
    matches = [
        t for t, rx in templates(spec) if rx.match(path) and method.lower() in spec["paths"][t]
    ]
    matches.sort(key=lambda t: ("{path}" in t, -len(t)))
    return (matches[0], spec["paths"][matches[0]][method.lower()]) if matches else None


async def test_every_served_route_is_described_and_every_response_validates(env: Env) -> None:
    jsonschema = pytest.importorskip("jsonschema")  # in the dev extras
    r = await env.call("GET", "/v1/openapi.json", "")
    assert r.status == 200
    spec = json.loads(r.body)
    assert spec["openapi"] == "3.1.0"
    jsonschema.Draft202012Validator.check_schema({"$defs": spec["components"]["schemas"]})

    def validate(schema: dict[str, Any], data: Any, where: str) -> None:
        root = {**schema, "components": spec["components"]}
        errors = list(jsonschema.Draft202012Validator(root).iter_errors(data))
        assert not errors, (where, errors[0].message, data)

    undescribed: list[str] = []
    reached: set[tuple[str, str]] = set()
    validated_ok: set[tuple[str, str]] = set()  # operations whose success was validated
    for shape in SHAPES:
        for method in METHODS:
            path, resp = await env.probe(method, shape)
            where = f"{method} {path} -> {resp.status}"
            headers = dict(resp.headers)
            if "x-dohost-error" in headers and method != "HEAD":
                validate({"$ref": "#/components/schemas/Error"}, json_of(resp), where)
            if not served(resp):
                continue
            found = operation_for(spec, path, method)
            if found is None:
                undescribed.append(where)
                continue
            template, operation = found
            reached.add((template, method.lower()))
            responses = operation["responses"]
            described = responses.get(str(resp.status)) or responses.get("default")
            assert described is not None, where
            content = described.get("content", {})
            if method != "HEAD" and headers.get("content-type") == "application/json":
                if "application/json" in content:
                    validate(content["application/json"]["schema"], json_of(resp), where)
                    if resp.status < 300:
                        validated_ok.add((template, method.lower()))
                else:
                    assert "*/*" in content, where  # an object's own answer
    assert undescribed == []
    described = {(t, m) for t, ops in spec["paths"].items() for m in ops}
    assert described - reached == set()  # nothing described that the router does not serve
    # Each operation that answers JSON had a real success validated, not only errors.
    json_ops = {
        (t, m)
        for t, ops in spec["paths"].items()
        for m, o in ops.items()
        if m != "head"
        and any(
            "application/json" in r.get("content", {})
            for k, r in o["responses"].items()
            if k != "default"
        )
    }
    assert json_ops - validated_ok == set()

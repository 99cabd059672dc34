"""Scoped tokens (docs/http-api.md, "Scoped tokens"), through the API handler over a real
Host with an injected wall clock: each limit (classes, object routes only, read-only,
expiry), used inside and outside its scope; rotation and revocation; bad mint requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import ADMIN_TOKEN, As, err, http_request, json_of

from dohost import Host
from dohost.server.api import Api
from dohost.server.quotas import Quotas
from dohost.server.state import ServerState

T0 = 1_800_000_000_000.0


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> float:
        return self.ms


@pytest.fixture
async def env(tmp_path: Path, wasm: Any) -> AsyncIterator[tuple[Api, As, Clock]]:
    clock = Clock()
    async with Host(tmp_path / "data", durability="os", workers=2, wall_clock_ms=clock) as host:
        api = Api(await ServerState.attach(host, ADMIN_TOKEN, Quotas()))
        admin = As(api, ADMIN_TOKEN)
        me = As(api, (await admin.ok("POST", "/v1/tenants", {"name": "acme"}))["token"])
        for cls in ("counter", "other"):
            await me.ok("PUT", f"/v1/classes/{cls}", wasm("counter"))
        yield api, me, clock


async def mint(me: As, **scope: Any) -> As:
    d = await me.ok("POST", "/v1/tokens", scope)
    assert d["id"].startswith("tok_") and len(d["token"]) >= 40
    return As(me.api, d["token"])


OBJ = "/v1/classes/counter/objects/room-1"


async def test_a_class_limited_token_sees_other_classes_as_absent(env: Any) -> None:
    _, me, _ = env
    t = await mint(me, classes=["counter"])
    assert (await t("POST", OBJ + "/incr")).body == b"1"
    assert (await t.ok("GET", "/v1/classes/counter"))["class"] == "counter"
    listed = await t.ok("GET", "/v1/classes")
    assert [c["class"] for c in listed["classes"]] == ["counter"]
    # Another class of the same tenant: the very answer a class that does not exist gets.
    for target in ("/v1/classes/other", "/v1/classes/other/objects/room-1/incr"):
        hidden, absent = await t("GET", target), await t("GET", target.replace("other", "nope"))
        assert err(hidden) == (404, "unknown_class")
        assert json_of(hidden)["error"]["message"] == json_of(absent)["error"]["message"].replace(
            "nope", "other"
        )
    # Not objects_only: it may deploy to its own class, and only there.
    assert (await t("PUT", "/v1/classes/counter", b"\0asm\x01\0\0\0")).status == 400
    assert err(await t("PUT", "/v1/classes/other", b"x")) == (404, "unknown_class")


async def test_an_objects_only_token_reaches_object_traffic_alone(env: Any) -> None:
    _, me, _ = env
    t = await mint(me, classes=["counter"], objects_only=True)
    assert (await t("POST", OBJ + "/incr")).body == b"1"
    assert (await t("GET", OBJ + "/")).body == b"1"
    forbidden = [
        ("GET", "/v1/classes"),
        ("GET", "/v1/classes/counter"),
        ("PUT", "/v1/classes/counter"),
        ("GET", "/v1/classes/counter/objects"),
        ("POST", "/v1/classes/counter/ids"),
        ("GET", OBJ),
        ("DELETE", OBJ),
        ("GET", OBJ + "/storage"),
        ("GET", "/v1/tokens"),
        ("POST", "/v1/tokens"),
    ]
    for method, target in forbidden:
        assert err(await t(method, target)) == (403, "forbidden"), (method, target)
    assert err(await t("GET", "/v1/tenants")) == (401, "unauthorized")  # never an admin
    assert (await me("GET", OBJ + "/")).body == b"1"  # the object was not touched


async def test_a_read_only_token_refuses_writes_and_websockets(env: Any) -> None:
    _, me, _ = env
    await me.ok("POST", OBJ + "/incr")
    t = await mint(me, read_only=True)
    assert (await t("GET", OBJ + "/")).body == b"1"
    assert (await t.ok("GET", OBJ + "/storage"))["entries"]
    for method, target in [("POST", OBJ + "/incr"), ("DELETE", OBJ), ("PUT", "/v1/classes/x")]:
        r = await t(method, target)
        assert err(r) == (403, "forbidden") and "read-only" in json_of(r)["error"]["message"]
    ws = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ]
    assert err(await t("GET", OBJ + "/ws", headers=ws)) == (403, "forbidden")
    assert (await me("GET", OBJ + "/")).body == b"1"


async def test_expiry_rotation_and_revocation(env: Any) -> None:
    api, me, clock = env
    d = await me.ok("POST", "/v1/tokens", {"expires_in_s": 60, "label": "ci"})
    t = As(api, d["token"])
    assert d["expires_ms"] == T0 + 60_000 and d["label"] == "ci"
    assert (await t("GET", OBJ + "/")).status == 200
    clock.ms = T0 + 60_000
    r = await t("GET", OBJ + "/")
    assert err(r) == (401, "unauthorized") and "expired" in json_of(r)["error"]["message"]

    d = await me.ok("POST", "/v1/tokens", {"classes": ["counter"], "read_only": True})
    old = As(api, d["token"])
    rotated = await me.ok("POST", f"/v1/tokens/{d['id']}/rotate")
    assert rotated["id"] == d["id"] and rotated["classes"] == ["counter"] and rotated["read_only"]
    assert err(await old("GET", OBJ + "/")) == (401, "unauthorized")
    new = As(api, rotated["token"])
    assert (await new("GET", OBJ + "/")).status == 200
    listed = (await me.ok("GET", "/v1/tokens"))["tokens"]
    assert {x["id"] for x in listed} >= {d["id"]} and all("token" not in x for x in listed)
    assert (await me.ok("DELETE", f"/v1/tokens/{d['id']}")) == {"id": d["id"], "revoked": True}
    r = await new("GET", OBJ + "/")
    assert err(r) == (401, "unauthorized") and json_of(r)["error"]["message"] == "unknown token"
    assert err(await me("DELETE", f"/v1/tokens/{d['id']}")) == (404, "not_found")


async def test_a_scoped_token_in_the_url_and_across_tenants(env: Any) -> None:
    api, me, _ = env
    admin = As(api, ADMIN_TOKEN)
    other = As(api, (await admin.ok("POST", "/v1/tenants", {"name": "beta"}))["token"])
    d = await me.ok("POST", "/v1/tokens", {"classes": ["counter"], "objects_only": True})
    r = await api.handle(http_request("POST", OBJ + "/incr?access_token=" + d["token"]))
    assert (r.status, r.body) == (200, b"1")
    # Another tenant can neither see nor revoke this tenant's token ids.
    assert err(await other("GET", f"/v1/tokens/{d['id']}")) == (404, "not_found")
    assert err(await other("DELETE", f"/v1/tokens/{d['id']}")) == (404, "not_found")
    # Deleting the tenant ends its scoped tokens.
    await admin.ok("DELETE", "/v1/tenants/acme")
    assert err(await As(api, d["token"])("GET", OBJ + "/")) == (401, "unauthorized")


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"clases": ["counter"]}, "clases"),
        ({"classes": "counter"}, "classes"),
        ({"classes": []}, "classes"),
        ({"classes": ["Bad Name"]}, "class name"),
        ({"read_only": "yes"}, "read_only"),
        ({"objects_only": 1}, "objects_only"),
        ({"expires_ms": int(T0) - 1}, "past"),
        ({"expires_ms": "soon"}, "expires_ms"),
        ({"expires_in_s": -5}, "expires_in_s"),
        ({"expires_in_s": 10, "expires_ms": int(T0) + 10}, "not both"),
        ({"expires_in_s": 20 * 365 * 86400}, "ten years"),
        ({"label": 7}, "label"),
    ],
)
async def test_bad_mint_requests_name_the_field(env: Any, body: Any, names: str) -> None:
    _, me, _ = env
    r = await me("POST", "/v1/tokens", body)
    assert err(r) == (400, "invalid_argument") or err(r) == (400, "invalid_name"), r.body
    assert names in json_of(r)["error"]["message"], r.body
    assert (await me.ok("GET", "/v1/tokens"))["tokens"] == []

"""The HTTP path resolves an object once per request: one class lookup, one id (a name
MACed through the class's cache, so a name seen before costs no HMAC), and the event
runs on the class version current when it starts, even if a deploy replaced the one the
request resolved."""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_helpers import ADMIN_TOKEN, http_request

from dohost import Host
from dohost.core.envelopes import Request
from dohost.core.errors import Code, DohostError
from dohost.server import class_registry
from dohost.server.api import Api
from dohost.server.class_registry import ClassRegistry
from dohost.server.quotas import Quotas
from dohost.server.state import ServerState


async def test_a_request_looks_its_class_up_once_and_derives_its_id_once(
    host: Host, wasm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = Api(await ServerState.attach(host, ADMIN_TOKEN, Quotas()))
    made = await api.handle(
        http_request("POST", "/v1/tenants", token=ADMIN_TOKEN, body=b'{"name": "acme"}')
    )
    token = json.loads(made.body)["token"]
    deploy = http_request("PUT", "/v1/classes/noop", token=token, body=wasm("noop"))
    assert (await api.handle(deploy)).status == 201

    lookups: list[tuple[str, str]] = []
    derived: list[str] = []
    real_get, real_derive = ClassRegistry.get, class_registry.id_from_name

    def counting_get(self: ClassRegistry, tenant: str, name: str) -> Any:
        lookups.append((tenant, name))
        return real_get(self, tenant, name)

    def counting_derive(key: bytes, name: str) -> Any:
        derived.append(name)
        return real_derive(key, name)

    monkeypatch.setattr(ClassRegistry, "get", counting_get)
    monkeypatch.setattr(class_registry, "id_from_name", counting_derive)
    for _ in range(3):
        r = await api.handle(http_request("GET", "/v1/classes/noop/objects/room/", token=token))
        assert (r.status, r.body) == (200, b"ok")
    assert lookups == [("acme", "noop")] * 3  # once per request
    assert derived == ["room"]  # once, then from the class's cache


async def test_an_event_runs_the_version_current_when_it_starts(host: Host, wasm: Any) -> None:
    await host.deploy("acme", "x", wasm("noop"))
    ref = host.resolve("acme", "x", "o")
    assert (await host.fetch_object(ref, Request("GET", "/"))).body == b"ok"
    await host.deploy("acme", "x", wasm("echo"))  # replaces the version `ref` holds
    assert ref.cls.superseded
    resp = await host.fetch_object(ref, Request("GET", "/hello"))
    assert b"/hello" in resp.body  # echo's answer: the new version ran


async def test_a_resolved_object_of_a_deleted_tenant_is_gone(host: Host, wasm: Any) -> None:
    await host.deploy("acme", "x", wasm("noop"))
    ref = host.resolve("acme", "x", "o")
    await host.delete_tenant("acme")
    with pytest.raises(DohostError) as ei:
        await host.fetch_object(ref, Request("GET", "/"))
    assert ei.value.code is Code.UNKNOWN_CLASS


async def test_an_id_in_text_is_checked_through_the_cache(host: Host, wasm: Any) -> None:
    await host.deploy("acme", "x", wasm("noop"))
    oid = host.id_from_name("acme", "x", "o")
    assert host.resolve_id_text("acme", "x", oid.hex).oid.raw == oid.raw
    for bad in (oid.hex.upper(), oid.hex[:-1] + ("0" if oid.hex[-1] != "0" else "1"), "zz"):
        with pytest.raises(DohostError) as ei:
            host.resolve_id_text("acme", "x", bad)
        assert ei.value.code is Code.INVALID_ID

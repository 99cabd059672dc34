"""The HTTP API's handler in-process (no sockets) over a real `Host`: pagination, object
names, deletion, quota accounting on both backends, and the quota/tenancy pieces."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import pytest
import trio
from api_helpers import ADMIN_TOKEN, http_request, json_of

from dohost import Host
from dohost.core.errors import Code, DohostError
from dohost.server.api import Api
from dohost.server.http_types import HttpResponse
from dohost.server.quotas import Quotas, TokenBucket, check_overrides, parse_quota_option
from dohost.server.state import ServerState
from dohost.server.tenancy import Tenancy, load_admin_token, token_hash

BACKENDS = ["kv", "sqlite"]


class Client:
    """Calls the API handler directly, as the front door would."""

    def __init__(self, api: Api, token: str | None) -> None:
        self.api = api
        self.token = token

    async def __call__(self, method: str, target: str, body: bytes = b"") -> HttpResponse:
        return await self.api.handle(http_request(method, target, token=self.token, body=body))

    async def json(self, method: str, target: str, body: bytes = b"") -> Any:
        r = await self(method, target, body)
        assert r.status < 300, r.body
        return json_of(r)


async def make_api(host: Host, **quotas: Any) -> tuple[Api, Client]:
    state = await ServerState.attach(host, ADMIN_TOKEN, Quotas(**quotas))
    api = Api(state)
    return api, Client(api, ADMIN_TOKEN)


async def tenant(
    api: Api, admin: Client, name: str, quotas: dict[str, Any] | None = None
) -> Client:
    body = {"name": name, **({"quotas": quotas} if quotas else {})}
    import json

    data = await admin.json("POST", "/v1/tenants", json.dumps(body).encode())
    return Client(api, data["token"])


@pytest.mark.parametrize("storage", BACKENDS)
async def test_objects_and_storage_are_paginated(host: Host, wasm: Any, storage: str) -> None:
    api, admin = await make_api(host)
    c = await tenant(api, admin, "acme")
    assert (await c("PUT", f"/v1/classes/kv?storage={storage}", wasm("kvtest"))).status == 201
    for i in range(7):
        r = await c("POST", f"/v1/classes/kv/objects/o{i}/put?key=k", b"v")
        assert r.body == b"0"
    seen: list[str] = []
    after = ""
    while True:
        page = await c.json("GET", f"/v1/classes/kv/objects?limit=3&after={after}")
        assert len(page["objects"]) <= 3
        seen += [o["name"] for o in page["objects"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert sorted(seen) == [f"o{i}" for i in range(7)]
    assert len(set(seen)) == 7

    form = "&".join(f"key{i:02d}=value{i}" for i in range(25)).encode()
    assert (await c("POST", "/v1/classes/kv/objects/big/put_many", form)).body == b"0"
    keys: list[bytes] = []
    cursor = ""
    pages = 0
    while True:
        page = await c.json("GET", f"/v1/classes/kv/objects/big/storage?limit=10&cursor={cursor}")
        keys += [base64.b64decode(e["key"]) for e in page["entries"]]
        values = [base64.b64decode(e["value"]) for e in page["entries"]]
        assert all(v.startswith(b"value") for v in values)
        pages += 1
        if page["next"] is None:
            break
        cursor = page["next"]
    assert keys == [f"key{i:02d}".encode() for i in range(25)] and pages == 3
    prefix = base64.urlsafe_b64encode(b"key1").decode()
    page = await c.json("GET", f"/v1/classes/kv/objects/big/storage?prefix={prefix}")
    assert len(page["entries"]) == 10


async def test_object_names_are_percent_decoded_utf8_and_never_paths(host: Host, wasm: Any) -> None:
    api, admin = await make_api(host)
    c = await tenant(api, admin, "acme")
    await c("PUT", "/v1/classes/counter", wasm("counter"))
    names = {
        "../../etc/passwd": "..%2F..%2Fetc%2Fpasswd",
        "a b/c": "a%20b%2Fc",
        "日本": "%E6%97%A5%E6%9C%AC",
        "%": "%25",
    }
    for name, encoded in names.items():
        r = await c("POST", f"/v1/classes/counter/objects/{encoded}/incr")
        assert r.body == b"1", (name, r.body)
        info = await c.json("GET", f"/v1/classes/counter/objects/{encoded}")
        assert info["name"] == name
    # Raw UTF-8 bytes in the path (the front door hands them over as latin-1) work too.
    raw = "日本".encode().decode("latin-1")
    assert (await c("GET", f"/v1/classes/counter/objects/{raw}/")).body == b"1"
    listed = {o["name"] for o in (await c.json("GET", "/v1/classes/counter/objects"))["objects"]}
    assert listed == set(names)
    files = [p.name for p in Path(host.data_dir).rglob("*")]
    assert not any("passwd" in f or "日本" in f for f in files)


@pytest.mark.parametrize("storage", BACKENDS)
async def test_delete_drops_the_activation_and_the_storage(
    host: Host, wasm: Any, storage: str
) -> None:
    api, admin = await make_api(host)
    c = await tenant(api, admin, "acme")
    await c("PUT", f"/v1/classes/counter?storage={storage}", wasm("counter"))
    assert (await c("POST", "/v1/classes/counter/objects/a/incr", b"5")).body == b"5"
    assert (await c("POST", "/v1/classes/counter/objects/b/incr")).body == b"1"
    assert host.supervisor.resident == 2
    r = await c.json("DELETE", "/v1/classes/counter/objects/a")
    assert r["deleted"] is True
    assert host.supervisor.resident == 1
    assert [o["name"] for o in (await c.json("GET", "/v1/classes/counter/objects"))["objects"]] == [
        "b"
    ]
    page = await c.json("GET", "/v1/classes/counter/objects/a/storage")
    assert page["entries"] == []
    assert (await c("GET", "/v1/classes/counter/objects/a/")).body == b"0"
    # Deleting an object that does not exist is fine; its usage is forgotten.
    assert (await c("DELETE", "/v1/classes/counter/objects/never")).status == 200
    assert api.state.usage.get("acme").total == len("count") + 1


async def test_delete_waits_for_queued_events_and_later_ones_see_an_empty_object(
    host: Host, wasm: Any
) -> None:
    api, admin = await make_api(host)
    c = await tenant(api, admin, "acme")
    await c("PUT", "/v1/classes/counter", wasm("counter"))
    results: list[bytes] = []

    async def incr() -> None:
        results.append((await c("POST", "/v1/classes/counter/objects/hot/incr")).body)

    async with trio.open_nursery() as n:
        for _ in range(20):
            n.start_soon(incr)
        n.start_soon(c, "DELETE", "/v1/classes/counter/objects/hot")
        for _ in range(20):
            n.start_soon(incr)
    # Every increment got an answer, and the count restarted at the delete: k of them
    # counted 1..k before it, the other m counted 1..m after it.
    values = sorted(int(x) for x in results)
    m = int((await c("GET", "/v1/classes/counter/objects/hot/")).body)
    k = 40 - m
    assert values == sorted([*range(1, k + 1), *range(1, m + 1)])


@pytest.mark.parametrize("storage", ["kv", "sqlite"])
async def test_storage_quota_is_tenant_wide_and_survives_a_restart(
    tmp_path: Path, wasm: Any, storage: str
) -> None:
    data = tmp_path / "data"
    async with Host(data, durability="os", workers=2) as host:
        api, admin = await make_api(host)
        c = await tenant(api, admin, "acme", {"storage_bytes": 1000})
        await c("PUT", f"/v1/classes/kv?storage={storage}", wasm("kvtest"))
        # Many objects, in parallel: together they must not pass 1000 bytes.
        statuses_by_obj: dict[int, bytes] = {}

        async def put(i: int) -> None:
            r = await c("POST", f"/v1/classes/kv/objects/o{i}/put?key=k", b"x" * 99)
            statuses_by_obj[i] = r.body[:2]

        async with trio.open_nursery() as n:
            for i in range(15):
                n.start_soon(put, i)
        statuses = list(statuses_by_obj.values())
        assert statuses.count(b"0") == 10 and statuses.count(b"-7") == 5
        usage = api.state.usage.get("acme")
        assert usage.total == 1000
        # Deleting keys frees room; a rolled-back event frees what it had taken.
        stored = [i for i in range(15) if statuses_by_obj[i] == b"0"]
        first = f"o{stored[0]}"
        assert (await c("POST", f"/v1/classes/kv/objects/{first}/delete?key=k")).body == b"1"
        assert usage.total == 900
        r = await c("POST", "/v1/classes/kv/objects/o-new/fill?n=3&prefix=p&vlen=20")
        assert r.status == 200
        r = await c("POST", "/v1/classes/kv/objects/trap/put_then_trap")
        assert r.status == 500
        assert usage.total == 900 + 3 * 27
    async with Host(data, durability="os", workers=2) as host:
        api, admin = await make_api(host)
        usage = api.state.usage.get("acme")
        if storage == "kv":
            # loaded as one aggregate per class, not object by object
            assert usage.objects == {}
            # o0..o9 (one of them now empty) and o-new
            assert usage.host_totals() == (900 + 3 * 27, 11)
        else:
            # sqlite objects count their file size at start, and every object file: also
            # those that events opened without committing anything (the trapped one, and
            # refused writers whose old value was read), so at least o0..o9 and o-new.
            assert usage.total >= 900 + 3 * 27
            assert len(usage.objects) >= 11


async def test_kv_usage_after_a_restart_stays_exact_object_by_object(
    tmp_path: Path, wasm: Any
) -> None:
    """A restart loads a kv class's usage as (objects, bytes); each object leaves that
    aggregate when first counted, with its stored size: quotas stay exact."""
    data = tmp_path / "data"
    async with Host(data, durability="os") as host:
        api, admin = await make_api(host)
        c = await tenant(api, admin, "acme", {"storage_bytes": 1000, "objects": 3})
        await c("PUT", "/v1/classes/kv", wasm("kvtest"))
        for name in ("o1", "o2", "o3"):
            r = await c("POST", f"/v1/classes/kv/objects/{name}/put?key=k", b"x" * 99)
            assert r.body == b"0"
    async with Host(data, durability="os") as host:
        api, admin = await make_api(host)
        c = Client(api, c.token)  # tokens outlive a restart
        usage = api.state.usage.get("acme")
        assert usage.objects == {}
        assert usage.host_totals() == (300, 3)
        assert usage.objects_by_class() == {"kv": 3}
        assert usage.bytes_by_class() == {"kv": 300}
        # At the object quota: an existing object is admitted, a new one is not.
        r = await c("POST", "/v1/classes/kv/objects/o1/put?key=k", b"x" * 49)
        assert r.body == b"0"
        assert usage.host_totals() == (250, 3)
        assert usage.objects == {("kv", next(iter(usage.objects))[1]): 50}
        r = await c("POST", "/v1/classes/kv/objects/o4/put?key=k", b"x")
        assert r.status == 429 and b"quota" in r.body
        # Deleting an object never counted since the restart frees its bytes and slot.
        assert (await c("DELETE", "/v1/classes/kv/objects/o2")).status == 200
        assert usage.host_totals() == (150, 2)
        r = await c("POST", "/v1/classes/kv/objects/o4/put?key=k", b"x" * 9)
        assert r.body == b"0"
        assert usage.host_totals() == (160, 3)
        assert usage.objects_by_class() == {"kv": 3}
        # The storage quota counts the untouched object's bytes too.
        r = await c("POST", "/v1/classes/kv/objects/o4/put?key=k2", b"x" * 900)
        assert r.body.startswith(b"-7 quota_exceeded")


def test_token_bucket_rate_burst_and_retry_after() -> None:
    b = TokenBucket(rate=2.0, capacity=3, now=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) == pytest.approx(0.5)
    assert b.take(0.25) == pytest.approx(0.25)
    assert b.take(0.5) == 0.0
    assert b.take(100.0) == 0.0  # refills up to the capacity only
    assert [b.take(100.0) for _ in range(3)][-1] > 0


def test_quota_overrides_are_checked() -> None:
    assert check_overrides({"objects": 3, "requests_per_s": 2}) == {
        "objects": 3,
        "requests_per_s": 2.0,
    }
    assert Quotas().merged({"requests_per_s": 2.5}).effective_burst == 3
    assert Quotas().merged({"burst": 7}).effective_burst == 7
    for bad in ({"objects": True}, {"cpu_ms": 0}, {"requests_per_s": math.inf}, {"x": 1}):
        with pytest.raises(DohostError) as ei:
            check_overrides(bad)
        assert ei.value.code is Code.INVALID_ARGUMENT
    assert parse_quota_option("objects=5") == ("objects", 5)
    assert parse_quota_option("requests_per_s=0.5") == ("requests_per_s", 0.5)
    for bad_opt in ("objects", "objects=x", "nope=1"):
        with pytest.raises(DohostError):
            parse_quota_option(bad_opt)


async def test_tenancy_stores_only_hashes(host: Host, tmp_path: Path) -> None:
    t = Tenancy(host.system, "admin-secret-token-123")
    row, token = t.create("acme")
    assert row.token_hash == token_hash(token) and token.encode() not in (row.token_hash or b"")
    assert t.authenticate(f"Bearer {token}").tenant == "acme"
    assert t.authenticate("bearer   admin-secret-token-123 ").admin
    for bad in (None, "", "Bearer", f"Token {token}", f"Bearer {token[:-1]}"):
        with pytest.raises(DohostError) as ei:
            t.authenticate(bad)
        assert ei.value.code is Code.UNAUTHORIZED
    # A fresh Tenancy (a restart) knows the tenant from system.db alone.
    assert Tenancy(host.system, "x" * 20).authenticate(f"Bearer {token}").tenant == "acme"
    raw = (Path(host.data_dir) / "system.db").read_bytes()
    assert token.encode() not in raw


def test_admin_token_env_wins_and_short_env_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOHOST_ADMIN_TOKEN", "from-the-environment-1234")
    assert load_admin_token(tmp_path) == ("from-the-environment-1234", "env")
    assert not (tmp_path / "admin.token").exists()
    monkeypatch.setenv("DOHOST_ADMIN_TOKEN", "short")
    with pytest.raises(DohostError):
        load_admin_token(tmp_path)


async def test_access_token_query_parameter_for_browsers(host: Host, wasm: Any) -> None:
    """Object traffic takes the tenant token as `access_token` (a browser's page load or
    WebSocket handshake cannot send Authorization); the object never sees it."""
    from dohost.core import cbor

    api, admin = await make_api(host)
    c = await tenant(api, admin, "acme")
    await tenant(api, admin, "other")
    assert (await c("PUT", "/v1/classes/echo", wasm("echo"))).status == 201
    token = c.token
    assert token is not None
    anon = Client(api, None)

    r = await anon("GET", f"/v1/classes/echo/objects/e/p?a=1&access_token={token}&b=2")
    assert r.status == 200
    seen = cbor.decode(r.body)
    assert seen["query"] == "a=1&b=2"
    assert all(k != "authorization" for k, _ in seen["headers"])
    r = await anon("GET", f"/v1/classes/echo/objects/e/p?access_token={token}")
    assert r.status == 200 and cbor.decode(r.body)["query"] == ""

    refused = [
        "/v1/classes/echo/objects/e/p?access_token=wrong",
        "/v1/classes/echo/objects/e/p?access_token=",
        f"/v1/classes/echo/objects/e/p?access_token={token}&access_token={token}",
        "/v1/classes/echo/objects/e/p?access_token=%ff",
        f"/v1/classes/echo/objects/e/p?access_token={ADMIN_TOKEN}",
        f"/v1/classes/echo?access_token={token}",  # class routes: header only
        f"/v1/classes/echo/objects?access_token={token}",
        f"/v1/tenants?access_token={ADMIN_TOKEN}",
    ]
    for target in refused:
        r = await anon("GET", target)
        assert r.status == 401, target
    # Both a header and the parameter: refused, even when they agree.
    r = await c("GET", f"/v1/classes/echo/objects/e/p?access_token={token}")
    assert r.status == 401

"""The class lifecycle routes through the API handler over a real Host: versions,
rollback, rename and delete, their bad inputs, and what follows a rename (scoped tokens,
storage usage)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from api_helpers import ADMIN_TOKEN, As, err

from dohost import Host
from dohost.server.api import Api
from dohost.server.quotas import Quotas
from dohost.server.state import ServerState

ROOT = Path(__file__).resolve().parents[2]
WAT = (ROOT / "tests" / "fixtures" / "versioned_wait.wat").read_text()
V1 = bytes(wasmtime.wat2wasm(WAT))
V2 = bytes(wasmtime.wat2wasm(WAT.replace("body\\43v1", "body\\43v2")))


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Api, As, ServerState]]:
    async with Host(tmp_path / "data", durability="os", workers=2) as host:
        state = await ServerState.attach(host, ADMIN_TOKEN, Quotas())
        api = Api(state)
        admin = As(api, ADMIN_TOKEN)
        me = As(api, (await admin.ok("POST", "/v1/tenants", {"name": "acme"}))["token"])
        yield api, me, state


C = "/v1/classes/ver"


async def test_versions_rollback_and_deferred_deploys(env: Any) -> None:
    _, me, _ = env
    await me.ok("PUT", C, V1)
    d = await me.ok("PUT", C + "?update=deferred&max_delay_s=30", V2)
    assert d["version"] == 2
    info = await me.ok("GET", C)
    assert info["update"] == "deferred" and info["deferred_until_ms"] is not None
    vs = await me.ok("GET", C + "/versions")
    assert vs["current"] == 2 and [v["version"] for v in vs["versions"]] == [1, 2]
    r = await me.ok("POST", C + "/rollback", {"version": 1})
    assert (r["version"], r["rolled_back_to"], r["update"]) == (3, 1, "immediate")
    assert r["sha256"] == vs["versions"][0]["sha256"]
    assert (await me("POST", C + "/objects/o/")).body == b"v11"

    bad = [
        ("POST", C + "/rollback", {"version": 7}, (404, "unknown_version")),
        ("POST", C + "/rollback", {"version": "1"}, (400, "invalid_argument")),
        ("POST", C + "/rollback", {}, (400, "invalid_argument")),
        ("POST", C + "/rollback", {"version": 1, "update": "soon"}, (400, "invalid_argument")),
        ("POST", C + "/rollback", b"{not json", (400, "bad_request")),
        ("PUT", C + "?update=deferred&max_delay_s=abc", V2, (400, "invalid_argument")),
        ("PUT", C + "?update=deferred&max_delay_s=nan", V2, (400, "invalid_argument")),
        ("PUT", C + "?max_delay_s=5", V2, (400, "invalid_argument")),
        ("GET", "/v1/classes/nope/versions", b"", (404, "unknown_class")),
        ("DELETE", C + "/versions", b"", (405, "method_not_allowed")),
        ("GET", C + "/rollback", b"", (405, "method_not_allowed")),
    ]
    for method, target, body, want in bad:
        assert err(await me(method, target, body)) == want, (method, target, body)
    assert (await me.ok("GET", C))["version"] == 3  # no bad request changed anything


async def test_rename_and_delete_routes(env: Any) -> None:
    _, me, state = env
    await me.ok("PUT", C, V1)
    await me.ok("PUT", "/v1/classes/taken", V1)
    assert (await me("POST", C + "/objects/o/")).body == b"v11"
    tok = await me.ok("POST", "/v1/tokens", {"classes": ["ver"], "objects_only": True})
    scoped = As(me.api, tok["token"])
    oid = (await me.ok("GET", C + "/objects/o"))["id"]
    usage = state.usage.get("acme")
    before = usage.total

    for body, want in [
        ({"to": "taken"}, (409, "already_exists")),
        ({"to": "Bad Name"}, (400, "invalid_name")),
        ({"to": "ver"}, (400, "invalid_argument")),
        ({"to": 5}, (400, "invalid_argument")),
        ({"to": "x", "also": 1}, (400, "invalid_argument")),
    ]:
        assert err(await me("POST", C + "/rename", body)) == want, body
    r = await me.ok("POST", C + "/rename", {"to": "ver2"})
    assert (r["class"], r["renamed_from"], r["version"]) == ("ver2", "ver", 1)
    assert (await me.ok("GET", "/v1/classes/ver2/objects/o"))["id"] == oid  # same id
    assert (await me("POST", "/v1/classes/ver2/objects/o/")).body == b"v12"
    assert err(await me("GET", C)) == (404, "unknown_class")
    # The scoped token limited to the class follows it; usage counts under the new name.
    assert (await scoped("POST", "/v1/classes/ver2/ids/" + oid + "/")).body == b"v13"
    assert (await me.ok("GET", "/v1/tokens"))["tokens"][0]["classes"] == ["ver2"]
    assert usage.total == before and usage.bytes_by_class().get("ver", 0) == 0

    assert err(await scoped("DELETE", "/v1/classes/ver2")) == (403, "forbidden")
    d = await me.ok("DELETE", "/v1/classes/ver2")
    assert d == {"class": "ver2", "deleted": True, "objects": 1}
    assert usage.total == 0 and usage.objects_by_class() == {}
    assert err(await me("GET", "/v1/classes/ver2")) == (404, "unknown_class")
    assert err(await me("DELETE", "/v1/classes/ver2")) == (404, "unknown_class")
    assert [c["class"] for c in (await me.ok("GET", "/v1/classes"))["classes"]] == ["taken"]

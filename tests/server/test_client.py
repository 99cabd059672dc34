"""`dohost.client` (sync and async) against a real `dohost serve`: every operation's
typed answer, host errors as `ApiError` with their stable codes, an object's own error
status returned rather than raised, pagination, names that need percent-encoding, and
an unreachable host as `TransportError`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import ServerProcess

from dohost.client import (
    ApiError,
    AsyncClient,
    Client,
    ClientError,
    FetchResponse,
    TransportError,
)
from dohost.core.errors import Code

ROOT = Path(__file__).resolve().parents[2]
COUNTER = (ROOT / "samples" / "counter" / "counter.wasm").read_bytes()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path_factory.mktemp("client") / "data")
    yield s
    assert s.stop() == 0, s.stderr()


def test_sync_client_round_trip(server: ServerProcess) -> None:
    with Client(server.url, server.admin_token) as admin:
        assert admin.health()
        tenant, token = admin.create_tenant("sync-acme", {"objects": 50})
        assert tenant.name == "sync-acme" and tenant.overrides == {"objects": 50}
        assert "sync-acme" in [t.name for t in admin.list_tenants()]
        assert admin.set_quotas("sync-acme", {"objects": None}).overrides == {}
        assert "dohost_http_requests_total" in admin.metrics()

    with Client(server.url + "/", token) as c:
        d = c.deploy("counter", COUNTER)
        assert d.changed and d.info.version == 1 and d.info.storage == "kv"
        assert not c.deploy("counter", COUNTER).changed
        assert [k.name for k in c.list_classes()] == ["counter"]
        assert c.get_class("counter").size == len(COUNTER)

        names = ["a/b", "späce x", "?q#f", "%41"]
        for i, name in enumerate(names):
            r = c.fetch("counter", name, "/incr", body=str(i + 1).encode())
            assert (r.status, r.text) == (200, str(i + 1))
        # Names that need percent-encoding reach the one object they name.
        assert c.fetch("counter", "a/b").text == "1"
        assert c.get_object("counter", "späce x").name == "späce x"
        listed = {o.name: o for o in c.iter_objects("counter", page_size=1)}
        assert set(listed) == set(names)
        oid = listed["%41"].id
        assert c.fetch("counter", oid, by_id=True).text == "4"
        assert c.iter_storage("counter", oid, by_id=True).__next__() == (b"count", b"4")
        page = c.storage("counter", "a/b", limit=1, prefix=b"co")
        assert page.entries == [(b"count", b"1")] and page.next is None

        # An object's own 404 is an answer, not an error.
        r = c.fetch("counter", "a/b", "/nope?x=1", method="GET")
        assert (
            isinstance(r, FetchResponse) and r.status == 404 and r.header("x-dohost-error") is None
        )

        new = c.new_id("counter")
        assert len(new) == 64 and c.get_object("counter", new, by_id=True).name is None
        assert c.delete_object("counter", "a/b") == listed["a/b"].id
        assert c.fetch("counter", "a/b").text == "0"


def test_host_errors_are_api_errors_with_stable_codes(server: ServerProcess) -> None:
    with Client(server.url, server.admin_token) as admin:
        _, token = admin.create_tenant("errs")
        with pytest.raises(ApiError) as e:
            admin.create_tenant("errs")
        assert (e.value.code, e.value.status) == ("already_exists", 409)
        assert e.value.known_code is Code.ALREADY_EXISTS
        with pytest.raises(ApiError) as e:
            admin.get_tenant("nobody")
        assert e.value.code == "unknown_tenant" and "nobody" in e.value.message

    with Client(server.url, token) as c:
        cases = [
            (lambda: c.fetch("nothere", "x"), "unknown_class", 404),
            (lambda: c.deploy("Bad", COUNTER), "invalid_name", 400),
            (lambda: c.deploy("x", b"not wasm"), "invalid_module", 400),
            (lambda: c.deploy("x", COUNTER, storage="disk"), "invalid_argument", 400),
            (lambda: c.list_tenants(), "unauthorized", 401),
        ]
        for op, code, status in cases:
            with pytest.raises(ApiError) as e:
                op()
            assert (e.value.code, e.value.status) == (code, status), e.value
        c.deploy("counter", COUNTER)
        with pytest.raises(ApiError) as e:
            c.fetch("counter", "0" * 64, by_id=True)
        assert e.value.code == "invalid_id"
        with pytest.raises(ApiError) as e:
            c.list_objects("counter", limit=0)
        assert e.value.code == "invalid_argument"

    with Client(server.url, "wrong-token") as c, pytest.raises(ApiError) as e:
        c.list_classes()
    assert (e.value.code, str(e.value)) == ("unauthorized", "unauthorized: unknown token")


def test_unreachable_host_is_a_transport_error() -> None:
    with Client("http://127.0.0.1:1", "t", timeout=5) as c, pytest.raises(TransportError) as e:
        c.list_classes()
    assert str(e.value).startswith("cannot reach http://127.0.0.1:1")
    assert isinstance(e.value, ClientError)


async def test_async_client_matches_the_sync_one(server: ServerProcess) -> None:
    async with AsyncClient(server.url, server.admin_token) as admin:
        _, token = await admin.create_tenant("async-acme")
        assert "async-acme" in [t.name for t in await admin.list_tenants()]
    async with AsyncClient(server.url, token) as c:
        assert (await c.deploy("counter", COUNTER)).info.version == 1
        for _ in range(3):
            r = await c.fetch("counter", "room", "/incr", method="POST")
        assert r.text == "3"
        ids = [o.id async for o in c.iter_objects("counter")]
        assert len(ids) == 1
        assert [e async for e in c.iter_storage("counter", ids[0], by_id=True)] == [
            (b"count", b"3")
        ]
        with pytest.raises(ApiError) as e:
            await c.get_class("nothere")
        assert e.value.code == "unknown_class"
        await c.delete_object("counter", ids[0], by_id=True)
        assert (await c.list_objects("counter")).objects == []
    async with AsyncClient("http://127.0.0.1:1", "t", timeout=5) as c:
        with pytest.raises(TransportError):
            await c.health()

"""samples/booking (C SDK, SQL) end to end: through `dohost.Host`, and once through
`dohost serve` over HTTP (deploy with ?storage=sqlite, metrics)."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from dohost import Code, DohostError, Host, Request

ROOT = Path(__file__).resolve().parents[2]
WASM = ROOT / "samples" / "booking" / "booking.wasm"
TENANT, CLASS = "acme", "booking"
ADA = {"table": 3, "slot": "2026-12-24T19:00", "party": 4, "name": "Ada"}


@asynccontextmanager
async def open_host(data: Path, deploy: bool = True) -> AsyncIterator[Host]:
    async with Host(data, durability="os") as host:
        if deploy:
            await host.deploy(TENANT, CLASS, WASM.read_bytes(), "sqlite")
        yield host


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[Host]:
    async with open_host(tmp_path / "data") as h:
        yield h


async def call(
    host: Host, method: str, path: str, body: Any = b"", restaurant: str = "chez-ada"
) -> tuple[int, Any]:
    p, _, q = path.partition("?")
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    r = await host.fetch(TENANT, CLASS, restaurant, Request(method, p, q, [], data))
    assert r.header("content-type") == "application/json"
    return r.status, json.loads(r.body)


async def test_book_then_conflict_then_list(host: Host) -> None:
    status, body = await call(host, "POST", "/book", ADA)
    assert status == 201
    assert body == {"id": 1, **ADA}
    assert await call(host, "POST", "/book", {**ADA, "name": "Bob"}) == (409, {"error": "taken"})
    status, other = await call(host, "POST", "/book", {**ADA, "table": 4, "name": "Bob"})
    assert status == 201 and other["id"] == 2
    assert (await call(host, "POST", "/book", {**ADA, "slot": "2026-12-24T18:30"}))[0] == 201
    await call(host, "POST", "/book", {**ADA, "slot": "2026-12-25T19:00"})
    status, day = await call(host, "GET", "/bookings?date=2026-12-24")
    assert status == 200 and day["date"] == "2026-12-24"
    assert [(b["slot"], b["table"], b["name"]) for b in day["bookings"]] == [
        ("2026-12-24T18:30", 3, "Ada"),
        ("2026-12-24T19:00", 3, "Ada"),
        ("2026-12-24T19:00", 4, "Bob"),
    ]
    assert (await call(host, "GET", "/bookings?date=2026-12-26"))[1]["bookings"] == []


async def test_names_are_kept_as_given(host: Host) -> None:
    name = 'Zoë "the chef" \\ 🍷'
    status, body = await call(host, "POST", "/book", {**ADA, "name": name})
    assert status == 201 and body["name"] == name
    assert (await call(host, "GET", "/bookings?date=2026-12-24"))[1]["bookings"][0]["name"] == name


async def test_one_hundred_concurrent_bookings_of_one_slot(host: Host) -> None:
    statuses: list[int] = []

    async def book(i: int) -> None:
        status, body = await call(host, "POST", "/book", {**ADA, "name": f"guest {i}"})
        statuses.append(status)
        assert body == {"error": "taken"} if status == 409 else body["table"] == 3

    async with trio.open_nursery() as n:
        for i in range(100):
            n.start_soon(book, i)
    assert sorted(statuses) == [201] + [409] * 99
    (booking,) = (await call(host, "GET", "/bookings?date=2026-12-24"))[1]["bookings"]
    assert booking["slot"] == ADA["slot"] and booking["table"] == 3


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", "the body must be a JSON object"),
        (b"[1]", "the body must be a JSON object"),
        ({**ADA, "table": "3"}, "table must be an integer"),
        ({k: v for k, v in ADA.items() if k != "table"}, "table must be an integer"),
        ({**ADA, "table": 13}, "no such table"),
        ({**ADA, "slot": "2026-12-24 19:00"}, "slot must be"),
        ({**ADA, "slot": "2026-02-29T19:00"}, "slot must be"),  # not a leap year
        ({**ADA, "slot": "2026-12-24T24:00"}, "slot must be"),
        ({**ADA, "slot": 20261224}, "slot must be"),
        ({**ADA, "party": 0}, "party must be a positive integer"),
        ({**ADA, "party": 5}, "the party does not fit that table"),
        ({**ADA, "name": ""}, "name must be"),
        ({**ADA, "name": "x" * 101}, "name must be"),
    ],
)
async def test_bad_input_is_400(host: Host, body: Any, error: str) -> None:
    status, answer = await call(host, "POST", "/book", body)
    assert status == 400 and list(answer) == ["error"] and answer["error"].startswith(error)
    assert (await call(host, "GET", "/bookings?date=2026-12-24"))[1]["bookings"] == []


async def test_leap_day_and_bad_dates(host: Host) -> None:
    assert (await call(host, "POST", "/book", {**ADA, "slot": "2028-02-29T12:00"}))[0] == 201
    for q in ("", "?date=2026-13-01", "?date=2026-12-24T19:00", "?date=yesterday"):
        assert (await call(host, "GET", "/bookings" + q))[0] == 400


async def test_methods_and_paths(host: Host) -> None:
    r = await host.fetch(TENANT, CLASS, "x", Request("GET", "/book"))
    assert r.status == 405 and r.header("allow") == "POST"
    assert (await call(host, "POST", "/bookings?date=2026-12-24"))[0] == 405
    assert (await call(host, "GET", "/nope"))[0] == 404
    status, tables = await call(host, "GET", "/tables")
    assert status == 200 and len(tables["tables"]) == 12
    assert tables["tables"][2] == {"table": 3, "seats": 4}


async def test_restaurants_are_separate_objects(host: Host) -> None:
    assert (await call(host, "POST", "/book", ADA, restaurant="north"))[0] == 201
    assert (await call(host, "POST", "/book", ADA, restaurant="south"))[0] == 201
    for r in ("north", "south"):
        day = (await call(host, "GET", "/bookings?date=2026-12-24", restaurant=r))[1]
        assert len(day["bookings"]) == 1


async def test_bookings_survive_a_restart(tmp_path: Path) -> None:
    async with open_host(tmp_path / "data") as h:
        assert (await call(h, "POST", "/book", ADA))[0] == 201
    async with open_host(tmp_path / "data", deploy=False) as h:
        assert (await call(h, "POST", "/book", ADA))[0] == 409
        assert len((await call(h, "GET", "/bookings?date=2026-12-24"))[1]["bookings"]) == 1


async def test_needs_the_sqlite_backend(tmp_path: Path) -> None:
    async with Host(tmp_path / "data", durability="os") as h:
        await h.deploy(TENANT, CLASS, WASM.read_bytes(), "kv")
        with pytest.raises(DohostError) as ei:
            await h.fetch(TENANT, CLASS, "x", Request("GET", "/tables"))
        assert ei.value.code is Code.OBJECT_ERROR and "not_supported" in ei.value.message


def test_over_http_with_metrics(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "server"))
    from api_helpers import ServerProcess

    s = ServerProcess(tmp_path / "data")
    try:
        t = s.new_tenant()
        with s.client(t) as c:
            r = c.put("/v1/classes/booking?storage=sqlite", content=WASM.read_bytes())
            assert r.status_code == 201, r.text
            r = c.post("/v1/classes/booking/objects/chez-ada/book", json=ADA)
            assert r.status_code == 201 and r.json()["name"] == "Ada"
            assert c.post("/v1/classes/booking/objects/chez-ada/book", json=ADA).status_code == 409
            r = c.get("/v1/classes/booking/objects/chez-ada/bookings?date=2026-12-24")
            assert [b["name"] for b in r.json()["bookings"]] == ["Ada"]
        labels = f'class="booking",tenant="{s.names[t]}"'
        # The first event created the schema and seeded 12 tables; then one booking.
        s.wait_for_metric(rf"^dohost_sql_rows_written_total{{{labels}}} 13\.0$")
        s.wait_for_metric(rf"^dohost_sql_rows_read_total{{{labels}}} [1-9]")
    finally:
        assert s.stop() == 0

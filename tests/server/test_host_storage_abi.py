"""Storage imports and utilities through a real guest (tests/fixtures/c/kvtest.c).

Each test drives the C test guest over plain requests; the guest calls the ABI and
reports statuses as text ("-4 key_too_large ..."), so these tests check the host's
import implementations, limits and transactions end to end, on both backends, and on
both the fast and the portable crossing paths.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from dohost import Code, DohostError, Host, Request

BACKENDS = ["kv", "sqlite"]


class Guest:
    def __init__(self, host: Host, cls: str = "kvtest") -> None:
        self.host, self.cls = host, cls

    async def req(
        self, method: str, path: str, body: bytes = b"", obj: str = "o"
    ) -> tuple[int, bytes]:
        p, _, q = path.partition("?")
        r = await self.host.fetch("acme", self.cls, obj, Request(method, p, q, [], body))
        return r.status, r.body

    async def text(self, method: str, path: str, body: bytes = b"", obj: str = "o") -> str:
        status, b = await self.req(method, path, body, obj)
        assert status < 500, b
        return b.decode("utf-8", "replace")

    async def put(self, key: str, value: bytes, obj: str = "o") -> str:
        return await self.text("POST", f"/put?key={quote(key)}", value, obj)

    async def get(self, key: str, obj: str = "o") -> tuple[int, bytes]:
        return await self.req("GET", f"/get?key={quote(key)}", b"", obj)


@pytest.fixture(
    params=[(b, f) for b in BACKENDS for f in (True, False)],
    ids=lambda p: f"{p[0]}-{'fast' if p[1] else 'portable'}",
)
async def guest(request: Any, tmp_path: Path, wasm: Any) -> Any:
    storage, fast = request.param
    async with Host(tmp_path / "data", durability="os", fastcall=fast) as host:
        await host.deploy("acme", "kvtest", wasm("kvtest"), storage)
        yield Guest(host)


async def test_put_get_delete(guest: Guest) -> None:
    assert await guest.put("a", b"1") == "0"
    assert await guest.get("a") == (200, b"1")
    status, body = await guest.get("missing")
    assert status == 404 and body.startswith(b"-3 not_found")
    assert await guest.text("POST", "/delete?key=a") == "1"
    assert await guest.text("POST", "/delete?key=a") == "0"
    assert (await guest.get("a"))[0] == 404


async def test_binary_and_empty_keys_and_values(guest: Guest) -> None:
    assert await guest.put("", b"empty key") == "0"
    assert await guest.put("\x00\xff", b"\x00\x01\x02") == "0"
    assert await guest.get("") == (200, b"empty key")
    assert await guest.get("\x00\xff") == (200, b"\x00\x01\x02")
    assert await guest.put("e", b"") == "0"
    assert await guest.get("e") == (200, b"")


async def test_key_and_value_limits(guest: Guest) -> None:
    assert await guest.text("POST", "/put_big?klen=2048&vlen=10") == "0"
    assert (await guest.text("POST", "/put_big?klen=2049&vlen=1")).startswith("-4 key_too_large")
    assert (await guest.text("POST", "/get_big?klen=2049")).startswith("-4 key_too_large")
    two_mib = 2 * 1024 * 1024
    assert await guest.text("POST", f"/put_big?klen=10&vlen={two_mib - 10}") == "0"
    assert (await guest.text("POST", f"/put_big?klen=10&vlen={two_mib - 9}")).startswith(
        "-5 value_too_large"
    )
    # A value larger than the SDK's scratch buffer comes back through result_read.
    assert await guest.text("POST", "/get_big?klen=10") == str(two_mib - 10)


async def test_many_calls_and_their_limit(guest: Guest) -> None:
    assert await guest.text("POST", "/put_many", b"a=1&b=2&c=3") == "0"
    assert await guest.text("POST", "/get_many", b"a&zz&c") == "2\na=1\nc=3\n"
    assert await guest.text("POST", "/delete_many", b"a&b&zz") == "2"
    assert await guest.text("POST", "/many?op=put&n=128") == "0"
    for op in ("put", "get", "delete"):
        assert (await guest.text("POST", f"/many?op={op}&n=129")).startswith("-6 too_many_keys")


async def test_list_ordering_and_options(guest: Guest) -> None:
    # Sent percent-encoded as UTF-8: "\x80" is the bytes C2 80, "\xff" is C3 BF.
    keys = ["ba", "\xff", "a\x00", "c", "a", "\x80", "b", "ab"]
    for k in keys:
        assert await guest.put(k, k.encode("latin-1") + b"!") == "0"

    async def listed(query: str) -> list[str]:
        text = await guest.text("GET", "/list?" + query)
        head, *rows = text.split("\n")
        assert int(head.split()[0]) == len([r for r in rows if r])
        return [r.split("=")[0] for r in rows if r]

    everything = await listed("")
    assert everything == ["a", "a\x00", "ab", "b", "ba", "c", "\x80", "\xff"]  # memcmp order
    assert await listed("prefix=a") == [r for r in everything if r.startswith("a")]
    assert await listed("start=ab&end=c") == ["ab", "b", "ba"]
    assert await listed("start=ab&end=c&reverse=1") == ["ba", "b", "ab"]
    assert await listed("limit=2") == everything[:2]
    assert await listed("reverse=1&limit=3") == list(reversed(everything))[:3]
    assert await listed("prefix=b&reverse=1") == ["ba", "b"]
    assert await listed("prefix=zz") == []


async def test_delete_all(guest: Guest) -> None:
    for k in ("x", "y", "z"):
        await guest.put(k, b"1")
    assert await guest.text("POST", "/delete_all") == "0"
    assert (await guest.text("GET", "/list?")).startswith("0 ")
    assert await guest.put("after", b"2") == "0"
    assert (await guest.get("after")) == (200, b"2")


async def test_trap_rolls_back_every_write_of_the_event(guest: Guest) -> None:
    with pytest.raises(DohostError) as ei:
        await guest.req("POST", "/put_then_trap")
    assert ei.value.code is Code.OBJECT_ERROR
    assert "unreachable" in ei.value.message
    for k in ("trap1", "trap2", "trap3"):
        assert (await guest.get(k))[0] == 404


async def test_nonzero_return_is_a_failure_and_rolls_back(guest: Guest) -> None:
    with pytest.raises(DohostError) as ei:
        await guest.req("POST", "/fail?rc=7")
    assert ei.value.code is Code.OBJECT_ERROR and "returned 7" in ei.value.message
    assert (await guest.get("fail"))[0] == 404


async def test_responses(guest: Guest) -> None:
    host = guest.host
    r = await host.fetch("acme", "kvtest", "o", Request("GET", "/headers"))
    assert r.header("x-one") == "1"
    assert [v for k, v in r.headers if k == "x-dup"] == ["a", "b"]
    assert r.header("connection") is None  # hop-by-hop headers belong to the host
    assert (await guest.req("GET", "/twice"))[1] == b"second"
    assert (await guest.req("GET", "/no_response"))[0] == 204
    assert (await guest.req("GET", "/status?code=418"))[0] == 418
    status, body = await guest.req("GET", "/status?code=700")
    assert status == 200 and body.startswith(b"-8 bad_encoding")


async def test_utilities(guest: Guest, caplog: Any) -> None:
    import time

    now = int(await guest.text("GET", "/now"))
    assert abs(now - time.time() * 1000) < 60_000
    a, b = (
        (await guest.req("GET", "/random?len=100000"))[1],
        (await guest.req("GET", "/random?len=100000"))[1],
    )
    assert len(a) == len(b) == 100000 and a != b
    assert (await guest.text("GET", "/random_raw?len=65537")).startswith("-11 invalid_argument")
    with caplog.at_level(logging.DEBUG, logger="dohost.guest"):
        assert await guest.text("POST", "/log?level=2", b"hello from the guest") == "0"
        assert (await guest.text("POST", "/log?level=9", b"x")).startswith("-11")
    rec = [r for r in caplog.records if "hello from the guest" in r.getMessage()]
    assert rec and rec[0].levelno == logging.WARNING and "acme/kvtest/" in rec[0].getMessage()
    assert (await guest.text("GET", "/last_error")).startswith("-10")


async def test_request_reaches_the_guest_intact(guest: Guest) -> None:
    r = await guest.host.fetch(
        "acme",
        "kvtest",
        "o",
        Request("GET", "/echo", "a=1&b=%20", [("x-h", "v1"), ("x-h", "v2")], b"body\x00"),
    )
    text = r.text
    assert "method=GET" in text and "path=/echo" in text and "query=a=1&b=%20" in text
    assert "x-h=v1" in text and "x-h=v2" in text


async def test_memory_grow_past_the_cap_returns_minus_one(guest: Guest) -> None:
    assert await guest.text("GET", "/grow?pages=10") != "-1"
    assert await guest.text("GET", "/grow?pages=3000") == "-1"
    assert (await guest.get("nothing"))[0] == 404  # the store is still usable


async def test_huge_response_is_refused_with_a_code(guest: Guest) -> None:
    status, body = await guest.req("GET", f"/big_response?len={33 * 1024 * 1024}")
    assert status == 200 and body.startswith(b"-5 value_too_large")
    status, body = await guest.req("GET", "/big_response?len=100000")
    assert status == 200 and len(body) == 100000

"""The SDK conformance spec: the same operations against every language's guest.

Each test runs once per language (C, Zig, Rust, AssemblyScript) through `dohost.Host`;
the guests report every import's status as text ("-4 key_too_large <message>"), so a
test checks both what the SDK did and which code it surfaced. A language that fails is a
failing test with the language in its id.
"""

from __future__ import annotations

import logging
import time
from itertools import product
from pathlib import Path
from typing import Any

import pytest
from conformance_helpers import LANGS, Guest, deploy, q

from dohost import Code, DohostError, Host, Request
from dohost.core.limits import EventLimits

MiB = 1024 * 1024


def blob(n: int, step: int = 1) -> bytes:
    """n bytes of every value but newline and "=", which separate /list and /get_many rows."""
    return bytes(b + 1 if b in (10, 61) else b for b in ((i * step) % 256 for i in range(n)))


async def listed(guest: Guest, query: str) -> tuple[list[tuple[bytes, bytes]], int]:
    """The entries of a /list call, and how many kv_list calls the SDK made."""
    status, body = await guest.req("GET", "/list?" + query)
    assert status == 200, body
    head, _, rest = body.partition(b"\n")
    count, pages = (int(x) for x in head.split())
    rows = [r.split(b"=", 1) for r in rest.split(b"\n")[:-1]] if rest else []
    assert len(rows) == count, body[:200]
    return [(k, v) for k, v in rows], pages


# ---- keys and values ----------------------------------------------------------------------


async def test_put_get_delete(guest: Guest) -> None:
    assert await guest.put(b"a", b"1") == "0"
    assert await guest.get(b"a") == (200, b"1")
    status, body = await guest.get(b"missing")
    assert status == 404 and body == b"-3 not_found no such key"
    assert await guest.text("POST", "/delete?key=a") == "1"
    assert await guest.text("POST", "/delete?key=a") == "0"
    assert (await guest.get(b"a"))[0] == 404
    assert await guest.put(b"a", b"2") == "0"  # overwrite after delete
    assert await guest.put(b"a", b"3") == "0"
    assert await guest.get(b"a") == (200, b"3")


async def test_empty_key_and_empty_value(guest: Guest) -> None:
    assert await guest.put(b"", b"empty key") == "0"
    assert await guest.text("POST", "/put", b"via missing param") == "0"  # no key= is ""
    assert await guest.get(b"") == (200, b"via missing param")
    assert await guest.put(b"e", b"") == "0"
    assert await guest.get(b"e") == (200, b"")
    entries, _ = await listed(guest, "")
    assert entries == [(b"", b"via missing param"), (b"e", b"")]  # the empty key sorts first
    assert await guest.text("POST", "/delete?key=") == "1"


async def test_binary_keys_and_values(guest: Guest) -> None:
    keys = [b"\x00", b"\x00\x00", b"\xff", b"\xff\xfe\xfd", b"a\x00b", b"\x80", b"\x7f", b"a"]
    for k in keys:
        assert await guest.put(k, b"v" + k + b"\x00\xff") == "0"
    for k in keys:
        assert await guest.get(k) == (200, b"v" + k + b"\x00\xff")
    entries, pages = await listed(guest, "")
    assert [k for k, _ in entries] == sorted(keys) and pages == 1
    every_byte = bytes(range(256))
    assert await guest.put(every_byte, every_byte) == "0"
    assert await guest.get(every_byte) == (200, every_byte)


async def test_2kib_keys(guest: Guest) -> None:
    big = blob(2048, 7)  # binary, exactly at the limit
    assert await guest.put(big, b"max") == "0"
    assert await guest.get(big) == (200, b"max")
    entries, _ = await listed(guest, f"prefix={q(big[:2000])}")
    assert entries == [(big, b"max")]
    after = big + bytes(1)
    entries, _ = await listed(guest, f"start={q(big)}&end={q(after)}")
    assert entries == [(big, b"max")]
    too_big = big + b"!"
    for route in (f"/put?key={q(too_big)}", f"/delete?key={q(too_big)}"):
        text = await guest.text("POST", route, b"x")
        assert text == "-4 key_too_large key is 2049 bytes; the limit is 2048", route
    status, body = await guest.get(too_big)
    assert status == 400 and body.startswith(b"-4 key_too_large")
    assert await guest.text("POST", "/put_big?klen=2048&vlen=10") == "0"
    assert (await guest.text("POST", "/put_big?klen=2049&vlen=1")).startswith("-4 key_too_large")
    assert (await guest.text("POST", "/get_big?klen=2049")).startswith("-4 key_too_large")
    assert await guest.text("POST", "/get_big?klen=2048") == "10"
    form = b"k" * 2049 + b"=1&b=2"
    assert (await guest.text("POST", "/put_many", form)).startswith("-4 key_too_large")
    assert (await guest.text("POST", "/get_many", b"k" * 2049)).startswith("-4 key_too_large")
    assert (await guest.text("POST", "/delete_many", b"k" * 2049)).startswith("-4 key_too_large")
    assert (await guest.get(b"b"))[0] == 404  # put_many is all or nothing


async def test_values_larger_than_the_sdk_scratch_buffer(guest: Guest) -> None:
    sizes = [4095, 4096, 4097, 100_000, 1_000_000]
    for n in sizes:
        value = blob(n)
        assert await guest.put(f"v{n}", value) == "0"
        assert await guest.get(f"v{n}") == (200, value)
    # get_many and list results above the scratch size come back through result_read too.
    status, body = await guest.req("POST", "/get_many", b"v4097&v100000&nope")
    assert status == 200 and body.startswith(b"2\nv4097=")
    assert len(body) == len(b"2\n") + 2 * len(b"=\n") + len(b"v4097v100000") + 4097 + 100_000
    entries, pages = await listed(guest, "prefix=v")
    assert [len(v) for _, v in entries] == [100_000, 1_000_000, 4095, 4096, 4097] and pages == 1


async def test_value_size_limit(guest: Guest) -> None:
    assert await guest.text("POST", f"/put_big?klen=10&vlen={2 * MiB - 10}") == "0"
    assert await guest.text("POST", "/get_big?klen=10") == str(2 * MiB - 10)
    text = await guest.text("POST", f"/put_big?klen=10&vlen={2 * MiB - 9}")
    assert text.startswith("-5 value_too_large")
    assert await guest.text("POST", "/get_big?klen=10") == str(2 * MiB - 10)  # unchanged


# ---- multi-key calls ------------------------------------------------------------------------


async def test_many_calls(guest: Guest) -> None:
    assert await guest.text("POST", "/put_many", b"a=1&b=2&c=3&%00=zero&sp=a+b%20c") == "0"
    assert await guest.get(b"\x00") == (200, b"zero")
    assert await guest.get(b"sp") == (200, b"a b c")
    assert await guest.text("POST", "/get_many", b"a&zz&c") == "2\na=1\nc=3\n"
    assert await guest.text("POST", "/get_many", b"c&a&c") == "2\nc=3\na=1\nc=3\n"  # repeats
    assert await guest.text("POST", "/get_many", b"") == "0\n"
    assert await guest.text("POST", "/get_many", b"x&y") == "0\n"
    assert await guest.text("POST", "/delete_many", b"a&b&zz&a") == "2"
    assert await guest.text("POST", "/delete_many", b"a&b") == "0"
    assert await guest.text("POST", "/put_many", b"") == "0"
    assert await guest.text("POST", "/put_many", b"e=") == "0"
    assert await guest.get(b"e") == (200, b"")


async def test_too_many_keys(guest: Guest) -> None:
    assert await guest.text("POST", "/many?op=put&n=128") == "0"
    assert (await guest.text("POST", "/many?op=get&n=128")).startswith("128\nk0=v\nk1=v\n")
    assert await guest.text("POST", "/many?op=delete&n=128") == "128"
    for op in ("put", "get", "delete"):
        text = await guest.text("POST", f"/many?op={op}&n=129")
        assert text.startswith("-6 too_many_keys 129 "), (op, text)
    assert (await guest.text("GET", "/list?")).startswith("0 1\n")


async def test_delete_all(guest: Guest) -> None:
    for k in (b"x", b"y", b"", b"\xff"):
        assert await guest.put(k, b"1") == "0"
    assert await guest.text("POST", "/delete_all") == "0"
    assert await listed(guest, "") == ([], 1)
    assert await guest.put(b"after", b"2") == "0"
    assert await guest.get(b"after") == (200, b"2")


# ---- listing ------------------------------------------------------------------------------

LIST_KEYS = [
    b"",
    b"a",
    b"a\x00",
    b"ab",
    b"abc",
    b"ab\xff",
    b"b",
    b"ba",
    b"bb",
    b"c",
    b"\x80",
    b"\xff",
    b"\xff\xff",
]


def model(
    prefix: bytes | None, start: bytes | None, end: bytes | None, reverse: bool, limit: int
) -> list[bytes]:
    keys = sorted(LIST_KEYS)  # Python sorts bytes in memcmp order, shorter prefix first
    keys = [k for k in keys if prefix is None or k.startswith(prefix)]
    keys = [k for k in keys if (start is None or k >= start) and (end is None or k < end)]
    if reverse:
        keys.reverse()
    return keys[:limit] if limit else keys


async def test_list_ordering_and_every_option(guest: Guest) -> None:
    for k in LIST_KEYS:
        assert await guest.put(k, b"=" + k) == "0"
    entries, pages = await listed(guest, "")
    assert [k for k, _ in entries] == sorted(LIST_KEYS) and pages == 1
    assert all(v == b"=" + k for k, v in entries)
    prefixes = [None, b"", b"a", b"ab", b"\xff", b"zz"]
    bounds = [None, b"", b"ab", b"b", b"\x80", b"\xff\xff\xff"]
    checked = 0
    for prefix, start, end, reverse, limit in product(
        prefixes, bounds, bounds, (False, True), (0, 1, 3)
    ):
        if (
            start is not None
            and end is not None
            and (start, end) not in ((b"ab", b"b"), (b"", b"\x80"), (b"b", b"ab"))
        ):
            continue  # every start and every end, plus a few ranges (one empty)
        parts = [
            f"{name}={q(v)}"
            for name, v in (("prefix", prefix), ("start", start), ("end", end))
            if v is not None
        ]
        parts += ["reverse=1"] * reverse + ([f"limit={limit}"] if limit else [])
        query = "&".join(parts)
        got, pages = await listed(guest, query)
        assert [k for k, _ in got] == model(prefix, start, end, reverse, limit), query
        assert pages == 1, query
        checked += 1
    assert checked > 300


async def test_list_follows_more_across_pages(guest: Guest) -> None:
    # One kv_list call returns at most 10,000 entries; the SDK continues after the last key.
    assert await guest.text("POST", "/fill?n=10001&prefix=f&vlen=1") == "0"
    assert await guest.put(b"g", b"after") == "0"
    assert await guest.put(b"e", b"before") == "0"
    entries, pages = await listed(guest, "prefix=f")
    assert (len(entries), pages) == (10001, 2)
    assert [k for k, _ in entries] == [b"f%06d" % i for i in range(10001)]
    entries, pages = await listed(guest, "prefix=f&reverse=1")
    assert (len(entries), pages) == (10001, 2)
    assert [k for k, _ in entries] == [b"f%06d" % i for i in reversed(range(10001))]
    entries, pages = await listed(guest, "")
    assert (len(entries), pages) == (10003, 2) and entries[0][0] == b"e" and entries[-1][0] == b"g"
    entries, pages = await listed(guest, "reverse=1")
    assert (len(entries), pages) == (10003, 2) and entries[0][0] == b"g" and entries[-1][0] == b"e"
    # limit: what is left of it goes into the next call; no call once it is reached
    assert [(len(e), p) for e, p in [await listed(guest, "prefix=f&limit=10001")]] == [(10001, 2)]
    assert [(len(e), p) for e, p in [await listed(guest, "prefix=f&limit=10000")]] == [(10000, 1)]
    entries, pages = await listed(guest, "start=f000005&end=f010001&limit=9999")
    assert (len(entries), pages, entries[0][0], entries[-1][0]) == (9996, 1, b"f000005", b"f010000")
    entries, pages = await listed(guest, "start=e&end=g&reverse=1&limit=10002")
    assert (len(entries), pages, entries[0][0], entries[-1][0]) == (10002, 2, b"f010000", b"e")


async def test_list_page_limited_by_bytes(guest: Guest) -> None:
    # Nine values of 2 MiB are above the ~16 MiB a single kv_list call returns.
    assert await guest.text("POST", f"/fill?n=9&prefix=big&vlen={2 * MiB - 9}") == "0"
    status, body = await guest.req("GET", "/list?prefix=big")
    assert status == 200
    head, _, rest = body.partition(b"\n")
    assert head == b"9 2"
    assert rest.count(b"\n") == 9 and len(rest) == 9 * (9 + 1 + 2 * MiB - 9 + 1)


# ---- transactions -------------------------------------------------------------------------


async def test_trap_rolls_back_every_write_of_the_event(guest: Guest) -> None:
    with pytest.raises(DohostError) as ei:
        await guest.req("POST", "/put_then_trap")
    assert ei.value.code is Code.OBJECT_ERROR
    for k in (b"trap1", b"trap2", b"trap3"):
        assert (await guest.get(k))[0] == 404


async def test_failure_return_rolls_back(guest: Guest) -> None:
    with pytest.raises(DohostError) as ei:
        await guest.req("POST", "/fail?rc=7")
    assert ei.value.code is Code.OBJECT_ERROR and "returned 7" in ei.value.message
    assert (await guest.get(b"fail"))[0] == 404
    with pytest.raises(DohostError) as ei:
        await guest.req("POST", "/fail")
    assert "returned 1" in ei.value.message


async def test_init_runs_once_per_activation(guest: Guest) -> None:
    assert await guest.text("GET", "/init_count") == "1"
    assert await guest.text("GET", "/init_count") == "1"
    assert await guest.text("GET", "/init_count", obj="other") == "1"


async def test_limit_exceeded(lang: str, tmp_path: Path) -> None:
    async with Host(tmp_path / "data", durability="os", limits=EventLimits(storage_ops=50)) as host:
        guest = await deploy(host, lang)
        assert await guest.text("POST", "/fill?n=50&prefix=x") == "0"
        text = await guest.text("POST", "/fill?n=51&prefix=y")
        assert text == "-14 limit_exceeded more than 50 storage operations in one event"


# ---- requests and responses ---------------------------------------------------------------


async def test_request_reaches_the_handler_intact(guest: Guest) -> None:
    headers = [("x-h", "v1"), ("x-h", "v2"), ("x-latin", "caf\xe9")]
    r = await guest.fetch("POST", "/echo?a=1&b=%20&c=%FF", b"body\x00\xff", headers=headers)
    assert r.status == 200
    assert r.body == (
        b"method=POST\npath=/echo\nquery=a=1&b=%20&c=%FF"
        b"\nheader:x-h=v1\nheader:x-h=v2\nheader:x-latin=caf\xc3\xa9"
        b"\nbody_len=6\nbody=body\x00\xff"
    )
    r = await guest.fetch("GET", "/echo")
    assert r.body == b"method=GET\npath=/echo\nquery=\nbody_len=0\nbody="


async def test_responses(guest: Guest) -> None:
    r = await guest.fetch("GET", "/headers")
    assert (r.status, r.body) == (200, b"headers")
    assert r.headers == [
        ("content-type", "text/plain"),
        ("x-one", "1"),
        ("x-dup", "a"),
        ("x-dup", "b"),
    ]
    assert (await guest.req("GET", "/twice")) == (200, b"second")
    assert (await guest.req("GET", "/no_response")) == (204, b"")
    r = await guest.fetch("GET", "/status?code=418")
    assert (r.status, r.body, r.headers) == (418, b"", [])
    status, body = await guest.req("GET", "/status?code=700")
    assert status == 200 and body.startswith(b"-8 bad_encoding")
    r = await guest.fetch("GET", "/nowhere")
    assert (r.status, r.body) == (404, b"no route\n")
    assert r.header("content-type") == "text/plain; charset=utf-8"


async def test_response_size_limit(guest: Guest) -> None:
    status, body = await guest.req("GET", f"/big_response?len={33 * MiB}")
    assert status == 200 and body.startswith(b"-5 value_too_large")
    assert await guest.req("GET", "/big_response?len=100000") == (200, b"x" * 100_000)


# ---- utilities and errors -----------------------------------------------------------------


async def test_now_and_random(guest: Guest) -> None:
    now = int(await guest.text("GET", "/now"))
    assert abs(now - time.time() * 1000) < 60_000
    for n in (0, 1, 65_536, 65_537, 200_000):
        a = (await guest.req("GET", f"/random?len={n}"))[1]
        b = (await guest.req("GET", f"/random?len={n}"))[1]
        assert len(a) == len(b) == n and (n < 8 or a != b)
    assert await guest.text("GET", "/random_raw?len=65536") == "0"
    text = await guest.text("GET", "/random_raw?len=65537")
    assert text == "-11 invalid_argument random_fill takes at most 65536 bytes"


async def test_log(guest: Guest, caplog: Any) -> None:
    with caplog.at_level(logging.DEBUG, logger="dohost.guest"):
        for level in range(4):
            assert await guest.text("POST", f"/log?level={level}", f"line {level}".encode()) == "0"
        assert await guest.text("POST", "/log", b"default level") == "0"
        text = await guest.text("POST", "/log?level=9", b"x")
        assert text == "-11 invalid_argument log level must be 0 (debug) to 3 (error)"
    got = {
        r.getMessage().split("] ", 1)[1]: r.levelno
        for r in caplog.records
        if r.name == "dohost.guest"
    }
    expected = {"line 0": logging.DEBUG, "line 1": logging.INFO, "line 2": logging.WARNING}
    assert got == {**expected, "line 3": logging.ERROR, "default level": logging.INFO}


async def test_last_error(guest: Guest) -> None:
    assert await guest.text("GET", "/last_error") == "-10"  # nothing failed in this event
    # Within an event, every status text above came from last_error after the failure.
    assert (await guest.get(b"nope"))[1] == b"-3 not_found no such key"


# ---- the same answers in every language ---------------------------------------------------

SCRIPT: list[tuple[str, str, bytes]] = [
    ("POST", "/put?key=a", b"1"),
    ("POST", "/put?key=%00%FF", b"\x00\x01"),
    ("GET", "/get?key=a", b""),
    ("GET", "/get?key=nope", b""),
    ("POST", "/put_many", b"x=1&y=2&%FF=3"),
    ("POST", "/get_many", b"x&nope&%FF&x"),
    ("POST", "/delete_many", b"y&nope"),
    ("GET", "/list?", b""),
    ("GET", "/list?reverse=1&limit=2", b""),
    ("GET", "/list?prefix=&start=&end=y", b""),
    ("POST", "/delete?key=a", b""),
    ("POST", "/put_big?klen=2049&vlen=1", b""),
    ("POST", "/put_big?klen=10&vlen=3000000", b""),
    ("POST", "/many?op=delete&n=200", b""),
    ("POST", "/many?op=nope&n=-1", b""),
    ("POST", "/fill?n=-1", b""),
    ("POST", "/log?level=5", b"x"),
    ("GET", "/random_raw?len=70000", b""),
    ("GET", "/status?code=99", b""),
    ("GET", "/status?code=201", b""),
    ("GET", "/last_error", b""),
    ("GET", "/echo?x=%2B+y", b"\x00"),
    ("GET", "/headers", b""),
    ("GET", "/no_response", b""),
    ("POST", "/alarm_set?ms=-5", b""),
    ("POST", "/alarm_set?ms=soon", b""),
    ("GET", "/alarm_get", b""),
    ("POST", "/alarm_set?ms=4000000000000", b""),
    ("GET", "/alarm_get", b""),
    ("POST", "/delete_all", b""),  # deletes the alarm too
    ("GET", "/alarm_get", b""),
    ("POST", "/alarm_delete", b""),
    ("GET", "/list?", b""),
    ("GET", "/elsewhere", b""),
]


@pytest.mark.parametrize("other", [lang for lang in LANGS if lang != "c"])
async def test_same_answers_as_the_c_guest(other: str, tmp_path: Path) -> None:
    answers = {}
    for lang in ("c", other):
        async with Host(tmp_path / lang, durability="os") as host:
            guest = await deploy(host, lang)
            answers[lang] = [
                (r.status, r.headers, r.body)
                for r in [await guest.fetch(m, p, b) for m, p, b in SCRIPT]
            ]
    for (method, path, _), c, got in zip(SCRIPT, answers["c"], answers[other], strict=True):
        assert got == c, f"{method} {path}"


async def test_requests_of_other_objects_do_not_mix(guest: Guest) -> None:
    r = await guest.host.fetch("acme", "kvtest", "one", Request("POST", "/put", "key=k", [], b"1"))
    assert r.status == 200
    assert (await guest.get(b"k", obj="two"))[0] == 404
    assert await guest.get(b"k", obj="one") == (200, b"1")

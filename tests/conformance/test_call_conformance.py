"""Object calls (`call`, `object_info`) through every language's SDK: the same spec against
the C, Zig, Rust and AssemblyScript conformance guests.

Each guest is deployed twice in one tenant, as classes "kvtest" and "peer". Its /call
route (tests/fixtures/c/kvtest.c) calls another object and writes back the response the
SDK decoded ("status=...", "header:name=value" lines, the body) or the status text of a
call that could not be made; /whoami shows object_info and /caller the caller the SDK
read from the host's dohost-caller-* headers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conformance_helpers import LANGS, Guest, deploy

from dohost import Host, Request


@pytest.fixture
async def pair(lang: str, tmp_path: Path) -> AsyncIterator[Guest]:
    async with Host(tmp_path / "data", durability="os") as host:
        await deploy(host, lang, cls="peer")
        yield await deploy(host, lang)


async def call(g: Guest, body: bytes = b"", obj: str = "o", cls: str = "", **params: str) -> str:
    """Object `obj` of class kvtest calls with these /call parameters (`cls`: class=)."""
    query = urlencode({"class": cls, **params})
    status, answer = await g.req("POST", "/call?" + query, body, obj)
    assert status == 200, answer[:200]
    return answer.decode("utf-8", "surrogateescape")


def parsed(answer: str) -> tuple[int, list[tuple[str, str]], str]:
    """status, headers and body of a /call answer."""
    head, _, body = answer.partition("\nbody=")
    lines = head.split("\n")
    assert lines[0].startswith("status="), answer[:200]
    headers = [ln.removeprefix("header:").partition("=")[::2] for ln in lines[1:-1]]
    assert lines[-1] == f"body_len={len(body.encode('utf-8', 'surrogateescape'))}", answer[:200]
    return int(lines[0].removeprefix("status=")), headers, body


def oid(g: Guest, cls: str, name: str) -> str:
    return g.host.id_from_name("acme", cls, name).hex


async def test_call_by_name_and_by_id(pair: Guest) -> None:
    answer = await call(
        pair, b"hello", cls="peer", name="b", method="POST", path="/put", query="key=x"
    )
    assert parsed(answer) == (200, [("content-type", "text/plain")], "0")
    answer = await call(pair, cls="peer", id=oid(pair, "peer", "b"), path="/get", query="key=x")
    assert parsed(answer) == (200, [("content-type", "application/octet-stream")], "hello")
    # The same object, from outside; and the caller's own storage is untouched.
    r = await pair.host.fetch("acme", "peer", "b", Request("GET", "/get", "key=x"))
    assert r.body == b"hello"
    assert (await pair.get(b"x"))[0] == 404
    # Its own class, another object: by name and by id.
    answer = await call(
        pair, b"1", cls="kvtest", name="o2", method="POST", path="/put", query="key=k"
    )
    assert parsed(answer)[2] == "0"
    answer = await call(
        pair, cls="kvtest", id=oid(pair, "kvtest", "o2"), path="/get", query="key=k"
    )
    assert parsed(answer)[2] == "1"


async def test_the_response_comes_back_whole(pair: Guest) -> None:
    status, headers, body = parsed(await call(pair, cls="peer", name="b", path="/headers"))
    assert (status, body) == (200, "headers")
    assert headers == [
        ("content-type", "text/plain"),
        ("x-one", "1"),
        ("x-dup", "a"),
        ("x-dup", "b"),
    ]
    answer = await call(pair, cls="peer", name="b", path="/status", query="code=418")
    assert parsed(answer) == (418, [], "")
    assert parsed(await call(pair, cls="peer", name="b", path="/no_response"))[0] == 204
    # A body above the SDKs' 4 KiB scratch buffer comes through result_read.
    status, _, body = parsed(
        await call(pair, cls="peer", name="b", path="/big_response", query="len=100000")
    )
    assert (status, body) == (200, "x" * 100_000)


async def test_the_callee_sees_the_request_and_who_called(pair: Guest) -> None:
    me = oid(pair, "kvtest", "o")
    answer = await call(
        pair, b"body\x00bytes", cls="peer", name="b", method="PUT", path="/echo", query="a=1&b"
    )
    status, _, body = parsed(answer)
    assert status == 200
    assert body.split("\n") == [
        "method=PUT",
        "path=/echo",
        "query=a=1&b",
        "header:x-from=kvtest",
        "header:dohost-caller-class=kvtest",
        f"header:dohost-caller-id={me}",
        "header:dohost-caller-name=o",
        "body_len=10",
        "body=body\x00bytes",
    ]
    # The defaults: GET / with no query.
    answer = await call(pair, cls="peer", name="b", path="/echo")
    assert parsed(answer)[2].split("\n")[:3] == ["method=GET", "path=/echo", "query="]
    assert parsed(await call(pair, cls="peer", name="b", path="/caller"))[2] == f"kvtest {me} o"
    assert await pair.text("GET", "/caller") == "none"  # not a call


async def test_object_info(pair: Guest) -> None:
    assert await pair.text("GET", "/whoami") == f"kvtest {oid(pair, 'kvtest', 'o')} o"
    status, body = await pair.req("GET", "/whoami", obj="ünï")
    assert status == 200
    assert body == f"kvtest {oid(pair, 'kvtest', 'ünï')} ünï".encode()
    unique = pair.host.new_unique_id("acme", "peer")
    r = await pair.host.fetch("acme", "peer", unique, Request("GET", "/whoami"))
    assert r.text == f"peer {unique.hex} (none)"


async def test_a_callee_trap_is_a_500_response(pair: Guest) -> None:
    status, headers, body = parsed(await call(pair, cls="peer", name="b", path="/put_then_trap"))
    assert status == 500 and ("content-type", "application/json") in headers
    error = json.loads(body)["error"]
    assert error["code"] == "object_error" and "unreachable" in error["message"]
    answer = await call(pair, cls="peer", name="b", path="/get", query="key=trap1")
    assert parsed(answer)[0] == 404  # the callee's writes were rolled back


async def test_calls_that_cannot_be_made(pair: Guest) -> None:
    answer = await call(pair, cls="kvtest", name="o")  # itself
    assert answer.startswith("-15 call_cycle call cycle: kvtest/o → kvtest/o"), answer
    answer = await call(pair, cls="nope", name="b")
    assert answer.startswith("-17 call_failed ") and "unknown_class" in answer, answer
    answer = await call(pair, cls="peer", id="00" * 32)  # a forged id
    assert answer.startswith("-17 call_failed ") and "invalid_id" in answer, answer
    answer = await call(pair, cls="peer", id=oid(pair, "kvtest", "b"))  # another class's id
    assert answer.startswith("-17 call_failed ") and "invalid_id" in answer, answer
    answer = await call(pair, cls="peer", name="b", path="no-slash")
    assert answer.startswith("-8 bad_encoding "), answer
    answer = await call(pair, cls="peer", name="b", method="BAD METHOD")
    assert answer.startswith("-8 bad_encoding "), answer


# Ids differ between hosts (class keys are random), so nothing here shows one.
CALL_SCRIPT: list[dict[str, str]] = [
    {"cls": "peer", "name": "b", "method": "POST", "path": "/put", "query": "key=k"},
    {"cls": "peer", "name": "b", "path": "/get", "query": "key=k"},
    {"cls": "peer", "name": "b", "path": "/get", "query": "key=missing"},
    {"cls": "peer", "name": "b", "method": "PATCH", "path": "/log", "query": "level=9"},
    {"cls": "peer", "name": "b", "path": "/headers"},
    {"cls": "peer", "name": "b", "path": "/nowhere"},
    {"cls": "kvtest", "name": "o"},
    {"cls": "nope", "name": "b"},
    {"cls": "peer", "id": "zz"},
]


@pytest.mark.parametrize("other", [lang for lang in LANGS if lang != "c"])
async def test_same_call_answers_as_the_c_guest(other: str, tmp_path: Path) -> None:
    answers = {}
    for lang in ("c", other):
        async with Host(tmp_path / lang, durability="os") as host:
            await deploy(host, lang, cls="peer")
            g = await deploy(host, lang)
            answers[lang] = [await call(g, b"v", **params) for params in CALL_SCRIPT]
    for params, c, got in zip(CALL_SCRIPT, answers["c"], answers[other], strict=True):
        assert got == c, params

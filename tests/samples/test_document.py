"""samples/document (AssemblyScript SDK) end to end through `dohost.Host`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from dohost import Host, Request


@pytest.fixture
async def doc(tmp_path: Path, wasm: Any) -> Any:
    async with Host(tmp_path / "data", durability="os") as host:
        await host.deploy("acme", "doc", wasm("document"))

        async def call(
            method: str, path: str, body: Any = b"", name: str = "readme"
        ) -> tuple[int, Any]:
            data = json.dumps(body).encode() if isinstance(body, dict) else body
            r = await host.fetch("acme", "doc", name, Request(method, path, "", [], data))
            is_json = (r.header("content-type") or "").startswith("application/json")
            return r.status, json.loads(r.body) if is_json else r.text

        call.host = host  # type: ignore[attr-defined]
        yield call


def ins(pos: int, text: str) -> dict[str, Any]:
    return {"insert": {"pos": pos, "text": text}}


def dele(pos: int, n: int) -> dict[str, Any]:
    return {"delete": {"pos": pos, "len": n}}


async def test_ordered_edits_with_a_version_check(doc: Any) -> None:
    assert await doc("GET", "/") == (200, {"text": "", "version": 0})
    assert await doc("POST", "/ops", {"version": 0, "ops": [ins(0, "hello world")]}) == (
        200,
        {"version": 1},
    )
    ops = [
        dele(5, 6),
        ins(5, ', déjà 😀 "vu"\n'),
        ins(0, ">"),
    ]  # each applies to the previous result
    assert await doc("POST", "/ops", {"version": 1, "ops": ops}) == (200, {"version": 2})
    assert await doc("GET", "/") == (200, {"text": '>hello, déjà 😀 "vu"\n', "version": 2})
    status, body = await doc("POST", "/ops", {"version": 1, "ops": [ins(0, "stale")]})
    assert (status, body) == (409, {"error": "version conflict", "version": 2})
    assert (await doc("GET", "/"))[1]["version"] == 2
    assert await doc("POST", "/ops", {"version": 2, "ops": []}) == (200, {"version": 3})
    assert await doc("GET", "/", name="other") == (200, {"text": "", "version": 0})


async def test_invalid_ops_change_nothing(doc: Any) -> None:
    await doc("POST", "/ops", {"version": 0, "ops": [ins(0, "a😀b")]})
    bad = [
        [ins(5, "x")],  # past the end
        [ins(2, "x")],  # between the two halves of 😀
        [dele(0, 2)],  # ends inside 😀
        [dele(1, 99)],
        [ins(0, "ok"), {"replace": {"pos": 0}}],  # all or nothing: the insert is not kept
        [ins(-1, "x")],
        [{"insert": {"pos": 0}}],
        [{"delete": {"pos": 0, "len": -1}}],
        ["insert"],
    ]
    for ops in bad:
        status, _ = await doc("POST", "/ops", {"version": 1, "ops": ops})
        assert status in (400, 422), ops
    for body in (b"{", b"[]", b'{"ops": []}', b'{"version": "1", "ops": []}', b'{"version": 1}'):
        assert (await doc("POST", "/ops", body))[0] == 400, body
    assert await doc("GET", "/") == (200, {"text": "a😀b", "version": 1})
    assert (await doc("PUT", "/ops", b""))[0] == 405
    assert (await doc("GET", "/nope"))[0] == 404


async def test_concurrent_editors_one_wins_each_version(doc: Any) -> None:
    results: list[int] = []

    async def edit(i: int) -> None:
        status, _ = await doc("POST", "/ops", {"version": 0, "ops": [ins(0, f"writer {i} ")]})
        results.append(status)

    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(edit, i)
    assert sorted(results) == [200] + [409] * 9
    _, state = await doc("GET", "/")
    assert state["version"] == 1 and state["text"].startswith("writer ")


async def test_text_survives_a_new_activation(tmp_path: Path, wasm: Any) -> None:
    data = tmp_path / "data"
    async with Host(data, durability="os") as host:
        await host.deploy("acme", "doc", wasm("document"))
        body = json.dumps({"version": 0, "ops": [ins(0, "persisted")]}).encode()
        assert (
            await host.fetch("acme", "doc", "d", Request("POST", "/ops", "", [], body))
        ).status == 200
    async with Host(data, durability="os") as host:  # a new process: init() reloads it
        r = await host.fetch("acme", "doc", "d", Request("GET", "/"))
        assert json.loads(r.body) == {"text": "persisted", "version": 1}


async def test_large_document(doc: Any) -> None:
    text = "x" * 500_000
    assert (await doc("POST", "/ops", {"version": 0, "ops": [ins(0, text)]}))[0] == 200
    assert (await doc("POST", "/ops", {"version": 1, "ops": [ins(0, text), ins(0, text)]}))[
        0
    ] == 413
    assert await doc("GET", "/") == (200, {"text": text, "version": 1})

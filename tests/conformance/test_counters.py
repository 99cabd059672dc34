"""The counter in every language (guest-sdk/<lang>/examples/counter) answers like the C
sample (samples/counter): same routes, statuses, headers and bodies."""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance_helpers import ROOT

from dohost import Host, Request

COUNTERS = {
    "c": ROOT / "samples" / "counter" / "counter.wasm",
    "zig": ROOT / "guest-sdk" / "zig" / "examples" / "counter" / "counter.wasm",
    "rust": ROOT / "guest-sdk" / "rust" / "examples" / "counter" / "counter.wasm",
    "assemblyscript": ROOT
    / "guest-sdk"
    / "assemblyscript"
    / "examples"
    / "counter"
    / "counter.wasm",
}

SCRIPT = [
    ("GET", "/", b""),
    ("POST", "/incr", b""),
    ("POST", "/incr", b"41"),
    ("POST", "/incr", b" -2\n"),
    ("POST", "/incr", b"x"),
    ("POST", "/incr", b"9223372036854775807"),
    ("GET", "/", b""),
    ("DELETE", "/incr", b""),
    ("PUT", "/", b""),
    ("GET", "/nope", b""),
    ("POST", "/reset", b""),
    ("POST", "/incr", b"-9223372036854775808"),
    ("POST", "/incr", b"-1"),
    ("GET", "/", b""),
]


@pytest.mark.parametrize("lang", list(COUNTERS))
async def test_counter_routes(lang: str, tmp_path: Path) -> None:
    async with Host(tmp_path / "data", durability="os") as host:
        await host.deploy("acme", "counter", COUNTERS[lang].read_bytes())
        got = []
        for method, path, body in SCRIPT:
            r = await host.fetch("acme", "counter", "a", Request(method, path, "", [], body))
            got.append((r.status, r.body, r.header("content-type"), r.header("allow")))
        other = await host.fetch("acme", "counter", "b", Request("GET", "/"))
    plain = utf8 = "text/plain; charset=utf-8"
    assert got == [
        (200, b"0", plain, None),
        (200, b"1", plain, None),
        (200, b"42", plain, None),
        (200, b"40", plain, None),
        (400, b"body must be an integer\n", utf8, None),
        (400, b"counter would overflow\n", utf8, None),
        (200, b"40", plain, None),
        (405, b"method not allowed\n", plain, "POST"),
        (405, b"method not allowed\n", plain, "GET"),
        (404, b"not found\n", utf8, None),
        (200, b"0", plain, None),
        (200, b"-9223372036854775808", plain, None),
        (400, b"counter would overflow\n", utf8, None),
        (200, b"-9223372036854775808", plain, None),
    ]
    assert (other.status, other.body) == (200, b"0")

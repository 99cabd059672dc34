"""Helpers of the SDK conformance suite: one test guest per language, same routes.

Every language's conformance guest answers the routes of tests/fixtures/c/kvtest.c with
the same texts (see that file's header). The C guest is kvtest itself; the others are
tests/conformance/guests/kvtest.{zig,rs,ts}, built by tools/build_guests.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

from dohost import Host, Request, Response

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tests" / "fixtures" / "build"

# language -> built module of its conformance guest
GUESTS = {
    "c": "kvtest",
    "zig": "kvtest_zig",
    "rust": "kvtest_rust",
    "assemblyscript": "kvtest_as",
}
LANGS = list(GUESTS)


def module(lang: str) -> bytes:
    path = BUILD / f"{GUESTS[lang]}.wasm"
    if not path.exists():
        raise FileNotFoundError(f"{path} is not built: run `make build`")
    return path.read_bytes()


def q(value: bytes | str) -> str:
    """Percent-encodes every byte of a key or value for the query string."""
    raw = value.encode("latin-1") if isinstance(value, str) else value
    return quote_from_bytes(raw, safe="")


class Guest:
    """Drives one language's conformance guest through `dohost.Host`."""

    def __init__(self, host: Host, lang: str, cls: str = "kvtest") -> None:
        self.host, self.lang, self.cls = host, lang, cls

    async def fetch(
        self, method: str, path: str, body: bytes = b"", obj: str = "o", headers: Any = ()
    ) -> Response:
        p, _, query = path.partition("?")
        return await self.host.fetch(
            "acme", self.cls, obj, Request(method, p, query, list(headers), body)
        )

    async def req(
        self, method: str, path: str, body: bytes = b"", obj: str = "o"
    ) -> tuple[int, bytes]:
        r = await self.fetch(method, path, body, obj)
        return r.status, r.body

    async def text(self, method: str, path: str, body: bytes = b"", obj: str = "o") -> str:
        status, b = await self.req(method, path, body, obj)
        assert status < 500, b
        return b.decode("latin-1")

    async def put(self, key: bytes | str, value: bytes, obj: str = "o") -> str:
        return await self.text("POST", f"/put?key={q(key)}", value, obj)

    async def get(self, key: bytes | str, obj: str = "o") -> tuple[int, bytes]:
        return await self.req("GET", f"/get?key={q(key)}", b"", obj)


async def deploy(host: Host, lang: str, storage: str = "kv", cls: str = "kvtest") -> Guest:
    """Deploys `lang`'s guest as class `cls` of tenant acme (storage "sqlite" for SQL)."""
    await host.deploy("acme", cls, module(lang), storage)
    return Guest(host, lang, cls)

"""Tenant isolation attacks against a real `dohost serve`, over raw TCP (so `..` and
other path tricks reach the server exactly as written; httpx would normalize them).

A victim tenant holds data in a kv class and a sqlite class; an attacker tenant with
its own token tries to reach it: path traversal in every name position (class, object
name, object id, the guest path, query parameters, and the tenant name of the admin
routes), ids of other tenants and other classes, no/garbled/other/rotated/deleted
tokens, admin routes with tenant tokens and tenant routes with the admin token, module
uploads to the victim's class names, object calls aimed at the victim. Every attack
gets its documented status and stable code (docs/http-api.md), no attacker response
ever shows the victim's names, ids or values, and the victim's data is compared whole
before and after each test (and once more after a restart).

tests/server/test_api_tenancy.py has the basic cross-tenant cases over httpx; this is
the adversarial catalogue.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import inspect
import json
import sys
import textwrap
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from raw_http import RawClient, RawResponse
from trio.testing import MockClock

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests" / "server") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "server"))
from api_helpers import ServerProcess  # noqa: E402

from dohost import Host, Request  # noqa: E402
from dohost.core.errors import Code, DohostError  # noqa: E402
from dohost.server import tenancy as tenancy_module  # noqa: E402
from dohost.server.tenancy import Tenancy, token_hash  # noqa: E402
from dohost.storage.system_db import SystemDb  # noqa: E402

COUNTER = (ROOT / "samples" / "counter" / "counter.wasm").read_bytes()
ECHO = (ROOT / "tests" / "fixtures" / "build" / "echo.wasm").read_bytes()
CALLTEST = (ROOT / "tests" / "fixtures" / "build" / "calltest.wasm").read_bytes()

# The victim's objects and values: distinctive, so a leak would show in any response.
SECRET_NAME = "victim-secret"
VICTIM_VALUES = {"gold": 4242, SECRET_NAME: 3131, "..": 5151, "a/b": 6161}
LEDGER_GOLD = 9191
UNIQUE_VALUE = 7171


def q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


@dataclass
class World:
    data_dir: Path
    server: ServerProcess
    victim: str  # token
    attacker: str  # token
    victim_ids: dict[str, str]  # label -> hex id of the victim's objects
    attacker_ids: dict[str, str]
    attacks: dict[str, int] = field(default_factory=dict)  # test -> attack requests sent
    leaks_checked: int = 0
    # (old token, rotated token, an old object id, the re-created tenant's token)
    doomed: tuple[str, str, str, str] | None = None

    def restart(self) -> None:
        assert self.server.stop() == 0, self.server.stderr()
        names = self.server.names
        self.server = ServerProcess(self.data_dir)
        self.server.names.update(names)


def create_tenant(s: ServerProcess, name: str) -> str:
    """A tenant with exactly this name (the admin routes below aim at it); its token."""
    with s.admin() as c:
        r = c.post("/v1/tenants", json={"name": name})
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    s.names[token] = name
    return token


def _json(resp: RawResponse) -> Any:
    assert resp.status == 200, (resp.status, resp.body[:300])
    return resp.json()


class Client:
    """A RawClient with a token; every response it gets is checked for leaks."""

    def __init__(self, world: World, token: str | None, forbidden: list[bytes]) -> None:
        self.world = world
        self.raw = RawClient(world.server.url)
        self.token = token
        self.forbidden = forbidden
        self.sent = 0

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()

    def send(
        self,
        method: str,
        target: str | bytes,
        body: bytes = b"",
        authorization: bytes | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> RawResponse:
        hdrs = list(headers or [])
        if authorization is None and self.token is not None:
            authorization = b"Bearer " + self.token.encode()
        if authorization is not None:
            hdrs.insert(0, (b"authorization", authorization))
        t = target.encode("latin-1") if isinstance(target, str) else target
        resp = self.raw.request(method.encode(), t, hdrs, body)
        self.sent += 1
        assert resp.status < 500, (method, target, resp.status, resp.body[:300])
        sent = t + body + b"".join(v for _, v in hdrs)
        for secret in self.forbidden:
            if secret in sent or secret in urllib.parse.unquote_to_bytes(t):
                continue  # the attacker named it (an id it got hold of): may be echoed
            assert secret not in resp.body, (method, target, secret, resp.body[:300])
            assert all(secret not in v.encode("latin-1") for _, v in resp.headers)
        self.world.leaks_checked += 1
        return resp


def host_error(resp: RawResponse) -> tuple[int, str | None]:
    """(status, code) of a response; the code from the JSON body, which must agree with
    the x-dohost-error header."""
    code = resp.header("x-dohost-error")
    if code is not None and resp.body:
        assert resp.json()["error"]["code"] == code
    return resp.status, code


def victim_snapshot(world: World) -> dict[str, Any]:
    """Everything of the victim, as its own token and the admin see it."""
    snap: dict[str, Any] = {}
    with Client(world, world.victim, []) as c:
        classes = _json(c.send("GET", "/v1/classes"))["classes"]
        snap["classes"] = classes
        for cls in sorted(x["class"] for x in classes):
            objects = _json(c.send("GET", f"/v1/classes/{cls}/objects?limit=1000"))["objects"]
            snap[f"objects:{cls}"] = objects
            for o in objects:
                path = f"/v1/classes/{cls}/ids/{o['id']}"
                snap[f"storage:{cls}:{o['id']}"] = _json(c.send("GET", path + "/storage"))
                snap[f"value:{cls}:{o['id']}"] = c.send("GET", path + "/").body
    with Client(world, world.server.admin_token, []) as c:
        snap["admin"] = _json(c.send("GET", f"/v1/tenants/{world.server.names[world.victim]}"))
    return snap


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("isolation") / "data"
    s = ServerProcess(data)
    victim = create_tenant(s, "victim")
    attacker = create_tenant(s, "attacker")
    w = World(data, s, victim, attacker, {}, {})
    with Client(w, victim, []) as c:
        assert c.send("PUT", "/v1/classes/counter", COUNTER).status == 201
        assert c.send("PUT", "/v1/classes/ledger?storage=sqlite", COUNTER).status == 201
        for name, value in VICTIM_VALUES.items():
            r = c.send("POST", f"/v1/classes/counter/objects/{q(name)}/incr", str(value).encode())
            assert r.body == str(value).encode()
            w.victim_ids[name] = _json(c.send("GET", f"/v1/classes/counter/objects/{q(name)}"))[
                "id"
            ]
        unique = _json(c.send("POST", "/v1/classes/counter/ids"))["id"]
        assert c.send("POST", f"/v1/classes/counter/ids/{unique}/incr", b"7171").status == 200
        w.victim_ids["unique"] = unique
        r = c.send("POST", "/v1/classes/ledger/objects/gold/incr", str(LEDGER_GOLD).encode())
        assert r.body == str(LEDGER_GOLD).encode()
        w.victim_ids["ledger-gold"] = _json(c.send("GET", "/v1/classes/ledger/objects/gold"))["id"]
    with Client(w, attacker, []) as c:
        assert c.send("PUT", "/v1/classes/counter", COUNTER).status == 201
        assert c.send("PUT", "/v1/classes/caller", CALLTEST).status == 201
        assert c.send("POST", "/v1/classes/counter/objects/gold/incr").body == b"1"
        w.attacker_ids["gold"] = _json(c.send("GET", "/v1/classes/counter/objects/gold"))["id"]
    yield w
    counts = ", ".join(f"{k}: {v}" for k, v in w.attacks.items())
    print(f"\nattack requests per test: {counts}; total {sum(w.attacks.values())}")
    assert w.server.stop() == 0, w.server.stderr()
    assert "Traceback" not in w.server.stderr()


@pytest.fixture
def attacker(world: World, request: pytest.FixtureRequest) -> Iterator[Client]:
    """The attacker's client; the victim's data is compared whole around each test."""
    # The victim's object names and ids. (Its values are short numbers that could turn
    # up inside any hex id or hash; the snapshot and the value checks cover those.)
    forbidden = [SECRET_NAME.encode(), b"a/b", b"a%2Fb"]
    forbidden += [v.encode() for v in world.victim_ids.values()]
    before = victim_snapshot(world)
    with Client(world, world.attacker, forbidden) as c:
        yield c
        world.attacks[request.node.name] = c.sent
    assert victim_snapshot(world) == before
    assert world.server.proc.poll() is None


def expect(c: Client, method: str, target: str | bytes, status: int, code: str | None,
           body: bytes = b"", **kw: Any) -> RawResponse:  # fmt: skip
    r = c.send(method, target, body, **kw)
    assert host_error(r) == (status, code), (method, target, r.status, r.body[:300])
    return r


# ------------------------------------------------------------------------------ traversal

# Class positions are matched as sent (never percent-decoded), against [a-z0-9][a-z0-9_-]*.
CLASS_PAYLOADS = [
    "..",
    ".",
    "%2e%2e",
    "%2E%2E",
    ".%2e",
    "%2e.",
    "%252e%252e",  # double-encoded
    "..%2Fledger",
    "%2F",
    "%2Fledger",
    "..%5Cledger",
    "%00",
    "ledger%00",
    "%00ledger",
    "LEDGER",
    "Ledger",
    "%6cedger",  # percent-encoded 'l': not decoded, so not "ledger"
    "ledger%20",
    "ledger.",
    "ledger;x",
    "%EF%BD%8C%EF%BD%85%EF%BD%84%EF%BD%87%EF%BD%85%EF%BD%92",  # fullwidth "ledger"
    "l%D0%B5dger",  # Cyrillic e
    "led%E2%80%8Bger",  # zero-width space
    "ledger%E2%80%AE",  # right-to-left override
    "~victim",
    "*",
    "x" * 64,  # one over the length limit
    "a" * 3000,
    "victim%2Fledger",
    "..%2F..%2Ftenants%2Fvictim%2Fsqlite%2Fledger",
]
# Raw slashes move the other parts: the class is then "..", "" or similar.
RAW_SLASH_CLASS_PATHS = [
    "/v1/classes/../ledger/objects/gold/",
    "/v1/classes/../../v1/classes/ledger/objects/gold/",
    "/v1/classes//ledger/objects/gold/",
    "/v1/classes/./ledger/objects/gold/",
    "/v1/classes/victim/ledger/objects/gold/",
    "/v1/classes/ledger/../ledger/objects/gold/",
]


def test_traversal_in_the_class_position(attacker: Client) -> None:
    c = attacker
    for p in CLASS_PAYLOADS:
        expect(c, "GET", f"/v1/classes/{p}", 404, "unknown_class")
        expect(c, "GET", f"/v1/classes/{p}/objects", 404, "unknown_class")
        expect(c, "GET", f"/v1/classes/{p}/objects/gold/", 404, "unknown_class")
        expect(c, "POST", f"/v1/classes/{p}/objects/gold/incr", 404, "unknown_class")
        expect(c, "GET", f"/v1/classes/{p}/objects/gold/storage", 404, "unknown_class")
        expect(c, "DELETE", f"/v1/classes/{p}/objects/gold", 404, "unknown_class")
        expect(c, "POST", f"/v1/classes/{p}/ids", 404, "unknown_class")
        ledger_id = c.world.victim_ids["ledger-gold"]
        expect(c, "GET", f"/v1/classes/{p}/ids/{ledger_id}/", 404, "unknown_class")
        # A deploy under such a name is refused before anything is stored.
        expect(c, "PUT", f"/v1/classes/{p}", 400, "invalid_name", COUNTER)
    for path in RAW_SLASH_CLASS_PATHS:
        expect(c, "GET", path, 404, "unknown_class")
        expect(c, "PUT", path, 404, "unknown_class", COUNTER)
    # None of it created a class for the attacker either.
    classes = [x["class"] for x in _json(c.send("GET", "/v1/classes"))["classes"]]
    assert classes == ["caller", "counter"]


# Object names are percent-decoded UTF-8 of 1-1024 bytes; they are only ever MACed into
# an id of the caller's own class, so a "traversing" name is just another object of the
# attacker's. Expected: ("own", _) = answered by the attacker's own fresh object.
NAME_PAYLOADS: list[tuple[str, tuple[int, str | None]]] = [
    ("..", (200, None)),
    ("%2e%2e", (200, None)),
    ("..%2F..%2Fledger%2Fobjects%2Fgold", (200, None)),
    ("%2F", (200, None)),
    ("a%2Fb", (200, None)),  # the victim has an "a/b" too: not this one
    (q(SECRET_NAME), (200, None)),  # same name as the victim's object, own object
    ("%00", (200, None)),
    ("gold%00", (200, None)),
    ("%E2%80%AEdlog", (200, None)),
    ("%EF%BD%87old", (200, None)),  # fullwidth g
    ("%252e%252e", (200, None)),
    ("%", (200, None)),
    ("x" * 1024, (200, None)),
    ("x" * 1025, (400, "invalid_name")),
    ("%E2%82%AC" * 342, (400, "invalid_name")),  # 1026 bytes once decoded
    ("%C3%28", (400, "invalid_name")),  # not UTF-8
    ("%FF", (400, "invalid_name")),
    ("%ED%A0%80", (400, "invalid_name")),  # a UTF-16 surrogate in UTF-8
    ("", (400, "invalid_name")),
]


def test_traversal_in_the_object_name_position(attacker: Client) -> None:
    c = attacker
    names = NAME_PAYLOADS + [(v, (200, None)) for v in c.world.victim_ids.values()]
    for p, want in names:
        r = expect(c, "POST", f"/v1/classes/counter/objects/{p}/incr", *want)
        if want[0] == 200:
            # The attacker's own object (a fresh one, or one of these payloads again).
            assert int(r.body) < 100, (p, r.body)
            info = _json(c.send("GET", f"/v1/classes/counter/objects/{p}"))
            assert info["id"] not in c.world.victim_ids.values()
            expect(c, "GET", f"/v1/classes/counter/objects/{p}/storage", 200, None)
            expect(c, "DELETE", f"/v1/classes/counter/objects/{p}", 200, None)
        else:
            expect(c, "GET", f"/v1/classes/counter/objects/{p}", *want)
            expect(c, "DELETE", f"/v1/classes/counter/objects/{p}", *want)
    # The guest path after the object is the guest's business: the counter answers 404
    # itself (no x-dohost-error), whatever it tries to climb to.
    for rest in ("..", "../../ledger/objects/gold/incr", "%2e%2e/%2e%2e/ledger", "/"):
        expect(c, "POST", f"/v1/classes/counter/objects/gold/{rest}", 404, None)
    assert c.send("GET", "/v1/classes/counter/objects/gold/").body == b"1"


def _id_payloads(world: World) -> list[str]:
    v = world.victim_ids
    gold = v["gold"]
    own = world.attacker_ids["gold"]
    return [
        *v.values(),  # the victim's ids of both its classes
        gold.upper(),
        "".join(f"%{b:02x}" for b in gold.encode()),  # percent-encoded: ids are not decoded
        gold[:-1],
        gold + "0",
        gold[:32] + own[32:],  # the victim's object half with the attacker's MAC half
        own[:32] + gold[32:],
        "0" * 64,
        "..",
        "%2e%2e",
        "",
        gold + "%00",
        "x" * 3000,
    ]


def test_ids_of_another_tenant_or_class_are_invalid_id(attacker: Client) -> None:
    c = attacker
    w = c.world
    for p in _id_payloads(w):
        for cls in ("counter", "caller"):
            base = f"/v1/classes/{cls}/ids/{p}"
            expect(c, "GET", base, 404, "invalid_id")
            expect(c, "GET", base + "/", 404, "invalid_id")
            expect(c, "POST", base + "/incr", 404, "invalid_id")
            expect(c, "GET", base + "/storage", 404, "invalid_id")
            expect(c, "DELETE", base, 404, "invalid_id")
            expect(c, "GET", base + "/../../ledger/objects/gold/", 404, "invalid_id")
    # The attacker's own id is refused by its other class as well.
    own = w.attacker_ids["gold"]
    expect(c, "GET", f"/v1/classes/caller/ids/{own}/", 404, "invalid_id")
    # The victim's own ids do not cross between the victim's own classes either.
    with Client(w, w.victim, []) as v:
        expect(v, "GET", f"/v1/classes/ledger/ids/{w.victim_ids['gold']}/", 404, "invalid_id")
        expect(v, "GET", f"/v1/classes/counter/ids/{w.victim_ids['ledger-gold']}", 404,
               "invalid_id")  # fmt: skip
        c.sent += v.sent
    # The object list does not take another tenant's id as a place to start from.
    page = _json(c.send("GET", f"/v1/classes/counter/objects?after={w.victim_ids['gold']}"))
    assert all(o["id"] not in w.victim_ids.values() for o in page["objects"])


def test_hostile_query_parameters(attacker: Client) -> None:
    c = attacker
    for value in ("../../victim", "..%2Fsqlite", "%00", "kv%00", "KV", "sqlite/../kv", ""):
        expect(c, "PUT", f"/v1/classes/newcls?storage={value}", 400, "invalid_argument", ECHO)
    for value in ("..", "%2e%2e", "zz", c.world.victim_ids["gold"][:-1], "%00"):
        expect(c, "GET", f"/v1/classes/counter/objects?after={value}", 400, "invalid_argument")
    for name in ("cursor", "prefix"):
        for value in ("..", "%2F", "%00", "a=b", "***"):
            expect(c, "GET", f"/v1/classes/counter/objects/gold/storage?{name}={value}", 400,
                   "invalid_argument")  # fmt: skip
    for value in ("0", "-1", "1001", "1e3", "99999999999999999999999", "%00"):
        expect(c, "GET", f"/v1/classes/counter/objects?limit={value}", 400, "invalid_argument")
    expect(c, "GET", "/v1/classes/counter/objects?%ff=1", 400, "bad_request")
    # Well-formed cursors can only move within the attacker's own object.
    for cursor in ("", "AA", "_w", "Z29sZA"):
        r = _json(c.send("GET", f"/v1/classes/counter/objects/gold/storage?cursor={cursor}"))
        assert r["id"] == c.world.attacker_ids["gold"]
    classes = [x["class"] for x in _json(c.send("GET", "/v1/classes"))["classes"]]
    assert classes == ["caller", "counter"]


# ------------------------------------------------------------------------------ tokens

TENANT_ROUTES = [
    ("GET", "/v1/classes"),
    ("GET", "/v1/classes/counter"),
    ("PUT", "/v1/classes/counter"),
    ("GET", "/v1/classes/counter/objects"),
    ("POST", "/v1/classes/counter/ids"),
    ("GET", "/v1/classes/counter/objects/gold"),
    ("DELETE", "/v1/classes/counter/objects/gold"),
    ("POST", "/v1/classes/counter/objects/gold/incr"),
    ("GET", "/v1/classes/counter/objects/gold/storage"),
    ("GET", "/v1/classes/ledger/objects/gold/"),
    ("GET", "/v1/nothing-here"),
]
ADMIN_ROUTES = [
    ("GET", "/metrics"),
    ("GET", "/v1/tenants"),
    ("POST", "/v1/tenants"),
    ("GET", "/v1/tenants/victim"),
    ("PATCH", "/v1/tenants/victim"),
    ("DELETE", "/v1/tenants/victim"),
    ("POST", "/v1/tenants/victim/token"),
    ("GET", "/v1/tenants/attacker"),
    ("DELETE", "/v1/tenants/attacker"),
    ("POST", "/v1/tenants/attacker/token"),
]
ADMIN_BODY = b'{"name": "pwned", "quotas": {"objects": 1, "requests_per_s": 1}}'


def _garbled(token: str) -> list[bytes]:
    t = token.encode()
    return [
        b"",
        b"Bearer",
        b"Bearer ",
        b"Bearer wrong",
        b"Bearer " + t + b"x",
        b"Bearer " + t[:-1],
        b"Bearer " + t[1:],
        b"Bearer " + t.upper(),
        b"Bearer " + t.swapcase(),
        b"Bearer " + t + b" " + t,
        b"Basic " + t,
        b"Token " + t,
        t,  # no scheme
        b"Bearer" + t,  # no space
        b"Bearer " + hashlib.sha256(t).hexdigest().encode(),  # the stored form
        b"Bearer " + b"\xff" * len(t),
        b"Bearer " + b"A" * 4000,
    ]


def test_missing_and_garbled_tokens_are_401(attacker: Client) -> None:
    c = attacker
    w = c.world
    for tok in (w.victim, w.server.admin_token):
        for auth in _garbled(tok):
            for method, path in TENANT_ROUTES + ADMIN_ROUTES:
                expect(c, method, path, 401, "unauthorized", ADMIN_BODY, authorization=auth)
    # No Authorization header at all.
    with Client(w, None, c.forbidden) as anon:
        for method, path in TENANT_ROUTES + ADMIN_ROUTES:
            expect(anon, method, path, 401, "unauthorized", ADMIN_BODY)
        expect(anon, "GET", "/healthz", 200, None)  # the one open route
        c.sent += anon.sent


def test_wrong_kind_of_token_is_401(attacker: Client) -> None:
    c = attacker
    w = c.world
    for tok in (w.victim, w.attacker):
        for method, path in ADMIN_ROUTES:
            r = expect(c, method, path, 401, "unauthorized", ADMIN_BODY,
                       authorization=b"Bearer " + tok.encode())  # fmt: skip
            assert "admin token" in r.json()["error"]["message"]
    admin = b"Bearer " + w.server.admin_token.encode()
    for method, path in TENANT_ROUTES[:-1]:
        expect(c, method, path, 401, "unauthorized", COUNTER, authorization=admin)
    with Client(w, w.server.admin_token, []) as a:
        names = [t["name"] for t in _json(a.send("GET", "/v1/tenants"))["tenants"]]
        assert "pwned" not in names
        assert _json(a.send("GET", "/v1/tenants/attacker"))["overrides"] == {}
        c.sent += a.sent


def test_two_authorization_headers_never_mix_tenants(attacker: Client) -> None:
    c = attacker
    w = c.world
    victim_auth = (b"authorization", b"Bearer " + w.victim.encode())
    # The first header decides: a garbled first one is 401 even with a valid second one.
    expect(c, "GET", "/v1/classes", 401, "unauthorized", authorization=b"Bearer nope",
           headers=[victim_auth])  # fmt: skip
    # The attacker's first, the victim's second: the attacker's view only.
    r = c.send("GET", "/v1/classes/ledger/objects/gold/", headers=[victim_auth])
    assert host_error(r) == (404, "unknown_class")
    classes = [
        x["class"] for x in _json(c.send("GET", "/v1/classes", headers=[victim_auth]))["classes"]
    ]
    assert classes == ["caller", "counter"]


def test_other_tenants_token_sees_only_its_own(attacker: Client) -> None:
    c = attacker
    # The victim's class names answer as if they did not exist, or are the attacker's own.
    expect(c, "GET", "/v1/classes/ledger", 404, "unknown_class")
    expect(c, "GET", "/v1/classes/ledger/objects", 404, "unknown_class")
    assert c.send("GET", "/v1/classes/counter/objects/gold/").body == b"1"
    names = [o["name"] for o in _json(c.send("GET", "/v1/classes/counter/objects"))["objects"]]
    assert SECRET_NAME not in names and "gold" in names
    # Exactly as if: the victim's class (ledger) and a class nobody has (lodger), and the
    # victim's id and a forged one, answer the same status, headers and body.
    forged = "ab" * 32
    pairs = [
        ("/v1/classes/ledger/objects/gold/", "/v1/classes/lodger/objects/gold/"),
        ("/v1/classes/ledger/ids", "/v1/classes/lodger/ids"),
        (f"/v1/classes/counter/ids/{c.world.victim_ids['gold']}/", f"/v1/classes/counter/ids/{forged}/"),
    ]  # fmt: skip
    for real, made_up in pairs:
        for method in ("GET", "POST", "DELETE"):
            a, b = c.send(method, real), c.send(method, made_up)
            body_a = a.body.replace(b"ledger", b"lodger")
            assert (a.status, body_a) == (b.status, b.body), (method, real)
            skip = {"date", "content-length"}
            assert [h for h in a.headers if h[0] not in skip] == [
                h for h in b.headers if h[0] not in skip
            ]


def test_tokens_of_rotated_and_deleted_tenants_are_401(attacker: Client) -> None:
    c = attacker
    w = c.world
    s = w.server
    with Client(w, s.admin_token, []) as admin:
        created = _json_status(admin.send("POST", "/v1/tenants", b'{"name": "doomed"}'), 201)
        old = created["token"]
        with Client(w, old, []) as d:
            assert d.send("PUT", "/v1/classes/counter", COUNTER).status == 201
            assert d.send("POST", "/v1/classes/counter/objects/x/incr", b"77").body == b"77"
            doomed_id = _json(d.send("GET", "/v1/classes/counter/objects/x"))["id"]
            c.sent += d.sent
        rotated = _json(admin.send("POST", "/v1/tenants/doomed/token"))["token"]
        for method, path in TENANT_ROUTES:
            expect(c, method, path, 401, "unauthorized", authorization=b"Bearer " + old.encode())
        with Client(w, rotated, []) as d:
            assert d.send("GET", "/v1/classes/counter/objects/x/").body == b"77"
            c.sent += d.sent
        assert _json(admin.send("DELETE", "/v1/tenants/doomed")) == {
            "name": "doomed",
            "deleted": True,
        }
        for tok in (old, rotated):
            for method, path in TENANT_ROUTES + ADMIN_ROUTES:
                expect(c, method, path, 401, "unauthorized",
                       authorization=b"Bearer " + tok.encode())  # fmt: skip
        # A new tenant of the same name: the old tokens stay dead, the old ids mean
        # nothing in its classes, and none of the old data is there.
        again = _json_status(admin.send("POST", "/v1/tenants", b'{"name": "doomed"}'), 201)
        for tok in (old, rotated):
            expect(c, "GET", "/v1/classes", 401, "unauthorized",
                   authorization=b"Bearer " + tok.encode())  # fmt: skip
        with Client(w, again["token"], []) as d:
            assert _json(d.send("GET", "/v1/classes")) == {"classes": []}
            expect(d, "GET", f"/v1/classes/counter/ids/{doomed_id}/", 404, "unknown_class")
            assert d.send("PUT", "/v1/classes/counter", COUNTER).status == 201
            expect(d, "GET", f"/v1/classes/counter/ids/{doomed_id}/", 404, "invalid_id")
            assert d.send("GET", "/v1/classes/counter/objects/x/").body == b"0"
            c.sent += d.sent
        w.doomed = (old, rotated, doomed_id, again["token"])
        c.sent += admin.sent


def _json_status(resp: RawResponse, status: int) -> Any:
    assert resp.status == status, (resp.status, resp.body[:300])
    return resp.json()


# ------------------------------------------------------------------------------ timing


def test_token_comparison_is_constant_time_in_behaviour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every authentication compares SHA-256 digests with hmac.compare_digest, the
    admin's included, whatever the token: so its time does not depend on how much of a
    token an attacker has guessed (and the dict lookup before it is keyed by a digest
    the attacker cannot steer)."""
    system = SystemDb(tmp_path)
    try:
        admin = "admin-token-" + "z" * 20
        t = Tenancy(system, admin)
        _, token = t.create("acme")
        calls: list[tuple[Any, Any]] = []
        real = hmac.compare_digest

        def spy(a: Any, b: Any) -> bool:
            calls.append((a, b))
            return real(a, b)

        monkeypatch.setattr(hmac, "compare_digest", spy)
        cases = [admin, token, admin[:-1] + "y", token[:-1], "x", "A" * 500]
        for presented in cases:
            calls.clear()
            try:
                principal = t.authenticate(f"Bearer {presented}")
            except DohostError as e:
                assert e.code is Code.UNAUTHORIZED
                principal = None
            assert (principal is not None) == (presented in (admin, token))
            h = token_hash(presented)
            # The admin comparison happens first, for every token, on digests.
            assert calls[0] == (h, token_hash(admin)), presented
            if presented == token:
                assert calls[1:] == [(h, h)]  # then the tenant's stored digest
            elif presented != admin:
                assert calls[1:] == []  # an unknown digest: no further comparison
            assert all(isinstance(a, bytes) and len(a) == len(b) == 32 for a, b in calls)
    finally:
        system.close()


CREDENTIAL_WORDS = ("token", "secret", "hash", "digest", "mac")


def test_no_credential_is_compared_with_an_operator() -> None:
    """A targeted check of the source: in the code that handles tokens and ids, no
    `==`, `!=`, `in` or `not in` has a credential-named operand (other than against a
    string literal such as a route part); such comparisons must be hmac.compare_digest."""
    offenders: list[str] = []
    for path in sorted((ROOT / "host" / "dohost").rglob("*.py")):
        src = path.read_text()
        for node in ast.walk(ast.parse(src)):
            if not isinstance(node, ast.Compare):
                continue
            if not any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops):
                continue
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) and isinstance(o.value, str) for o in operands):
                continue
            text = (ast.get_source_segment(src, node) or "").lower()
            if any(w in text for w in CREDENTIAL_WORDS):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text}")
    assert offenders == []
    # And the authenticating function does call compare_digest.
    auth_src = textwrap.dedent(inspect.getsource(tenancy_module.Tenancy.authenticate))
    assert auth_src.count("hmac.compare_digest(") >= 2


# ------------------------------------------------------------------------------ uploads


def test_object_calls_cannot_reach_another_tenant(attacker: Client) -> None:
    c = attacker
    w = c.world
    base = "/v1/classes/caller/objects/c/call?method=GET&path=%2F"
    for target, code in [
        ("&class=ledger&name=gold", "unknown_class"),  # the victim's class
        (f"&class=counter&id={w.victim_ids['gold']}", "invalid_id"),
        (f"&class=counter&id={w.victim_ids['unique']}", "invalid_id"),
        ("&class=..%2Fvictim%2Fledger&name=gold", "unknown_class"),
        ("&class=LEDGER&name=gold", "unknown_class"),
    ]:
        r = c.send("POST", base + target)
        assert r.status == 200, r.body
        assert r.body.startswith(b"-") and code.encode() in r.body, (target, r.body)
    # By name in a class the attacker also has: the attacker's own object.
    r = c.send("POST", base + "&class=counter&name=gold")
    assert (r.status, r.body) == (200, b"1")


def test_module_upload_to_the_victims_class_names_stays_the_attackers(attacker: Client) -> None:
    c = attacker
    w = c.world
    # The attacker's own "counter" gets a new version (echo); the victim's is untouched.
    r = c.send("PUT", "/v1/classes/counter", ECHO)
    assert r.status == 201 and r.json()["version"] == 2
    # "ledger" exists only for the victim: this makes the attacker's own, a sqlite one.
    r = c.send("PUT", "/v1/classes/ledger?storage=sqlite", COUNTER)
    assert r.status == 201 and r.json()["version"] == 1
    assert c.send("POST", "/v1/classes/ledger/objects/gold/incr").body == b"1"
    expect(c, "GET", f"/v1/classes/ledger/ids/{w.victim_ids['ledger-gold']}/", 404, "invalid_id")
    # Deploys that try to land elsewhere are refused by name.
    for target in (
        "/v1/classes/victim%2Fcounter",
        "/v1/classes/..%2F..%2Fvictim%2Fkv",
        "/v1/classes/counter%00",
        "/v1/classes/COUNTER",
    ):
        expect(c, "PUT", target, 400, "invalid_name", COUNTER)
    expect(c, "PUT", "/v1/classes/counter?storage=sqlite", 400, "invalid_argument", COUNTER)
    with Client(w, w.victim, []) as v:
        assert v.send("GET", "/v1/classes/counter/objects/gold/").body == b"4242"  # still counter
        c.sent += v.sent
    # Back to the counter (version 3) for the tests after this one.
    assert c.send("PUT", "/v1/classes/counter", COUNTER).status == 201


# ------------------------------------------------------------------------------ admin names


TENANT_NAME_PAYLOADS = [
    "..",
    "%2e%2e",
    "victim%00",
    "VICTIM",
    "victim%20",
    "victim%2F..",
    "%2Fvictim",
    "vict%C4%B1m",  # dotless i
    "x" * 3000,
    "",
]


def test_traversal_in_the_tenant_position_of_admin_routes(world: World) -> None:
    """The admin is trusted, but a mistyped or hostile tenant name must still never hit
    another tenant: every such name is unknown (404), or refused by name (400)."""
    w = world
    before = victim_snapshot(w)
    with Client(w, w.server.admin_token, []) as a:
        for p in TENANT_NAME_PAYLOADS:
            if p == "":
                continue  # "/v1/tenants/" is the list route
            for method in ("GET", "PATCH", "DELETE"):
                expect(a, method, f"/v1/tenants/{p}", 404, "unknown_tenant",
                       b'{"quotas": {"objects": 1}}')  # fmt: skip
            expect(a, "POST", f"/v1/tenants/{p}/token", 404, "unknown_tenant")
        for path in ("/v1/tenants/victim/", "/v1/tenants/victim/token/", "/v1/tenants/victim/../attacker",
                     "/v1/tenants/../tenants/victim", "/v1/tenants/victim/x"):  # fmt: skip
            for method in ("DELETE", "POST", "PATCH", "GET"):
                expect(a, method, path, 404, "not_found", b"{}")
        for name in ("../victim", "victim/..", "victim\u0000", "Victim", ".", "", "x" * 64,
                     "v\u0131ctim", "victim "):  # fmt: skip
            body = json.dumps({"name": name}).encode()
            expect(a, "POST", "/v1/tenants", 400, "invalid_name", body)
        expect(a, "POST", "/v1/tenants", 409, "already_exists", b'{"name": "victim"}')
        w.attacks["test_traversal_in_the_tenant_position_of_admin_routes"] = a.sent
    # The victim's token still works, and nothing of it changed.
    with Client(w, w.victim, []) as v:
        assert v.send("GET", "/v1/classes/counter/objects/gold/").body == b"4242"
    assert victim_snapshot(w) == before


# ------------------------------------------------------------------------------ restart


def test_after_a_restart_dead_tokens_stay_dead_and_the_victim_is_intact(world: World) -> None:
    w = world
    before = victim_snapshot(w)
    w.restart()
    after = victim_snapshot(w)
    # Usage bytes of sqlite objects are reloaded as their file sizes at start (documented
    # in quota_storage.py), so that one number may differ; the data may not.
    for snap in (before, after):
        del snap["admin"]["usage"]["storage_bytes"]
    assert after == before
    assert w.doomed is not None, "run with test_tokens_of_rotated_and_deleted_tenants_are_401"
    old, rotated, doomed_id, again = w.doomed
    with Client(w, w.attacker, []) as c:
        for tok in (old, rotated):
            expect(c, "GET", "/v1/classes", 401, "unauthorized",
                   authorization=b"Bearer " + tok.encode())  # fmt: skip
        with Client(w, again, []) as d:
            expect(d, "GET", f"/v1/classes/counter/ids/{doomed_id}/", 404, "invalid_id")
            c.sent += d.sent
        expect(c, "GET", f"/v1/classes/counter/ids/{w.victim_ids['gold']}/", 404, "invalid_id")
        w.attacks["test_after_a_restart"] = c.sent


# ------------------------------------------------------------------------------ ghosts

GHOST_BASE_MS = 1_800_000_000_000


@pytest.mark.parametrize("storage", ["kv", "sqlite"])
async def test_a_deleted_tenants_alarm_never_runs_in_a_new_tenant_of_that_name(
    tmp_path: Path, mock_clock: MockClock, storage: str
) -> None:
    """An alarm set by an object of a tenant that is then deleted, and re-created with
    the same class name, must not run as an event of the new tenant's class (the alarm
    index keeps removed entries until they are due: it is a superset)."""
    kvtest = (ROOT / "tests" / "fixtures" / "build" / "kvtest.wasm").read_bytes()
    async with Host(
        tmp_path / "data",
        durability="os",
        wall_clock_ms=lambda: GHOST_BASE_MS + mock_clock.current_time() * 1000,
        alarm_jitter=lambda: 0.0,
    ) as host:
        await host.deploy("ghost", "k", kvtest, storage)
        due = GHOST_BASE_MS + 5_000
        for name in ("o", "p"):
            r = await host.fetch("ghost", "k", name, Request("POST", "/alarm_set", f"ms={due}"))
            assert r.status == 200, r.text
        old_ids = [host.id_from_name("ghost", "k", n).raw for n in ("o", "p")]
        assert len(host.pending_alarms("ghost")) == 2
        assert await host.delete_tenant("ghost")
        await host.deploy("ghost", "k", kvtest, storage)
        mock_clock.jump(60)
        await host.alarms.settled()
        # Nothing ran: the new class has no objects (the handler would have stored its
        # run record), no alarm is pending, and the old ids mean nothing to the new class.
        page = host.storage.list_objects("ghost", "k", storage, after=None, limit=100)
        assert page.objects == []
        assert host.pending_alarms("ghost") == []
        for raw in old_ids:
            with pytest.raises(DohostError) as ei:
                host.id_from_string("ghost", "k", raw.hex())
            assert ei.value.code is Code.INVALID_ID
        r = await host.fetch("ghost", "k", "o", Request("GET", "/alarm_calls", ""))
        assert r.text == "0"

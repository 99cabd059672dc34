"""Object-to-object calls (abi/README.md "Object calls") end to end through `dohost.Host`,
driven over requests to the test guest tests/fixtures/c/calltest.c (and kvtest's /echo).

What is shown here: calls by name and by id, across classes of one tenant and never
across tenants; a callee's failure is an error *response* and the caller goes on; cycles
(direct, through others, and between two concurrent chains) and the depth limit end at
once with their error codes; calls arrive in the order they were made; the caller's
writes are durable before the callee runs, and stay when the caller fails afterwards;
the caller's CPU deadline does not tick while it waits; calls from alarm handlers keep
the alarm's retry semantics.
"""

from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import apsw
import pytest
import trio
from api_helpers import http_request
from trio.testing import MockClock

from dohost import Code, DohostError, Host, Request, Response
from dohost.core import cbor
from dohost.core.calls import decode_call_request
from dohost.core.limits import EventLimits
from dohost.server.api import Api
from dohost.server.quotas import Quotas
from dohost.server.state import ServerState
from dohost.storage.api import CommitTicket, ObjectStorage

T = "acme"
C = "calltest"


@pytest.fixture
async def h(tmp_path: Path, wasm: Any) -> AsyncIterator[Host]:
    async with Host(tmp_path / "data", durability="os", workers=2) as host:
        await host.deploy(T, C, wasm("calltest"))
        await host.deploy(T, "other", wasm("calltest"))
        await host.deploy(T, "kv", wasm("kvtest"))
        yield host


async def req(
    h: Host, obj: str, path: str, params: dict[str, Any] | None = None, body: bytes = b"",
    *, cls: str = C, method: str = "POST", tenant: str = T,
) -> Response:  # fmt: skip
    query = urlencode(params or {}, quote_via=quote)
    return await h.fetch(tenant, cls, obj, Request(method, path, query, [], body))


async def call(
    h: Host, caller: str, target: str, path: str, body: bytes = b"", **params: Any
) -> Response:
    """`caller` calls `target` ("name", or "class:name") at `path` (may have a query)."""
    cls, _, name = target.rpartition(":")
    p, _, q = path.partition("?")
    args: dict[str, Any] = {"class": cls or C, "name": name, "path": p, **params}
    if q:
        args["query"] = q
    return await req(h, caller, "/call", args, body)


async def log_of(h: Host, obj: str, cls: str = C) -> list[str]:
    r = await req(h, obj, "/get", {"key": "log"}, method="GET", cls=cls)
    return [] if r.status == 404 else r.text.splitlines()


async def get(h: Host, obj: str, key: str, cls: str = C) -> str | None:
    r = await req(h, obj, "/get", {"key": key}, method="GET", cls=cls)
    return None if r.status == 404 else r.text


# ---- Addressing --------------------------------------------------------------------------


async def test_call_by_name_returns_the_callees_response(h: Host) -> None:
    r = await req(h, "a", "/call", {"name": "b", "path": "/put", "query": "key=x"}, b"hello")
    assert (r.status, r.text) == (200, "0")  # kv_put's status, as b answered it
    assert await get(h, "b", "x") == "hello"
    assert await get(h, "a", "x") is None


async def test_the_callee_sees_the_request_as_sent(h: Host) -> None:
    # Another class of the same tenant: kvtest's /echo shows the request it decoded.
    r = await req(
        h, "a", "/call",
        {"class": "kv", "name": "e", "method": "PUT", "path": "/echo", "query": "a=1&b"},
        b"body bytes",
    )  # fmt: skip
    assert r.status == 200
    assert r.text.splitlines() == [
        "method=PUT",
        "path=/echo",
        "query=a=1&b",
        "header:x-from=calltest",
        "header:dohost-caller-class=calltest",
        f"header:dohost-caller-id={h.id_from_name(T, C, 'a').hex}",
        "header:dohost-caller-name=a",
        "body_len=10",
        "body=body bytes",
    ]


async def test_response_status_headers_and_body_come_back(h: Host) -> None:
    r = await call(h, "a", "kv:e", "/headers")
    assert (r.status, r.body) == (200, b"headers")
    assert r.header("x-one") == "1"
    assert [v for k, v in r.headers if k == "x-dup"] == ["a", "b"]
    r = await call(h, "a", "kv:e", "/status?code=418")
    assert r.status == 418
    r = await call(h, "a", "kv:e", "/no_response")
    assert r.status == 204


async def test_call_by_id(h: Host) -> None:
    named = h.id_from_name(T, C, "b")
    r = await req(h, "a", "/call", {"id": named.hex, "path": "/put", "query": "key=k"}, b"1")
    assert r.text == "0"
    assert await get(h, "b", "k") == "1"  # the same object as by name
    unique = h.new_unique_id(T, "other")
    r = await req(
        h, "a", "/call", {"class": "other", "id": unique.hex, "path": "/put", "query": "key=k"},
        b"2",
    )  # fmt: skip
    assert r.text == "0"
    r = await h.fetch(T, "other", unique, Request("GET", "/get", "key=k"))
    assert r.text == "2"


@pytest.mark.parametrize(
    "bad_id",
    [
        "00" * 32,  # a forged id
        "zz",  # not an id at all
        "other-class",  # replaced below by an id of another class
    ],
)
async def test_an_invalid_id_fails_at_once(h: Host, bad_id: str) -> None:
    if bad_id == "other-class":
        bad_id = h.id_from_name(T, "other", "b").hex
    with trio.fail_after(1):
        r = await req(h, "a", "/call", {"id": bad_id, "path": "/get"})
    assert r.text.startswith("-17 call_failed "), r.text
    assert "invalid_id" in r.text


async def test_no_calls_across_tenants(h: Host, wasm: Any) -> None:
    await h.deploy("evil", "secret", wasm("calltest"))
    await h.deploy("evil", C, wasm("calltest"))
    await req(h, "vault", "/put", {"key": "k"}, b"secret", cls="secret", tenant="evil")
    # A class of another tenant does not exist from acme's side...
    r = await req(h, "a", "/call", {"class": "secret", "name": "vault", "path": "/get"})
    assert r.text.startswith("-17 call_failed "), r.text
    assert "unknown_class" in r.text
    # ...and an id minted by the other tenant's class of the same name is refused.
    theirs = h.id_from_name("evil", C, "vault")
    r = await req(h, "a", "/call", {"id": theirs.hex, "path": "/get", "query": "key=k"})
    assert r.text.startswith("-17 call_failed ") and "invalid_id" in r.text, r.text


async def test_malformed_requests_are_bad_encoding(h: Host) -> None:
    r = await req(h, "a", "/call", {"name": "b", "path": "no-slash"})
    assert r.text.startswith("-8 bad_encoding call: call request path"), r.text
    r = await req(h, "a", "/call", {"name": "b", "method": "BAD METHOD"})
    assert r.text.startswith("-8 bad_encoding"), r.text


async def test_an_object_knows_its_address_and_its_caller(h: Host) -> None:
    a = h.id_from_name(T, C, "a").hex
    r = await req(h, "a", "/whoami", method="GET")
    assert r.text == f"calltest {a} a"
    unnamed = h.new_unique_id(T, C)
    r = await h.fetch(T, C, unnamed, Request("GET", "/whoami"))
    assert r.text == f"calltest {unnamed.hex} (none)"
    # A callee learns who called from headers only the host sets...
    r = await call(h, "a", "other:b", "/caller")
    assert r.text == f"calltest {a} a"
    assert (await req(h, "b", "/caller", method="GET", cls="other")).text == "none"
    r = await h.fetch(T, C, unnamed, Request("POST", "/call", "class=other&name=b&path=/caller"))
    assert r.text == f"calltest {unnamed.hex} (none)"


async def test_a_caller_cannot_pose_as_another_object(h: Host, wasm: Any) -> None:
    # Caller headers a guest passes are dropped (the host sets them)...
    forged = cbor.encode({"headers": [["Dohost-Caller-Id", "f" * 64], ["x-ok", "1"]]})
    assert decode_call_request(forged).headers == [("x-ok", "1")]
    # ...and so are those of requests from HTTP.
    state = await ServerState.attach(h, "admin-token-" + "x" * 20, Quotas())
    api = Api(state)
    _, token = state.tenancy.create("web")
    await h.deploy("web", C, wasm("calltest"))
    r = await api.handle(
        http_request(
            "GET",
            f"/v1/classes/{C}/objects/x/caller",
            token=token,
            headers=[("dohost-caller-class", C), ("dohost-caller-id", "f" * 64)],
        )
    )
    assert (r.status, r.body) == (200, b"none")


# ---- Failures of the callee ----------------------------------------------------------------


async def test_a_callee_trap_is_an_error_response_and_the_caller_commits(h: Host) -> None:
    r = await call(h, "a", "b", "/trap", after_key="after", after_value="yes")
    assert r.status == 500
    assert r.header("content-type") == "application/json"
    err = json.loads(r.body)
    assert err["error"]["code"] == "object_error"
    assert "unreachable" in err["error"]["message"]
    assert await get(h, "a", "after") == "yes"  # the caller went on and committed
    assert await get(h, "b", "trapped") is None  # the callee's writes rolled back


async def test_a_callee_cpu_kill_is_an_error_response(h: Host) -> None:
    fast = EventLimits(cpu_ms=100)
    h.supervisor.limits_for = lambda t, c: fast if c == "other" else h.limits
    r = await call(h, "a", "other:b", "/spin")
    assert r.status == 500
    assert json.loads(r.body)["error"]["code"] == "cpu_limit"
    assert (await req(h, "a", "/get", {"key": "x"}, method="GET")).status == 404  # a is fine


# ---- Cycles and depth ------------------------------------------------------------------------


def hops(*names: str) -> str:
    return ",".join(n if ":" in n else f"{C}:{n}" for n in names)


async def test_a_direct_cycle_fails_at_once_naming_the_chain(h: Host) -> None:
    with trio.fail_after(1):
        r = await req(h, "a", "/chain", {"hops": hops("b", "a")})
    assert r.status == 200
    assert r.text.startswith("-15 call_cycle call cycle: calltest/a → calltest/b → calltest/a"), (
        r.text
    )


async def test_a_cycle_through_others_fails_at_once(h: Host) -> None:
    with trio.fail_after(1):
        r = await req(h, "a", "/chain", {"hops": hops("b", "other:c", "a")})
    assert r.text.startswith(
        "-15 call_cycle call cycle: calltest/a → calltest/b → other/c → calltest/a"
    ), r.text


@pytest.mark.parametrize("length", [4, 8, 16])
async def test_a_cycle_at_any_depth_fails_within_a_second(h: Host, length: int) -> None:
    # o0 → o1 → ... → o{length-1} → o0: the last call closes the cycle.
    names = [f"o{i}" for i in range(1, length)] + ["o0"]
    with trio.fail_after(1):
        r = await req(h, "o0", "/chain", {"hops": hops(*names)})
    chain = " → ".join(f"calltest/o{i}" for i in range(length)) + " → calltest/o0"
    assert r.text.startswith(f"-15 call_cycle call cycle: {chain}:"), r.text


async def test_calling_itself_is_a_cycle(h: Host) -> None:
    with trio.fail_after(1):
        r = await call(h, "a", "a", "/get?key=x")
    assert r.text.startswith("-15 call_cycle call cycle: calltest/a → calltest/a"), r.text


async def test_sixteen_calls_deep_work_and_the_seventeenth_is_call_depth(h: Host) -> None:
    names = [f"o{i}" for i in range(1, 18)]
    with trio.fail_after(5):
        r = await req(h, "o0", "/chain", {"hops": hops(*names[:16])})
    assert (r.status, r.text) == (200, "end")  # o16 ran 16 calls below o0's event
    with trio.fail_after(5):
        r = await req(h, "o0", "/chain", {"hops": hops(*names)})
    assert r.text.startswith("-16 call_depth call chain too deep: this call would be 17 calls"), (
        r.text
    )
    assert "(limit 16)" in r.text and "calltest/o0 → calltest/o1" in r.text


async def test_the_depth_limit_is_configurable(tmp_path: Path, wasm: Any) -> None:
    async with Host(tmp_path / "d", durability="os", workers=2, max_call_depth=2) as host:
        await host.deploy(T, C, wasm("calltest"))
        r = await req(host, "x", "/chain", {"hops": hops("y", "z")})
        assert r.text == "end"
        r = await req(host, "x", "/chain", {"hops": hops("y", "z", "w")})
        assert r.text.startswith("-16 call_depth"), r.text


async def test_two_chains_waiting_on_each_other_fail_one_call_not_hang(
    tmp_path: Path, wasm: Any
) -> None:
    # Guests busy-wait until their wall clock reaches `go`, so both events are running
    # (each holding its object) before either calls the other: a's event calls b while
    # b's event calls a. One call closes a wait-for cycle and fails with call_cycle; the
    # other waits until that event ends, then goes through.
    now = [1_000.0]
    async with Host(
        tmp_path / "d", durability="os", workers=2, wall_clock_ms=lambda: now[0]
    ) as host:
        await host.deploy(T, C, wasm("calltest"))
        go = 2_000
        results: dict[str, Response] = {}

        async def run(me: str, other: str) -> None:
            results[me] = await call(host, me, other, f"/append?v=from-{me}", wait_until=go)

        with trio.fail_after(10):
            async with trio.open_nursery() as n:
                n.start_soon(run, "a", "b")
                n.start_soon(run, "b", "a")
                while host.pool.busy < 2:  # both events spin on worker threads
                    await trio.sleep(0.001)
                t0 = time.monotonic()
                now[0] = go
        assert time.monotonic() - t0 < 1
        texts = sorted((r.text for r in results.values()), key=lambda t: t != "ok")
        assert texts[0] == "ok", texts
        assert texts[1].startswith("-15 call_cycle call cycle between concurrent events"), texts
        assert "calltest/a" in texts[1] and "calltest/b" in texts[1]
        failed = "a" if results["a"].text != "ok" else "b"
        succeeded = "b" if failed == "a" else "a"
        assert await log_of(host, failed) == [f"from-{succeeded}"]
        assert await log_of(host, succeeded) == []


# ---- Order -----------------------------------------------------------------------------------


async def test_calls_of_one_event_arrive_in_order(h: Host) -> None:
    r = await req(h, "a", "/call_many", {"n": 100, "name": "b"})
    assert r.text == "ok"
    assert await log_of(h, "b") == [str(i) for i in range(100)]


async def test_calls_of_many_events_arrive_in_the_callers_order(h: Host) -> None:
    async with trio.open_nursery() as n:
        for i in range(100):
            n.start_soon(req, h, "a", "/append_and_call", {"v": i, "name": "b"})
    mine, theirs = await log_of(h, "a"), await log_of(h, "b")
    assert sorted(mine, key=int) == [str(i) for i in range(100)]
    assert theirs == mine  # b received a's calls in the order a's events ran


# ---- Durability: a call is a commit point ---------------------------------------------------


def committed_value(h: Host, obj: str, key: bytes) -> bytes | None:
    """What the caller's shard file holds, read by an independent connection: only what
    was committed."""
    oid = h.id_from_name(T, C, obj).raw
    for path in glob.glob(os.path.join(h.storage.kv_dir(T), "shard-*.db")):
        conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
        try:
            row = conn.execute(
                "SELECT value FROM kv WHERE object_id=? AND key=?", (oid, key)
            ).fetchone()
        finally:
            conn.close()
        if row is not None:
            return bytes(row[0])
    return None


class Watch:
    """Storage wrapper (Supervisor.wrap_storage): records the caller's commit tickets, and
    when an event of the callee begins, whether every one of them had completed and what
    the caller's shard file held at that moment."""

    def __init__(self, h: Host, caller: str, callee: str) -> None:
        self.h, self.caller, self.callee = h, caller, callee
        self.tickets: list[CommitTicket] = []
        self.seen: list[tuple[bool, bytes | None]] = []
        self.caller_oid = h.id_from_name(T, C, caller).raw
        self.callee_oid = h.id_from_name(T, C, callee).raw

    def wrap(self, tenant: str, cls: str, oid: Any, inner: ObjectStorage) -> ObjectStorage:
        watch = self

        class Wrapped:
            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

            def commit_event(self) -> CommitTicket:
                t = inner.commit_event()
                if oid.raw == watch.caller_oid:
                    watch.tickets.append(t)
                return t

            def begin_event(self) -> None:
                if oid.raw == watch.callee_oid:
                    done = all(t.done and t.error is None for t in watch.tickets)
                    watch.seen.append((done, committed_value(watch.h, watch.caller, b"x")))
                inner.begin_event()

        return Wrapped()  # type: ignore[return-value]


async def test_the_callers_writes_are_durable_before_the_callee_runs(h: Host) -> None:
    watch = Watch(h, "a", "b")
    h.supervisor.wrap_storage = watch.wrap
    r = await call(h, "a", "b", "/append?v=1", put_key="x", put_value="before")
    assert r.text == "ok"
    # Every event of b began after all of a's commits so far had completed, and a's
    # write was in its shard file by then (the callee may run twice: inline, then on a
    # worker, so there may be more than one record).
    assert watch.seen and all(s == (True, b"before") for s in watch.seen), watch.seen


async def test_a_caller_that_fails_after_a_call_keeps_what_it_wrote_before(h: Host) -> None:
    # b has seen the call (a's state "x = 1" with it); a then fails. a's writes before the
    # call were committed at the call, so b never knows of a state a's storage lacks.
    with pytest.raises(DohostError) as ei:
        await call(
            h, "a", "b", "/append?v=x=1", put_key="x", put_value="1",
            after_key="y", after_value="2", trap_after=1,
        )  # fmt: skip
    assert ei.value.code is Code.OBJECT_ERROR
    assert await log_of(h, "b") == ["x=1"]
    assert await get(h, "a", "x") == "1"  # committed at the call
    assert await get(h, "a", "y") is None  # after the call: rolled back with the failure
    assert committed_value(h, "a", b"x") == b"1"


async def test_a_failed_commit_before_a_call_fails_the_event_and_no_call_leaves(h: Host) -> None:
    fail = [True]
    a_oid = h.id_from_name(T, C, "a").raw

    def wrap(tenant: str, cls: str, oid: Any, inner: ObjectStorage) -> ObjectStorage:
        class Failing:
            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

            def commit_event(self) -> CommitTicket:
                if oid.raw == a_oid and fail[0]:
                    return CommitTicket.failed(
                        DohostError(Code.STORAGE_ERROR, "injected: the disk went away")
                    )
                return inner.commit_event()

        return Failing()  # type: ignore[return-value]

    h.supervisor.wrap_storage = wrap
    with pytest.raises(DohostError) as ei:
        await call(h, "a", "b", "/append?v=1", put_key="x", put_value="1")
    assert ei.value.code is Code.STORAGE_ERROR
    assert "before a call could not be stored" in ei.value.message
    assert "injected" in ei.value.message
    assert await log_of(h, "b") == []  # the call never left
    fail[0] = False
    assert await get(h, "a", "x") is None  # the object was reset and works again
    assert (await call(h, "a", "b", "/append?v=2")).text == "ok"


async def test_the_commit_point_on_a_sqlite_class(h: Host, wasm: Any) -> None:
    # One database per object, an event is a real SQLite transaction: the call commits it
    # and the rest of the event runs in a new one.
    await h.deploy(T, "sq", wasm("calltest"), storage="sqlite")
    with pytest.raises(DohostError):
        await req(
            h, "a", "/call",
            {"name": "b", "path": "/append", "query": "v=1", "put_key": "x", "put_value": "1",
             "after_key": "y", "after_value": "2", "trap_after": 1},
            cls="sq",
        )  # fmt: skip
    assert await log_of(h, "b") == ["1"]
    assert await get(h, "a", "x", cls="sq") == "1"
    assert await get(h, "a", "y", cls="sq") is None
    r = await req(
        h, "a", "/call",
        {"name": "b", "path": "/append", "query": "v=2", "after_key": "y", "after_value": "3"},
        cls="sq",
    )  # fmt: skip
    assert r.text == "ok"
    assert await get(h, "a", "y", cls="sq") == "3"  # written in the second transaction


async def test_a_call_while_the_host_shuts_down_fails_cleanly(tmp_path: Path, wasm: Any) -> None:
    now = [1_000.0]
    async with Host(
        tmp_path / "d", durability="os", workers=2, wall_clock_ms=lambda: now[0]
    ) as host:
        await host.deploy(T, C, wasm("calltest"))
        out: list[Response] = []

        async def caller() -> None:
            out.append(await call(host, "a", "b", "/append?v=1", wait_until=2_000))

        async with trio.open_nursery() as n:
            n.start_soon(caller)
            while host.pool.busy < 1:  # a's event is running (waiting for its clock)
                await trio.sleep(0.001)
            host.supervisor.closing = True  # what Host.__aexit__ does first
            now[0] = 2_000
        assert out[0].text.startswith("-17 call_failed call to calltest/b failed: shutting_down")
        host.supervisor.closing = False


# ---- CPU -------------------------------------------------------------------------------------


async def test_the_callers_cpu_deadline_does_not_tick_while_it_waits(h: Host) -> None:
    short, long = EventLimits(cpu_ms=300), EventLimits(cpu_ms=5_000)
    h.supervisor.limits_for = lambda t, c: short if c == C else long
    # The caller (300 ms budget) waits ~500 ms for a callee burning CPU, then runs 100 ms
    # of its own: it would be killed if the wait counted.
    r = await call(h, "a", "other:b", "/spin_ms?ms=500", spin_after_ms=100)
    assert (r.status, r.text) == (200, "spun")
    # The budget still holds for what the caller itself runs after the call: a caller
    # that spins until stopped is stopped by its own limit (named in the error), however
    # loaded the machine (a spin of a fixed 600 ms wall time was not always 60 ticks of
    # the epoch ticker under load). (The fail_after only guards against a hang.)
    with trio.fail_after(120), pytest.raises(DohostError) as ei:
        await call(h, "a", "other:b", "/spin_ms?ms=10", spin_after_ms=3_600_000)
    assert ei.value.code is Code.CPU_LIMIT
    assert "CPU time limit of 300 ms" in ei.value.message, ei.value.message


# ---- Threads, inline attempts, metrics -------------------------------------------------------


async def test_calls_do_not_mark_the_caller_heavy(h: Host) -> None:
    await call(h, "a", "b", "/append?v=1")
    slot = next(s for s in h.supervisor.slots() if s.name == "a" and s.class_name == C)
    assert slot.heavy_until == 0.0  # the inline attempt moved to a worker, not for CPU
    assert h.supervisor.stats.offloads >= 1


async def test_many_concurrent_chains_need_no_more_workers(h: Host) -> None:
    # 2 workers; 20 chains of 8 objects at once: every caller blocks a worker thread while
    # it waits, so this would hang without replacement threads.
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            for i in range(20):
                names = [f"c{i}-{j}" for j in range(1, 9)]
                n.start_soon(req, h, f"c{i}-0", "/chain", {"hops": hops(*names)})
    assert h.pool.blocked == 0


async def test_calls_reach_the_metrics_under_the_servers_hooks(h: Host) -> None:
    # The server's wiring (quota-accounting storage, per-tenant limits, metrics) around
    # calls and their commit points.
    state = await ServerState.attach(h, "admin-token-" + "x" * 20, Quotas())
    assert (await req(h, "a", "/call_many", {"n": 3, "name": "b"})).text == "ok"
    await call(h, "a", "a", "/get")
    await call(h, "a", "nope:x", "/get")
    text = state.metrics.render().decode()
    assert 'dohost_calls_total{class="calltest",tenant="acme"} 5.0' in text
    for code in ("call_cycle", "call_failed"):
        assert (
            f'dohost_call_failures_total{{class="calltest",code="{code}",tenant="acme"}} 1.0'
            in text
        )
    assert await log_of(h, "b") == ["0", "1", "2"]


# ---- Alarms ----------------------------------------------------------------------------------

BASE_MS = 1_800_000_000_000


@pytest.fixture
async def ah(tmp_path: Path, mock_clock: MockClock, wasm: Any) -> AsyncIterator[Host]:
    """A host whose wall clock (guests' now_ms, the alarm loop) moves with the MockClock."""
    async with Host(
        tmp_path / "data",
        durability="os",
        workers=2,
        wall_clock_ms=lambda: BASE_MS + mock_clock.current_time() * 1000,
        alarm_jitter=lambda: 0.0,
    ) as host:
        await host.deploy(T, C, wasm("calltest"))
        yield host


async def advance(h: Host, clock: MockClock, seconds: float) -> None:
    clock.jump(seconds)
    await h.alarms.settled()


async def test_an_alarm_handler_that_calls_then_fails_is_retried(
    ah: Host, mock_clock: MockClock
) -> None:
    # Each run calls b (committing the handler's writes so far) and then fails twice: the
    # alarm must survive those commits, be retried, and be consumed by the run that works.
    for key, value in (("__call_class", C), ("__call_name", "b"), ("__fail_after", "2")):
        await req(ah, "a", "/put", {"key": key}, value.encode())
    await req(ah, "a", "/alarm_in", {"ms": 1000})
    await advance(ah, mock_clock, 1)
    assert await log_of(ah, "b") == ["alarm"]
    assert (await req(ah, "a", "/alarm_get", method="GET")).text != "none"  # not consumed
    await advance(ah, mock_clock, 2)  # first retry
    await advance(ah, mock_clock, 4)  # second retry: succeeds
    assert await log_of(ah, "b") == ["alarm"] * 3
    assert await get(ah, "a", "__runs") == "run\n"
    assert (await req(ah, "a", "/alarm_get", method="GET")).text == "none"
    assert ah.alarm_index.entries() == []
    await advance(ah, mock_clock, 120)
    assert await log_of(ah, "b") == ["alarm"] * 3


async def test_an_alarm_set_before_a_call_survives_a_later_failure(
    ah: Host, mock_clock: MockClock
) -> None:
    with pytest.raises(DohostError):
        await call(ah, "a", "b", "/append?v=1", alarm_in=5000, trap_after=1)
    # Committed at the call, so it is set and scheduled although the event failed.
    assert (await req(ah, "a", "/alarm_get", method="GET")).text == str(BASE_MS + 5000)
    await advance(ah, mock_clock, 5)
    assert await get(ah, "a", "__runs") == "run\n"

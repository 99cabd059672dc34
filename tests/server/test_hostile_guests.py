"""Hostile and broken guests (tests/fixtures/*.wat): each gets a clear error with a
stable code, loses nothing it should keep, and leaves the host serving: after each, another
object of the same class and an object of another class still answer correctly."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from dohost import Code, DohostError, Host, Request
from dohost.core.limits import EventLimits

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
async def h(tmp_path: Path, wasm: Any) -> Any:
    # A short CPU budget keeps the infinite-loop cases quick; it is real CPU time, not a sleep.
    async with Host(tmp_path / "data", durability="os", limits=EventLimits(cpu_ms=200)) as host:
        await host.deploy("acme", "counter", wasm("counter"))
        yield host


async def still_serving(host: Host, cls: str | None = None) -> None:
    """The host and other objects are unharmed."""
    r = await host.fetch("acme", "counter", "bystander", Request("POST", "/incr"))
    assert r.status == 200 and int(r.text) >= 1
    if cls is not None:
        await host.deploy("acme", "noop-" + cls, (FIXTURES / "build" / "noop.wasm").read_bytes())
        r = await host.fetch("acme", "noop-" + cls, "other", Request("GET", "/"))
        assert r.status == 200


async def entries(host: Host, cls: str, name: str) -> dict[bytes, bytes]:
    oid = host.id_from_name("acme", cls, name)
    return dict(host.storage.object_entries("acme", cls, oid.raw).entries)


async def expect_event_error(
    host: Host, cls: str, code: Code, text: str, obj: str = "victim"
) -> None:
    with pytest.raises(DohostError) as ei:
        await host.fetch("acme", cls, obj, Request("GET", "/"))
    assert ei.value.code is code, ei.value
    assert text in ei.value.message, ei.value.message


@pytest.mark.parametrize(
    ("fixture", "code", "text"),
    [
        ("infinite_loop", Code.CPU_LIMIT, "CPU time limit of 200 ms"),
        ("recursion", Code.OBJECT_ERROR, "stack overflow"),
        ("wasi_proc_exit", Code.OBJECT_ERROR, "proc_exit(3)"),
        ("init_fails", Code.OBJECT_ERROR, "dohost_init returned 7"),
        ("trap_after_puts", Code.OBJECT_ERROR, "unreachable"),
    ],
)
async def test_failing_events(h: Host, wasm: Any, fixture: str, code: Code, text: str) -> None:
    await h.deploy("acme", fixture, wasm(fixture))
    await expect_event_error(h, fixture, code, text)
    await expect_event_error(h, fixture, code, text)  # a fresh activation fails the same way
    assert await entries(h, fixture, "victim") == {}  # every write of the failed events rolled back
    await still_serving(h, fixture)


async def test_cpu_kill_then_same_class_other_object(h: Host, wasm: Any) -> None:
    await h.deploy("acme", "kv", wasm("kvtest"))
    with pytest.raises(DohostError) as ei:
        await h.fetch("acme", "kv", "looper", Request("GET", "/spin"))
    assert ei.value.code is Code.CPU_LIMIT
    r = await h.fetch("acme", "kv", "calm", Request("POST", "/put", "key=a", [], b"1"))
    assert r.status == 200
    r = await h.fetch("acme", "kv", "looper", Request("POST", "/put", "key=a", [], b"2"))
    assert r.status == 200  # the killed object itself serves again, on a new activation


async def test_memory_grow_past_the_cap(h: Host, wasm: Any) -> None:
    await h.deploy("acme", "grow", wasm("grow_past_cap"))
    r = await h.fetch("acme", "grow", "g", Request("GET", "/"))
    assert r.text == "-1 1 -1 "
    await still_serving(h, "grow")


async def test_bad_pointers_get_bad_pointer_and_change_nothing(h: Host, wasm: Any) -> None:
    await h.deploy("acme", "badptr", wasm("bad_pointers"))
    r = await h.fetch("acme", "badptr", "b", Request("GET", "/"))
    statuses = r.text.split()
    assert len(statuses) >= 15 and set(statuses) == {"-2"}, r.text
    assert await entries(h, "badptr", "b") == {}
    await still_serving(h, "badptr")


async def test_oversized_keys_and_values(h: Host, wasm: Any) -> None:
    await h.deploy("acme", "big", wasm("oversized_key"))
    r = await h.fetch("acme", "big", "k", Request("GET", "/"))
    assert r.text == "-4 0 -5 0 -4 -4 "
    stored = await entries(h, "big", "k")
    assert sorted(len(k) + len(v) for k, v in stored.items()) == [2048, 2 * 1024 * 1024]
    await still_serving(h, "big")


@pytest.mark.parametrize(
    ("fixture", "code", "text"),
    [
        ("huge_initial_memory", Code.MEMORY_TOO_LARGE, "2049 pages"),
        ("unknown_import", Code.UNKNOWN_IMPORT, "dohost.no_such_thing"),
        ("unknown_module_import", Code.UNKNOWN_IMPORT, "env.abort"),
        ("wrong_signature", Code.UNKNOWN_IMPORT, "ABI v1 declares"),
        ("no_marker", Code.ABI_VERSION, "dohost_abi_v1"),
        ("abi_v2", Code.ABI_VERSION, "dohost_abi_v2"),
        ("missing_fetch", Code.MISSING_EXPORT, "dohost_fetch"),
        ("no_memory", Code.MISSING_EXPORT, "memory"),
        ("unknown_export", Code.UNKNOWN_EXPORT, "dohost_"),
    ],
)
async def test_refused_at_deploy_with_the_problem_named(
    h: Host, wasm: Any, fixture: str, code: Code, text: str
) -> None:
    with pytest.raises(DohostError) as ei:
        await h.deploy("acme", fixture, wasm(fixture))
    assert ei.value.code is code, ei.value
    assert text in ei.value.message, ei.value.message
    with pytest.raises(DohostError) as ei:
        await h.fetch("acme", fixture, "x", Request("GET", "/"))
    assert ei.value.code is Code.UNKNOWN_CLASS  # nothing was deployed
    await still_serving(h, fixture)


@pytest.mark.parametrize(
    "content",
    [
        (FIXTURES / "not_wasm.bin").read_bytes(),
        b"",
        b"\0asm",
        b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff\x0f",  # a section longer than the file
        b"\0asm\x02\0\0\0",  # unknown binary version
    ],
    ids=["text", "empty", "magic-only", "bad-section", "bad-version"],
)
async def test_not_wasm_is_refused(h: Host, content: bytes) -> None:
    with pytest.raises(DohostError) as ei:
        await h.deploy("acme", "junk", content)
    assert ei.value.code is Code.INVALID_MODULE
    await still_serving(h, "junk")


async def test_redeploy_of_a_bad_version_keeps_the_good_one(h: Host, wasm: Any) -> None:
    await h.fetch("acme", "counter", "keep", Request("POST", "/incr"))
    with pytest.raises(DohostError):
        await h.deploy("acme", "counter", wasm("unknown_import"))
    r = await h.fetch("acme", "counter", "keep", Request("GET", "/"))
    assert r.text == "1" and h.class_info("acme", "counter").version == 1


async def test_wasi_stdout_goes_to_the_object_log(h: Host, wasm: Any, caplog: Any) -> None:
    await h.deploy("acme", "wasi", wasm("wasi_stdout"))
    with caplog.at_level(logging.INFO, logger="dohost.guest"):
        r = await h.fetch("acme", "wasi", "w", Request("GET", "/"))
    assert r.text == "0 0 8"
    msgs = {
        (rec.levelno, rec.getMessage().split("] ", 1)[1])
        for rec in caplog.records
        if rec.name == "dohost.guest"
    }
    assert (logging.INFO, "hello stdout") in msgs and (logging.WARNING, "hello stderr") in msgs


async def test_echo_sees_large_requests_through_result_read(h: Host, wasm: Any) -> None:
    from dohost.core.envelopes import decode_request

    await h.deploy("acme", "echo", wasm("echo"))
    body = bytes(range(256)) * 1000  # larger than the guest's free memory: output-buffer rule
    r = await h.fetch("acme", "echo", "e", Request("PUT", "/p/q", "x=1", [("x-a", "b")], body))
    back = decode_request(r.body)
    assert (back.method, back.path, back.query, back.headers, back.body) == (
        "PUT",
        "/p/q",
        "x=1",
        [("x-a", "b")],
        body,
    )


async def test_an_abandoned_inline_attempt_is_not_counted_as_an_activation(
    tmp_path: Path, wasm: Any
) -> None:
    """The first event of an object runs inline in a fresh instance; when it outgrows the
    inline budget that instance is thrown away and the event runs again in a new one on a
    worker. Only the one that served counts (the metric and stats.activations agree)."""
    async with Host(tmp_path / "data", durability="os", limits=EventLimits(cpu_ms=200)) as h:
        await h.deploy("acme", "kv", wasm("kvtest"))
        sup = h.supervisor
        activations, offloads = sup.stats.activations, sup.stats.offloads
        with pytest.raises(DohostError) as ei:
            await h.fetch("acme", "kv", "spinner", Request("GET", "/spin"))
        assert ei.value.code is Code.CPU_LIMIT
        assert sup.stats.offloads == offloads + 1  # the inline attempt was abandoned
        assert sup.stats.activations == activations + 1  # and not counted

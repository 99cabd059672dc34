"""The event lifecycle (runtime/event.py) on a real activation over real kv storage:
begin, finish (the alarm index before the commit), fail (rollback; a failing alarm
handler keeps only its new alarm, whatever failed), abandon (an inline attempt leaves
nothing), and the commit of what the event wrote."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from dohost.core.alarm_schedule import AlarmRun
from dohost.core.envelopes import Request, encode_request
from dohost.core.errors import Code
from dohost.core.limits import EventLimits
from dohost.runtime.activation import Activation, CompiledClass
from dohost.runtime.engine import EngineSettings, make_engine
from dohost.runtime.event import ObjectIdent
from dohost.runtime.linker import build_linker
from dohost.runtime.module_loader import validate_module
from dohost.storage.api import ObjectStorage
from dohost.storage.manager import StorageManager

KVTEST = Path(__file__).resolve().parent.parent / "fixtures" / "build" / "kvtest.wasm"
OID = bytes(range(32))
IDENT = ObjectIdent("acme", "kv", OID.hex())
NOW_MS = 1_700_000_000_000


@pytest.fixture(scope="module")
def compiled() -> CompiledClass:
    engine = make_engine(EngineSettings())
    wasm = KVTEST.read_bytes()  # built by the session fixture (tests/conftest.py)
    module = wasmtime.Module(engine, wasm)
    info = validate_module(module, wasm, EventLimits().memory_bytes)
    pre = build_linker(engine, fast=True).instantiate_pre(module)
    return CompiledClass(info, module, pre, engine, True)


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[StorageManager]:
    m = StorageManager(tmp_path / "data", durability="os")
    yield m
    m.close()


@pytest.fixture
def storage(manager: StorageManager) -> ObjectStorage:
    return manager.open_object("acme", "kv", OID)


class Index:
    """The alarm index hook of an activation: records what it is asked to make durable,
    and can fail (as the index's disk can)."""

    def __init__(self, fail_times: int = 0, error: Callable[[], Exception] | None = None):
        self.calls: list[int] = []
        self.fail_times = fail_times
        self.error = error or (lambda: RuntimeError("the alarm index is unavailable"))

    def __call__(self, due_ms: int) -> None:
        self.calls.append(due_ms)
        if self.fail_times > 0:
            self.fail_times -= 1
            raise self.error()


def activation(
    compiled: CompiledClass, storage: ObjectStorage, index: Index | None = None, inline: int = 0
) -> Activation:
    act = Activation(compiled, IDENT, storage, EventLimits(), inline)
    act.wall_ms = lambda: float(NOW_MS)
    act.on_alarm_set = index
    return act


def fetch(act: Activation, method: str, path: str, query: str = "", body: bytes = b"") -> Any:
    return act.run_event("fetch", encode_request(Request(method, path, query, [], body)))


def committed(result: Any) -> None:
    assert result.error is None, result.error
    assert result.ticket is not None and result.ticket.wait() is None


def value(storage: ObjectStorage, key: bytes) -> bytes | None:
    storage.begin_event()
    try:
        return storage.get(key)
    finally:
        storage.rollback_event()


def alarm_of(storage: ObjectStorage) -> int | None:
    storage.begin_event()
    try:
        return storage.get_alarm()
    finally:
        storage.rollback_event()


def test_finish_commits_the_events_writes(compiled: CompiledClass, storage: ObjectStorage) -> None:
    act = activation(compiled, storage)
    r = fetch(act, "POST", "/put", "key=a", b"1")
    committed(r)
    assert r.response.status == 200
    assert r.storage_writes == 1
    assert value(storage, b"a") == b"1"
    assert not act.broken


def test_fail_rolls_back_and_breaks_the_activation(
    compiled: CompiledClass, storage: ObjectStorage
) -> None:
    act = activation(compiled, storage)
    r = fetch(act, "POST", "/put_then_trap")
    assert r.error is not None and r.error.code is Code.OBJECT_ERROR
    assert r.response is None and r.ticket is None
    assert act.broken
    assert value(storage, b"trap1") is None


def test_the_alarm_index_is_written_once_before_the_commit(
    compiled: CompiledClass, storage: ObjectStorage
) -> None:
    index = Index()
    act = activation(compiled, storage, index)
    committed(fetch(act, "POST", "/put", "key=a", b"1"))
    assert index.calls == []  # no alarm change: no index write
    due = NOW_MS + 5_000
    r = fetch(act, "POST", "/alarm_set", f"ms={due}")
    committed(r)
    assert index.calls == [due]
    assert (r.alarm_changed, r.alarm) == (True, due)
    assert alarm_of(storage) == due


def test_when_the_index_write_fails_nothing_commits(
    compiled: CompiledClass, storage: ObjectStorage
) -> None:
    """The index must be a superset of the truth: no index entry, no commit."""
    act = activation(compiled, storage, Index(fail_times=1))
    r = fetch(act, "POST", "/alarm_set", f"ms={NOW_MS + 5_000}")
    assert r.error is not None and r.error.code is Code.INTERNAL
    assert r.ticket is None
    assert alarm_of(storage) is None


def _alarm_event(act: Activation, due: int) -> Any:
    return act.run_event("alarm", AlarmRun(due).info())


def _object_with_alarm(
    compiled: CompiledClass, storage: ObjectStorage, due: int, chain_ms: int
) -> None:
    act = activation(compiled, storage)
    committed(fetch(act, "POST", "/put", "key=__alarm_chain", str(chain_ms).encode()))
    committed(fetch(act, "POST", "/alarm_set", f"ms={due}"))


def test_an_alarm_event_consumes_its_alarm_and_commits_the_new_one(
    compiled: CompiledClass, storage: ObjectStorage
) -> None:
    due = NOW_MS - 10
    _object_with_alarm(compiled, storage, due, chain_ms=60_000)
    index = Index()
    r = _alarm_event(activation(compiled, storage, index), due)
    committed(r)
    assert (r.alarm_changed, r.alarm) == (True, NOW_MS + 60_000)
    assert index.calls == [NOW_MS + 60_000]
    assert alarm_of(storage) == NOW_MS + 60_000


def test_a_failing_alarm_handler_keeps_only_its_new_alarm(
    compiled: CompiledClass, storage: ObjectStorage
) -> None:
    due = NOW_MS - 10
    act = activation(compiled, storage)
    committed(fetch(act, "POST", "/put", "key=__alarm_reset_in", b"30000"))
    committed(fetch(act, "POST", "/alarm_set", f"ms={due}"))
    r = _alarm_event(activation(compiled, storage, Index()), due)
    assert r.error is not None and r.error.code is Code.OBJECT_ERROR
    assert (r.alarm_replaced, r.alarm) == (True, NOW_MS + 30_000)
    committed_ticket = r.ticket
    assert committed_ticket is not None and committed_ticket.wait() is None
    assert alarm_of(storage) == NOW_MS + 30_000


def test_a_host_error_in_an_alarm_handler_keeps_its_new_alarm(
    compiled: CompiledClass, storage: ObjectStorage, caplog: Any
) -> None:
    """The handler set a new alarm and returned, then the host failed (here: the alarm
    index write raised something unexpected). The event fails `internal`; like any other
    failure of an alarm handler, the alarm it set is kept and replaces the retry. (Before
    runtime/event.py this path failed the event as a fetch and lost that alarm.)"""
    due = NOW_MS - 10
    _object_with_alarm(compiled, storage, due, chain_ms=60_000)
    index = Index(fail_times=1)  # the first write (finish) fails; the retry succeeds
    with caplog.at_level(logging.ERROR, logger="dohost.guest"):
        r = _alarm_event(activation(compiled, storage, index), due)
    assert r.error is not None and r.error.code is Code.INTERNAL
    assert "host error during event" in caplog.text
    assert (r.alarm_replaced, r.alarm_changed, r.alarm) == (True, True, NOW_MS + 60_000)
    assert index.calls == [NOW_MS + 60_000, NOW_MS + 60_000]
    assert r.ticket is not None and r.ticket.wait() is None
    assert alarm_of(storage) == NOW_MS + 60_000
    assert value(storage, b"__alarm") is None  # the handler's other writes: rolled back


def test_an_abandoned_inline_attempt_leaves_nothing(
    compiled: CompiledClass, storage: ObjectStorage, caplog: Any
) -> None:
    """alarm_set must not run on the loop thread: the inline attempt stops, its writes
    and its log lines are dropped, and the event can run again on a worker."""
    committed(fetch(activation(compiled, storage), "POST", "/put", "key=k", b"0"))
    inline = activation(compiled, storage, Index(), inline=2)
    body = encode_request(Request("POST", "/alarm_set", f"ms={NOW_MS + 1}", [], b""))
    with caplog.at_level(logging.DEBUG, logger="dohost.guest"):
        r = inline.run_event("fetch", body, inline_ticks=2)
    assert r.offload and not r.offload_cpu
    assert r.error is None and r.ticket is None and r.response is None
    assert inline.broken
    assert alarm_of(storage) is None
    again = activation(compiled, storage, Index()).run_event("fetch", body)
    committed(again)
    assert alarm_of(storage) == NOW_MS + 1


def test_log_lines_reach_the_log_when_the_event_ends(
    compiled: CompiledClass, storage: ObjectStorage, caplog: Any
) -> None:
    act = activation(compiled, storage)
    with caplog.at_level(logging.DEBUG, logger="dohost.guest"):
        committed(fetch(act, "POST", "/log", "level=2", b"hello from the guest"))
    rec = next(r for r in caplog.records if "hello from the guest" in r.getMessage())
    assert rec.levelno == logging.WARNING
    assert rec.__dict__["object"] == OID.hex()


def test_an_activation_looks_up_only_the_exports_its_events_need(
    compiled: CompiledClass, storage: ObjectStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each export lookup costs ~10 us of a new activation (issue 19: activations are
    most of creating an object): the optional handlers (alarm, WebSocket events) are
    looked up at their first event, once."""
    from dohost.runtime import crossing

    looked_up: list[str] = []
    by_name = crossing.export_by_name

    def counting(store: Any, instance: Any, name: str) -> Any:
        looked_up.append(name)
        return by_name(store, instance, name)

    monkeypatch.setattr(crossing, "export_by_name", counting)
    act = activation(compiled, storage)
    committed(fetch(act, "POST", "/put", "key=a", b"1"))
    for name in ("dohost_alarm", "dohost_ws_close", "dohost_ws_error"):
        assert name not in looked_up
    committed(act.run_event("alarm", AlarmRun(NOW_MS).info()))
    committed(act.run_event("alarm", AlarmRun(NOW_MS).info()))
    assert looked_up.count("dohost_alarm") == 1  # at the first alarm, once

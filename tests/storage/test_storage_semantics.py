"""ObjectStorage semantics shared by both backends: limits and error codes, events as
transactions, durability across close and reopen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import oid

from dohost.core.errors import Code, DohostError
from dohost.core.limits import MAX_ENTRY_BYTES, MAX_KEY_BYTES, MAX_KEYS_PER_CALL
from dohost.storage.api import Backend, Durability, ListOptions
from dohost.storage.manager import AnyObjectStorage, StorageManager

BACKENDS = [Backend.KV, Backend.SQLITE]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[StorageManager]:
    m = StorageManager(tmp_path, Durability.FSYNC, object_quota_bytes=10_000)
    yield m
    m.close()


def open_obj(m: StorageManager, backend: str, n: int = 1) -> AnyObjectStorage:
    o = m.open_object("t", "c", oid(n), f"name{n}", backend)
    o.begin_event()
    return o


def commit(o: AnyObjectStorage) -> None:
    assert o.commit_event().wait(10) is None
    o.begin_event()


def code_of(fn: object) -> Code:
    with pytest.raises(DohostError) as e:
        fn()  # type: ignore[operator]
    return e.value.code


# ------------------------------------------------------------------------- limits


def test_key_size_limit(manager: StorageManager, backend: str) -> None:
    o = open_obj(manager, backend)
    big = b"k" * (MAX_KEY_BYTES + 1)
    ok = b"k" * MAX_KEY_BYTES
    o.put(ok, b"v")
    assert o.get(ok) == b"v"
    for call in (
        lambda: o.get(big),
        lambda: o.put(big, b"v"),
        lambda: o.delete(big),
        lambda: o.get_many([b"a", big]),
        lambda: o.put_many({b"a": b"1", big: b"v"}),
        lambda: o.delete_many([big]),
    ):
        assert code_of(call) is Code.KEY_TOO_LARGE
    assert o.get(b"a") is None  # the failed put_many wrote nothing


def test_entry_size_limit(tmp_path: Path, backend: str) -> None:
    m = StorageManager(tmp_path, Durability.OS)  # default quota: 1 GiB
    try:
        o = open_obj(m, backend)
        o.put(b"k", b"v" * (MAX_ENTRY_BYTES - 1))  # key + value exactly at the limit
        assert code_of(lambda: o.put(b"kk", b"v" * (MAX_ENTRY_BYTES - 1))) is Code.VALUE_TOO_LARGE
        assert (
            code_of(lambda: o.put_many({b"a": b"1", b"kk": b"v" * MAX_ENTRY_BYTES}))
            is Code.VALUE_TOO_LARGE
        )
        assert o.get(b"a") is None
        assert len(o.get(b"k") or b"") == MAX_ENTRY_BYTES - 1
        o.close()
    finally:
        m.close()


def test_keys_per_call_limit(manager: StorageManager, backend: str) -> None:
    o = open_obj(manager, backend)
    keys = [b"%d" % i for i in range(MAX_KEYS_PER_CALL + 1)]
    assert code_of(lambda: o.get_many(keys)) is Code.TOO_MANY_KEYS
    assert code_of(lambda: o.put_many(dict.fromkeys(keys, b""))) is Code.TOO_MANY_KEYS
    assert code_of(lambda: o.delete_many(keys)) is Code.TOO_MANY_KEYS
    o.put_many(dict.fromkeys(keys[:-1], b"x"))  # exactly the limit works
    assert len(o.get_many(keys[:-1])) == MAX_KEYS_PER_CALL
    assert o.delete_many(keys[:-1]) == MAX_KEYS_PER_CALL


def test_object_quota(manager: StorageManager, backend: str) -> None:
    o = open_obj(manager, backend)  # quota 10,000 bytes of keys + values
    o.put(b"a", b"x" * 5000)
    o.put(b"b", b"x" * 4990)
    assert o.bytes_used == 9992
    assert code_of(lambda: o.put(b"c", b"x" * 10)) is Code.QUOTA_EXCEEDED
    assert code_of(lambda: o.put_many({b"c": b"1", b"d": b"x" * 10})) is Code.QUOTA_EXCEEDED
    assert o.get(b"c") is None  # all or nothing
    o.put(b"a", b"x" * 4000)  # shrinking a value frees room
    o.put(b"c", b"x" * 999)
    commit(o)
    o.close()
    # the count survives the activation (registry row / meta table)
    o = open_obj(manager, backend)
    assert o.bytes_used == (1 + 4000) + (1 + 4990) + (1 + 999)
    assert code_of(lambda: o.put(b"d", b"x" * 100)) is Code.QUOTA_EXCEEDED
    o.delete_all()
    assert o.bytes_used == 0
    o.put(b"d", b"x" * 9000)
    commit(o)


def test_quota_error_is_actionable(manager: StorageManager, backend: str) -> None:
    o = open_obj(manager, backend)
    with pytest.raises(DohostError) as e:
        o.put(b"a", b"x" * 20_000)
    assert "quota" in e.value.message and "10000" in e.value.message


def test_empty_key_and_value(manager: StorageManager, backend: str) -> None:
    o = open_obj(manager, backend)
    o.put(b"", b"")
    assert o.get(b"") == b""
    assert o.list(ListOptions()).entries == [(b"", b"")]
    commit(o)
    o.close()
    o = open_obj(manager, backend)
    assert o.get(b"") == b""
    assert o.delete(b"")
    assert o.get(b"") is None
    assert not o.delete(b"")


# ------------------------------------------------------------------------- events


def test_rollback_discards_exactly_the_events_writes(manager: StorageManager, backend: str) -> None:
    o = open_obj(manager, backend)
    o.put_many({b"a": b"1", b"b": b"2", b"c": b"3"})
    commit(o)
    o.put(b"a", b"changed")
    o.delete(b"b")
    o.put(b"d", b"new")
    assert o.get(b"a") == b"changed" and o.get(b"b") is None
    o.rollback_event()
    o.begin_event()
    assert o.get_many([b"a", b"b", b"c", b"d"]) == {b"a": b"1", b"b": b"2", b"c": b"3"}
    assert o.list(ListOptions()).entries == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
    assert o.bytes_used == 6


def test_delete_all_then_rollback_on_a_cold_activation(
    manager: StorageManager, backend: str
) -> None:
    o = open_obj(manager, backend)
    o.put_many({b"a": b"1", b"b": b"2"})
    commit(o)
    o.close()
    o = open_obj(manager, backend)  # nothing cached
    o.delete_all()
    assert o.get(b"a") is None and o.list(ListOptions()).entries == []
    o.put(b"z", b"9")
    o.rollback_event()
    o.begin_event()
    assert o.get(b"a") == b"1"
    assert o.list(ListOptions()).entries == [(b"a", b"1"), (b"b", b"2")]


def test_delete_all_commits(manager: StorageManager, backend: str) -> None:
    o = open_obj(manager, backend)
    o.put_many({b"a": b"1", b"b": b"2"})
    commit(o)
    o.delete_all()
    o.delete_all()
    o.put(b"c", b"3")
    commit(o)
    o.close()
    o = open_obj(manager, backend)
    assert o.list(ListOptions()).entries == [(b"c", b"3")]
    assert o.bytes_used == 2


def test_delete_reports_existence(manager: StorageManager, backend: str) -> None:
    o = open_obj(manager, backend)
    o.put_many({b"a": b"1", b"b": b"2"})
    commit(o)
    o.close()
    o = open_obj(manager, backend)
    assert o.delete(b"a") is True
    assert o.delete(b"a") is False
    assert o.delete(b"nope") is False
    assert o.delete_many([b"b", b"b", b"x"]) == 1


def test_commit_without_writes(manager: StorageManager, backend: str) -> None:
    o = open_obj(manager, backend)
    t = o.commit_event()
    assert t.done and t.error is None
    o.begin_event()
    o.get(b"a")
    t = o.commit_event()
    assert t.done and t.error is None


def test_durable_across_close_and_reopen(tmp_path: Path, backend: str) -> None:
    m = StorageManager(tmp_path, Durability.FSYNC)
    for n in range(5):
        o = open_obj(m, backend, n)
        for i in range(10):
            o.put(b"k%d" % i, b"v%d.%d" % (n, i))
            commit(o)
        o.delete(b"k0")
        commit(o)
        o.put(b"uncommitted", b"x")  # never committed: must not survive
        o.close()
    m.close()
    m.close()  # idempotent
    m = StorageManager(tmp_path, Durability.FSYNC)
    try:
        for n in range(5):
            o = open_obj(m, backend, n)
            want = [(b"k%d" % i, b"v%d.%d" % (n, i)) for i in range(1, 10)]
            assert o.list(ListOptions()).entries == want
            o.close()
        page = m.list_objects("t", "c", backend)
        assert [(i.object_id, i.name) for i in page.objects] == [
            (oid(n), f"name{n}") for n in range(5)
        ]
    finally:
        m.close()


def test_closed_storage_refuses_calls(manager: StorageManager, backend: str) -> None:
    o = open_obj(manager, backend)
    o.put(b"a", b"1")
    commit(o)
    o.close()
    o.close()
    assert o.closed
    for call in (lambda: o.get(b"a"), lambda: o.put(b"b", b"2"), o.begin_event):
        assert code_of(call) is Code.STORAGE_ERROR

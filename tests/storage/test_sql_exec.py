"""storage/sql_exec.py and sql_authorizer.py on a real object database, without wasm:
the database size limit, statement atomicity, inputs, and the host's own statements."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from storage_helpers import oid

from dohost.core import cbor
from dohost.core.errors import Code, DohostError
from dohost.storage.api import Durability, ListOptions
from dohost.storage.sql_exec import (
    EventFailure,
    TransactionLost,
    _simple_params,
    decode_params,
    decode_sql,
    leading_keyword,
)
from dohost.storage.sqlite_object import SqliteObjectStorage
from dohost.storage.wal_flusher import WalFlusher


@pytest.fixture
def flusher() -> Iterator[WalFlusher]:
    f = WalFlusher(Durability.OS)
    yield f
    f.close()


def make(tmp_path: Path, flusher: WalFlusher, **kw: Any) -> SqliteObjectStorage:
    o = SqliteObjectStorage(str(tmp_path / "o.db"), oid(1), "c", "o", flusher, **kw)
    o.begin_event()
    return o


def run(o: SqliteObjectStorage, sql: str, *params: Any) -> dict[str, Any]:
    result: dict[str, Any] = cbor.decode(o.sql_exec(sql, params, time.perf_counter() + 10).data)
    return result


def test_the_database_size_limit_ends_the_event(tmp_path: Path, flusher: WalFlusher) -> None:
    # quota 64 KiB -> max_page_count = 2 * 64 KiB / 4 KiB + 256 = 288 pages (~1.1 MiB).
    o = make(tmp_path, flusher, quota_bytes=64 * 1024)
    run(o, "CREATE TABLE t(x)")
    o.put(b"k", b"v")
    assert o.commit_event().wait(10) is None
    o.begin_event()
    run(o, "INSERT INTO t VALUES (1)")
    with pytest.raises(EventFailure) as ei:
        for _ in range(100):
            run(o, "INSERT INTO t VALUES (randomblob(100000))")
    assert ei.value.code is Code.QUOTA_EXCEEDED and "size limit" in ei.value.message
    o.rollback_event()  # the import traps; the event rolls back
    o.begin_event()
    assert run(o, "SELECT count(*) FROM t")["rows"] == [[0]]
    assert o.get(b"k") == b"v"
    run(o, "INSERT INTO t VALUES (2)")  # below the limit again
    assert o.commit_event().wait(10) is None
    o.close()


def test_insert_or_rollback_loses_the_transaction(tmp_path: Path, flusher: WalFlusher) -> None:
    o = make(tmp_path, flusher)
    run(o, "CREATE TABLE t(x PRIMARY KEY)")
    run(o, "INSERT INTO t VALUES (1)")
    assert o.commit_event().wait(10) is None
    o.begin_event()
    o.put(b"k", b"v")
    with pytest.raises(TransactionLost) as ei:
        run(o, "INSERT OR ROLLBACK INTO t VALUES (1)")
    assert ei.value.code is Code.OBJECT_ERROR
    with pytest.raises(DohostError) as later:
        o.get(b"k")  # every later call of the event fails: its writes are gone
    assert later.value.code is Code.STORAGE_ERROR
    o.rollback_event()
    o.begin_event()
    assert o.get(b"k") is None
    assert run(o, "SELECT x FROM t")["rows"] == [[1]]
    o.close()


def test_statements_are_atomic_and_the_event_goes_on(tmp_path: Path, flusher: WalFlusher) -> None:
    o = make(tmp_path, flusher)
    run(o, "CREATE TABLE t(x INTEGER PRIMARY KEY)")
    run(o, "INSERT INTO t VALUES (1)")
    for sql in ("INSERT OR FAIL INTO t VALUES (2), (1)", "UPDATE t SET x = x + 1 / 0 * 0 + 'a'"):
        with pytest.raises(DohostError):
            run(o, sql)
    with pytest.raises(DohostError) as ei:
        run(o, "INSERT INTO t VALUES (3), (1)")
    assert ei.value.code is Code.SQL_ERROR
    assert run(o, "SELECT x FROM t")["rows"] == [[1]]
    assert o.commit_event().wait(10) is None
    o.close()


def test_a_read_only_event_with_sql_needs_no_flush(tmp_path: Path, flusher: WalFlusher) -> None:
    o = make(tmp_path, flusher)
    run(o, "CREATE TABLE t(x)")
    first = o.commit_event()
    assert first.wait(10) is None
    o.begin_event()
    assert run(o, "SELECT count(*) FROM t")["rows"] == [[0]]
    assert o.commit_event() is first  # no write: the last commit's ticket
    o.close()


def test_host_statements_work_between_guest_statements(tmp_path: Path, flusher: WalFlusher) -> None:
    o = make(tmp_path, flusher)
    o.put(b"a", b"1")
    run(o, "CREATE TABLE t(x)")
    with pytest.raises(DohostError):
        run(o, "SELECT value FROM _dohost_kv WHERE key=?", b"a")  # the host's own text
    o.put(b"b", b"2")
    assert o.get(b"a") == b"1"
    assert [k for k, _ in o.list(ListOptions()).entries] == [b"a", b"b"]
    o.set_alarm(123)
    assert o.get_alarm() == 123
    assert o.commit_event().wait(10) is None
    o.close()


def test_leading_keyword() -> None:
    assert leading_keyword("  select 1") == "SELECT"
    assert leading_keyword("-- a\n/* b */ VACUUM") == "VACUUM"
    assert leading_keyword("EXPLAIN QUERY PLAN vacuum") == "VACUUM"
    assert leading_keyword("(SELECT 1)") == ""
    assert leading_keyword(" -- only\n /* comments */ ") is None
    assert leading_keyword("/* unterminated") is None


def test_decode_inputs() -> None:
    assert decode_params(b"") == ()
    values = (None, 1, -1, 1.5, "a", b"b")
    assert decode_params(cbor.encode(list(values))) == values
    for bad, code in (
        (cbor.encode([False]), Code.BAD_ENCODING),
        (cbor.encode("x"), Code.BAD_ENCODING),
        (cbor.encode([2**63]), Code.INVALID_ARGUMENT),
        (cbor.encode([-(2**63) - 1]), Code.INVALID_ARGUMENT),
        (cbor.encode(list(range(101))), Code.INVALID_ARGUMENT),
        (b"\x81", Code.BAD_ENCODING),
    ):
        with pytest.raises(DohostError) as ei:
            decode_params(bad)
        assert ei.value.code is code, bad
    assert decode_sql("SELECT 'é'".encode()) == "SELECT 'é'"
    with pytest.raises(DohostError):
        decode_sql(b"\xc3")


def test_plain_inserts_stay_atomic_when_the_schema_has_fail(
    tmp_path: Path, flusher: WalFlusher
) -> None:
    """Plain INSERTs skip the host savepoint (sql_exec.py); a trigger with RAISE(FAIL) or
    a FAIL conflict clause in the schema must bring it back, or a failing multi-row
    insert would keep its first rows."""
    o = make(tmp_path, flusher)
    run(o, "CREATE TABLE t(x INTEGER PRIMARY KEY)")
    run(o, "CREATE TABLE log(x)")
    run(o, "INSERT INTO t VALUES (1)")  # a plain insert caches "no triggers"
    run(
        o,
        "CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.x); "
        "SELECT RAISE(FAIL, 'no 99') WHERE new.x = 99; END",
    )
    with pytest.raises(DohostError) as ei:
        run(o, "INSERT INTO t VALUES (5), (99)")
    assert ei.value.code is Code.SQL_ERROR and "no 99" in ei.value.message
    assert run(o, "SELECT x FROM t")["rows"] == [[1]]
    assert run(o, "SELECT x FROM log")["rows"] == []
    assert o.commit_event().wait(10) is None

    # A rolled-back DROP TRIGGER brings the trigger back: the cache must not survive it.
    o.begin_event()
    run(o, "DROP TRIGGER t_ins")
    run(o, "INSERT INTO t VALUES (2)")  # plain again: "no triggers" cached
    o.rollback_event()
    o.begin_event()
    with pytest.raises(DohostError):
        run(o, "INSERT INTO t VALUES (6), (99)")
    assert run(o, "SELECT x FROM t")["rows"] == [[1]]

    run(o, "CREATE TABLE u(x UNIQUE ON CONFLICT FAIL)")
    with pytest.raises(DohostError):
        run(o, "INSERT INTO u VALUES (7), (7)")
    assert run(o, "SELECT x FROM u")["rows"] == []
    o.close()


def test_plain_insert_metering(tmp_path: Path, flusher: WalFlusher) -> None:
    o = make(tmp_path, flusher)
    run(o, "CREATE TABLE t(x)")
    r = run(o, "INSERT INTO t VALUES (?), (?)", 1, 2)
    assert (r["rows_read"], r["rows_written"]) == (0, 2)
    r = run(o, "INSERT INTO t SELECT x FROM t")  # reads t: metered by the trace
    assert r["rows_read"] >= 1 and r["rows_written"] == 2
    run(o, "CREATE TABLE seen(n)")
    run(
        o, "CREATE TRIGGER t_sum AFTER INSERT ON t BEGIN INSERT INTO seen SELECT sum(x) FROM t; END"
    )
    r = run(o, "INSERT INTO t VALUES (9)")  # a plain text, but the trigger scans t
    assert r["rows_written"] == 2 and r["rows_read"] >= 4
    o.close()


_values = st.one_of(
    st.none(),
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.integers(min_value=1 << 63, max_value=(1 << 64) - 1),  # out of range: refused
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.booleans(),  # refused
)


def _generic(data: bytes) -> tuple[Any, ...] | str:
    """decode_params' answer without its fast path."""
    try:
        value = cbor.decode(data)
    except Exception as e:
        return type(e).__name__
    return tuple(value) if isinstance(value, list) else "not a list"


@settings(max_examples=300, deadline=None)
@given(st.lists(_values, max_size=30))
def test_simple_params_agree_with_the_generic_decoder(values: list[Any]) -> None:
    """The fast path of decode_params (_simple_params) returns exactly what the generic
    decoder does, or None (the generic path then decides)."""
    data = cbor.encode(values)
    fast = _simple_params(data)
    if fast is not None:
        assert fast == _generic(data)
        assert [type(v) for v in fast] == [type(v) for v in values]
    try:
        out: tuple[Any, ...] | str = decode_params(data)
    except DohostError as e:
        out = e.code.code
    ok = len(values) <= 100 and all(
        type(v) is not bool and not (type(v) is int and v >= 1 << 63) for v in values
    )
    assert (out == tuple(values)) if ok else isinstance(out, str)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_simple_params_on_arbitrary_bytes(data: bytes) -> None:
    fast = _simple_params(data)
    if fast is not None:
        assert fast == _generic(data)

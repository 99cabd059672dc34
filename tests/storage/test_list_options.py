"""kv_list: every combination of ListOptions against a brute-force model, on both backends,
with the kv backend's cache in every state (cold, warm, event writes, in-flight commits,
delete_all), with the real caps and with tiny ones."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from storage_helpers import GatedFsync, model_list, oid

from dohost.core.errors import Code, DohostError
from dohost.core.limits import LIST_MAX_BYTES, LIST_MAX_ENTRIES
from dohost.storage.api import Backend, Durability, ListOptions
from dohost.storage.list_range import KeyRange, collect, prefix_successor
from dohost.storage.manager import StorageManager

KEYS = [b"", b"a", b"a\x00", b"ab", b"abc", b"ab\xff", b"b", b"ba", b"\xff", b"\xff\xff", b"c"]
PREFIXES = [b"", b"a", b"ab", b"\xff", b"z"]
STARTS = [None, b"", b"a", b"ab", b"abc", b"b", b"\xff"]
ENDS = [None, b"", b"a", b"ab\xff", b"b", b"c", b"\xff\xff"]
LIMITS = [0, 1, 2, 3, 100]

ALL_OPTIONS = [
    ListOptions(prefix=p, start=s, end=e, reverse=r, limit=n)
    for p, s, e, r, n in itertools.product(PREFIXES, STARTS, ENDS, (False, True), LIMITS)
]

CAPS = [(LIST_MAX_ENTRIES, LIST_MAX_BYTES), (3, 12)]


def check_all(obj: object, data: dict[bytes, bytes], caps: tuple[int, int]) -> None:
    for opts in ALL_OPTIONS:
        got = obj.list(opts)  # type: ignore[attr-defined]
        want = model_list(data, opts, *caps)
        assert got == want, opts


def test_prefix_successor() -> None:
    assert prefix_successor(b"") is None
    assert prefix_successor(b"\xff\xff") is None
    assert prefix_successor(b"a") == b"b"
    assert prefix_successor(b"a\xff") == b"b"
    assert prefix_successor(b"a\x00\xff\xff") == b"a\x01"


def test_negative_limit_is_invalid_argument() -> None:
    with pytest.raises(DohostError) as e:
        KeyRange.from_options(ListOptions(limit=-1))
    assert e.value.code is Code.INVALID_ARGUMENT


def test_collect_more_only_when_a_cap_cut_the_range() -> None:
    rows = [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
    assert collect(iter(rows), 0, 3, 100).more is False  # exactly the cap: range ended
    assert collect(iter(rows), 0, 2, 100).more is True
    assert collect(iter(rows), 2, 2, 100).more is False  # the guest's limit, not the cap
    r = collect(iter([(b"k", b"x" * 50), (b"l", b"y")]), 0, 10, 10)
    assert r.entries == [(b"k", b"x" * 50)] and r.more  # the first entry always fits


@pytest.mark.parametrize("caps", CAPS, ids=["real-caps", "tiny-caps"])
@pytest.mark.parametrize("backend", [Backend.KV, Backend.SQLITE])
def test_every_list_option_combination(
    tmp_path: Path, backend: str, caps: tuple[int, int], gated_fsync: GatedFsync
) -> None:
    m = StorageManager(
        tmp_path,
        Durability.FSYNC,
        fsync=gated_fsync,
        list_max_entries=caps[0],
        list_max_bytes=caps[1],
    )
    try:
        data = {k: b"v" + k for k in KEYS}
        o = m.open_object("t", "c", oid(1), None, backend)
        o.begin_event()
        o.put_many(data)
        assert o.commit_event().wait(10) is None
        o.close()

        # cold: a fresh activation, nothing cached, every row comes from disk
        o = m.open_object("t", "c", oid(1), None, backend)
        o.begin_event()
        check_all(o, data, caps)
        # warm: part of the keys cached (values and known-absent keys)
        for k in (b"a", b"abc", b"zz", b"\xff", b"nope"):
            assert o.get(k) == data.get(k)
        check_all(o, data, caps)
        # the event's own writes: puts over existing and new keys, tombstones
        o.put(b"ab", b"new")
        o.put(b"aa", b"fresh")
        o.put(b"\xff\x00", b"hi")
        assert o.delete(b"b")
        assert o.delete(b"a\x00")
        data.update({b"ab": b"new", b"aa": b"fresh", b"\xff\x00": b"hi"})
        del data[b"b"], data[b"a\x00"]
        check_all(o, data, caps)
        # a commit still in flight (the committer is held inside its fsync)
        gated_fsync.blocking = True
        ticket = o.commit_event()
        if backend == Backend.KV:
            assert gated_fsync.entered.wait(10)
            assert not ticket.done
        o.begin_event()
        o.delete(b"c")
        o.put(b"ba", b"again")
        del data[b"c"]
        data[b"ba"] = b"again"
        check_all(o, data, caps)
        gated_fsync.release.set()
        assert ticket.wait(10) is None
        assert o.commit_event().wait(10) is None
        check_all(o, data, caps)
        # delete_all, not yet committed, then a few puts: nothing on disk may show
        o.begin_event()
        o.delete_all()
        o.put(b"ab", b"1")
        o.put(b"\xff", b"2")
        check_all(o, {b"ab": b"1", b"\xff": b"2"}, caps)
        o.rollback_event()
        check_all(o, data, caps)
        o.close()
        # the admin view of the committed data agrees too
        for opts in ALL_OPTIONS[::7]:
            assert m.object_entries("t", "c", oid(1), backend, opts) == model_list(
                data, opts, *caps
            )
    finally:
        m.close()


@pytest.mark.parametrize("backend", [Backend.KV, Backend.SQLITE])
def test_list_stops_at_the_real_entry_cap(tmp_path: Path, backend: str) -> None:
    m = StorageManager(tmp_path, Durability.OS)
    try:
        o = m.open_object("t", "c", oid(2), None, backend)
        n = LIST_MAX_ENTRIES + 5
        keys = [b"k%06d" % i for i in range(n)]
        o.begin_event()
        for i in range(0, n, 128):
            o.put_many({k: b"" for k in keys[i : i + 128]})
        o.commit_event().wait(10)
        r = o.list(ListOptions())
        assert len(r.entries) == LIST_MAX_ENTRIES and r.more
        r2 = o.list(ListOptions(start=r.entries[-1][0] + b"\x00"))
        assert [k for k, _ in r2.entries] == keys[LIST_MAX_ENTRIES:] and not r2.more
        r3 = o.list(ListOptions(limit=LIST_MAX_ENTRIES))
        assert len(r3.entries) == LIST_MAX_ENTRIES and not r3.more
        rev = o.list(ListOptions(reverse=True))
        assert rev.entries[0][0] == keys[-1] and rev.more
        rest = o.list(ListOptions(reverse=True, end=rev.entries[-1][0]))
        assert len(rest.entries) == 5 and not rest.more
        o.close()
    finally:
        m.close()


@pytest.mark.parametrize("backend", [Backend.KV, Backend.SQLITE])
def test_list_stops_near_the_byte_cap(tmp_path: Path, backend: str) -> None:
    m = StorageManager(tmp_path, Durability.OS)
    try:
        o = m.open_object("t", "c", oid(3), None, backend)
        o.begin_event()
        big = b"x" * (1024 * 1024)
        for i in range(20):
            o.put(b"k%02d" % i, big)
        o.commit_event().wait(10)
        r = o.list(ListOptions())
        assert r.more and 0 < len(r.entries) < 20
        assert sum(len(k) + len(v) for k, v in r.entries) <= LIST_MAX_BYTES
        o.close()
    finally:
        m.close()

"""Replica log records: keys, and segments/start records/snapshots that survive an
encode/decode round trip exactly and are refused, with the key named, when a byte
changes or the object is cut short."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dohost.core.errors import Code, DohostError
from dohost.core.replica_keys import (
    LogKey,
    check_key,
    key_of,
    parse_log_key,
    segment_key,
    snapshot_key,
    start_key,
)
from dohost.core.replica_log import (
    ALARM_UNCHANGED,
    ObjectChange,
    ObjectState,
    PartitionState,
    Segment,
    Snapshot,
    StartRecord,
    apply_change,
    decode_format,
    decode_segment,
    decode_snapshot,
    decode_start,
    encode_format,
    encode_segment,
    encode_snapshot,
    encode_start,
)

u64 = st.integers(0, (1 << 64) - 1)
ms = st.integers(0, 10**13 - 1)
names = st.text(st.sampled_from("abc-_0"), min_size=1, max_size=8)
blobs = st.binary(max_size=40)

changes = st.builds(
    ObjectChange,
    tenant=names,
    class_name=names,
    object_id=st.binary(min_size=1, max_size=32),
    name=st.none() | st.text(max_size=10),
    created_ms=ms,
    puts=st.lists(st.tuples(blobs, st.none() | blobs), max_size=5).map(tuple),
    clear=st.booleans(),
    drop=st.booleans(),
    alarm=st.just(ALARM_UNCHANGED) | st.none() | ms,
    committed_ms=ms,
)
segments = st.builds(
    Segment,
    partition=st.integers(0, 65535),
    epoch=u64,
    seq=u64,
    committed_ms=ms,
    changes=st.lists(changes, max_size=6).map(tuple),
)


def _where(seg: Segment) -> str:
    return segment_key(seg.partition, seg.epoch, seg.seq)


@given(segments)
def test_segment_round_trip(seg: Segment) -> None:
    data = encode_segment(seg)
    assert decode_segment(data, seg.partition, seg.epoch, seg.seq, _where(seg)) == seg


@settings(max_examples=40)
@given(segments.filter(lambda s: len(s.changes) > 0), st.data())
def test_any_changed_byte_or_truncation_is_detected_and_named(
    seg: Segment, data: st.DataObject
) -> None:
    good = encode_segment(seg)
    where = _where(seg)
    i = data.draw(st.integers(0, len(good) - 1))
    flipped = good[:i] + bytes([good[i] ^ data.draw(st.integers(1, 255))]) + good[i + 1 :]
    cut = good[: data.draw(st.integers(0, len(good) - 1))]
    for bad in (flipped, cut, good + b"\x00"):
        with pytest.raises(DohostError) as info:
            decode_segment(bad, seg.partition, seg.epoch, seg.seq, where)
        assert info.value.code is Code.REPLICA_CORRUPT
        assert where in info.value.message


def test_the_problem_is_said_in_words() -> None:
    seg = Segment(1, 2, 3, 4, (ObjectChange("t", "c", b"o", None, 0, ((b"k", b"v"),)),))
    good = encode_segment(seg)
    where = _where(seg)

    def problem(data: bytes) -> str:
        with pytest.raises(DohostError) as info:
            decode_segment(data, 1, 2, 3, where)
        return info.value.message

    assert "truncated: 5 bytes" in problem(good[:5])
    assert f"truncated: {len(good) - 21} of {len(good) - 20} body bytes" in problem(good[:-1])
    assert "checksum mismatch" in problem(good[:-1] + bytes([good[-1] ^ 1]))
    assert "not a DOHSEG record" in problem(encode_start(StartRecord(1, 2, None, 0)))
    assert "its key says (1, 2, 4)" in problem_at(good, 4)


def problem_at(data: bytes, seq: int) -> str:
    """A whole, valid segment stored under another key (copied or renamed)."""
    with pytest.raises(DohostError) as info:
        decode_segment(data, 1, 2, seq, "elsewhere")
    return info.value.message


@given(st.integers(0, 65535), u64, st.none() | st.tuples(u64, u64), ms)
def test_start_record_round_trip(
    partition: int, epoch: int, base: tuple[int, int] | None, t: int
) -> None:
    if base is not None and base[0] >= epoch:
        base = None
    rec = StartRecord(partition, epoch, base, t)
    assert decode_start(encode_start(rec), partition, epoch, "k") == rec


def test_a_start_record_that_follows_a_later_epoch_is_corrupt() -> None:
    data = encode_start(StartRecord(1, 5, (7, 1), 0))
    with pytest.raises(DohostError) as info:
        decode_start(data, 1, 5, start_key(1, 5))
    assert info.value.code is Code.REPLICA_CORRUPT and "claims to start after" in info.value.message


@given(st.lists(changes, max_size=12), st.integers(0, 65535), u64, u64, ms)
def test_snapshot_holds_what_replaying_the_changes_built(
    log: list[ObjectChange], partition: int, epoch: int, seq: int, t: int
) -> None:
    state: PartitionState = {}
    for c in log:
        apply_change(state, c)
    snap = Snapshot(partition, epoch, seq, t, state)
    back = decode_snapshot(encode_snapshot(snap), partition, epoch, seq, "k")
    assert back == snap


def test_apply_change_mirrors_the_kv_committer() -> None:
    state: PartitionState = {}
    oid = b"\x01" * 32
    apply_change(
        state, ObjectChange("t", "C", oid, None, 5, ((b"a", b"1"), (b"b", b"2")), alarm=99)
    )
    apply_change(state, ObjectChange("t", "C", oid, "late-name", 5, ((b"a", None),)))
    assert state[("t", oid)] == ObjectState("C", "late-name", 5, {b"b": b"2"}, 99)
    apply_change(
        state, ObjectChange("t", "C", oid, "other", 5, ((b"c", b"3"),), clear=True, alarm=None)
    )
    assert state[("t", oid)] == ObjectState("C", "late-name", 5, {b"c": b"3"}, None)
    apply_change(state, ObjectChange("u", "C", oid, None, 6, ((b"x", b"y"),)))  # another tenant
    apply_change(state, ObjectChange("t", "C", oid, None, 5, drop=True))
    assert list(state) == [("u", oid)]


def test_format_record() -> None:
    assert decode_format(encode_format(4096), "FORMAT") == 4096
    with pytest.raises(DohostError) as info:
        decode_format(encode_format(4096)[:-2], "FORMAT")
    assert info.value.code is Code.REPLICA_CORRUPT and "FORMAT" in info.value.message


# ------------------------------------------------------------------------- keys


@given(st.integers(0, 65535), u64, u64, ms)
def test_keys_parse_back_and_sort_in_numeric_order(p: int, e: int, s: int, t: int) -> None:
    for k in (
        LogKey("segment", p, e, s),
        LogKey("snapshot", p, e, s, t),
        LogKey("start", p, e, 0),
    ):
        key = check_key(key_of(k))
        assert parse_log_key(key) == k
    if s < (1 << 64) - 1:
        assert segment_key(p, e, s) < segment_key(p, e, s + 1)
        assert snapshot_key(p, e, s, t) < snapshot_key(p, e, s + 1, 0)


def test_other_keys_are_not_log_keys_and_bad_numbers_are_refused() -> None:
    for key in ("FORMAT", "p1/e1/s1", "p00001/e00000000000000000001/s1", "p99999/x", ""):
        assert parse_log_key(key) is None
    assert parse_log_key("p70000/e00000000000000000001/start") is None  # > 65535 partitions
    assert parse_log_key("p00001/e99999999999999999999/start") is None  # > u64
    for bad in (
        lambda: segment_key(-1, 1, 1),
        lambda: segment_key(1, 1 << 64, 1),
        lambda: snapshot_key(1, 1, 1, 10**13),
    ):
        with pytest.raises(DohostError) as info:
            bad()
        assert info.value.code is Code.INVALID_ARGUMENT

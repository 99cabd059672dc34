"""Following a partition's log: a simulated history of owners (each restores, writes its
start record, writes segments), with fenced owners writing late segments and snapshots,
zombie epochs nobody follows, and a crash leaving a gap at the tail. Restore must give
exactly the acknowledged segments in order; point-in-time restore exactly those
committed by then; retention must keep every time in its window restorable."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dohost.core.errors import Code, DohostError
from dohost.core.replica_chain import (
    PartitionListing,
    Position,
    RestorePlan,
    check_restore_time,
    follow_chain,
    plan_restore,
    plan_retention,
)
from dohost.core.replica_keys import LogKey, key_of, parse_log_key, segment_key
from dohost.core.replica_log import StartRecord

P = 7


@dataclass
class Log:
    """A partition's replica log as keys, plus what the simulation knows is true."""

    keys: set[str] = field(default_factory=set)
    starts: dict[int, StartRecord] = field(default_factory=dict)
    committed_ms: dict[Position, int] = field(default_factory=dict)  # every segment written
    acked: list[Position] = field(default_factory=list)  # acknowledged, in order
    late: set[Position] = field(default_factory=set)  # written, never acknowledged
    clock: int = 1000

    def tick(self) -> int:
        self.clock += 10
        return self.clock

    def listing(self) -> PartitionListing:
        parsed = [parse_log_key(k) for k in self.keys]
        return PartitionListing.of(P, [k for k in parsed if k is not None])

    def plan(self, at_ms: int | None = None) -> RestorePlan:
        listing = self.listing()
        starts = {e: self.starts[e] for e in listing.start_epochs}
        return plan_restore(listing, follow_chain(listing, starts), at_ms)

    def segment(self, epoch: int, seq: int, acked: bool) -> None:
        self.keys.add(segment_key(P, epoch, seq))
        self.committed_ms[(epoch, seq)] = self.tick()
        (self.acked.append if acked else self.late.add)((epoch, seq))  # type: ignore[operator]

    def start(self, epoch: int, base: Position | None) -> None:
        self.keys.add(key_of(LogKey("start", P, epoch, 0)))
        self.starts[epoch] = StartRecord(P, epoch, base, self.tick())

    def snapshot(self, epoch: int, seq: int) -> None:
        self.keys.add(key_of(LogKey("snapshot", P, epoch, seq, self.tick())))


@st.composite
def histories(draw: st.DrawFn) -> Log:
    log = Log()
    epoch = 0
    prev: Position | None = None  # the previous owner's (epoch, last seq)
    for _ in range(draw(st.integers(1, 5))):
        new_epoch = epoch + draw(st.integers(1, 3))
        base = log.plan().end  # the new owner restores first...
        log.start(new_epoch, base)  # ...and writes its start record before serving
        if prev is not None and draw(st.booleans()):
            # The fenced owner goes on writing after the new claim (never acknowledged:
            # its ownership re-check fails); sometimes a late snapshot too.
            for i in range(1, draw(st.integers(1, 3)) + 1):
                log.segment(prev[0], prev[1] + i, acked=False)
            if draw(st.booleans()):
                log.snapshot(prev[0], prev[1] + 1)
        if new_epoch - epoch > 1 and draw(st.booleans()):
            # A zombie: claimed between, superseded before serving anything; it starts
            # (from the same history) and writes, but nobody follows it.
            zombie = epoch + 1
            log.start(zombie, base)
            for i in range(1, draw(st.integers(1, 2)) + 1):
                log.segment(zombie, i, acked=False)
        epoch = new_epoch
        n = draw(st.integers(0, 4))
        for seq in range(1, n + 1):
            log.segment(epoch, seq, acked=True)
            if draw(st.integers(0, 4)) == 0:
                log.snapshot(epoch, seq)
        prev = (epoch, n)
    if prev is not None and draw(st.booleans()):
        # The newest owner crashed with uploads in flight: a later segment landed, an
        # earlier one did not; neither was acknowledged.
        log.segment(prev[0], prev[1] + 2, acked=False)
    return log


def _history(log: Log, plan: RestorePlan) -> list[Position]:
    """The positions a restore from `plan` reflects: the snapshot's, then the replayed."""
    held: list[Position] = []
    if plan.snapshot is not None:
        held = [p for p in log.acked if p <= plan.snapshot]
    return held + plan.segments


@settings(max_examples=300)
@given(histories())
def test_restore_gives_exactly_the_acknowledged_history(log: Log) -> None:
    plan = log.plan()
    assert _history(log, plan) == log.acked
    assert all(p in log.acked for p in plan.segments)  # never a late or zombie segment
    ignored = {parse_log_key(k) for k in plan.ignored}
    assert {(k.epoch, k.seq) for k in ignored if k is not None} == log.late
    newest = max(log.starts)
    assert plan.end is not None and plan.end[0] == newest


@settings(max_examples=200)
@given(histories(), st.data())
def test_point_in_time_restore_gives_what_was_committed_by_then(
    log: Log, data: st.DataObject
) -> None:
    at = data.draw(st.integers(log.clock - 400, log.clock))
    plan = log.plan(at)
    replayed = []
    for pos in plan.segments:
        if log.committed_ms[pos] > at:
            break  # the restorer stops at the first segment committed after --at
        replayed.append(pos)
    held = [] if plan.snapshot is None else [p for p in log.acked if p <= plan.snapshot]
    assert held + replayed == [p for p in log.acked if log.committed_ms[p] <= at]


@settings(max_examples=200)
@given(histories(), st.data())
def test_retention_keeps_every_time_in_the_window(log: Log, data: st.DataObject) -> None:
    now = log.clock
    window = data.draw(st.integers(0, 300))
    listing = log.listing()
    chain = follow_chain(listing, log.starts)
    times = range(now - window, now + 1, 7)
    before = {t: _history(log, log.plan(t)) for t in times}
    latest = _history(log, log.plan())
    doomed = plan_retention(listing, chain, now, window)
    assert all(parse_log_key(k) is not None and not k.endswith("/start") for k in doomed)
    log.keys -= set(doomed)
    for t in times:
        plan = log.plan(t)
        replayed = [p for p in plan.segments if log.committed_ms[p] <= t]
        held = [] if plan.snapshot is None else [p for p in log.acked if p <= plan.snapshot]
        expect = [p for p in before[t] if log.committed_ms[p] <= t]
        assert held + replayed == expect
    assert _history(log, log.plan()) == latest


@settings(max_examples=200)
@given(histories(), st.data())
def test_a_hole_in_acknowledged_history_is_named(log: Log, data: st.DataObject) -> None:
    newest = max(log.starts)
    older = [p for p in log.acked if p[0] != newest]
    if not older:
        return
    hole = data.draw(st.sampled_from(older))
    log.keys.discard(segment_key(P, *hole))
    snapshots = [k for k in map(parse_log_key, log.keys) if k is not None and k.kind == "snapshot"]
    if any((s.epoch, s.seq) >= hole and (s.epoch, s.seq) in log.acked for s in snapshots):
        return  # a snapshot past the hole makes it unneeded
    with pytest.raises(DohostError) as info:
        log.plan()
    assert info.value.code is Code.REPLICA_CORRUPT
    assert segment_key(P, *hole) in info.value.message


def test_a_gap_in_the_newest_epoch_ends_the_history_there() -> None:
    log = Log()
    log.start(1, None)
    for seq in (1, 2, 4, 5):
        log.segment(1, seq, acked=seq < 3)
    plan = log.plan()
    assert plan.segments == [(1, 1), (1, 2)] and plan.end == (1, 2)
    assert plan.ignored == [segment_key(P, 1, 4), segment_key(P, 1, 5)]


def test_a_log_nobody_started_is_empty_and_a_broken_chain_is_corrupt() -> None:
    log = Log()
    log.segment(3, 1, acked=False)  # segments without a start record were never served
    assert log.plan().segments == [] and log.plan().end is None
    log.start(5, (4, 2))  # names an epoch with no start record
    with pytest.raises(DohostError) as info:
        log.plan()
    assert info.value.code is Code.REPLICA_CORRUPT and "chain is broken" in info.value.message


def test_at_before_the_window_or_in_the_future_is_a_clear_error() -> None:
    log = Log()
    log.start(1, None)
    for seq in range(1, 6):
        log.segment(1, seq, acked=True)
    log.snapshot(1, 3)
    listing = log.listing()
    log.keys -= set(plan_retention(listing, follow_chain(listing, log.starts), log.clock, 0))
    with pytest.raises(DohostError) as info:
        log.plan(1000)
    assert info.value.code is Code.INVALID_ARGUMENT
    assert "before the retention window" in info.value.message
    with pytest.raises(DohostError) as info:
        check_restore_time(2000, 1999)
    assert info.value.code is Code.INVALID_ARGUMENT and "in the future" in info.value.message

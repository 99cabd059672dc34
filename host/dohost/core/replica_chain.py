"""Which objects of a partition's replica log make up its history: restore and retention.

The log of a partition may hold more than its history. An owner that lost its claim can
still write segments after the next owner started (they were never acknowledged: its
ownership re-check fails); an owner that claimed and was superseded at once may leave a
start record and segments nobody follows. The history is found from the **start
records**: the newest epoch's start names the last (epoch, seq) its owner restored, that
epoch's start names the one before, and so on back to a new partition (DESIGN.md,
"Replication"). So:

- an older epoch contributes exactly its segments 1..n, where n is what the next epoch on
  the chain restored; its segments after n are ignored, and a missing one among 1..n is a
  hole in acknowledged history (REPLICA_CORRUPT, naming the segment);
- the newest epoch contributes its segments from 1 while they are contiguous. An upload
  after a gap was never acknowledged (a response waits for its segment *and every
  earlier one*), so restore ends at the gap and reports what it ignored;
- epochs not on the chain contribute nothing.

Snapshots shorten the replay: restore loads the newest snapshot on the chain at or
before the wanted time, then replays the segments after it. An owner uploads a snapshot
at (epoch, seq) only once its segments up to seq are in the store, so a snapshot also
proves that every segment before it existed: a hole before a snapshot is never the end
of the history. Retention deletes what lies
before the snapshot that is the base for the oldest time still in the window.

Pure logic: the caller lists the partition's keys and reads its start records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dohost.core.errors import Code, DohostError
from dohost.core.replica_keys import LogKey, key_of, segment_key, start_key
from dohost.core.replica_log import StartRecord, corrupt

Position = tuple[int, int]  # (epoch, seq); seq 0 = before the epoch's first segment


@dataclass
class PartitionListing:
    """The log keys of one partition, by kind."""

    partition: int
    segments: dict[int, set[int]] = field(default_factory=dict)  # epoch -> seqs
    snapshots: dict[Position, int] = field(default_factory=dict)  # position -> taken ms
    start_epochs: set[int] = field(default_factory=set)

    @staticmethod
    def of(partition: int, keys: Iterable[LogKey]) -> PartitionListing:
        listing = PartitionListing(partition)
        for k in keys:
            if k.partition != partition:
                continue
            if k.kind == "segment":
                listing.segments.setdefault(k.epoch, set()).add(k.seq)
            elif k.kind == "snapshot":
                listing.snapshots[(k.epoch, k.seq)] = k.taken_ms
            else:
                listing.start_epochs.add(k.epoch)
        return listing


@dataclass(frozen=True, slots=True)
class Span:
    """One epoch's part of the history: its segments 1..last (None: up to its first gap,
    for the newest epoch)."""

    epoch: int
    last: int | None


def follow_chain(listing: PartitionListing, starts: Mapping[int, StartRecord]) -> list[Span]:
    """The epochs of the partition's history, oldest first ([] if no owner ever started).

    `starts` holds the decoded start record of every epoch in `listing.start_epochs`."""
    if not listing.start_epochs:
        return []
    epoch = max(listing.start_epochs)
    spans = [Span(epoch, None)]
    base = starts[epoch].base
    while base is not None:
        prev, last = base
        if prev not in listing.start_epochs:
            raise corrupt(
                start_key(listing.partition, epoch),
                f"it follows epoch {prev}, which has no start record: the chain is broken",
            )
        spans.append(Span(prev, last))
        epoch, base = prev, starts[prev].base
    spans.reverse()
    return spans


def _on_chain(chain: list[Span], pos: Position) -> bool:
    for span in chain:
        if span.epoch == pos[0]:
            return span.last is None or pos[1] <= span.last
    return False


@dataclass(frozen=True, slots=True)
class RestorePlan:
    snapshot: Position | None  # load this snapshot first (None: start empty)
    snapshot_key: str | None
    # then replay these, in order (with --at: their changes committed at or before it;
    # the first change committed after it ends the replay)
    segments: list[Position]
    # The last position of the history: (newest epoch, its last contiguous seq), what the
    # next owner's start record names. None when no owner ever started.
    end: Position | None
    ignored: list[str]  # segment keys present but not in the history (late or after a gap)


def plan_restore(
    listing: PartitionListing, chain: list[Span], at_ms: int | None = None
) -> RestorePlan:
    """What to read to rebuild the partition: its newest state, or (with `at_ms`) the
    newest snapshot taken at or before `at_ms` and the segments after it (the caller
    stops replaying at the first change committed after `at_ms`)."""
    p = listing.partition
    chain_snaps = {pos: t for pos, t in listing.snapshots.items() if _on_chain(chain, pos)}
    usable = [pos for pos, t in chain_snaps.items() if at_ms is None or t <= at_ms]
    base: Position | None = max(usable) if usable else None

    def missing(pos: Position, why: str) -> DohostError:
        later = [t for snap, t in chain_snaps.items() if snap >= pos]
        if later and at_ms is not None:
            # A snapshot past the hole proves the segment existed (snapshots are uploaded
            # after their segments): retention removed it, and `at_ms` is older than what
            # is kept.
            return DohostError(
                Code.INVALID_ARGUMENT,
                f"partition {p}: --at {at_ms} ms is before the retention window (the oldest "
                f"restorable time is {min(chain_snaps.values())} ms)",
            )
        return corrupt(segment_key(p, *pos), why)

    segments: list[Position] = []
    end: Position | None = None
    for span in chain:
        if base is not None and span.epoch < base[0]:
            continue
        first = base[1] + 1 if base is not None and span.epoch == base[0] else 1
        present = listing.segments.get(span.epoch, set())
        if span.last is not None:
            for seq in range(first, span.last + 1):
                if seq not in present:
                    raise missing(
                        (span.epoch, seq), "it is missing, and a later owner restored past it"
                    )
                segments.append((span.epoch, seq))
            continue
        seq = first
        while seq in present:
            segments.append((span.epoch, seq))
            seq += 1
        if any(snap >= (span.epoch, seq) for snap in chain_snaps):
            raise missing((span.epoch, seq), "it is missing, and a snapshot was taken after it")
        end = (span.epoch, seq - 1)
    in_history = set(segments)
    ignored = [
        segment_key(p, epoch, seq)
        for epoch, seqs in sorted(listing.segments.items())
        for seq in sorted(seqs)
        if (epoch, seq) not in in_history
        and not (base is not None and _on_chain(chain, (epoch, seq)) and (epoch, seq) <= base)
    ]
    snap_key = None
    if base is not None:
        snap_key = key_of(LogKey("snapshot", p, base[0], base[1], listing.snapshots[base]))
    return RestorePlan(base, snap_key, segments, end, ignored)


def plan_retention(
    listing: PartitionListing, chain: list[Span], now_ms: int, window_ms: int
) -> list[str]:
    """Keys to delete so that every time in [now - window, now] stays restorable: what
    lies before the newest chain snapshot taken at or before the window's start, and what
    epochs older than that snapshot's left off the chain. Start records stay (one small
    object per claim), so the chain can always be followed."""
    cutoff = now_ms - window_ms
    bases = [pos for pos, t in listing.snapshots.items() if t <= cutoff and _on_chain(chain, pos)]
    if not bases:
        return []
    base = max(bases)
    p = listing.partition
    doomed: list[str] = []
    for epoch, seqs in sorted(listing.segments.items()):
        for seq in sorted(seqs):
            pos = (epoch, seq)
            if (_on_chain(chain, pos) and pos <= base) or (
                not _on_chain(chain, pos) and epoch < base[0]
            ):
                doomed.append(segment_key(p, epoch, seq))
    for pos, taken in sorted(listing.snapshots.items()):
        if pos < base:
            doomed.append(key_of(LogKey("snapshot", p, pos[0], pos[1], taken)))
    return doomed


def check_restore_time(at_ms: int, now_ms: int) -> int:
    """`--at` must not be in the future (the past is checked against what is kept)."""
    if at_ms > now_ms:
        raise DohostError(
            Code.INVALID_ARGUMENT,
            f"--at {at_ms} ms is in the future (now is {now_ms} ms): nothing to restore yet",
        )
    return at_ms

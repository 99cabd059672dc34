"""A checker in the style of Jepsen's over per-object histories of counter increments
(the cluster fault tests: tests/cluster/).

Each operation is one `POST /incr` of the counter sample (adds 1, answers the new value)
with when it was sent and when its answer came (`start`, `end`, any monotonic clock),
its outcome, and the value answered when acknowledged. An operation that failed may or
may not have been applied (`ok=False`: indeterminate; the tests never know better, as an
owner that lost its lease answers `fenced` whatever its event did). The final value of
each object is read once the faults have healed. The history is valid when:

- **nothing acknowledged is lost**: the final value is at least the highest acknowledged
  value, and at least the number of acknowledged increments;
- **no two owners acknowledged in one state** (and none acknowledged a stale state):
  acknowledged values of one object are distinct;
- **real-time order** (linearizability of the increments): an increment acknowledged
  before another was sent answered a smaller value;
- **nothing surfaces from nowhere**: the final value is at most the acknowledged plus
  the indeterminate increments (a fenced owner's late writes count as indeterminate;
  beyond them, an increment would have come from nowhere).

Pure logic: the tests collect the history, this judges it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class Op:
    key: str  # the object
    start: float
    end: float
    ok: bool  # acknowledged (2xx with a value)
    value: int | None = None  # the value answered, when acknowledged
    node: str | None = None  # the node that served it (x-dohost-node), when known


@dataclass
class Verdict:
    objects: int = 0
    acknowledged: int = 0
    indeterminate: int = 0
    problems: list[str] | None = None

    @property
    def valid(self) -> bool:
        return not self.problems


def check_counters(ops: list[Op], final: dict[str, int]) -> Verdict:
    """Judge the histories of every object (see the module doc)."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    verdict = Verdict(objects=len(by_key), problems=[])
    assert verdict.problems is not None
    for key in sorted(by_key):
        history = by_key[key]
        acked = [op for op in history if op.ok]
        unknown = len(history) - len(acked)
        verdict.acknowledged += len(acked)
        verdict.indeterminate += unknown
        if key not in final:
            verdict.problems.append(f"{key}: no final value was read")
            continue
        end = final[key]
        values = [op.value for op in acked if op.value is not None]
        top = max(values, default=0)
        if end < top:
            verdict.problems.append(f"{key}: acknowledged value {top} lost (final value {end})")
        if end < len(acked):
            verdict.problems.append(
                f"{key}: {len(acked)} increments acknowledged but the final value is {end}"
            )
        if end > len(acked) + unknown:
            verdict.problems.append(
                f"{key}: final value {end} is more than the {len(acked)} acknowledged and "
                f"{unknown} indeterminate increments: a write surfaced from nowhere"
            )
        seen: dict[int, Op] = {}
        for op in acked:
            assert op.value is not None
            other = seen.get(op.value)
            if other is not None:
                verdict.problems.append(
                    f"{key}: value {op.value} acknowledged twice (by {other.node} and "
                    f"{op.node}): a lost write or two owners"
                )
            seen[op.value] = op
        by_end = sorted(acked, key=lambda op: op.end)
        by_start = sorted(acked, key=lambda op: op.start)
        # For each op, every op that ended before it started must have a smaller value:
        # sweep in start order keeping the largest value among those ended so far.
        i = 0
        best: Op | None = None
        for op in by_start:
            while i < len(by_end) and by_end[i].end < op.start:
                if best is None or (by_end[i].value or 0) > (best.value or 0):
                    best = by_end[i]
                i += 1
            if best is not None and (best.value or 0) >= (op.value or 0):
                verdict.problems.append(
                    f"{key}: value {op.value} (node {op.node}) acknowledged after value "
                    f"{best.value} (node {best.node}) had been: stale state served"
                )
    return verdict

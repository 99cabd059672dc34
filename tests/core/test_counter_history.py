"""The counter-history checker (core/counter_history.py) finds each kind of anomaly and
accepts valid histories with indeterminate operations."""

from __future__ import annotations

from dohost.core.counter_history import Op, check_counters


def _acked(key: str, start: float, end: float, value: int, node: str = "a") -> Op:
    return Op(key, start, end, True, value, node)


def test_a_sequential_history_is_valid() -> None:
    ops = [_acked("x", i, i + 0.5, i + 1) for i in range(5)]
    v = check_counters(ops, {"x": 5})
    assert v.valid and v.acknowledged == 5 and v.objects == 1


def test_concurrent_and_indeterminate_ops_are_allowed() -> None:
    ops = [
        _acked("x", 0, 2, 2),
        _acked("x", 1, 3, 1),  # concurrent with the first: any order
        Op("x", 3, 4, False),  # may or may not have been applied
        _acked("x", 5, 6, 4),  # so 3 may have been taken by it
    ]
    assert check_counters(ops, {"x": 4}).valid
    assert not check_counters(ops, {"x": 5}).valid  # one more than could have happened


def test_a_lost_acknowledged_write_is_found() -> None:
    ops = [_acked("x", 0, 1, 1), _acked("x", 2, 3, 2, "b")]
    v = check_counters(ops, {"x": 1})
    assert not v.valid and any("acknowledged value 2 lost" in p for p in v.problems or [])


def test_two_owners_acknowledging_one_value_is_found() -> None:
    ops = [_acked("x", 0, 1, 1, "a"), _acked("x", 0.5, 1.5, 1, "b")]
    v = check_counters(ops, {"x": 2})
    assert not v.valid and any("acknowledged twice" in p for p in v.problems or [])


def test_stale_state_after_an_acknowledgement_is_found() -> None:
    # 3 was acknowledged, then a later increment answered 2: served from a stale copy.
    ops = [
        _acked("x", 0, 1, 3),
        _acked("x", 2, 3, 2, "b"),
        Op("x", 0, 0.5, False),
        Op("x", 0, 0.5, False),
    ]
    v = check_counters(ops, {"x": 3})
    assert not v.valid and any("stale state" in p for p in v.problems or [])


def test_a_write_from_nowhere_is_found() -> None:
    ops = [_acked("x", 0, 1, 1)]
    v = check_counters(ops, {"x": 2})
    assert not v.valid and any("from nowhere" in p for p in v.problems or [])


def test_a_missing_final_value_is_a_problem() -> None:
    v = check_counters([_acked("x", 0, 1, 1)], {})
    assert not v.valid

from __future__ import annotations

import pytest

from dohost.core import cbor
from dohost.core.alarm_schedule import MAX_RETRIES, AlarmRun, backoff_ms


def test_backoff_doubles_from_two_seconds_with_at_most_a_quarter_of_jitter() -> None:
    assert [backoff_ms(n, 0.0) for n in range(1, 7)] == [2000, 4000, 8000, 16000, 32000, 64000]
    assert backoff_ms(1, 0.999) == 2499
    assert backoff_ms(3, 0.5) == 9000
    with pytest.raises(ValueError):
        backoff_ms(0, 0.0)


def test_a_handler_that_always_fails_runs_seven_times() -> None:
    run: AlarmRun | None = AlarmRun(1_000)
    now, runs = 1_000, []
    while run is not None:
        runs.append((run.retry_count, now))
        nxt = run.after_failure(now, lambda: 0.0)
        if nxt is None:
            break
        run, now = nxt
    assert [r for r, _ in runs] == list(range(MAX_RETRIES + 1))
    assert [t for _, t in runs] == [1000, 3000, 7000, 15000, 31000, 63000, 127000]


def test_alarm_info_encoding() -> None:
    assert cbor.decode(AlarmRun(5, 0).info()) == {
        "scheduled_ms": 5,
        "retry_count": 0,
        "is_retry": False,
    }
    assert cbor.decode(AlarmRun(5, 2).info()) == {
        "scheduled_ms": 5,
        "retry_count": 2,
        "is_retry": True,
    }

"""When alarms fire and are retried: pure functions, no clocks (times are passed in).

A failing alarm handler is retried with backoff `2 s * 2**n` plus up to 25 % jitter, at
most `MAX_RETRIES` times (so a handler that always fails runs 1 + 6 = 7 times), then the
alarm is dropped with a log line. The jitter source is passed in so tests are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dohost.core import cbor

BASE_BACKOFF_MS = 2_000
MAX_RETRIES = 6
JITTER = 0.25


def backoff_ms(retry: int, jitter_fraction: float) -> int:
    """Delay before retry number `retry` (1-based); jitter_fraction in [0, 1)."""
    if retry < 1:
        raise ValueError("retries are numbered from 1")
    base = BASE_BACKOFF_MS * 2 ** (retry - 1)
    return int(base + base * JITTER * jitter_fraction)


@dataclass(frozen=True, slots=True)
class AlarmRun:
    """One delivery of an alarm: the time it was set for and how often it failed before."""

    scheduled_ms: int
    retry_count: int = 0

    def info(self) -> bytes:
        """The alarm-info CBOR the handler reads (abi/alarm.cddl)."""
        return cbor.encode(
            {
                "scheduled_ms": self.scheduled_ms,
                "retry_count": self.retry_count,
                "is_retry": self.retry_count > 0,
            }
        )

    def after_failure(
        self, now_ms: int, jitter: Callable[[], float]
    ) -> tuple[AlarmRun, int] | None:
        """The next run and when it is due, or None when the retries are used up."""
        if self.retry_count >= MAX_RETRIES:
            return None
        nxt = AlarmRun(self.scheduled_ms, self.retry_count + 1)
        return nxt, now_ms + backoff_ms(nxt.retry_count, jitter())

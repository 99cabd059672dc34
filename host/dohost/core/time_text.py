"""Times as users write them (`--at`, the restore route's "at"): milliseconds since the
Unix epoch, or an ISO 8601 time with its zone."""

from __future__ import annotations

import datetime

from dohost.core.errors import Code, DohostError


def parse_time_ms(text: str, what: str = "--at") -> int:
    """Milliseconds since the Unix epoch, or an ISO 8601 time with its zone."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.datetime.fromisoformat(text)
        ms = int(when.timestamp() * 1000) if when.tzinfo is not None else -1
    except (ValueError, OverflowError):
        ms = -1
    if ms < 0:
        raise DohostError(
            Code.INVALID_ARGUMENT,
            f"{what} {text[:64]!r}: give milliseconds since 1970 or an ISO 8601 time with its "
            "zone (2026-12-07T23:00:00Z)",
        )
    return ms

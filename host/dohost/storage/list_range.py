"""kv_list semantics shared by both backends (abi/list.cddl).

`KeyRange.from_options` turns ListOptions into one half-open key interval [lo, hi) (the
prefix becomes a bound too), and `collect` cuts an ordered stream of entries at the guest's
`limit` and at the host's per-call caps, setting `more` only when a cap stopped it before
the range ended.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dohost.core.errors import Code, DohostError
from dohost.core.limits import LIST_MAX_BYTES, LIST_MAX_ENTRIES
from dohost.storage.api import ListOptions, ListResult


def prefix_successor(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key that starts with `prefix`.

    None when there is none (empty prefix, or all 0xff bytes): the range is then open.
    """
    p = prefix.rstrip(b"\xff")
    if not p:
        return None
    return p[:-1] + bytes((p[-1] + 1,))


@dataclass(frozen=True, slots=True)
class KeyRange:
    """Keys k with lo <= k < hi (hi None: unbounded), in memcmp order."""

    lo: bytes
    hi: bytes | None
    reverse: bool
    limit: int  # 0 = none

    @classmethod
    def from_options(cls, opts: ListOptions) -> KeyRange:
        if opts.limit < 0:
            raise DohostError(
                Code.INVALID_ARGUMENT,
                f"list limit must be 0 (no limit) or a positive count, got {opts.limit}",
            )
        lo = opts.prefix
        if opts.start is not None and opts.start > lo:
            lo = opts.start
        hi = prefix_successor(opts.prefix)
        if opts.end is not None and (hi is None or opts.end < hi):
            hi = opts.end
        return cls(lo, hi, opts.reverse, opts.limit)

    @property
    def empty(self) -> bool:
        return self.hi is not None and self.lo >= self.hi

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and key >= self.lo and (self.hi is None or key < self.hi)


def collect(
    entries: Iterable[tuple[bytes, bytes]],
    limit: int,
    max_entries: int = LIST_MAX_ENTRIES,
    max_bytes: int = LIST_MAX_BYTES,
) -> ListResult:
    """Take entries (already in the requested order) up to `limit` and the per-call caps.

    `more` is true only when a cap stopped the listing and at least one more entry exists;
    reaching the guest's own limit is not "more". The byte cap never returns an empty page:
    the first entry is always taken, so a continuing caller makes progress.
    """
    out: list[tuple[bytes, bytes]] = []
    total = 0
    more = False
    for key, value in entries:
        n = len(out)
        if limit and n >= limit:
            break
        size = len(key) + len(value)
        if n >= max_entries or (n and total + size > max_bytes):
            more = True
            break
        out.append((key, value))
        total += size
    return ListResult(out, more)

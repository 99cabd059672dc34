"""Helpers shared by the storage tests."""

from __future__ import annotations

import os
import threading

from dohost.storage.api import ListOptions, ListResult


def oid(n: int, tag: int = 0) -> bytes:
    """A 32-byte object id; `n` picks the first bytes, so the shard too."""
    return n.to_bytes(4, "big") + bytes([tag]) * 28


def model_list(
    data: dict[bytes, bytes], opts: ListOptions, max_entries: int, max_bytes: int
) -> ListResult:
    """kv_list by brute force: the reference the backends are compared with."""
    keys = sorted(
        k
        for k in data
        if k.startswith(opts.prefix)
        and (opts.start is None or k >= opts.start)
        and (opts.end is None or k < opts.end)
    )
    if opts.reverse:
        keys.reverse()
    out: list[tuple[bytes, bytes]] = []
    total = 0
    for k in keys:
        if opts.limit and len(out) >= opts.limit:
            return ListResult(out, False)
        size = len(k) + len(data[k])
        if len(out) >= max_entries or (out and total + size > max_bytes):
            return ListResult(out, True)
        out.append((k, data[k]))
        total += size
    return ListResult(out, False)


class GatedFsync:
    """An fsync that can be made to block (to pile up commits behind it) or to fail."""

    def __init__(self) -> None:
        self.blocking = False
        self.entered = threading.Event()
        self.release = threading.Event()
        self.error: OSError | None = None
        self.calls = 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.blocking:
            self.blocking = False
            self.entered.set()
            assert self.release.wait(10), "test never released the fsync"
        if self.error is not None:
            raise self.error
        os.fsync(fd)

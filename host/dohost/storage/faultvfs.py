"""A SQLite VFS for fault injection: the default VFS, plus failures on demand.

Register one, pass its name as `vfs=` to `KvShard`, `SqliteObjectStorage` or
`StorageManager`, and then make chosen operations on chosen files fail:

    vfs = FaultVFS("faulty")
    vfs.fail("write", path_contains="shard-0.db-wal")          # every write, until cleared
    vfs.fail("sync", count=1, error=apsw.FullError)           # the next sync only
    vfs.hook = lambda op, path: ...                           # runs before each operation
    vfs.clear()

Operations are "read", "write", "sync" and "truncate". The hook may block (to hold a
committer in the middle of a batch) or raise. Everything goes through Python, so this is
slow: tests only.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apsw

OPS = ("read", "write", "sync", "truncate")


@dataclass
class _Rule:
    op: str
    path_contains: str
    error: type[Exception]
    remaining: int | None  # None: until cleared


class FaultVFS(apsw.VFS):  # type: ignore[misc]
    """Inherits the default VFS; fails operations matching the armed rules."""

    def __init__(self, name: str = "dohost-fault") -> None:
        self.vfs_name = name
        self.hook: Callable[[str, str], None] | None = None
        self.counts: Counter[str] = Counter()  # operations seen, by op
        self.injected: Counter[str] = Counter()  # failures raised, by op
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        super().__init__(name, "")

    def fail(
        self,
        op: str,
        *,
        path_contains: str = "",
        error: type[Exception] = apsw.IOError,
        count: int | None = None,
    ) -> None:
        """Make `op` on files whose path contains `path_contains` raise `error`, the next
        `count` times (None: until `clear`)."""
        if op not in OPS:
            raise ValueError(f"unknown operation {op!r}; one of {OPS}")
        with self._lock:
            self._rules.append(_Rule(op, path_contains, error, count))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
        self.hook = None

    def check(self, op: str, path: str) -> None:
        """Called by every file before `op`: run the hook, then raise if a rule matches."""
        self.counts[op] += 1
        hook = self.hook
        if hook is not None:
            hook(op, path)
        with self._lock:
            for rule in self._rules:
                if rule.op == op and rule.path_contains in path:
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self._rules.remove(rule)
                    self.injected[op] += 1
                    raise rule.error(f"injected {op} failure on {path}")

    def xOpen(self, name: Any, flags: Any) -> FaultFile:
        return FaultFile(self, name, flags)


class FaultFile(apsw.VFSFile):  # type: ignore[misc]
    def __init__(self, vfs: FaultVFS, name: Any, flags: Any) -> None:
        self._vfs = vfs
        self._path = name.filename() if isinstance(name, apsw.URIFilename) else str(name)
        super().__init__("", name, flags)  # "" = inherit from the default VFS

    def xRead(self, amount: int, offset: int) -> bytes:
        self._vfs.check("read", self._path)
        return super().xRead(amount, offset)  # type: ignore[no-any-return]

    def xWrite(self, data: bytes, offset: int) -> None:
        self._vfs.check("write", self._path)
        super().xWrite(data, offset)

    def xSync(self, flags: int) -> None:
        self._vfs.check("sync", self._path)
        super().xSync(flags)

    def xTruncate(self, newsize: int) -> None:
        self._vfs.check("truncate", self._path)
        super().xTruncate(newsize)

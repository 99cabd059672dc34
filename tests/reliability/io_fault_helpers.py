"""Helpers of test_io_faults.py: an fsync that fails for chosen files, and the paths of an
object's storage files."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

from dohost.core.ids import ObjectId
from dohost.storage.manager import SHARDS_FILE, StorageManager


class FaultyFsync:
    """The storage's fsync (Host(storage_fsync=...)): real fsync, except that while
    `failing` is a non-empty string, fsyncs of files whose path contains it raise EIO.

    The host makes commits durable with its own fsync of the WAL files
    (`synchronous=NORMAL`: SQLite does not sync at commit), so this is where a failing
    fsync of a commit is injected; the FaultVFS's "sync" covers SQLite's own syncs."""

    def __init__(self) -> None:
        self.failing = ""
        self.injected = 0
        self._lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        target = self.failing
        if target and target in os.readlink(f"/proc/self/fd/{fd}"):
            with self._lock:
                self.injected += 1
            raise OSError(errno.EIO, "injected EIO from fsync")
        os.fdatasync(fd)


def storage_file(
    storage: StorageManager, tenant: str, class_name: str, backend: str, oid: ObjectId
) -> str:
    """The SQLite file holding `oid`'s data (kv: its shard file; it must exist)."""
    if backend == "kv":
        kv_dir = Path(storage.kv_dir(tenant))
        shards = int((kv_dir / SHARDS_FILE).read_text())
        index = int.from_bytes(oid.raw[:4], "big") % shards
        return str(kv_dir / f"shard-{index}.db")
    return storage.sqlite_path(tenant, class_name, oid.raw)

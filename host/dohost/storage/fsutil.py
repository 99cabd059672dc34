"""Small file-system helpers for durable creation of files and directories.

A file that was fsync'd is not durable until the directory entry that names it is too:
creating a file or directory means fsyncing its parent. These helpers do that, and nothing
else.
"""

from __future__ import annotations

import os
from collections.abc import Callable

Fsync = Callable[[int], None]

# Flushes a file's data and the metadata needed to read it back (its size), as SQLite does
# on Linux; skips the inode's timestamps, which saves a journal write per call.
sync_data: Fsync = getattr(os, "fdatasync", os.fsync)


def fsync_dir(path: str, fsync: Fsync = os.fsync) -> None:
    """Make the entries of directory `path` (files created, renamed, removed) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: str, fsync: Fsync = os.fsync) -> None:
    """fsync the file at `path` (any fd of an inode flushes the whole inode)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: str, fsync: Fsync = os.fsync) -> None:
    """Create directory `path` and its missing parents, durably.

    Each directory created is followed by an fsync of its parent, so that the new entry
    survives a power loss before any file inside it is relied upon.
    """
    if os.path.isdir(path):
        return
    missing: list[str] = []
    p = os.path.abspath(path)
    while not os.path.isdir(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(missing):
        try:
            os.mkdir(d)
        except FileExistsError:
            continue  # another thread made it; its creator fsyncs the parent
        fsync_dir(os.path.dirname(d), fsync)


def write_file_durably(path: str, data: bytes, fsync: Fsync = os.fsync) -> None:
    """Replace `path` with `data` atomically and durably (temp file, fsync, rename, fsync dir)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)), fsync)

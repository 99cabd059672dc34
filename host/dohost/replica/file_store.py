"""`file:///path`: a replica store in a directory (another disk, an NFS mount).

Create-only and never half-visible: `put_new` writes the bytes to a temporary file
(O_EXCL, a name starting with "." that no key can have), fsyncs it, then *links* it to the
key's path. `link` fails if the path exists, atomically, where a rename would silently
replace it: that is the file system's `If-None-Match: *`. The temporary name is then
removed and the directory fsync'd, so the new entry survives a power loss. A reader sees
either no file or the whole fsync'd file. A crash between the write and the link leaves a
temporary file that listings skip.
"""

from __future__ import annotations

import builtins
import os
import uuid

from dohost.core.errors import Code, DohostError
from dohost.core.replica_keys import check_key, check_prefix
from dohost.replica.store import ReplicaKeyExists, replica_unavailable
from dohost.storage.fsutil import ensure_dir, fsync_dir

_TMP = ".tmp-"


class FileReplicaStore:
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.description = f"file://{self.root}"

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *check_key(key).split("/"))

    def _failed(self, what: str, e: OSError) -> DohostError:
        return replica_unavailable(f"replica store {self.description}: {what} failed: {e}")

    def put_new(self, key: str, data: bytes) -> None:
        path = self._path(key)
        parent = os.path.dirname(path)
        tmp = os.path.join(parent, f"{_TMP}{uuid.uuid4().hex}")
        try:
            ensure_dir(parent)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ReplicaKeyExists(f"{key!r} ({self.description})") from None
            finally:
                os.unlink(tmp)
            fsync_dir(parent)
        except OSError as e:
            raise self._failed(f"writing {key!r}", e) from e

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise DohostError(
                Code.NOT_FOUND, f"{key!r} is not in the replica store {self.description}"
            ) from None
        except OSError as e:
            raise self._failed(f"reading {key!r}", e) from e

    def list(self, prefix: str) -> list[str]:
        check_prefix(prefix)
        folder, _, start = prefix.rpartition("/")
        base = os.path.join(self.root, *folder.split("/")) if folder else self.root
        keys: list[str] = []
        try:
            self._walk(base, folder, start, keys)
        except OSError as e:
            raise self._failed(f"listing {prefix!r}", e) from e
        keys.sort()
        return keys

    def _walk(self, path: str, key_dir: str, start: str, out: builtins.list[str]) -> None:
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.startswith(start):
                continue
            key = f"{key_dir}/{entry.name}" if key_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                self._walk(entry.path, key, "", out)
            elif entry.is_file(follow_symlinks=False):
                out.append(key)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return
        except OSError as e:
            raise self._failed(f"deleting {key!r}", e) from e

    def close(self) -> None:
        pass

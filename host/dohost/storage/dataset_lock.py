"""The data set lock: one program at a time writes a data directory.

`dohost serve`, `dohost run` and the embedded `Host` take an exclusive `flock` on
`DATA/dohost.lock` before they open anything else, and keep it until they stop. The lock
belongs to the kernel's open file description, so:

- the kernel drops it when the process dies, however it dies: a SIGKILLed holder leaves
  only a file behind, which the next program locks again (the file is never deleted:
  deleting a lock file lets two programs lock two different files of the same name);
- a process that passes the descriptor to its children (`pass_fds`) shares the lock with
  them: no other program can take the data set while any of them lives. Such a child
  wraps the descriptor with `DataSetLock.inherited`, which checks that it really is the
  locked lock file of that directory; its `release` only closes its own descriptor
  (an unlock would drop the lock for the parent and every sibling too).

The file holds the holder's pid and command line, for the one-line refusal a second
program gets (`data_in_use`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import sys
from pathlib import Path

from dohost.core.errors import Code, DohostError

LOCK_FILE = "dohost.lock"


def describe_program() -> str:
    """This process's command line as a user typed it (`dohost serve --data ...`)."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    # `python -m dohost.cli ...` and the `dohost` script both read as `dohost ...`.
    for i, arg in enumerate(argv):
        if arg == "dohost.cli" and i > 0 and argv[i - 1] == "-m":
            return shlex.join(["dohost", *argv[i + 1 :]])
        if os.path.basename(arg) == "dohost" or arg.endswith("dohost/cli.py"):
            return shlex.join(["dohost", *argv[i + 1 :]])
    return shlex.join([os.path.basename(argv[0]) if argv else "python", *argv[1:]])


def read_holder(data_dir: str | os.PathLike[str]) -> tuple[int | None, str]:
    """(pid, command) named by a data directory's lock file; (None, "") if unknown."""
    try:
        text = (Path(data_dir) / LOCK_FILE).read_text()
        info = json.loads(text)
        return int(info["pid"]), str(info["command"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, ""


def in_use_error(data_dir: str | os.PathLike[str]) -> DohostError:
    """The one-line refusal for a data directory another program holds."""
    pid, command = read_holder(data_dir)
    who = f"pid {pid} ({command})" if pid is not None else "another program"
    return DohostError(
        Code.DATA_IN_USE,
        f"{os.fspath(data_dir)} is used by {who}; talk to it with 'dohost call', "
        "or give this command another data directory",
    )


class DataSetLock:
    """An exclusive lock on one data directory (see the module docstring)."""

    def __init__(self, data_dir: Path, fd: int, owned: bool) -> None:
        self.data_dir = data_dir
        self._fd: int | None = fd
        self._owned = owned  # False: inherited; release must not unlock

    @classmethod
    def acquire(cls, data_dir: str | os.PathLike[str], program: str | None = None) -> DataSetLock:
        """Lock `data_dir` (created if missing) for this process, or raise DATA_IN_USE
        naming the holder. `program` is what the file records (default: this process's
        command line)."""
        path = Path(data_dir)
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise in_use_error(data_dir) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            record = json.dumps({"pid": os.getpid(), "command": program or describe_program()})
            os.ftruncate(fd, 0)
            os.pwrite(fd, (record + "\n").encode(), 0)
        except OSError:
            # The lock holds even if the note could not be written (a full disk):
            # a refused program then just cannot say who holds it.
            pass
        return cls(path, fd, owned=True)

    @classmethod
    def inherited(cls, data_dir: str | os.PathLike[str], fd: int) -> DataSetLock:
        """Wrap a descriptor a parent passed down. Checks that `fd` is the lock file of
        `data_dir` and that it holds the lock (raises INVALID_ARGUMENT or DATA_IN_USE)."""
        path = Path(data_dir)
        try:
            st_fd = os.fstat(fd)
            st_path = os.stat(path / LOCK_FILE)
        except OSError as e:
            raise DohostError(
                Code.INVALID_ARGUMENT, f"inherited data set lock fd {fd} is unusable: {e}"
            ) from e
        if (st_fd.st_dev, st_fd.st_ino) != (st_path.st_dev, st_path.st_ino):
            raise DohostError(
                Code.INVALID_ARGUMENT,
                f"fd {fd} is not the lock file of {os.fspath(data_dir)} ({path / LOCK_FILE})",
            )
        try:
            # On the same open file description this succeeds (it already holds the lock);
            # on another one held by someone else it fails.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise in_use_error(data_dir) from None
        return cls(path, fd, owned=False)

    def fileno(self) -> int:
        """The locked descriptor (pass it to child nodes with `pass_fds`)."""
        if self._fd is None:
            raise DohostError(Code.INVALID_ARGUMENT, "the data set lock was released")
        return self._fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the data set up (owned) or close this process's descriptor (inherited).
        Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._owned:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)  # the note names nobody once released
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

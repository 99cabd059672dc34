"""Start-up failures as one line that says what to do.

A server that cannot listen, or a data directory that cannot be used, is the user's
situation to fix, not a bug of the host: each becomes a `DohostError` whose message names
the address or path, what is wrong, and the way out. The port's current holder is named
when Linux lets us tell (`/proc/net/tcp*` gives the socket's inode, `/proc/PID/fd` the
process that has it; other users' processes are not readable, and then it is not named).
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from dohost.core.errors import Code, DohostError

_LISTEN_STATE = "0A"  # TCP_LISTEN in /proc/net/tcp


def listen_error_of(e: BaseException, host: str, port: int) -> BaseException:
    """What a failed start of an HTTP listener should raise: the one-line error of the
    OSError inside (also inside trio's exception groups), else the exception itself."""
    failed = _os_error_in(e)
    return e if failed is None else listen_error(failed, host, port)


def _os_error_in(e: BaseException) -> OSError | None:
    if isinstance(e, OSError):
        return e
    if isinstance(e, BaseExceptionGroup):
        for x in e.exceptions:
            found = _os_error_in(x)
            if found is not None:
                return found
    return None


def listen_error(exc: OSError, host: str, port: int) -> DohostError:
    """The error for a failed listen on (host, port)."""
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        holder = port_holder(port)
        by = f" by {holder}" if holder else ""
        return DohostError(
            Code.ADDRESS_IN_USE,
            f"port {port} on {host} is already in use{by}: stop it, or pick another "
            "port with --port (0: any free port)",
        )
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        return DohostError(
            Code.CANNOT_LISTEN,
            f"cannot listen on {where}: {host} is not an address of this machine; "
            "use --host 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)",
        )
    if exc.errno == errno.EACCES:
        return DohostError(
            Code.CANNOT_LISTEN,
            f"cannot listen on {where}: permission denied (ports below 1024 need "
            "privileges); use a port of 1024 or above",
        )
    if isinstance(exc, socket.gaierror):
        return DohostError(
            Code.CANNOT_LISTEN,
            f"cannot listen on {where}: {host!r} is not a known host name or address; "
            "use --host 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)",
        )
    detail = exc.strerror or str(exc)
    return DohostError(
        Code.CANNOT_LISTEN, f"cannot listen on {where}: {detail}; check --host and --port"
    )


def port_holder(port: int) -> str | None:
    """`process 1234 (dohost serve ...)` listening on TCP `port`, when it can be told."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN_STATE:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    return f"process {pid} ({_command_line(pid)})"
            except OSError:
                continue
    return None


def _command_line(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in raw.split(b"\0") if a)
    return text if len(text) <= 80 else text[:77] + "..."


def prepare_data_dir(path: Path) -> None:
    """Create the data directory if needed, or say in one line why it cannot be used."""
    if path.exists() and not path.is_dir():
        raise DohostError(
            Code.DATA_DIR_UNUSABLE,
            f"the data directory {path} is a file: pass --data a directory (or a new path)",
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise data_dir_error(path, e) from None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise DohostError(
            Code.DATA_DIR_UNUSABLE,
            f"the data directory {path} is not writable by this user: fix its permissions "
            "or pass --data another directory",
        )


def data_dir_error(path: Path, exc: OSError) -> DohostError:
    """The error for an OS failure while creating or opening the data directory."""
    what = exc.strerror or type(exc).__name__
    culprit = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
    hint = {
        errno.EACCES: "fix its permissions or pass --data another directory",
        errno.EPERM: "fix its permissions or pass --data another directory",
        errno.EROFS: "the file system is read-only: pass --data a writable directory",
        errno.ENOSPC: "the disk is full: free space or pass --data another disk",
        errno.ENOTDIR: "a part of the path is a file: pass --data a directory path",
        errno.EEXIST: "a file is in the way: pass --data a directory path",
    }.get(exc.errno or 0, "pass --data a directory this user can write")
    return DohostError(
        Code.DATA_DIR_UNUSABLE, f"cannot use the data directory {path}: {what}{culprit}; {hint}"
    )

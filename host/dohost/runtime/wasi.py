"""WASI preview 1, served with nothing granted (abi/README.md, "WASI preview 1").

Guests compiled against wasi-libc (C, Zig, Go) import a handful of these even when they
never touch a file. The host serves them itself rather than through wasmtime's WASI:
no arguments, no environment, no preopened directories, no sockets; fds 1 and 2 go to the
object's log; the clocks and randomness work; `proc_exit` ends the event as a guest
failure; everything else answers ENOSYS, or EBADF for descriptor calls.

Each implemented function is a function over the running `Event` (runtime/event.py),
bound once by the linker (`IMPORTS`); the others are bound to `unserved(name)`.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dohost.core.errors import Code
from dohost.runtime.abi_table import Sig, sig

if TYPE_CHECKING:
    from dohost.runtime.event import Event

ESUCCESS = 0
EBADF = 8
EFAULT = 21
EINVAL = 28
ENOSYS = 52
ESPIPE = 70

# Every preview 1 function with its core signature ('i' i32, 'I' i64).
WASI_FUNCTIONS: dict[str, Sig] = {
    "args_get": sig("ii", "i"),
    "args_sizes_get": sig("ii", "i"),
    "environ_get": sig("ii", "i"),
    "environ_sizes_get": sig("ii", "i"),
    "clock_res_get": sig("ii", "i"),
    "clock_time_get": sig("iIi", "i"),
    "fd_advise": sig("iIIi", "i"),
    "fd_allocate": sig("iII", "i"),
    "fd_close": sig("i", "i"),
    "fd_datasync": sig("i", "i"),
    "fd_fdstat_get": sig("ii", "i"),
    "fd_fdstat_set_flags": sig("ii", "i"),
    "fd_fdstat_set_rights": sig("iII", "i"),
    "fd_filestat_get": sig("ii", "i"),
    "fd_filestat_set_size": sig("iI", "i"),
    "fd_filestat_set_times": sig("iIIi", "i"),
    "fd_pread": sig("iiiIi", "i"),
    "fd_prestat_get": sig("ii", "i"),
    "fd_prestat_dir_name": sig("iii", "i"),
    "fd_pwrite": sig("iiiIi", "i"),
    "fd_read": sig("iiii", "i"),
    "fd_readdir": sig("iiiIi", "i"),
    "fd_renumber": sig("ii", "i"),
    "fd_seek": sig("iIii", "i"),
    "fd_sync": sig("i", "i"),
    "fd_tell": sig("ii", "i"),
    "fd_write": sig("iiii", "i"),
    "path_create_directory": sig("iii", "i"),
    "path_filestat_get": sig("iiiii", "i"),
    "path_filestat_set_times": sig("iiiiIIi", "i"),
    "path_link": sig("iiiiiii", "i"),
    "path_open": sig("iiiiiIIii", "i"),
    "path_readlink": sig("iiiiii", "i"),
    "path_remove_directory": sig("iii", "i"),
    "path_rename": sig("iiiiii", "i"),
    "path_symlink": sig("iiiii", "i"),
    "path_unlink_file": sig("iii", "i"),
    "poll_oneoff": sig("iiii", "i"),
    "proc_exit": sig("i", ""),
    "proc_raise": sig("i", "i"),
    "sched_yield": sig("", "i"),
    "random_get": sig("ii", "i"),
    "sock_accept": sig("iii", "i"),
    "sock_recv": sig("iiiiii", "i"),
    "sock_send": sig("iiiii", "i"),
    "sock_shutdown": sig("ii", "i"),
}

_STDIO = (0, 1, 2)
_u32x2 = struct.Struct("<II")
_u64 = struct.Struct("<Q")
_u32 = struct.Struct("<I")
# fdstat: filetype u8 (2 = character device), flags u16, rights_base u64, rights_inheriting u64.
_FDSTAT_CHARDEV = struct.pack("<BxHxxxxQQ", 2, 0, 0, 0)
_MAX_WRITE = 1 << 20


def _put(ev: Event, ptr: int, data: bytes) -> int:
    return ESUCCESS if ev.mem.write(ptr, data) else EFAULT


def args_sizes_get(ev: Event, argc_ptr: int, size_ptr: int) -> int:
    if not (ev.mem.write(argc_ptr, _u32.pack(0)) and ev.mem.write(size_ptr, _u32.pack(0))):
        return EFAULT
    return ESUCCESS


def args_get(ev: Event, _argv: int, _buf: int) -> int:
    return ESUCCESS


def clock_res_get(ev: Event, clock_id: int, out: int) -> int:
    if clock_id not in (0, 1, 2, 3):
        return EINVAL
    return _put(ev, out, _u64.pack(1000))


def clock_time_get(ev: Event, clock_id: int, _precision: int, out: int) -> int:
    if clock_id == 0:
        now = time.time_ns()
    elif clock_id in (1, 2, 3):
        now = time.monotonic_ns()
    else:
        return EINVAL
    return _put(ev, out, _u64.pack(now))


def fd_write(ev: Event, fd: int, iovs: int, iovs_len: int, nwritten_ptr: int) -> int:
    if fd not in (1, 2):
        return EBADF
    if iovs_len < 0 or iovs_len > 1024:
        return EINVAL
    mem = ev.mem
    raw = mem.read(iovs, 8 * iovs_len)
    if raw is None:
        return EFAULT
    spans = []
    total = 0
    for i in range(iovs_len):
        ptr, n = _u32x2.unpack_from(raw, 8 * i)
        if not mem.check(ptr, n):
            return EFAULT
        spans.append((ptr, n))
        total += n
    # Copy only what is kept (1,024 iovecs may each name the whole memory), and nothing
    # when the tenant's log rate or the event's line cap refuses it (Event.log_room).
    keep = min(total, _MAX_WRITE)
    if keep and ev.log_room(keep):
        chunks = []
        for ptr, n in spans:
            take = min(n, keep)
            if take <= 0:
                break
            data = mem.read(ptr, take)
            assert data is not None  # (in range: checked above)
            chunks.append(data)
            keep -= take
        ev.guest_output(fd, b"".join(chunks))
    return _put(ev, nwritten_ptr, _u32.pack(total & 0xFFFFFFFF))


def fd_read(ev: Event, fd: int, _iovs: int, _iovs_len: int, nread_ptr: int) -> int:
    if fd != 0:
        return EBADF
    return _put(ev, nread_ptr, _u32.pack(0))  # stdin is empty


def fd_close(ev: Event, fd: int) -> int:
    return ESUCCESS if fd in _STDIO else EBADF


def fd_fdstat_get(ev: Event, fd: int, out: int) -> int:
    if fd not in _STDIO:
        return EBADF
    return _put(ev, out, _FDSTAT_CHARDEV)


def fd_seek(ev: Event, fd: int, _offset: int, _whence: int, _out: int) -> int:
    return ESPIPE if fd in _STDIO else EBADF


def fd_prestat_get(ev: Event, _fd: int, _out: int) -> int:
    return EBADF  # no preopened directories


def sched_yield(ev: Event) -> int:
    return ESUCCESS


def random_get(ev: Event, ptr: int, n: int) -> int:
    n &= 0xFFFFFFFF
    if n > 1 << 20:
        return EINVAL
    if not ev.mem.check(ptr, n):
        return EFAULT
    return _put(ev, ptr, os.urandom(n))


def proc_exit(ev: Event, code: int) -> int:
    ev.trap(Code.OBJECT_ERROR, f"proc_exit({code})")


def proc_raise(ev: Event, _sig: int) -> int:
    return ENOSYS


IMPORTS: dict[str, Callable[..., int]] = {
    "args_sizes_get": args_sizes_get,
    "environ_sizes_get": args_sizes_get,
    "args_get": args_get,
    "environ_get": args_get,
    "clock_res_get": clock_res_get,
    "clock_time_get": clock_time_get,
    "fd_write": fd_write,
    "fd_read": fd_read,
    "fd_close": fd_close,
    "fd_fdstat_get": fd_fdstat_get,
    "fd_seek": fd_seek,
    "fd_prestat_get": fd_prestat_get,
    "sched_yield": sched_yield,
    "random_get": random_get,
    "proc_exit": proc_exit,
    "proc_raise": proc_raise,
}


def unserved(name: str) -> Callable[..., int]:
    """The answer of a function nothing implements: EBADF for descriptor calls (there
    are no descriptors but stdio), ENOSYS for the rest."""
    status = EBADF if name.startswith("fd_") else ENOSYS

    def answer(*_args: int) -> int:
        return status

    return answer

"""WASI preview 1, served with nothing granted (abi/README.md, "WASI preview 1").

Guests compiled against wasi-libc (C, Zig, Go) import a handful of these even when they
never touch a file. The host serves them itself rather than through wasmtime's WASI:
no arguments, no environment, no preopened directories, no sockets; fds 1 and 2 go to the
object's log; the clocks and randomness work; `proc_exit` ends the event as a guest
failure; everything else answers ENOSYS, or EBADF for descriptor calls.
"""

from __future__ import annotations

import os
import struct
import time
from typing import TYPE_CHECKING

from dohost.runtime.abi_table import Sig, sig
from dohost.runtime.fastcall import GuestTrapRequest

if TYPE_CHECKING:
    from dohost.runtime.crossing import GuestMemory

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


class WasiCalls:
    """WASI implementations; mixed into the activation, which provides `mem` and `guest_output`."""

    mem: GuestMemory

    def guest_output(self, fd: int, data: bytes) -> None:
        raise NotImplementedError

    def wasi_dispatch(self, name: str, args: tuple[int, ...]) -> int:
        fn = getattr(self, "wasi_" + name, None)
        if fn is not None:
            r: int = fn(*args)
            return r
        return EBADF if name.startswith("fd_") else ENOSYS

    def _put(self, ptr: int, data: bytes) -> int:
        return ESUCCESS if self.mem.write(ptr, data) else EFAULT

    def wasi_args_sizes_get(self, argc_ptr: int, size_ptr: int) -> int:
        if not (self.mem.write(argc_ptr, _u32.pack(0)) and self.mem.write(size_ptr, _u32.pack(0))):
            return EFAULT
        return ESUCCESS

    wasi_environ_sizes_get = wasi_args_sizes_get

    def wasi_args_get(self, _argv: int, _buf: int) -> int:
        return ESUCCESS

    wasi_environ_get = wasi_args_get

    def wasi_clock_res_get(self, clock_id: int, out: int) -> int:
        if clock_id not in (0, 1, 2, 3):
            return EINVAL
        return self._put(out, _u64.pack(1000))

    def wasi_clock_time_get(self, clock_id: int, _precision: int, out: int) -> int:
        if clock_id == 0:
            now = time.time_ns()
        elif clock_id in (1, 2, 3):
            now = time.monotonic_ns()
        else:
            return EINVAL
        return self._put(out, _u64.pack(now))

    def wasi_fd_write(self, fd: int, iovs: int, iovs_len: int, nwritten_ptr: int) -> int:
        if fd not in (1, 2):
            return EBADF
        if iovs_len < 0 or iovs_len > 1024:
            return EINVAL
        raw = self.mem.read(iovs, 8 * iovs_len)
        if raw is None:
            return EFAULT
        chunks = []
        total = 0
        for i in range(iovs_len):
            ptr, n = _u32x2.unpack_from(raw, 8 * i)
            data = self.mem.read(ptr, n)
            if data is None:
                return EFAULT
            total += n
            if total <= _MAX_WRITE:
                chunks.append(data)
        self.guest_output(fd, b"".join(chunks))
        return self._put(nwritten_ptr, _u32.pack(total & 0xFFFFFFFF))

    def wasi_fd_read(self, fd: int, _iovs: int, _iovs_len: int, nread_ptr: int) -> int:
        if fd != 0:
            return EBADF
        return self._put(nread_ptr, _u32.pack(0))  # stdin is empty

    def wasi_fd_close(self, fd: int) -> int:
        return ESUCCESS if fd in _STDIO else EBADF

    def wasi_fd_fdstat_get(self, fd: int, out: int) -> int:
        if fd not in _STDIO:
            return EBADF
        return self._put(out, _FDSTAT_CHARDEV)

    def wasi_fd_seek(self, fd: int, _offset: int, _whence: int, _out: int) -> int:
        return ESPIPE if fd in _STDIO else EBADF

    def wasi_fd_prestat_get(self, _fd: int, _out: int) -> int:
        return EBADF  # no preopened directories

    def wasi_sched_yield(self) -> int:
        return ESUCCESS

    def wasi_random_get(self, ptr: int, n: int) -> int:
        n &= 0xFFFFFFFF
        if n > 1 << 20:
            return EINVAL
        if not self.mem.check(ptr, n):
            return EFAULT
        return self._put(ptr, os.urandom(n))

    def wasi_proc_exit(self, code: int) -> int:
        raise GuestTrapRequest(f"proc_exit({code})")

    def wasi_proc_raise(self, _sig: int) -> int:
        return ENOSYS

"""Fast guest↔host crossings through wasmtime's raw `*_unchecked` C API.

wasmtime-py's public `Func.__call__` and `Linker.define_func` cost ~8-25 µs per crossing
(type checks, `Val` boxing, a slab lookup). The C API has unchecked variants that pass a
flat buffer of raw values; called through ctypes they cost ~1 µs. This module is the only
place that uses them. It is written against wasmtime-py **50.0.1** (pinned in
pyproject.toml): `FAST_AVAILABLE` is false on any other version or when a symbol is
missing, and `DOHOST_FASTCALL=0` forces the portable path; `runtime/crossing.py` picks.

Invariants:
- A callback never lets a Python exception escape into wasmtime (a ctypes callback that
  raises prints the exception and returns 0, which wasmtime would read as "no trap").
  `make_callback` wraps each import so every exception becomes the `internal` status.
- Memories may move when they grow (runtime/engine.py: no reservation beyond a
  memory's size, so that an instance costs no memory mapping of its own): the base
  address is read from wasmtime at every access (one C call), never cached across a
  return to the guest. Sizes only grow, so a cached size is refreshed only when a range
  falls past it.
- Export call buffers belong to one activation, which runs one event at a time.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Callable
from ctypes import CFUNCTYPE, addressof, byref, c_char_p, c_size_t, c_void_p
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

WRITTEN_AGAINST = "50.0.1"
_VAL_SIZE = ctypes.sizeof(ffi.wasmtime_val_raw_t)  # 16: every raw value slot, whatever its type


class GuestTrapRequest(Exception):
    """Raised by an import implementation to end the guest with a trap (e.g. proc_exit)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("wasmtime")
    except Exception:
        return "unknown"


def _load() -> ctypes.CDLL | None:
    if os.environ.get("DOHOST_FASTCALL", "1") == "0" or _version() != WRITTEN_AGAINST:
        return None
    try:
        # A handle of our own: setting restype/argtypes on it leaves wasmtime-py's alone.
        lib = ctypes.CDLL(ffi.dll._name)
        for sym in (
            "wasmtime_linker_define_func_unchecked",
            "wasmtime_func_call_unchecked",
            "wasmtime_memory_data",
            "wasmtime_memory_data_size",
            "wasmtime_trap_new",
            "wasmtime_context_set_epoch_deadline",
        ):
            getattr(lib, sym)
    except (OSError, AttributeError):
        return None
    return lib


_lib = _load()
FAST_AVAILABLE = _lib is not None
# The same library through PyDLL: calls that keep the GIL. Used for the trivial calls
# (a few hundred ns of C): with CDLL each would release the GIL, and a storage thread
# waiting for it takes it, so getting it back can cost 100 µs on a busy host. Never for
# running wasm: the epoch ticker thread needs the GIL to interrupt a guest.
_plib = ctypes.PyDLL(ffi.dll._name) if _lib is not None else None

# The callback type wasmtime expects, with pointer arguments declared as plain addresses
# (c_void_p arrives as an int): cheaper than ctypes pointer objects on every call.
RAW_CALLBACK = CFUNCTYPE(c_size_t, c_void_p, c_void_p, c_void_p, c_size_t)
_NULL_FINALIZER = ctypes.cast(0, CFUNCTYPE(None, c_void_p))

if _lib is not None:
    _define_unchecked = _lib.wasmtime_linker_define_func_unchecked
    _define_unchecked.restype = c_void_p
    _define_unchecked.argtypes = [
        c_void_p,
        c_char_p,
        c_size_t,
        c_char_p,
        c_size_t,
        c_void_p,
        RAW_CALLBACK,
        c_void_p,
        CFUNCTYPE(None, c_void_p),
    ]
    _call_unchecked = _lib.wasmtime_func_call_unchecked
    _call_unchecked.restype = c_void_p
    _call_unchecked.argtypes = [c_void_p, c_void_p, c_void_p, c_size_t, c_void_p]
    assert _plib is not None
    _memory_data = _plib.wasmtime_memory_data
    _memory_data.restype = c_void_p
    _memory_data.argtypes = [c_void_p, c_void_p]
    _memory_data_size = _plib.wasmtime_memory_data_size
    _memory_data_size.restype = c_size_t
    _memory_data_size.argtypes = [c_void_p, c_void_p]
    _trap_new = _plib.wasmtime_trap_new
    _trap_new.restype = c_void_p
    _trap_new.argtypes = [c_char_p, c_size_t]
    _set_deadline = _plib.wasmtime_context_set_epoch_deadline
    _set_deadline.restype = None
    _set_deadline.argtypes = [c_void_p, ctypes.c_uint64]


def epoch_deadline_setter(store: wasmtime.Store) -> Callable[[int], None]:
    """`store.set_epoch_deadline` without wasmtime-py's wrapper layers (~0.3 µs vs ~3)."""
    ctx = _context_addr(store)
    return lambda ticks: _set_deadline(ctx, ticks)


# The whole user address space as one writable byte view. Raw values and guest memory
# are then read and written with struct/memoryview operations, without a ctypes foreign
# call per access (each costs ~0.4 µs). Every index into it is bounds-checked first
# (FastMemory) or comes from wasmtime itself (argument slots).
_ADDRESS_SPACE = memoryview((ctypes.c_char * (1 << 47)).from_address(0)).cast("B")
_pack_q_into = struct.Struct("<q").pack_into
_U32 = 0xFFFFFFFF


def _raise_error(err: int) -> None:
    raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)))


def _context_addr(store: wasmtime.Store) -> int:
    addr = ctypes.cast(store._context(), c_void_p).value
    assert addr is not None
    return addr


# Keeps every callback object alive for as long as the process: a linker may hold it.
_KEEP: list[Any] = []


def _arg_unpacker(params: tuple[str, ...]) -> Callable[[memoryview, int], tuple[Any, ...]]:
    """A reader for the raw argument slots: each is 16 bytes, its value in the low bytes."""
    assert _VAL_SIZE == 16
    fmt = "<" + "".join(("i12x" if p == "i32" else "q8x") for p in params)
    return struct.Struct(fmt).unpack_from


def make_callback(
    params: tuple[str, ...],
    has_result: bool,
    impl: Callable[..., int],
    on_error: Callable[[BaseException], int],
) -> Any:
    """Wrap `impl(*args) -> int` as a raw unchecked callback.

    The result (if any) is written into slot 0 as an i64; for an i32 result the low four
    bytes hold the same value in two's complement, which is what wasmtime reads.
    `on_error` turns any exception into a status (and must not raise itself).
    """
    read_args = _arg_unpacker(params)
    nparams = len(params)
    space = _ADDRESS_SPACE
    write_result = _pack_q_into

    def callback(_env: int, _caller: int, args: int, _n: int) -> int:
        try:
            r = impl(*read_args(space, args)) if nparams else impl()
        except GuestTrapRequest as t:
            msg = t.message.encode("utf-8", "replace")
            return _trap_new(msg, len(msg)) or 0
        except BaseException as e:
            try:
                r = on_error(e)
            except BaseException:
                r = -1
        if has_result:
            write_result(space, args, r)
        return 0

    cb = RAW_CALLBACK(callback)
    _KEEP.append(cb)
    return cb


def define_unchecked(
    linker: wasmtime.Linker, module: str, name: str, ty: wasmtime.FuncType, callback: Any
) -> None:
    m, n = module.encode(), name.encode()
    linker_addr = ctypes.cast(linker.ptr(), c_void_p).value
    ty_addr = ctypes.cast(ty.ptr(), c_void_p).value
    _KEEP.append(ty)
    err = _define_unchecked(
        linker_addr, m, len(m), n, len(n), ty_addr, callback, None, _NULL_FINALIZER
    )
    if err:
        _raise_error(err)


class FastExport:
    """A guest export called through `wasmtime_func_call_unchecked`."""

    __slots__ = (
        "_buf",
        "_buf_addr",
        "_ctx",
        "_func",
        "_func_addr",
        "_n",
        "_nres",
        "_trap",
        "_trap_ref",
    )

    def __init__(
        self, store: wasmtime.Store, func: wasmtime.Func, nparams: int, nresults: int
    ) -> None:
        self._ctx = _context_addr(store)
        self._func = func._func  # keep the struct alive: we pass its address
        self._func_addr = addressof(self._func)
        self._n = max(nparams, nresults, 1)
        self._nres = nresults
        self._buf = (ffi.wasmtime_val_raw_t * self._n)()
        self._buf_addr = addressof(self._buf)
        self._trap = c_void_p()
        self._trap_ref = byref(self._trap)

    def __call__(self, *args: int) -> int | None:
        buf = self._buf
        for i, a in enumerate(args):
            buf[i].i64 = a  # i32 params read the low four bytes of the same slot
        err = _call_unchecked(self._ctx, self._func_addr, self._buf_addr, self._n, self._trap_ref)
        trap = self._trap.value
        if trap:
            self._trap.value = None
            raise wasmtime.Trap._from_ptr(ctypes.cast(trap, ctypes.POINTER(ffi.wasm_trap_t)))
        if err:
            _raise_error(err)
        return buf[0].i32 if self._nres else None


class FastMemory:
    """Bounds-checked reads and writes of a guest memory through its raw base address."""

    __slots__ = ("_ctx", "_mem", "_mem_addr", "_size")

    def __init__(self, store: wasmtime.Store, memory: wasmtime.Memory) -> None:
        self._ctx = _context_addr(store)
        self._mem = memory._memory
        self._mem_addr = addressof(self._mem)
        self._size = 0
        self.refresh()

    def refresh(self) -> None:
        self._size = _memory_data_size(self._ctx, self._mem_addr)

    def size(self) -> int:
        """The memory's current size in bytes."""
        self.refresh()
        return self._size

    def check(self, ptr: int, n: int) -> bool:
        """True when [ptr, ptr+n) (both read as unsigned 32-bit) is inside the memory."""
        end = (ptr & _U32) + (n & _U32)
        if end <= self._size:
            return True
        self.refresh()  # the guest may have grown its memory since we last looked
        return end <= self._size

    def read(self, ptr: int, n: int) -> bytes | None:
        ptr &= _U32
        n &= _U32
        if ptr + n > self._size:
            self.refresh()
            if ptr + n > self._size:
                return None
        start = _memory_data(self._ctx, self._mem_addr) + ptr  # (the memory may have moved)
        return _ADDRESS_SPACE[start : start + n].tobytes()

    def write(self, ptr: int, data: bytes) -> bool:
        ptr &= _U32
        n = len(data)
        if ptr + n > self._size:
            self.refresh()
            if ptr + n > self._size:
                return False
        start = _memory_data(self._ctx, self._mem_addr) + ptr  # (the memory may have moved)
        _ADDRESS_SPACE[start : start + n] = data
        return True

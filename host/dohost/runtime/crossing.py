"""Guest↔host crossings: the fast raw path when available, else wasmtime-py's public API.

Everything else in the runtime goes through `define_import`, `make_export` and
`make_memory`, so the choice is made once, here, and both paths keep the same
behaviour (tests run the runtime under both).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Any, Protocol

import wasmtime

from dohost.runtime import fastcall
from dohost.runtime.fastcall import GuestTrapRequest

_U32 = 0xFFFFFFFF


class GuestMemory(Protocol):
    def size(self) -> int: ...
    def check(self, ptr: int, n: int) -> bool: ...
    def read(self, ptr: int, n: int) -> bytes | None: ...
    def write(self, ptr: int, data: bytes) -> bool: ...
    def refresh(self) -> None: ...


def fast_enabled() -> bool:
    return fastcall.FAST_AVAILABLE and os.environ.get("DOHOST_FASTCALL", "1") != "0"


def _valtype(t: str) -> wasmtime.ValType:
    return wasmtime.ValType.i32() if t == "i32" else wasmtime.ValType.i64()


def functype(params: tuple[str, ...], results: tuple[str, ...]) -> wasmtime.FuncType:
    return wasmtime.FuncType([_valtype(p) for p in params], [_valtype(r) for r in results])


def define_import(
    linker: wasmtime.Linker,
    module: str,
    name: str,
    params: tuple[str, ...],
    results: tuple[str, ...],
    impl: Callable[..., int],
    on_error: Callable[[BaseException], int],
    *,
    fast: bool,
) -> None:
    """Define `module.name` on `linker`, served by `impl(*args) -> int`."""
    ty = functype(params, results)
    if fast:
        cb = fastcall.make_callback(params, bool(results), impl, on_error)
        fastcall.define_unchecked(linker, module, name, ty, cb)
        return

    has_result = bool(results)

    def portable(*args: Any) -> Any:
        try:
            r = impl(*args)
        except GuestTrapRequest as t:
            # The public API turns any exception into a trap; the activation has
            # already recorded why, so the exception object itself is not trusted.
            raise wasmtime.Trap(t.message) from None
        except BaseException as e:
            try:
                r = on_error(e)
            except BaseException:
                r = -1
        return r if has_result else None

    linker.define_func(module, name, ty, portable)


class PortableExport:
    __slots__ = ("_func", "_store")

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func) -> None:
        self._store = store
        self._func = func

    def __call__(self, *args: int) -> int | None:
        r = self._func(self._store, *args)
        return r if isinstance(r, int) else None


class PortableMemory:
    __slots__ = ("_mem", "_size", "_store")

    def __init__(self, store: wasmtime.Store, memory: wasmtime.Memory) -> None:
        self._store = store
        self._mem = memory
        self._size = memory.data_len(store)

    def refresh(self) -> None:
        self._size = self._mem.data_len(self._store)

    def size(self) -> int:
        self.refresh()
        return self._size

    def check(self, ptr: int, n: int) -> bool:
        end = (ptr & _U32) + (n & _U32)
        if end > self._size:
            self.refresh()
        return end <= self._size

    def read(self, ptr: int, n: int) -> bytes | None:
        ptr &= _U32
        n &= _U32
        if not self.check(ptr, n):
            return None
        return bytes(self._mem.read(self._store, ptr, ptr + n))

    def write(self, ptr: int, data: bytes) -> bool:
        ptr &= _U32
        if not self.check(ptr, len(data)):
            return False
        self._mem.write(self._store, data, ptr)
        return True


def make_export(
    store: wasmtime.Store, func: wasmtime.Func, nparams: int, nresults: int, *, fast: bool
) -> Callable[..., int | None]:
    if fast:
        return fastcall.FastExport(store, func, nparams, nresults)
    return PortableExport(store, func)


def make_memory(store: wasmtime.Store, memory: wasmtime.Memory, *, fast: bool) -> GuestMemory:
    if fast:
        return fastcall.FastMemory(store, memory)
    return PortableMemory(store, memory)


def export_by_name(store: wasmtime.Store, instance: wasmtime.Instance, name: str) -> Any:
    """One export of `instance` by name, or None: a hash lookup in wasmtime. (Not
    `instance.exports(store)`, which wraps every export of the module, and whose cost
    grew with the square of their number: with tens of thousands it took seconds, on
    each new activation.) Uses wasmtime-py's ffi and `wrap_extern`, pinned like
    fastcall."""
    from wasmtime import _ffi as ffi  # (private: no public by-name lookup in wasmtime-py)
    from wasmtime._extern import wrap_extern

    raw = name.encode()
    item = ffi.wasmtime_extern_t()
    found = ffi.wasmtime_instance_export_get(
        store._context(),
        ctypes.byref(instance._instance),
        ctypes.create_string_buffer(raw, len(raw)),
        len(raw),
        ctypes.byref(item),
    )
    return wrap_extern(item) if found else None

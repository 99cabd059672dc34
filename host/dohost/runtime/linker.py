"""The process-wide linker: every `dohost` and WASI import, bound once per engine.

Import definitions are store-independent, so one linker serves every module; a module's
`InstancePre` resolves only the names it imports. An import finds the activation it
serves through a thread-local (`CURRENT`), set by the activation for the duration of
each call into wasm: one thread runs one store at a time, and reading a thread-local is
cheaper than asking wasmtime for the caller's store data.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import wasmtime

from dohost.core.errors import Code
from dohost.runtime import abi_table, crossing
from dohost.runtime.wasi import WASI_FUNCTIONS

if TYPE_CHECKING:
    from dohost.runtime.activation import Activation

log = logging.getLogger("dohost.runtime")


class _Current(threading.local):
    act: Activation | None = None


CURRENT = _Current()


def _on_error(e: BaseException) -> int:
    """An import raised: never let it reach wasmtime; record it on the activation."""
    act = CURRENT.act
    log.error("host import failed", exc_info=e)
    if act is not None:
        act.last_err = (Code.INTERNAL, f"host error in an import: {type(e).__name__}")
    status = Code.INTERNAL.abi_status
    assert status is not None
    return status


def _dohost_impl(name: str) -> Callable[..., int]:
    from dohost.runtime.activation import Activation

    method = getattr(Activation, "imp_" + name)
    cur = CURRENT

    def impl(*args: Any) -> int:
        r: int = method(cur.act, *args)
        return r

    return impl


def _wasi_impl(name: str) -> Callable[..., int]:
    cur = CURRENT

    def impl(*args: Any) -> int:
        act = cur.act
        assert act is not None
        return act.wasi_dispatch(name, args)

    return impl


def build_linker(engine: wasmtime.Engine, *, fast: bool) -> wasmtime.Linker:
    linker = wasmtime.Linker(engine)
    for name, sig in abi_table.DOHOST_IMPORTS.items():
        crossing.define_import(
            linker,
            abi_table.IMPORT_MODULE,
            name,
            sig.params,
            sig.results,
            _dohost_impl(name),
            _on_error,
            fast=fast,
        )
    for name, sig in WASI_FUNCTIONS.items():
        crossing.define_import(
            linker,
            abi_table.WASI_MODULE,
            name,
            sig.params,
            sig.results,
            _wasi_impl(name),
            _on_error,
            fast=fast,
        )
    return linker

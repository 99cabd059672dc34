"""The process-wide linker: every `dohost` and WASI import, bound once per engine.

Import definitions are store-independent, so one linker serves every module; a module's
`InstancePre` resolves only the names it imports. Each import is a function over the
`Event` it serves (runtime/event.py), found through a thread-local (`CURRENT`) that the
activation sets for the duration of each call into wasm: one thread runs one store at a
time, and reading a thread-local is cheaper than asking wasmtime for the caller's store
data.

The wrapper around every import (`fastcall.make_callback` / `crossing.define_import`)
sends any exception to `_on_error`: a `DohostError` becomes the event's last error and
its status (runtime/event.py, "Errors"); anything else is a host bug, logged, and
`internal` to the guest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import wasmtime

from dohost.core.errors import ABI_STATUS, Code, DohostError
from dohost.runtime import (
    abi_table,
    alarm_imports,
    bookmark_imports,
    call_imports,
    crossing,
    event_imports,
    kv_imports,
    sql_imports,
    wasi,
    ws_imports,
)

if TYPE_CHECKING:
    from dohost.runtime.event import Event

log = logging.getLogger("dohost.runtime")

_INTERNAL = ABI_STATUS[Code.INTERNAL]

# Every `dohost` import: name -> function over an Event. Each area's module lists its own.
DOHOST_IMPORTS: dict[str, Callable[..., int]] = {
    **event_imports.IMPORTS,
    **kv_imports.IMPORTS,
    **alarm_imports.IMPORTS,
    **sql_imports.IMPORTS,
    **call_imports.IMPORTS,
    **ws_imports.IMPORTS,
    **bookmark_imports.IMPORTS,
}


class _Current(threading.local):
    event: Event | None = None


CURRENT = _Current()


def _on_error(e: BaseException) -> int:
    """An import raised: never let it reach wasmtime; record it on the event."""
    ev = CURRENT.event
    if isinstance(e, DohostError):
        if ev is not None:
            return ev.err(e.code, e.message)
        return ABI_STATUS.get(e.code, _INTERNAL)
    log.error("host import failed", exc_info=e)
    if ev is not None:
        ev.last_err = (Code.INTERNAL, f"host error in an import: {type(e).__name__}")
    return _INTERNAL


def _bind(fn: Callable[..., int]) -> Callable[..., int]:
    cur = CURRENT

    def impl(*args: Any) -> int:
        return fn(cur.event, *args)

    return impl


def build_linker(engine: wasmtime.Engine, *, fast: bool) -> wasmtime.Linker:
    missing = set(abi_table.DOHOST_IMPORTS) ^ set(DOHOST_IMPORTS)
    assert not missing, f"imports in the ABI table without a function, or the reverse: {missing}"
    linker = wasmtime.Linker(engine)
    for name, sig in abi_table.DOHOST_IMPORTS.items():
        crossing.define_import(
            linker,
            abi_table.IMPORT_MODULE,
            name,
            sig.params,
            sig.results,
            _bind(DOHOST_IMPORTS[name]),
            _on_error,
            fast=fast,
        )
    for name, sig in wasi.WASI_FUNCTIONS.items():
        fn = wasi.IMPORTS.get(name)
        crossing.define_import(
            linker,
            abi_table.WASI_MODULE,
            name,
            sig.params,
            sig.results,
            _bind(fn) if fn is not None else wasi.unserved(name),
            _on_error,
            fast=fast,
        )
    return linker

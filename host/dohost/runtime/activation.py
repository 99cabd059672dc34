"""One live object: a wasmtime store and instance, and its exports.

An `Activation` is created on a worker thread (or the loop thread, for an inline
attempt), runs one event at a time (`run_event`), and is thrown away after any failure,
because the guest's memory may be half-updated. Its durable state lives in the
`ObjectStorage` it is given, which outlives it.

It keeps the store, the instance and the exports; each event's state and transaction
live in an `Event` (runtime/event.py), and the imports are functions over that event
(`*_imports.py`, bound once by runtime/linker.py). What the activation adds is the
crossing into the guest: it arms the CPU deadline, calls the export, and turns what
came back (a status, a wasm trap, an import's trap, an exhausted inline budget) into
the event's outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import wasmtime

from dohost.core.errors import Code, DohostError
from dohost.core.limits import EventLimits
from dohost.runtime import crossing, fastcall
from dohost.runtime.engine import deadline_ticks
from dohost.runtime.event import (
    CallHook,
    Event,
    EventOutcome,
    LogGate,
    ObjectIdent,
    OffloadRequest,
)
from dohost.runtime.linker import CURRENT
from dohost.runtime.module_loader import ModuleInfo
from dohost.runtime.ws_imports import WsHostView, WsKey

if TYPE_CHECKING:
    from dohost.runtime.bookmark_imports import BookmarkHost
from dohost.storage.api import ObjectStorage

guest_log = logging.getLogger("dohost.guest")

# Handlers that may be missing: an event of that kind is then ignored.
_OPTIONAL_HANDLERS = ("ws_close", "ws_error")
# Handlers looked up at their kind's first event, not at instantiation: each lookup
# costs ~10 us (crossing.export_by_name), and most activations only serve fetches.
_LAZY_HANDLERS = frozenset(("alarm", "ws_close", "ws_error"))


def _wall_ms() -> float:
    return time.time() * 1000.0


@dataclass
class CompiledClass:
    """A validated module ready to instantiate cheaply."""

    info: ModuleInfo
    module: wasmtime.Module
    instance_pre: wasmtime.InstancePre
    engine: wasmtime.Engine
    fast: bool


class _Exports:
    """The exports the host needs, looked up by name (crossing.export_by_name): the cost
    of an activation does not grow with the module's export count."""

    def __init__(self, store: wasmtime.Store, instance: wasmtime.Instance) -> None:
        self._store, self._instance = store, instance

    def __getitem__(self, name: str) -> Any:
        found = crossing.export_by_name(self._store, self._instance, name)
        if found is None:
            raise KeyError(name)
        return found


class Activation:
    def __init__(
        self,
        compiled: CompiledClass,
        ident: ObjectIdent,
        storage: ObjectStorage,
        limits: EventLimits,
        inline_ticks: int = 0,
        log_gate: LogGate | None = None,
    ) -> None:
        """Instantiate (and run `_initialize`). With `inline_ticks` > 0 this is an inline
        attempt (see run_event): it raises OffloadRequest when that budget runs out.
        `log_gate`: the tenant's log rate, which `_initialize`'s output passes too."""
        self.compiled = compiled
        self.ident = ident
        self.storage = storage
        self.limits = limits
        self.broken = False
        self.events = 0
        self._ticks = deadline_ticks(limits.cpu_ms)
        # Hooks the supervisor sets (runtime/event.py, EventHost): the alarm index, calls,
        # the wall clock of now_ms, the WebSocket registry and the object's key in it.
        self.on_alarm_set: Callable[[int], None] | None = None
        self.on_call: CallHook | None = None
        self.wall_ms: Callable[[], float] = _wall_ms
        self.ws_host: WsHostView | None = None
        self.ws_key: WsKey = (ident.tenant, ident.class_name, b"")
        self.bookmarks: BookmarkHost | None = None  # None: no replica (not_supported)
        self.has_ws_message = False
        # The tenant's log rate (server/tenant_limits.py), asked before a log write is
        # copied out of guest memory; what it refuses is dropped (and counted there).
        self.log_gate: LogGate | None = log_gate
        # Guest log lines for server/tail.py; set after instantiation, so the lines of
        # `_initialize` reach only the Python log.
        self.on_log: Callable[[ObjectIdent, int, str], None] | None = None

        store = wasmtime.Store(compiled.engine)
        store.set_limits(
            memory_size=limits.memory_bytes,
            table_elements=limits.table_elements,
            instances=1,
            tables=4,
            memories=1,
        )
        store.set_epoch_deadline(inline_ticks if inline_ticks > 0 else self._ticks)
        self.store = store
        self.set_deadline: Callable[[int], None] = (
            fastcall.epoch_deadline_setter(store) if compiled.fast else store.set_epoch_deadline
        )
        fast = compiled.fast
        # Imports called while instantiating (a start function, _initialize) see an
        # event without input: storage, calls and WebSockets refuse.
        ev = Event(self, "instantiate", None, inline_ticks > 0)
        prev = CURRENT.event
        CURRENT.event = ev
        try:
            instance = compiled.instance_pre.instantiate(store)
            ex = _Exports(store, instance)
            memory = ex["memory"]
            assert isinstance(memory, wasmtime.Memory)
            self.mem = ev.mem = crossing.make_memory(store, memory, fast=fast)
            fetch = ex["dohost_fetch"]
            assert isinstance(fetch, wasmtime.Func)
            self._init = self._opt_export(store, ex, "dohost_init", 0, 1, fast)
            # kind -> the handler of that event kind (None: not exported); the others
            # are looked up when first needed (_handler)
            self._ex = ex
            self._handlers: dict[str, Any] = {
                "fetch": crossing.make_export(store, fetch, 1, 1, fast=fast),
                # (looked up now: ws_accept asks, inside an event, whether it exists)
                "ws_message": self._opt_export(store, ex, "dohost_ws_message", 1, 1, fast),
            }
            self.has_ws_message = self._handlers["ws_message"] is not None
            initialize = self._opt_export(store, ex, "_initialize", 0, 0, fast)
            if initialize is not None:
                initialize()
        except wasmtime.Trap as t:
            raise self._trap_error(ev, t, "while instantiating") from None
        except wasmtime.WasmtimeError as e:
            if "os error 12" in str(e):  # ENOMEM: out of mappings or address space
                raise DohostError(
                    Code.OVERLOADED,
                    "the host process cannot map memory for another object (ENOMEM: "
                    "vm.max_map_count or address space); retry later, or lower the "
                    "resident cap",
                ) from None
            raise DohostError(
                Code.OBJECT_ERROR, f"instantiation failed: {_first_line(str(e))}"
            ) from None
        finally:
            CURRENT.event = prev
            ev.emit_logs()
        self.needs_init = self._init is not None

    def memory_bytes(self) -> int:
        """The guest memory's current size (the host's bound on what it holds of it)."""
        return self.mem.size()

    @staticmethod
    def _opt_export(
        store: wasmtime.Store, ex: Any, name: str, nparams: int, nresults: int, fast: bool
    ) -> Any:
        try:
            f = ex[name]
        except KeyError:
            return None
        if not isinstance(f, wasmtime.Func):
            return None
        return crossing.make_export(store, f, nparams, nresults, fast=fast)

    def _handler(self, kind: str) -> Any:
        """The export handling events of `kind`, or None (looked up once)."""
        try:
            return self._handlers[kind]
        except KeyError:
            pass
        handler = None
        if kind in _LAZY_HANDLERS:
            handler = self._opt_export(
                self.store, self._ex, f"dohost_{kind}", 1, 1, self.compiled.fast
            )
        self._handlers[kind] = handler
        return handler

    # ----------------------------------------------------------------- events

    def run_event(
        self, kind: str, data: bytes, inline_ticks: int = 0, ws_upgrade_key: str | None = None
    ) -> EventOutcome:
        """Run one event on the calling thread: kind "fetch", "alarm", "ws_message",
        "ws_close" or "ws_error". `ws_upgrade_key` (a fetch only) is the Sec-WebSocket-Key
        of a valid upgrade request from HTTP: the event may then call `ws_accept`.

        On success the storage writes are handed to the committer and the returned
        ticket completes when they are durable. On any failure they are rolled back and
        the activation is marked broken (the caller discards it).

        With `inline_ticks` > 0 the event is an *inline attempt* on the event loop's
        thread: its CPU deadline is that short, and if it is reached (or the guest calls
        an import that must block) the attempt is abandoned with `offload=True`. Nothing
        of it has escaped by then: writes are rolled back, the response was never sent,
        log lines are buffered per event and dropped. The supervisor then runs the event
        again on a worker thread with the full budget."""
        ev = Event(self, kind, data, inline_ticks > 0, ws_upgrade_key)
        ev.mem = self.mem
        self.events += 1
        CURRENT.event = ev
        self.set_deadline(inline_ticks if inline_ticks > 0 else self._ticks)
        try:
            ev.begin()
            if self.needs_init:
                ev.in_init = True
                self._call_guest(ev, self._init, None, "dohost_init")
                ev.in_init = False
                self.needs_init = False
            handler = self._handler(kind)
            if handler is not None:
                self._call_guest(ev, handler, len(data), f"dohost_{kind}")
            elif kind not in _OPTIONAL_HANDLERS:
                raise DohostError(
                    Code.NOT_SUPPORTED, f"the module exports no handler for {kind} events"
                )
            return ev.finish()
        except OffloadRequest as o:
            self.broken = True
            return ev.abandon(o.cpu)
        except DohostError as e:
            self.broken = True
            return ev.fail(e)
        except Exception as e:
            guest_log.exception("[%s] host error during event", self.ident.tag())
            self.broken = True
            return ev.fail(DohostError(Code.INTERNAL, f"host error: {type(e).__name__}"))
        finally:
            CURRENT.event = None

    def _call_guest(self, ev: Event, export: Any, arg: int | None, what: str) -> None:
        """Call an export; raise what the event ends with unless it returned 0."""
        try:
            r = export() if arg is None else export(arg)
        except wasmtime.Trap as t:
            raise self._trap_error(ev, t, f"in {what}") from None
        except wasmtime.WasmtimeError as e:
            if ev.offload_asked:
                raise OffloadRequest(cpu=False) from None
            # A trap an import raised (proc_exit) arrives as an error, not a Trap.
            if ev.trapped is not None:
                code, reason = ev.trapped
                raise DohostError(code, f"{reason} in {what}") from None
            raise DohostError(Code.OBJECT_ERROR, f"{what} failed: {_first_line(str(e))}") from None
        if ev.offload_asked:
            raise OffloadRequest(cpu=False)
        if r != 0:
            last = ev.last_err
            detail = f": last import error {last[0].code}" if last else ""
            # A guest that gives up because the host's storage failed under it (an import
            # answered storage_error) failed through no fault of its own: report the cause,
            # so clients see storage_error rather than object_error (a guest bug).
            cause = last[0] if last is not None else None
            code = cause if cause in (Code.STORAGE_ERROR, Code.FENCED) else Code.OBJECT_ERROR
            raise DohostError(code, f"{what} returned {r}{detail}")

    def _trap_error(self, ev: Event, t: wasmtime.Trap, where: str) -> DohostError | OffloadRequest:
        if ev.offload_asked:
            return OffloadRequest(cpu=False)
        if ev.trapped is not None:
            return DohostError(ev.trapped[0], f"{ev.trapped[1]} {where}")
        code = t.trap_code
        if code == wasmtime.TrapCode.INTERRUPT and ev.inline:
            return OffloadRequest(cpu=True)
        if code == wasmtime.TrapCode.INTERRUPT:
            return DohostError(
                Code.CPU_LIMIT, f"exceeded the CPU time limit of {self.limits.cpu_ms} ms {where}"
            )
        name = code.name.lower().replace("_", " ") if code is not None else _trap_cause(t)
        return DohostError(Code.OBJECT_ERROR, f"wasm trap {where}: {name}{_backtrace(t)}")


MAX_FRAMES = 24  # of a trap's backtrace in its message (the innermost ones)


def _trap_cause(t: wasmtime.Trap) -> str:
    """The trap's own words (after "Caused by:"), for a trap without a trap code."""
    lines = [ln.strip() for ln in t.message.splitlines() if ln.strip()]
    if "Caused by:" in lines:
        rest = lines[lines.index("Caused by:") + 1 :]
        if rest:
            return rest[0].removeprefix("wasm trap: ")
    return _first_line(t.message)


def _backtrace(t: wasmtime.Trap) -> str:
    """`; wasm backtrace: handle_incr @0x1a2 <- on_fetch @0x2b0 <- dohost_fetch @0x2f1`,
    innermost first, bounded: one line, so the error body, the log and the CLI keep it.
    Functions without a name (a stripped module) show as func[index]."""
    try:
        frames = t.frames
    except Exception:
        return ""
    parts = []
    for f in frames[:MAX_FRAMES]:
        name = f.func_name or f"func[{f.func_index}]"
        parts.append(f"{name[:120]} @{f.module_offset:#x}")
    if not parts:
        return ""
    more = f" <- ({len(frames) - MAX_FRAMES} more)" if len(frames) > MAX_FRAMES else ""
    return "; wasm backtrace: " + " <- ".join(parts) + more


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0][:300] if lines else "unknown error"

"""One live object: a wasmtime store and instance, and the host imports it calls.

An `Activation` is created on a worker thread, runs one event at a time (`run_event`),
and is thrown away after any failure, because the guest's memory may be half-updated.
Its durable state lives in the `ObjectStorage` it is given, which outlives it.

Every `imp_*` method is a host import (abi/README.md, section 5). They return an ABI
status and never raise on guest mistakes; anything unexpected is caught by the linker's
wrapper and becomes `internal`.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import wasmtime

from dohost.core import cbor
from dohost.core.envelopes import Response, decode_response
from dohost.core.errors import Code, DohostError
from dohost.core.limits import (
    MAX_KEY_BYTES,
    MAX_KEYS_PER_CALL,
    MAX_LOG_BYTES,
    MAX_RANDOM_BYTES,
    EventLimits,
)
from dohost.runtime import call_imports, crossing, fastcall, sql_imports, ws_imports
from dohost.runtime.engine import deadline_ticks
from dohost.runtime.fastcall import GuestTrapRequest
from dohost.runtime.linker import CURRENT
from dohost.runtime.module_loader import ModuleInfo
from dohost.runtime.wasi import WasiCalls
from dohost.storage.api import CommitTicket, ListOptions, ObjectStorage

guest_log = logging.getLogger("dohost.guest")

_U32 = 0xFFFFFFFF
_S = {c: c.abi_status for c in Code if c.abi_status is not None}
BAD_POINTER = -2
_LOG_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
_I64 = struct.Struct("<q")


def _wall_ms() -> float:
    return time.time() * 1000.0


OFFLOAD = "offload"  # _trap_reason of an import that asked to leave the loop thread


@dataclass
class CompiledClass:
    """A validated module ready to instantiate cheaply."""

    info: ModuleInfo
    module: wasmtime.Module
    instance_pre: wasmtime.InstancePre
    engine: wasmtime.Engine
    fast: bool


@dataclass(frozen=True)
class ObjectIdent:
    tenant: str
    class_name: str
    object_hex: str
    name: str | None = None  # when the host knows it (object_info)

    def tag(self) -> str:
        return f"{self.tenant}/{self.class_name}/{self.object_hex[:16]}"


@dataclass
class EventResult:
    """What an event produced: a response and the commit it waits for, or an error."""

    response: Response | None = None
    ticket: CommitTicket | None = None
    error: DohostError | None = None
    cpu_s: float = 0.0
    storage_reads: int = 0
    storage_writes: int = 0
    sql_rows_read: int = 0
    sql_rows_written: int = 0
    # An inline attempt ran out of its inline budget (or needed to block): nothing of it
    # escaped, and the event must run again on a worker thread.
    offload: bool = False
    offload_cpu: bool = False  # ...because of the CPU budget (not a blocking import)
    # The event changed the object's alarm (committed with it): to `alarm` (None: deleted).
    alarm_changed: bool = False
    alarm: int | None = None
    # An alarm handler failed but had set a new alarm: only that change was committed.
    alarm_replaced: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class OffloadRequest(Exception):
    """An inline attempt must stop and the event run again on a worker thread: because
    it ran out of its inline CPU budget (`cpu`), or because it needs to block."""

    def __init__(self, cpu: bool) -> None:
        super().__init__("cpu budget" if cpu else "needs to block")
        self.cpu = cpu


class GuestFailure(Exception):
    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Activation(WasiCalls):
    def __init__(
        self,
        compiled: CompiledClass,
        ident: ObjectIdent,
        storage: ObjectStorage,
        limits: EventLimits,
        inline_ticks: int = 0,
    ) -> None:
        """Instantiate (and run `_initialize`). With `inline_ticks` > 0 this is an inline
        attempt (see run_event): it raises OffloadRequest when that budget runs out."""
        self.compiled = compiled
        self.ident = ident
        self.storage = storage
        self.limits = limits
        self.broken = False
        self.events = 0
        self._ticks = deadline_ticks(limits.cpu_ms)
        self.inline = inline_ticks > 0  # running on the loop thread (see run_event)
        # Called with the new alarm time before an event that set it commits: it must
        # make the host-wide alarm index entry durable (storage/alarm_index.py).
        self.on_alarm_set: Callable[[int], None] | None = None
        # Routes a `call` to another object (runtime/call_imports.py); set by the
        # supervisor. Without it, calls are not_supported (deploy-time checks).
        self.on_call: call_imports.CallHook | None = None
        self.wall_ms: Callable[[], float] = _wall_ms
        # WebSockets (runtime/ws_imports.py): the host's connection registry (set by the
        # supervisor; None: not served), the object's key in it, and this event's record.
        self.ws_host: ws_imports.WsHostView | None = None
        self.ws_key: ws_imports.WsKey = (ident.tenant, ident.class_name, b"")
        self.ws_event: ws_imports.WsEvent | None = None
        self._alarm_changed = False
        self._alarm_due: int | None = None
        self._log_lines: list[tuple[int, bytes]] = []
        # Per-event state.
        self.input: bytes | None = None
        self.response: Response | None = None
        self.pending: bytes | None = None
        self.last_err: tuple[Code, str] | None = None
        self.ops = 0
        self.reads = 0
        self.writes = 0
        # SQL of this event (runtime/sql_imports.py): time spent and rows metered.
        self.sql_seconds = 0.0
        self.sql_rows_read = 0
        self.sql_rows_written = 0
        self.calls: call_imports.EventCalls | None = None  # this event's calls
        self.storage_open = False
        self._out_buf: dict[int, bytearray] = {}
        self._trap_reason: str | None = None
        self._trap_code = Code.OBJECT_ERROR  # the event's error when an import trapped

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
        self._set_deadline = (
            fastcall.epoch_deadline_setter(store) if compiled.fast else store.set_epoch_deadline
        )
        fast = compiled.fast
        prev = CURRENT.act
        CURRENT.act = self
        try:
            instance = compiled.instance_pre.instantiate(store)
            ex = instance.exports(store)
            memory = ex["memory"]
            assert isinstance(memory, wasmtime.Memory)
            self.mem = crossing.make_memory(store, memory, fast=fast)
            fetch = ex["dohost_fetch"]
            assert isinstance(fetch, wasmtime.Func)
            self._fetch = crossing.make_export(store, fetch, 1, 1, fast=fast)
            self._init = self._opt_export(store, ex, "dohost_init", 0, 1, fast)
            self._alarm = self._opt_export(store, ex, "dohost_alarm", 1, 1, fast)
            self._ws_exports = {
                kind: self._opt_export(store, ex, f"dohost_{kind}", 1, 1, fast)
                for kind in ("ws_message", "ws_close", "ws_error")
            }
            self.has_ws_message = self._ws_exports["ws_message"] is not None
            initialize = self._opt_export(store, ex, "_initialize", 0, 0, fast)
            if initialize is not None:
                initialize()
        except wasmtime.Trap as t:
            err = self._trap_error(t, "while instantiating")
            if isinstance(err, OffloadRequest):
                raise err from None
            raise DohostError(err.code, err.message) from None
        except wasmtime.WasmtimeError as e:
            raise DohostError(
                Code.OBJECT_ERROR, f"instantiation failed: {_first_line(str(e))}"
            ) from None
        finally:
            CURRENT.act = prev
            self.inline = False
            self._flush_output()
            self._emit_logs()
        self.needs_init = self._init is not None

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

    # ----------------------------------------------------------------- events

    def run_event(
        self, kind: str, data: bytes, inline_ticks: int = 0, ws_upgrade_key: str | None = None
    ) -> EventResult:
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
        self.input = data
        self.response = None
        self.pending = None
        self.last_err = None
        self.ops = self.reads = self.writes = 0
        self.sql_seconds = 0.0
        self.sql_rows_read = self.sql_rows_written = 0
        self._trap_reason = None
        self._trap_code = Code.OBJECT_ERROR
        self._alarm_changed = False
        self._alarm_due = None
        self.calls = call_imports.EventCalls(kind)
        self.ws_event = ws_imports.WsEvent(ws_upgrade_key) if ws_upgrade_key is not None else None
        self.inline = inline_ticks > 0
        self.events += 1
        CURRENT.act = self
        self._set_deadline(inline_ticks if inline_ticks > 0 else self._ticks)
        t0 = time.thread_time()
        try:
            self.storage.begin_event()
            self.storage_open = True
            if kind == "alarm":
                # Inside the handler the alarm being delivered is gone: get returns none
                # unless the handler sets a new one; success commits the deletion.
                self.storage.set_alarm(None)
                self._alarm_changed, self._alarm_due = True, None
            if self.needs_init:
                self._call_guest(self._init, None, "dohost_init")
                self.needs_init = False
            export: Any
            if kind == "fetch":
                export = self._fetch
            elif kind == "alarm":
                export = self._alarm
            else:
                export = self._ws_exports.get(kind)
            if export is None and kind in ("ws_close", "ws_error"):
                pass  # optional: a class without the handler ignores the event
            elif export is None:
                raise GuestFailure(
                    Code.NOT_SUPPORTED, f"the module exports no handler for {kind} events"
                )
            if export is not None:
                self._call_guest(export, len(data), f"dohost_{kind}")
            response = self.response if self.response is not None else Response(204, [], b"")
            if (
                self._alarm_changed
                and self._alarm_due is not None
                and self.on_alarm_set is not None
            ):
                self.on_alarm_set(self._alarm_due)  # index first: it must be a superset
            ticket = self.storage.commit_event()
            self._flush_output()
            self._emit_logs()
            result = EventResult(
                response,
                ticket,
                None,
                time.thread_time() - t0,
                self.reads,
                self.writes,
                alarm_changed=self._alarm_changed,
                alarm=self._alarm_due,
                sql_rows_read=self.sql_rows_read,
                sql_rows_written=self.sql_rows_written,
            )
            ws = self.ws_event
            if ws is not None and ws.has_effects():
                result.extra["ws"] = ws  # applied by the supervisor once durable
            return result
        except OffloadRequest as o:
            self.broken = True
            self._rollback()
            self._out_buf.clear()
            self._log_lines.clear()
            return EventResult(offload=True, offload_cpu=o.cpu, cpu_s=time.thread_time() - t0)
        except GuestFailure as f:
            return self._fail(DohostError(f.code, f.message), t0, kind)
        except DohostError as e:
            return self._fail(e, t0, kind)
        except Exception as e:
            guest_log.exception("[%s] host error during event", self.ident.tag())
            return self._fail(DohostError(Code.INTERNAL, f"host error: {type(e).__name__}"), t0)
        finally:
            CURRENT.act = None
            self.input = None
            self.pending = None
            self.inline = False
            self.ws_event = None  # a failed or abandoned event's WebSocket output is dropped

    def _call_guest(self, export: Any, arg: int | None, what: str) -> None:
        try:
            r = export() if arg is None else export(arg)
        except wasmtime.Trap as t:
            if self._trap_reason == OFFLOAD:
                raise OffloadRequest(cpu=False) from None
            raise self._trap_error(t, f"in {what}") from None
        except wasmtime.WasmtimeError as e:
            if self._trap_reason == OFFLOAD:
                raise OffloadRequest(cpu=False) from None
            # A trap an import raised (proc_exit) arrives as an error, not a Trap.
            if self._trap_reason is not None:
                raise GuestFailure(self._trap_code, f"{self._trap_reason} in {what}") from None
            raise GuestFailure(Code.OBJECT_ERROR, f"{what} failed: {_first_line(str(e))}") from None
        if self.inline and self._trap_reason == OFFLOAD:
            raise OffloadRequest(cpu=False)
        if r != 0:
            detail = f": last import error {self.last_err[0].code}" if self.last_err else ""
            # A guest that gives up because the host's storage failed under it (an import
            # answered storage_error) failed through no fault of its own: report the cause,
            # so clients see storage_error rather than object_error (a guest bug).
            failed_storage = self.last_err is not None and self.last_err[0] is Code.STORAGE_ERROR
            code = Code.STORAGE_ERROR if failed_storage else Code.OBJECT_ERROR
            raise GuestFailure(code, f"{what} returned {r}{detail}")

    def _trap_error(self, t: wasmtime.Trap, where: str) -> GuestFailure | OffloadRequest:
        if self._trap_reason is not None:
            return GuestFailure(self._trap_code, f"{self._trap_reason} {where}")
        code = t.trap_code
        if code == wasmtime.TrapCode.INTERRUPT and self.inline:
            return OffloadRequest(cpu=True)
        if code == wasmtime.TrapCode.INTERRUPT:
            return GuestFailure(
                Code.CPU_LIMIT, f"exceeded the CPU time limit of {self.limits.cpu_ms} ms {where}"
            )
        name = code.name.lower().replace("_", " ") if code is not None else "trap"
        return GuestFailure(
            Code.OBJECT_ERROR, f"wasm trap {where}: {name}: {_first_line(t.message)}"
        )

    def _rollback(self) -> None:
        if self.storage_open:
            try:
                self.storage.rollback_event()
            except Exception:
                guest_log.exception("[%s] rollback failed", self.ident.tag())

    def _fail(self, err: DohostError, t0: float, kind: str = "fetch") -> EventResult:
        self.broken = True
        self._rollback()
        self._flush_output()
        self._emit_logs()
        result = EventResult(None, None, err, time.thread_time() - t0, self.reads, self.writes)
        result.sql_rows_read, result.sql_rows_written = self.sql_rows_read, self.sql_rows_written
        if kind == "alarm" and self._alarm_changed and self._alarm_due is not None:
            # A failing alarm handler that set a new alarm: that alarm replaces the retry,
            # so it alone is committed (the handler's other writes stay rolled back).
            result.alarm_replaced, result.alarm_changed, result.alarm = True, True, self._alarm_due
            try:
                self.storage.begin_event()
                self.storage.set_alarm(self._alarm_due)
                if self.on_alarm_set is not None:
                    self.on_alarm_set(self._alarm_due)
                result.ticket = self.storage.commit_event()
            except DohostError as e:
                guest_log.warning(
                    "[%s] could not keep the alarm set by a failing handler: %s",
                    self.ident.tag(),
                    e,
                )
                result.alarm_replaced = result.alarm_changed = False
                result.ticket = None
        return result

    # ----------------------------------------------------------------- helpers

    def _err(self, code: Code, message: str) -> int:
        self.last_err = (code, message)
        return _S[code]

    def _bad_pointer(self, what: str) -> int:
        return self._err(
            Code.BAD_POINTER, f"{what}: pointer and length are outside the guest memory"
        )

    def _output(self, data: bytes, ptr: int, cap: int) -> int:
        n = len(data)
        if n <= (cap & _U32):
            if not self.mem.write(ptr, data):
                return self._bad_pointer("output buffer")
        else:
            self.pending = data
        return n

    def _read(self, ptr: int, n: int) -> bytes | None:
        return self.mem.read(ptr, n)

    def _storage_op(self) -> int:
        """Counts an operation; returns 0, or a status when the event may not do more."""
        if self.input is None:
            return self._err(Code.NOT_SUPPORTED, "storage is not available during _initialize")
        self.ops += 1
        if self.ops > self.limits.storage_ops:
            return self._err(
                Code.LIMIT_EXCEEDED,
                f"more than {self.limits.storage_ops} storage operations in one event",
            )
        return 0

    def guest_output(self, fd: int, data: bytes) -> None:
        buf = self._out_buf.setdefault(fd, bytearray())
        buf += data
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            self._log_line(1 if fd == 1 else 2, bytes(buf[:nl]))
            del buf[: nl + 1]
        if len(buf) > MAX_LOG_BYTES:
            self._log_line(1 if fd == 1 else 2, bytes(buf))
            buf.clear()

    def _flush_output(self) -> None:
        for fd, buf in self._out_buf.items():
            if buf:
                self._log_line(1 if fd == 1 else 2, bytes(buf))
                buf.clear()

    def _log_line(self, level: int, text: bytes) -> None:
        """Buffer a line; lines reach the log when the event ends (see run_event)."""
        if len(self._log_lines) < 1000:
            self._log_lines.append((level, text[:MAX_LOG_BYTES]))

    def _emit_logs(self) -> None:
        lines, self._log_lines = self._log_lines, []
        for level, text in lines:
            self._emit_log(level, text)

    def _emit_log(self, level: int, text: bytes) -> None:
        guest_log.log(
            _LOG_LEVELS[level],
            "[%s] %s",
            self.ident.tag(),
            text[:MAX_LOG_BYTES].decode("utf-8", "replace"),
            extra={
                "tenant": self.ident.tenant,
                "class_name": self.ident.class_name,
                "object": self.ident.object_hex,
            },
        )

    # ----------------------------------------------------------------- event i/o imports

    def imp_input_read(self, ptr: int, cap: int) -> int:
        self.pending = None  # any call of an import that produces bytes drops it
        if not self.mem.check(ptr, cap):
            return self._bad_pointer("input_read")
        if self.input is None:
            return self._err(Code.NO_RESULT, "there is no event input during _initialize")
        if self.needs_init:
            return self._err(Code.NO_RESULT, "there is no event input in dohost_init")
        return self._output(self.input, ptr, cap)

    def imp_response_set(self, ptr: int, n: int) -> int:
        if not self.mem.check(ptr, n):
            return self._bad_pointer("response_set")
        n &= _U32
        if n > self.limits.response_bytes + 65_536:
            return self._err(
                Code.VALUE_TOO_LARGE, f"response above the {self.limits.response_bytes} byte limit"
            )
        data = self._read(ptr, n)
        if data is None:
            return self._bad_pointer("response_set")
        try:
            resp = decode_response(data)
        except DohostError as e:
            return self._err(Code.BAD_ENCODING, f"malformed response: {e.message}")
        if len(resp.body) > self.limits.response_bytes:
            return self._err(
                Code.VALUE_TOO_LARGE,
                f"response body above the {self.limits.response_bytes} byte limit",
            )
        self.response = resp
        return 0

    def imp_result_read(self, ptr: int, cap: int) -> int:
        if not self.mem.check(ptr, cap):
            return self._bad_pointer("result_read")
        if self.pending is None:
            return self._err(Code.NO_RESULT, "no pending result to read")
        n = len(self.pending)
        if n > (cap & _U32):
            return self._err(
                Code.BUFFER_TOO_SMALL,
                f"the pending result is {n} bytes; the buffer holds {cap & _U32}",
            )
        if not self.mem.write(ptr, self.pending):
            return self._bad_pointer("result_read")
        return n

    def imp_last_error(self, ptr: int, cap: int) -> int:
        self.pending = None  # any call of an import that produces bytes drops it
        # Failures of last_error itself are not recorded: they must not replace the detail.
        if not self.mem.check(ptr, cap):
            return BAD_POINTER
        if self.last_err is None:
            return _S[Code.NO_RESULT]
        code, message = self.last_err
        detail = cbor.encode({"code": _S[code], "name": code.code, "message": message})
        n = len(detail)
        if n <= (cap & _U32):
            if not self.mem.write(ptr, detail):
                return BAD_POINTER
        else:
            self.pending = detail
        return n

    # ----------------------------------------------------------------- storage imports

    def _key(self, ptr: int, n: int) -> bytes | int:
        if (n & _U32) > MAX_KEY_BYTES:
            if not self.mem.check(ptr, n):
                return self._bad_pointer("key")
            return self._err(
                Code.KEY_TOO_LARGE, f"key is {n & _U32} bytes; the limit is {MAX_KEY_BYTES}"
            )
        key = self._read(ptr, n)
        if key is None:
            return self._bad_pointer("key")
        return key

    def imp_kv_get(self, kptr: int, klen: int, optr: int, ocap: int) -> int:
        # The hottest import: the common case (key in range and within the limit, value
        # cached) is written out inline; every other case takes the general helpers, in
        # the same order (ranges first, then the operation count, then the key's size).
        self.pending = None  # any call of an import that produces bytes drops it
        mem = self.mem
        if not mem.check(optr, ocap):
            return self._bad_pointer("kv_get output buffer")
        key = mem.read(kptr, klen) if (klen & _U32) <= MAX_KEY_BYTES else None
        if key is None:
            if not mem.check(kptr, klen):
                return self._bad_pointer("key")
            st = self._storage_op()
            if st:
                return st
            checked = self._key(kptr, klen)
            if isinstance(checked, int):
                return checked
            key = checked
        else:
            st = self._storage_op()
            if st:
                return st
        try:
            value = self.storage.get(key)
        except DohostError as e:
            return self._err(e.code, e.message)
        self.reads += 1
        if value is None:
            return self._err(Code.NOT_FOUND, "no such key")
        n = len(value)
        if n <= (ocap & _U32):
            mem.write(optr, value)  # in range: checked above
        else:
            self.pending = value
        return n

    def imp_kv_put(self, kptr: int, klen: int, vptr: int, vlen: int) -> int:
        st = self._storage_op()
        if st:
            return st
        key = self._key(kptr, klen)
        if isinstance(key, int):
            return key
        value = self._read(vptr, vlen)
        if value is None:
            return self._bad_pointer("value")
        try:
            self.storage.put(key, value)
        except DohostError as e:
            return self._err(e.code, e.message)
        self.writes += 1
        return 0

    def imp_kv_delete(self, kptr: int, klen: int) -> int:
        st = self._storage_op()
        if st:
            return st
        key = self._key(kptr, klen)
        if isinstance(key, int):
            return key
        try:
            existed = self.storage.delete(key)
        except DohostError as e:
            return self._err(e.code, e.message)
        self.writes += 1
        return 1 if existed else 0

    def _decode_input(self, ptr: int, n: int, what: str) -> Any:
        data = self._read(ptr, n)
        if data is None:
            return self._bad_pointer(what)
        try:
            return cbor.decode(data)
        except DohostError as e:
            return self._err(Code.BAD_ENCODING, f"{what}: {e.message}")

    def _key_list(self, ptr: int, n: int, what: str) -> list[bytes] | int:
        keys = self._decode_input(ptr, n, what)
        if isinstance(keys, int) and not isinstance(keys, bool):
            return keys
        if not isinstance(keys, list) or not all(isinstance(k, bytes) for k in keys):
            return self._err(Code.BAD_ENCODING, f"{what}: expected a CBOR array of byte strings")
        if len(keys) > MAX_KEYS_PER_CALL:
            return self._err(
                Code.TOO_MANY_KEYS,
                f"{len(keys)} keys in one call; the limit is {MAX_KEYS_PER_CALL}",
            )
        return keys

    def imp_kv_get_many(self, kptr: int, klen: int, optr: int, ocap: int) -> int:
        self.pending = None  # any call of an import that produces bytes drops it
        if not self.mem.check(optr, ocap):
            return self._bad_pointer("kv_get_many output buffer")
        st = self._storage_op()
        if st:
            return st
        keys = self._key_list(kptr, klen, "kv_get_many")
        if isinstance(keys, int):
            return keys
        try:
            found = self.storage.get_many(keys)
        except DohostError as e:
            return self._err(e.code, e.message)
        self.reads += len(keys)
        return self._output(cbor.encode(found), optr, ocap)

    def imp_kv_put_many(self, ptr: int, n: int) -> int:
        st = self._storage_op()
        if st:
            return st
        entries = self._decode_input(ptr, n, "kv_put_many")
        if isinstance(entries, int) and not isinstance(entries, bool):
            return entries
        if not isinstance(entries, dict) or not all(
            isinstance(k, bytes) and isinstance(v, bytes) for k, v in entries.items()
        ):
            return self._err(
                Code.BAD_ENCODING,
                "kv_put_many: expected a CBOR map of byte strings to byte strings",
            )
        if len(entries) > MAX_KEYS_PER_CALL:
            return self._err(
                Code.TOO_MANY_KEYS,
                f"{len(entries)} entries in one call; the limit is {MAX_KEYS_PER_CALL}",
            )
        try:
            self.storage.put_many(entries)
        except DohostError as e:
            return self._err(e.code, e.message)
        self.writes += len(entries)
        return 0

    def imp_kv_delete_many(self, ptr: int, n: int) -> int:
        st = self._storage_op()
        if st:
            return st
        keys = self._key_list(ptr, n, "kv_delete_many")
        if isinstance(keys, int):
            return keys
        try:
            count = self.storage.delete_many(keys)
        except DohostError as e:
            return self._err(e.code, e.message)
        self.writes += len(keys)
        return count

    def imp_kv_list(self, optr: int, olen: int, outptr: int, outcap: int) -> int:
        self.pending = None  # any call of an import that produces bytes drops it
        if not self.mem.check(outptr, outcap):
            return self._bad_pointer("kv_list output buffer")
        st = self._storage_op()
        if st:
            return st
        raw: Any = {}
        if olen & _U32:
            raw = self._decode_input(optr, olen, "kv_list options")
            if isinstance(raw, int) and not isinstance(raw, bool):
                return raw
        opts = self._list_options(raw)
        if isinstance(opts, int):
            return opts
        try:
            result = self.storage.list(opts)
        except DohostError as e:
            return self._err(e.code, e.message)
        self.reads += max(1, len(result.entries))
        out = cbor.encode({"entries": [[k, v] for k, v in result.entries], "more": result.more})
        return self._output(out, outptr, outcap)

    def _list_options(self, raw: Any) -> ListOptions | int:
        if not isinstance(raw, dict):
            return self._err(Code.BAD_ENCODING, "kv_list options must be a CBOR map")
        prefix, start, end = raw.get("prefix", b""), raw.get("start"), raw.get("end")
        reverse, limit = raw.get("reverse", False), raw.get("limit", 0)
        for name, v in (("prefix", prefix), ("start", start), ("end", end)):
            if v is not None and not isinstance(v, bytes):
                return self._err(
                    Code.INVALID_ARGUMENT, f"kv_list option {name} must be a byte string"
                )
        if not isinstance(reverse, bool):
            return self._err(Code.INVALID_ARGUMENT, "kv_list option reverse must be a boolean")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            return self._err(
                Code.INVALID_ARGUMENT, "kv_list option limit must be an unsigned integer"
            )
        return ListOptions(
            prefix=prefix, start=start, end=end, reverse=reverse, limit=min(limit, 1 << 62)
        )

    def imp_kv_delete_all(self) -> int:
        st = self._storage_op()
        if st:
            return st
        try:
            self.storage.delete_all()
        except DohostError as e:
            return self._err(e.code, e.message)
        self._alarm_changed, self._alarm_due = True, None  # delete_all takes the alarm too
        self.writes += 1
        return 0

    # ----------------------------------------------------------------- alarms

    def imp_alarm_set(self, time_ms: int) -> int:
        st = self._storage_op()
        if st:
            return st
        if time_ms < 0:
            return self._err(
                Code.INVALID_ARGUMENT, "alarm time must be milliseconds since the Unix epoch (>= 0)"
            )
        if self.inline:
            # Committing an alarm writes the alarm index durably (an fsync): not on the
            # loop thread. Abandon the inline attempt; the event reruns on a worker.
            self._trap_reason = OFFLOAD
            raise GuestTrapRequest(OFFLOAD)
        try:
            self.storage.set_alarm(time_ms)
        except DohostError as e:
            return self._err(e.code, e.message)
        self._alarm_changed, self._alarm_due = True, time_ms
        self.writes += 1
        return 0

    def imp_alarm_get(self, out_ptr: int) -> int:
        if not self.mem.check(out_ptr, 8):
            return self._bad_pointer("alarm_get")
        st = self._storage_op()
        if st:
            return st
        try:
            due = self.storage.get_alarm()
        except DohostError as e:
            return self._err(e.code, e.message)
        self.reads += 1
        if due is None:
            return 0
        self.mem.write(out_ptr, _I64.pack(due))
        return 1

    def imp_alarm_delete(self) -> int:
        st = self._storage_op()
        if st:
            return st
        try:
            self.storage.set_alarm(None)
        except DohostError as e:
            return self._err(e.code, e.message)
        self._alarm_changed, self._alarm_due = True, None
        self.writes += 1
        return 0

    # ----------------------------------------------------------------- utilities

    def imp_log(self, level: int, ptr: int, n: int) -> int:
        if not 0 <= level <= 3:
            return self._err(Code.INVALID_ARGUMENT, "log level must be 0 (debug) to 3 (error)")
        if not self.mem.check(ptr, n):
            return self._bad_pointer("log")
        text = self._read(ptr, min(n & _U32, MAX_LOG_BYTES))
        assert text is not None
        self._log_line(level, text)
        return 0

    def imp_now_ms(self) -> int:
        return int(self.wall_ms())

    def imp_call(self, tptr: int, tlen: int, rptr: int, rlen: int, optr: int, ocap: int) -> int:
        return call_imports.call(self, tptr, tlen, rptr, rlen, optr, ocap)

    def imp_object_info(self, optr: int, ocap: int) -> int:
        return call_imports.object_info(self, optr, ocap)

    def imp_sql_exec(self, sptr: int, slen: int, pptr: int, plen: int, optr: int, ocap: int) -> int:
        return sql_imports.sql_exec(self, sptr, slen, pptr, plen, optr, ocap)

    # WebSockets: runtime/ws_imports.py
    def imp_ws_accept(self, ptr: int, n: int) -> int:
        return ws_imports.ws_accept(self, ptr, n)

    def imp_ws_send(self, conn_id: int, kind: int, ptr: int, n: int) -> int:
        return ws_imports.ws_send(self, conn_id, kind, ptr, n)

    def imp_ws_send_tag(self, tptr: int, tlen: int, kind: int, ptr: int, n: int) -> int:
        return ws_imports.ws_send_tag(self, tptr, tlen, kind, ptr, n)

    def imp_ws_close(self, conn_id: int, code: int, ptr: int, n: int) -> int:
        return ws_imports.ws_close(self, conn_id, code, ptr, n)

    def imp_ws_list(self, tptr: int, tlen: int, optr: int, ocap: int) -> int:
        return ws_imports.ws_list(self, tptr, tlen, optr, ocap)

    def imp_ws_attachment_set(self, conn_id: int, ptr: int, n: int) -> int:
        return ws_imports.ws_attachment_set(self, conn_id, ptr, n)

    def imp_ws_attachment_get(self, conn_id: int, optr: int, ocap: int) -> int:
        return ws_imports.ws_attachment_get(self, conn_id, optr, ocap)

    def imp_ws_auto_response(self, rptr: int, rlen: int, sptr: int, slen: int) -> int:
        return ws_imports.ws_auto_response(self, rptr, rlen, sptr, slen)

    def wasi_proc_exit(self, code: int) -> int:
        self._trap_reason = f"proc_exit({code})"
        raise GuestTrapRequest(self._trap_reason)

    def imp_random_fill(self, ptr: int, n: int) -> int:
        n &= _U32
        if n > MAX_RANDOM_BYTES:
            return self._err(
                Code.INVALID_ARGUMENT, f"random_fill takes at most {MAX_RANDOM_BYTES} bytes"
            )
        if not self.mem.write(ptr, os.urandom(n)):
            return self._bad_pointer("random_fill")
        return 0


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0][:300] if lines else "unknown error"

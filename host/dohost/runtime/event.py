"""One event: everything about one delivery into an object, and its transaction.

An `Event` is created by `Activation.run_event` for each delivery (and one, without
input, while the activation instantiates). It holds the event's state — input, response,
pending result, last error, counters, SQL metering, call state, the WebSocket record,
the alarm change, log lines, the trap — and the helpers the imports use (`read`,
`output`, `err`, `key`, `decode`, `storage_op`, `trap`, `offload`, …). Every host import
is a function over an `Event` (`*_imports.py`, wasi.py); none of them touches anything
private of another object.

The transaction, in the order it happens (nothing else opens, commits or rolls back an
event's storage):

    check_alarm(...)      before an alarm event, without the guest: is the object's
                          own record still that alarm? (or clear it: "alarm_clear")
    begin()               open the storage event; an alarm event consumes its alarm
    ... the guest runs; imports read and write through this object ...
    commit_point()        (a call) commit so far, wait until durable, begin the rest
    finish()              the only place the alarm index is written before a commit;
                          commit; logs; the result
    fail(err)             roll back; a failing alarm handler that set a new alarm
                          keeps only that change (whatever the kind of failure)
    abandon(cpu)          an inline attempt stops: roll back, drop its logs

Errors inside the runtime — one mechanism, `DohostError` (core/errors.py) with a `Code`:

    DohostError                 raised by a helper or by storage inside an import: the
                                linker's wrapper records it as the event's last error
                                and returns its ABI status; the guest goes on.
                                Raised while the event runs (outside an import): the
                                event fails with it (`fail`).
    Event.trap(code, reason)    ends the guest at once (a `GuestTrapRequest` through
                                wasmtime, which does not carry the exception back): the
                                event keeps `(code, reason)` and the activation fails
                                the event with `DohostError(code, reason …)`.
    Event.offload()             a trap too: an inline attempt must leave the loop
                                thread; the activation turns it into `OffloadRequest`,
                                which the supervisor answers by running the event on a
                                worker.
    anything else               a host bug: inside an import it becomes `internal` (-1)
                                with the detail logged; outside, the event fails with
                                `internal`.

An import may also answer a status directly with `return ev.err(code, message)`: the
same record, without raising (the hot paths' "not found").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol

from dohost.core import cbor
from dohost.core.envelopes import Response
from dohost.core.errors import ABI_STATUS, Code, DohostError
from dohost.core.limits import MAX_KEY_BYTES, MAX_LOG_BYTES, EventLimits
from dohost.runtime import gc_time
from dohost.runtime.fastcall import GuestTrapRequest
from dohost.storage.api import CommitTicket, ObjectStorage

if TYPE_CHECKING:
    from dohost.core.calls import CallTarget
    from dohost.core.envelopes import Request
    from dohost.runtime.bookmark_imports import BookmarkHost
    from dohost.runtime.crossing import GuestMemory
    from dohost.runtime.ws_imports import WsEvent, WsHostView, WsKey

guest_log = logging.getLogger("dohost.guest")

U32 = 0xFFFFFFFF
_LOG_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
_MAX_LOG_LINES = 1000  # per event; more are dropped
# Guest data larger than this is not decoded on the loop thread (an inline attempt moves
# to a worker first): decoding is Python work proportional to its size.
INLINE_DECODE_BYTES = 64 * 1024
DECODE_MAX_ITEMS = 10_000  # elements of a guest message's top array or map, by default
_OFFLOAD = "offload"  # the trap reason of Event.offload()
_INTERNAL = ABI_STATUS[Code.INTERNAL]
_STORAGE_ERROR = ABI_STATUS[Code.STORAGE_ERROR]

# Called on the caller's worker thread with the target, the checked request and the
# alarm time this call's commit made durable (None if it changed no alarm); blocks until
# the call is answered. Returns the callee's response, or the error of a call that
# could not be made (call_cycle, call_depth, call_failed).
CallHook = Callable[["CallTarget", "Request", "int | None"], "Response | DohostError"]


@dataclass(frozen=True)
class ObjectIdent:
    tenant: str
    class_name: str
    object_hex: str
    name: str | None = None  # when the host knows it (object_info)

    def tag(self) -> str:
        """tenant/class/object: the object's name when known, else its id's first 16 hex."""
        obj = self.name if self.name is not None else self.object_hex[:16]
        return f"{self.tenant}/{self.class_name}/{obj}"

    @property
    def label(self) -> str:
        """The object's name when known, else its whole id."""
        return self.name if self.name is not None else self.object_hex


AlarmState = Literal["gone", "moved"]


@dataclass(frozen=True, slots=True)
class EventOutcome:
    """What an event produced, fixed once made (`Event.finish`/`fail`/`abandon`,
    `check_alarm`; the supervisor derives a new one with `dataclasses.replace`)."""

    response: Response | None = None
    ticket: CommitTicket | None = None  # the commit the response waits for (output gate)
    error: DohostError | None = None
    cpu_s: float = 0.0
    gc_s: float = 0.0  # of cpu_s: the host's garbage collections (runtime/gc_time.py)
    storage_reads: int = 0
    storage_writes: int = 0
    sql_rows_read: int = 0
    sql_rows_written: int = 0
    # The event changed the object's alarm (committed with it): to `alarm` (None: deleted).
    alarm_changed: bool = False
    alarm: int | None = None
    # An alarm handler failed but had set a new alarm: only that change was committed.
    alarm_replaced: bool = False
    # check_alarm found the object's own alarm is no longer the one scheduled: "gone"
    # (none), or "moved" to `alarm_due`. The guest did not run.
    alarm_state: AlarmState | None = None
    alarm_due: int | None = None
    # A successful event's WebSocket record: applied by the supervisor once durable.
    ws: WsEvent | None = None
    calls: int = 0  # object calls the event made
    call_failures: tuple[tuple[str, int], ...] = ()  # (error code, calls that could not be made)
    # An inline attempt ran out of its inline budget (or needed to block): nothing of it
    # escaped, and the event must run again on a worker thread.
    offload: bool = False
    offload_cpu: bool = False  # ...because of the CPU budget (not a blocking import)
    offload_call: bool = False  # ...because it reached a call (then skip inline attempts)
    activation_s: float = 0.0  # (the supervisor) the event's activation was created for it


class OffloadRequest(Exception):
    """An inline attempt must stop and the event run again on a worker thread: because
    it ran out of its inline CPU budget (`cpu`), or because it needs to block."""

    def __init__(self, cpu: bool) -> None:
        super().__init__("cpu budget" if cpu else "needs to block")
        self.cpu = cpu


class LogGate(Protocol):
    """The tenant's log rate (server/tenant_limits.py), asked by the log imports before
    they copy anything out of guest memory; any thread."""

    def log_allow(self, tenant: str, nbytes: int) -> bool:
        """Whether `nbytes` more of `tenant`'s log may be written; if not they are
        counted as dropped."""

    def log_dropped(self, tenant: str, nbytes: int) -> None:
        """Count `nbytes` dropped for another reason (the per-event line cap)."""

    def log_refund(self, tenant: str, kept: int, dropped: int) -> None:
        """An abandoned inline attempt wrote nothing: give back what it was allowed and
        uncount what it dropped (the rerun on a worker asks again)."""


class EventHost(Protocol):
    """What an event needs of the activation it runs in (runtime/activation.py)."""

    ident: ObjectIdent
    storage: ObjectStorage
    limits: EventLimits
    has_ws_message: bool
    # Makes the host-wide alarm index entry durable before an event that set an alarm
    # commits (storage/alarm_index.py); None: no index (deploy checks, tests).
    on_alarm_set: Callable[[int], None] | None
    on_call: CallHook | None  # routes a `call` (server/calls.py); None: not_supported
    ws_host: WsHostView | None  # the host's WebSocket registry; None: not served
    ws_key: WsKey
    wall_ms: Callable[[], float]
    log_gate: LogGate | None  # the tenant's log rate (None: no limit)
    # Each guest log line as it reaches the log (server/tail.py: `dohost tail`, `dev`).
    on_log: Callable[[ObjectIdent, int, str], None] | None
    # The object's bookmarks (runtime/bookmark_imports.py); None: no replica, the
    # bookmark imports answer not_supported.
    bookmarks: BookmarkHost | None

    def set_deadline(self, ticks: int) -> None:
        """Arm the store's epoch deadline `ticks` from now."""


class CallState:
    """The calls of one event (runtime/call_imports.py), created at its first call."""

    __slots__ = ("failed", "made", "offloaded", "waited")

    def __init__(self) -> None:
        self.waited = 0.0  # seconds spent waiting in calls (not wasm time)
        self.made = 0
        self.failed: dict[str, int] = {}  # error code -> calls that could not be made
        self.offloaded = False  # an inline attempt stopped at a call


def bad_pointer(what: str) -> DohostError:
    return DohostError(Code.BAD_POINTER, f"{what}: pointer and length are outside the guest memory")


class Event:
    """The state of one delivery; see the module docstring."""

    __slots__ = (
        "alarm_changed",
        "alarm_due",
        "calls",
        "commit_failure",
        "cpu_t0",
        "fatal",
        "gc_t0",
        "host",
        "in_init",
        "inline",
        "input",
        "kind",
        "last_err",
        "limits",
        "log_dropped",
        "log_kept",
        "logs",
        "mem",
        "offload_asked",
        "ops",
        "out_buf",
        "pending",
        "reads",
        "response",
        "sql_rows_read",
        "sql_rows_written",
        "sql_seconds",
        "started",
        "storage",
        "storage_open",
        "trapped",
        "writes",
        "ws",
        "ws_upgrade_key",
    )

    mem: GuestMemory  # unset while the activation instantiates, until it has a memory

    def __init__(
        self,
        host: EventHost,
        kind: str,
        data: bytes | None,
        inline: bool = False,
        ws_upgrade_key: str | None = None,
    ) -> None:
        """`kind`: "fetch", "alarm", "ws_message", "ws_close", "ws_error", or
        "instantiate" (no input: storage and calls refuse). `inline`: an inline attempt
        on the loop thread. `ws_upgrade_key`: the Sec-WebSocket-Key of a fetch that may
        accept a WebSocket upgrade."""
        self.host = host
        self.kind = kind
        self.input = data
        self.inline = inline
        self.ws_upgrade_key = ws_upgrade_key
        self.storage = host.storage
        self.limits = host.limits
        self.in_init = False  # dohost_init is running (no input to read)
        self.response: Response | None = None
        self.pending: bytes | None = None
        self.last_err: tuple[Code, str] | None = None
        self.ops = self.reads = self.writes = 0
        # SQL of this event (runtime/sql_imports.py): time spent and rows metered.
        self.sql_seconds = 0.0
        self.sql_rows_read = self.sql_rows_written = 0
        self.calls: CallState | None = None
        # A commit point failed: the event ends with `fatal`; `commit_failure` is the
        # failed ticket, which makes the supervisor reset the object's storage.
        self.fatal: DohostError | None = None
        self.commit_failure: CommitTicket | None = None
        self.ws: WsEvent | None = None  # created by the first WebSocket import
        self.alarm_changed = False
        self.alarm_due: int | None = None
        self.logs: list[tuple[int, bytes]] | None = None
        # Log bytes this event was allowed (charged to the tenant's rate) and dropped.
        self.log_kept = self.log_dropped = 0
        self.out_buf: dict[int, bytearray] | None = None
        self.trapped: tuple[Code, str] | None = None
        self.offload_asked = False  # Event.offload() ended the guest
        self.storage_open = False
        self.started = time.monotonic()  # about when the CPU deadline was armed (calls)
        self.cpu_t0 = time.thread_time()
        self.gc_t0 = gc_time.seconds()

    # ------------------------------------------------------------ the transaction

    def begin(self) -> None:
        self.storage.begin_event()
        self.storage_open = True
        if self.kind == "alarm":
            # Inside the handler the alarm being delivered is gone: get returns none
            # unless the handler sets a new one; success commits the deletion.
            self.storage.set_alarm(None)
            self.alarm_changed, self.alarm_due = True, None

    def commit_point(self) -> int | None:
        """(A call, worker thread.) Commit the event's writes so far and wait until they
        are durable; begin the next transaction. Returns the alarm time that commit made
        durable, if any. A failure ends the event (a trap) with `storage_error`: the
        writes may be lost. In an alarm handler the alarm being handled stays in the
        committed state until the handler succeeds (runtime/call_imports.py)."""
        storage = self.storage
        restore: int | None = None
        alarm_new = self.alarm_due if self.alarm_changed else None
        ticket: CommitTicket | None = None
        try:
            if self.kind == "alarm" and self.alarm_changed and self.alarm_due is None:
                info = cbor.decode(self.input or b"")
                restore = int(info["scheduled_ms"])
                storage.set_alarm(restore)
            self._index_alarm(alarm_new)
            ticket = storage.commit_event()
            err = ticket.error if ticket.done else ticket.wait()
            if err is None:
                storage.begin_event()
                if restore is not None:
                    storage.set_alarm(None)
        except DohostError as e:
            err = e
        if err is None:
            return alarm_new
        self.fatal = DohostError(
            Code.STORAGE_ERROR,
            f"the writes made before a call could not be stored ({err.message}); "
            "the event failed and the call was not made",
        )
        if ticket is not None and ticket.error is not None:
            self.commit_failure = ticket
        self.trap(Code.STORAGE_ERROR, f"storage_error before a call: {err.message}")

    def finish(self) -> EventOutcome:
        """The guest returned successfully: commit and report."""
        response = self.response if self.response is not None else Response(204, [], b"")
        if self.alarm_changed:
            self._index_alarm(self.alarm_due)
        ticket = self.storage.commit_event()
        self.emit_logs()
        ws = self.ws
        if ws is not None and not ws.has_effects():
            ws = None
        return self._outcome(response, ticket, None, self.alarm_changed, self.alarm_due, ws)

    def fail(self, err: DohostError) -> EventOutcome:
        """The event failed: roll back its writes. The outcome carries `err`, or the
        failed commit point's error (with its failed ticket, so that the supervisor
        resets the object's storage)."""
        self.rollback()
        self.emit_logs()
        ticket: CommitTicket | None = None
        kept: int | None = None
        if self.kind == "alarm" and self.alarm_changed and self.alarm_due is not None:
            ticket = self._keep_new_alarm(self.alarm_due)
            kept = self.alarm_due if ticket is not None else None
        if self.fatal is not None:
            err = self.fatal
            if ticket is None:
                ticket = self.commit_failure
        return self._outcome(None, ticket, err, kept is not None, kept, None)

    def abandon(self, cpu: bool) -> EventOutcome:
        """An inline attempt stops (`cpu`: its budget ran out): nothing of it escapes."""
        self.rollback()
        self.out_buf = None
        self.logs = None
        gate = self.host.log_gate
        if gate is not None and (self.log_kept or self.log_dropped):
            gate.log_refund(self.host.ident.tenant, self.log_kept, self.log_dropped)
        return EventOutcome(
            offload=True,
            offload_cpu=cpu,
            offload_call=self.calls is not None and self.calls.offloaded,
            cpu_s=time.thread_time() - self.cpu_t0,
            gc_s=gc_time.seconds() - self.gc_t0,
        )

    def _outcome(
        self,
        response: Response | None,
        ticket: CommitTicket | None,
        error: DohostError | None,
        alarm_changed: bool,
        alarm: int | None,
        ws: WsEvent | None,
    ) -> EventOutcome:
        """The outcome of a finished or failed event: what it did, and its counters."""
        calls = self.calls
        return EventOutcome(
            response,
            ticket,
            error,
            time.thread_time() - self.cpu_t0,
            gc_time.seconds() - self.gc_t0,
            self.reads,
            self.writes,
            self.sql_rows_read,
            self.sql_rows_written,
            alarm_changed,
            alarm,
            alarm_replaced=error is not None and alarm_changed,
            ws=ws,
            calls=calls.made if calls is not None else 0,
            call_failures=tuple(calls.failed.items()) if calls is not None else (),
        )

    def rollback(self) -> None:
        if self.storage_open:
            try:
                self.storage.rollback_event()
            except Exception:
                guest_log.exception("[%s] rollback failed", self.host.ident.tag())

    def _index_alarm(self, due_ms: int | None) -> None:
        hook = self.host.on_alarm_set
        if due_ms is not None and hook is not None:
            hook(due_ms)  # the index entry first: it must be a superset of the truth

    def _keep_new_alarm(self, due_ms: int) -> CommitTicket | None:
        """A failing alarm handler that set a new alarm: that alarm replaces the retry,
        so it alone is committed (the handler's other writes stay rolled back). Returns
        the commit's ticket, None if it could not be made."""
        try:
            self.storage.begin_event()
            self.storage.set_alarm(due_ms)
            self._index_alarm(due_ms)
            return self.storage.commit_event()
        except Exception as e:
            guest_log.warning(
                "[%s] could not keep the alarm set by a failing handler: %s",
                self.host.ident.tag(),
                e,
            )
            return None

    # ------------------------------------------------------------ ending the guest

    def trap(self, code: Code, reason: str) -> NoReturn:
        """End the guest now; the event fails with `code` (see the module docstring)."""
        self.trapped = (code, reason)
        raise GuestTrapRequest(reason)

    def offload(self) -> NoReturn:
        """(Inline attempts.) Leave the loop thread: the event reruns on a worker."""
        self.offload_asked = True
        raise GuestTrapRequest(_OFFLOAD)

    # ------------------------------------------------------------ helpers for imports

    def err(self, code: Code, message: str) -> int:
        """Record the event's last error; its ABI status (a code guests cannot see is
        reported as `internal`, naming it)."""
        status = ABI_STATUS.get(code)
        if status is None:
            if code is Code.FENCED:
                # A newer owner opened the object's storage under this event: the guest
                # sees a storage failure, the event reports `fenced` (activation.py).
                self.last_err = (code, message)
                return _STORAGE_ERROR
            self.last_err = (Code.INTERNAL, f"{code.code}: {message}")
            return _INTERNAL
        self.last_err = (code, message)
        return status

    def bad_pointer(self, what: str) -> int:
        e = bad_pointer(what)
        return self.err(e.code, e.message)

    def read(self, ptr: int, n: int, what: str) -> bytes:
        """The guest's bytes at ptr..ptr+n; `bad_pointer` when out of range."""
        data = self.mem.read(ptr, n)
        if data is None:
            raise bad_pointer(what)
        return data

    def output(self, data: bytes, ptr: int, cap: int) -> int:
        """The output-buffer rule: write `data` if it fits, else keep it pending."""
        n = len(data)
        if n <= (cap & U32):
            if not self.mem.write(ptr, data):
                return self.bad_pointer("output buffer")
        else:
            self.pending = data
        return n

    def loop_bound(self, ptr: int, n: int, what: str) -> None:
        """(Inline attempts.) Guest data above INLINE_DECODE_BYTES is not read or decoded
        on the loop thread: the event moves to a worker (bad_pointer first, as always)."""
        if self.inline and (n & U32) > INLINE_DECODE_BYTES:
            if not self.mem.check(ptr, n):
                raise bad_pointer(what)
            self.offload()

    def decode(
        self,
        ptr: int,
        n: int,
        what: str,
        max_count: int = DECODE_MAX_ITEMS,
        count_code: Code = Code.LIMIT_EXCEEDED,
        noun: str = "entries",
    ) -> Any:
        """A CBOR message from the guest (strict codec); `bad_encoding` if malformed.
        Bounded before any work proportional to what the guest chose: off the loop above
        INLINE_DECODE_BYTES; an array or map of more than `max_count` elements is
        refused with `count_code` from its head; at most 1 + 2 x `max_count` items are
        decoded in all (`limit_exceeded` beyond)."""
        self.loop_bound(ptr, n, what)
        data = self.read(ptr, n, what)
        count = cbor.head_count(data)
        if count is not None and count > max_count:
            raise DohostError(count_code, f"{count} {noun} in one call; the limit is {max_count}")
        try:
            return cbor.decode(data, 1 + 2 * max_count)
        except cbor.CborTooMany as e:
            raise DohostError(Code.LIMIT_EXCEEDED, f"{what}: {e.message}") from None
        except DohostError as e:
            raise DohostError(Code.BAD_ENCODING, f"{what}: {e.message}") from None

    def key(self, ptr: int, n: int) -> bytes:
        if (n & U32) > MAX_KEY_BYTES:
            if not self.mem.check(ptr, n):
                raise bad_pointer("key")
            raise DohostError(
                Code.KEY_TOO_LARGE, f"key is {n & U32} bytes; the limit is {MAX_KEY_BYTES}"
            )
        return self.read(ptr, n, "key")

    def storage_op(self) -> None:
        """Count one storage operation; refuse it when the event may not do more."""
        if self.input is None:
            raise DohostError(Code.NOT_SUPPORTED, "storage is not available during _initialize")
        self.ops += 1
        if self.ops > self.limits.storage_ops:
            raise DohostError(
                Code.LIMIT_EXCEEDED,
                f"more than {self.limits.storage_ops} storage operations in one event",
            )

    def set_alarm_change(self, due_ms: int | None) -> None:
        """The event changed the object's alarm (to `due_ms`; None: deleted)."""
        self.alarm_changed, self.alarm_due = True, due_ms

    # ------------------------------------------------------------ guest logs
    #
    # What the guest asks to log costs the host O(its limits), not O(what it asked):
    # the imports ask `log_room` before copying anything out of guest memory, so bytes
    # over the tenant's rate or past the event's line cap are never copied, split,
    # decoded or formatted, only counted (`dohost_log_dropped_bytes`).

    def log_room(self, nbytes: int) -> bool:
        """May `nbytes` more of log output be copied out of guest memory? Refused (and
        counted as dropped) past the event's line cap or the tenant's log rate."""
        gate = self.host.log_gate
        if self.logs is not None and len(self.logs) >= _MAX_LOG_LINES:
            self.log_dropped += nbytes
            if gate is not None:
                gate.log_dropped(self.host.ident.tenant, nbytes)
            return False
        if gate is not None and not gate.log_allow(self.host.ident.tenant, nbytes):
            self.log_dropped += nbytes
            return False
        self.log_kept += nbytes
        return True

    def guest_output(self, fd: int, data: bytes) -> None:
        """Bytes the guest wrote to stdout (1) or stderr (2), allowed by `log_room`:
        logged a line at a time (at most the event's line cap; the rest is dropped)."""
        if self.out_buf is None:
            self.out_buf = {}
        buf = self.out_buf.setdefault(fd, bytearray())
        buf += data
        level = 1 if fd == 1 else 2
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            if not self.log_line(level, bytes(buf[start:nl])):
                self._drop_output(len(buf) - nl - 1)
                buf.clear()
                return
            start = nl + 1
        del buf[:start]
        if len(buf) > MAX_LOG_BYTES:
            self.log_line(level, bytes(buf))
            buf.clear()

    def _drop_output(self, nbytes: int) -> None:
        """Output already allowed but past the event's line cap: counted as dropped."""
        gate = self.host.log_gate
        if nbytes > 0:
            self.log_dropped += nbytes
            self.log_kept -= nbytes
            if gate is not None:
                gate.log_refund(self.host.ident.tenant, nbytes, 0)
                gate.log_dropped(self.host.ident.tenant, nbytes)

    def log_line(self, level: int, text: bytes) -> bool:
        """Buffer a line (its bytes allowed by `log_room`); lines reach the log when the
        event ends (see run_event). False when the event's line cap is reached."""
        if self.logs is None:
            self.logs = []
        if len(self.logs) >= _MAX_LOG_LINES:
            self._drop_output(len(text))
            return False
        self.logs.append((level, text[:MAX_LOG_BYTES]))
        return True

    def emit_logs(self) -> None:
        """Flush partial output lines and write the event's lines to the log. A line no
        one would see (its level is off and no tail listens) is not even decoded."""
        if self.out_buf is not None:
            for fd, buf in self.out_buf.items():
                if buf:
                    self.log_line(1 if fd == 1 else 2, bytes(buf))
                    buf.clear()
        lines, self.logs = self.logs, None
        if not lines:
            return
        ident = self.host.ident
        extra = {"tenant": ident.tenant, "class_name": ident.class_name, "object": ident.object_hex}
        on_log = self.host.on_log
        for level, text in lines:
            py_level = _LOG_LEVELS[level]
            if on_log is None and not guest_log.isEnabledFor(py_level):
                continue
            line = text.decode("utf-8", "replace")
            if on_log is not None:
                on_log(ident, level, line)
            guest_log.log(py_level, "[%s] %s", ident.tag(), line, extra=extra)


def check_alarm(storage: ObjectStorage, kind: str, expect: int | None) -> EventOutcome | None:
    """Before an alarm event, without waking the guest: is the object's own record still
    that alarm? (The index that scheduled it is only a superset of the truth.) Also
    serves "alarm_clear" (drop that alarm). None: run the handler."""
    storage.begin_event()
    due = storage.get_alarm()
    if due is None or due != expect:
        storage.rollback_event()
        return EventOutcome(alarm_state="gone" if due is None else "moved", alarm_due=due)
    if kind == "alarm_clear":
        storage.set_alarm(None)
        return EventOutcome(ticket=storage.commit_event(), alarm_changed=True, alarm=None)
    storage.rollback_event()
    return None

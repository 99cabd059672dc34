"""The `call` host import (abi/README.md, "Object calls"): a fetch-shaped request to
another object of the same tenant, answered with that object's response.

`call(target_ptr, target_len, req_ptr, req_len, out_ptr, out_cap) -> i32` runs on the
caller's worker thread and blocks it while the call is routed by the supervisor on the
event loop (server/calls.py, through the activation's `on_call` hook). Around that wait:

- **Commit point.** The writes the event made so far are committed and awaited until
  durable *before* the call leaves, then a new transaction begins for the rest of the
  event. So whatever the callee learns from the request, the caller's durable storage
  already holds (the output gate, applied to calls). A failure later in the event rolls
  back only the writes made after the last call.
- **Never inline.** The wait must not block the event loop, so an inline attempt that
  reaches `call` is abandoned (nothing of it escaped) and the event runs again on a
  worker thread. The object is not marked heavy for it: blocking is not CPU use.
- **CPU.** The caller's deadline is wall time in wasm; the wait (commit and call) is not
  that, so the deadline is re-armed with what is left of the budget when the call
  returns.
- **Alarm handlers.** A call inside `dohost_alarm` commits the handler's writes but not
  the consumption of the alarm being handled: the alarm is put back in the committed
  state and removed again in the new transaction, so a handler that fails after a call
  is still retried, and a crash still re-runs it (at least once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dohost.core import cbor
from dohost.core.calls import CallTarget, decode_call_request, decode_target
from dohost.core.envelopes import Request, Response, encode_response
from dohost.core.errors import Code, DohostError
from dohost.runtime.engine import deadline_ticks
from dohost.runtime.fastcall import GuestTrapRequest
from dohost.storage.api import CommitTicket

if TYPE_CHECKING:
    from dohost.runtime.activation import Activation, EventResult

# Called on the caller's worker thread with the target, the checked request and the
# alarm time this call's commit made durable (None if it changed no alarm); blocks until
# the call is answered. Returns the callee's response, or the error of a call that
# could not be made (call_cycle, call_depth, call_failed).
CallHook = Callable[[CallTarget, Request, "int | None"], "Response | DohostError"]


class EventCalls:
    """Call state of one event (created by Activation.run_event)."""

    __slots__ = ("commit_failure", "failed", "fatal", "kind", "made", "offloaded", "t0", "waited")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.t0 = time.monotonic()  # about when the event's CPU deadline was armed
        self.waited = 0.0  # seconds spent waiting in calls (not wasm time)
        self.made = 0
        self.failed: dict[str, int] = {}  # error code -> calls that could not be made
        # A commit point failed: the event ends with `fatal`; `commit_failure` is the
        # failed ticket, which makes the supervisor reset the object's storage.
        self.fatal: DohostError | None = None
        self.commit_failure: CommitTicket | None = None
        self.offloaded = False  # an inline attempt stopped at a call


def call(act: Activation, tptr: int, tlen: int, rptr: int, rlen: int, optr: int, ocap: int) -> int:
    """The import; `act` is the activation whose event is running."""
    act.pending = None  # any call of an import that produces bytes drops it
    mem = act.mem
    if not (mem.check(tptr, tlen) and mem.check(rptr, rlen) and mem.check(optr, ocap)):
        return act._bad_pointer("call")
    state = act.calls
    if act.input is None or state is None:
        return act._err(Code.NOT_SUPPORTED, "calls are not available during _initialize")
    hook = act.on_call
    if hook is None:
        return act._err(Code.NOT_SUPPORTED, "calls to other objects are not available here")
    raw_target, raw_request = act._read(tptr, tlen), act._read(rptr, rlen)
    if raw_target is None or raw_request is None:
        return act._bad_pointer("call")
    try:
        target = decode_target(raw_target)
        request = decode_call_request(raw_request)
    except DohostError as e:
        return act._err(e.code, f"call: {e.message}")
    if act.inline:
        from dohost.runtime.activation import OFFLOAD  # (a cycle at import time)

        # The call blocks: leave the loop thread; the event reruns on a worker.
        state.offloaded = True
        act._trap_reason = OFFLOAD
        raise GuestTrapRequest(OFFLOAD)
    state.made += 1
    t_wait = time.monotonic()
    try:
        alarm_committed = _commit_point(act, state)
        outcome = hook(target, request, alarm_committed)
    finally:
        state.waited += time.monotonic() - t_wait
        _rearm_deadline(act, state)
    if isinstance(outcome, DohostError):
        state.failed[outcome.code.code] = state.failed.get(outcome.code.code, 0) + 1
        return act._err(outcome.code, outcome.message)
    return act._output(encode_response(outcome), optr, ocap)


def object_info(act: Activation, optr: int, ocap: int) -> int:
    """`object_info(out_ptr, out_cap)`: the object's own `object-info` (call.cddl), so it
    can tell others how to reach it (e.g. a callback address in a call's request)."""
    act.pending = None  # any call of an import that produces bytes drops it
    if not act.mem.check(optr, ocap):
        return act._bad_pointer("object_info")
    ident = act.ident
    info: dict[str, str] = {"class": ident.class_name, "id": ident.object_hex}
    if ident.name is not None:
        info["name"] = ident.name
    return act._output(cbor.encode(info), optr, ocap)


def _commit_point(act: Activation, state: EventCalls) -> int | None:
    """Commit the event's writes so far and wait until they are durable; begin the next
    transaction. Returns the alarm time that commit made durable, if any. A failure
    ends the event (a trap) with `storage_error`: the writes may be lost."""
    storage = act.storage
    restore: int | None = None
    alarm_new = act._alarm_due if act._alarm_changed else None
    ticket: CommitTicket | None = None
    try:
        if state.kind == "alarm" and act._alarm_changed and act._alarm_due is None:
            # The alarm being handled (or deleted by the handler) stays in the committed
            # state until the handler succeeds: see the module docstring.
            info = cbor.decode(act.input or b"")
            restore = int(info["scheduled_ms"])
            storage.set_alarm(restore)
        if alarm_new is not None and act.on_alarm_set is not None:
            act.on_alarm_set(alarm_new)  # the index entry first: it must be a superset
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
    state.fatal = DohostError(
        Code.STORAGE_ERROR,
        f"the writes made before a call could not be stored ({err.message}); "
        "the event failed and the call was not made",
    )
    if ticket is not None and ticket.error is not None:
        state.commit_failure = ticket
    act._trap_code = Code.STORAGE_ERROR
    act._trap_reason = f"storage_error before a call: {err.message}"
    raise GuestTrapRequest(act._trap_reason)


def _rearm_deadline(act: Activation, state: EventCalls) -> None:
    """Give the caller back the wasm time it did not use: the epoch deadline kept
    running while the thread waited."""
    used_ms = (time.monotonic() - state.t0 - state.waited) * 1000.0
    left_ms = act.limits.cpu_ms - used_ms
    act._set_deadline(deadline_ticks(max(1, int(left_ms))))


def finish_event(act: Activation, result: EventResult) -> None:
    """After run_event (supervisor): report the event's calls, and turn a failed commit
    point into the event's error (storage_error) and failed ticket."""
    state = act.calls
    if state is None:
        return
    if state.offloaded:
        result.extra["offload_call"] = True  # the supervisor then skips inline attempts
    if state.made:
        result.extra["calls"] = state.made
        if state.failed:
            result.extra["call_failures"] = dict(state.failed)
    if state.fatal is not None and result.error is not None:
        result.error = state.fatal
        result.response = None
        if state.commit_failure is not None and result.ticket is None:
            result.ticket = state.commit_failure

"""The `call` host import (abi/README.md, "Object calls"): a fetch-shaped request to
another object of the same tenant, answered with that object's response.

`call(target_ptr, target_len, req_ptr, req_len, out_ptr, out_cap) -> i32` runs on the
caller's worker thread and blocks it while the call is routed by the supervisor on the
event loop (server/calls.py, through the activation's `on_call` hook). Around that wait:

- **Commit point** (`Event.commit_point`). The writes the event made so far are
  committed and awaited until durable *before* the call leaves, then a new transaction
  begins for the rest of the event. So whatever the callee learns from the request,
  the caller's durable storage already holds (the output gate, applied to calls). A failure later in the event rolls
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

from dohost.core import cbor
from dohost.core.calls import decode_call_request, decode_target
from dohost.core.envelopes import encode_response
from dohost.core.errors import Code, DohostError
from dohost.runtime.engine import deadline_ticks
from dohost.runtime.event import CallState, Event


def call(ev: Event, tptr: int, tlen: int, rptr: int, rlen: int, optr: int, ocap: int) -> int:
    ev.pending = None  # any call of an import that produces bytes drops it
    mem = ev.mem
    if not (mem.check(tptr, tlen) and mem.check(rptr, rlen) and mem.check(optr, ocap)):
        return ev.bad_pointer("call")
    if ev.input is None:
        return ev.err(Code.NOT_SUPPORTED, "calls are not available during _initialize")
    hook = ev.host.on_call
    if hook is None:
        return ev.err(Code.NOT_SUPPORTED, "calls to other objects are not available here")
    state = ev.calls
    if state is None:
        state = ev.calls = CallState()
    if ev.inline:
        # The call blocks: leave the loop thread (before decoding anything: guest data is
        # not decoded on the loop); the event reruns on a worker.
        state.offloaded = True
        ev.offload()
    raw_target, raw_request = ev.read(tptr, tlen, "call"), ev.read(rptr, rlen, "call")
    try:
        target = decode_target(raw_target)
        request = decode_call_request(raw_request)
    except DohostError as e:
        return ev.err(e.code, f"call: {e.message}")
    state.made += 1
    t_wait = time.monotonic()
    try:
        alarm_committed = ev.commit_point()
        outcome = hook(target, request, alarm_committed)
    finally:
        state.waited += time.monotonic() - t_wait
        _rearm_deadline(ev, state)
    if isinstance(outcome, DohostError):
        state.failed[outcome.code.code] = state.failed.get(outcome.code.code, 0) + 1
        return ev.err(outcome.code, outcome.message)
    return ev.output(encode_response(outcome), optr, ocap)


def object_info(ev: Event, optr: int, ocap: int) -> int:
    """`object_info(out_ptr, out_cap)`: the object's own `object-info` (call.cddl), so it
    can tell others how to reach it (e.g. a callback address in a call's request)."""
    ev.pending = None  # any call of an import that produces bytes drops it
    if not ev.mem.check(optr, ocap):
        return ev.bad_pointer("object_info")
    ident = ev.host.ident
    info: dict[str, str] = {"class": ident.class_name, "id": ident.object_hex}
    if ident.name is not None:
        info["name"] = ident.name
    return ev.output(cbor.encode(info), optr, ocap)


def _rearm_deadline(ev: Event, state: CallState) -> None:
    """Give the caller back the wasm time it did not use: the epoch deadline kept
    running while the thread waited."""
    used_ms = (time.monotonic() - ev.started - state.waited) * 1000.0
    left_ms = ev.limits.cpu_ms - used_ms
    ev.host.set_deadline(deadline_ticks(max(1, int(left_ms))))


IMPORTS: dict[str, Callable[..., int]] = {"call": call, "object_info": object_info}

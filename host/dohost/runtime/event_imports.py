"""The event's own imports (abi/README.md, section 5, "Event input and output" and
"Utilities"): input_read, response_set, result_read, last_error, log, now_ms and
random_fill, functions over the running `Event` (runtime/event.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from dohost.core import cbor
from dohost.core.envelopes import decode_response, decode_response_fast
from dohost.core.errors import ABI_STATUS, Code, DohostError
from dohost.core.limits import MAX_LOG_BYTES, MAX_RANDOM_BYTES
from dohost.runtime.event import INLINE_DECODE_BYTES, U32, Event

_BAD_POINTER = ABI_STATUS[Code.BAD_POINTER]
_NO_RESULT = ABI_STATUS[Code.NO_RESULT]
_RESPONSE_HEAD_BYTES = 65_536  # what a response may add to its body's limit (status, headers)


def input_read(ev: Event, ptr: int, cap: int) -> int:
    ev.pending = None  # any call of an import that produces bytes drops it
    if not ev.mem.check(ptr, cap):
        return ev.bad_pointer("input_read")
    if ev.input is None:
        return ev.err(Code.NO_RESULT, "there is no event input during _initialize")
    if ev.in_init:
        return ev.err(Code.NO_RESULT, "there is no event input in dohost_init")
    return ev.output(ev.input, ptr, cap)


def response_set(ev: Event, ptr: int, n: int) -> int:
    if not ev.mem.check(ptr, n):
        return ev.bad_pointer("response_set")
    n &= U32
    limit = ev.limits.response_bytes
    if n > limit + _RESPONSE_HEAD_BYTES:
        return ev.err(Code.VALUE_TOO_LARGE, f"response above the {limit} byte limit")
    data = ev.read(ptr, n, "response_set")
    resp = decode_response_fast(data)
    if resp is None:
        # The general decoder is Python work proportional to the input: not on the loop
        # for more than a small input (the event reruns on a worker).
        if ev.inline and n > INLINE_DECODE_BYTES:
            ev.offload()
        try:
            resp = decode_response(data)
        except DohostError as e:
            if e.code is Code.LIMIT_EXCEEDED:
                return ev.err(e.code, f"response headers: {e.message}")
            return ev.err(Code.BAD_ENCODING, f"malformed response: {e.message}")
    if len(resp.body) > limit:
        return ev.err(Code.VALUE_TOO_LARGE, f"response body above the {limit} byte limit")
    ev.response = resp
    return 0


def result_read(ev: Event, ptr: int, cap: int) -> int:
    if not ev.mem.check(ptr, cap):
        return ev.bad_pointer("result_read")
    pending = ev.pending
    if pending is None:
        return ev.err(Code.NO_RESULT, "no pending result to read")
    n = len(pending)
    if n > (cap & U32):
        return ev.err(
            Code.BUFFER_TOO_SMALL, f"the pending result is {n} bytes; the buffer holds {cap & U32}"
        )
    if not ev.mem.write(ptr, pending):
        return ev.bad_pointer("result_read")
    return n


def last_error(ev: Event, ptr: int, cap: int) -> int:
    ev.pending = None  # any call of an import that produces bytes drops it
    # Failures of last_error itself are not recorded: they must not replace the detail.
    if not ev.mem.check(ptr, cap):
        return _BAD_POINTER
    if ev.last_err is None:
        return _NO_RESULT
    code, message = ev.last_err
    detail = cbor.encode({"code": ABI_STATUS[code], "name": code.code, "message": message})
    n = len(detail)
    if n <= (cap & U32):
        if not ev.mem.write(ptr, detail):
            return _BAD_POINTER
    else:
        ev.pending = detail
    return n


def log(ev: Event, level: int, ptr: int, n: int) -> int:
    if not 0 <= level <= 3:
        return ev.err(Code.INVALID_ARGUMENT, "log level must be 0 (debug) to 3 (error)")
    if not ev.mem.check(ptr, n):
        return ev.bad_pointer("log")
    n = min(n & U32, MAX_LOG_BYTES)
    if ev.log_room(n):  # (over the tenant's rate: nothing is copied; logging never fails)
        ev.log_line(level, ev.read(ptr, n, "log"))
    return 0


def now_ms(ev: Event) -> int:
    return int(ev.host.wall_ms())


def random_fill(ev: Event, ptr: int, n: int) -> int:
    n &= U32
    if n > MAX_RANDOM_BYTES:
        return ev.err(Code.INVALID_ARGUMENT, f"random_fill takes at most {MAX_RANDOM_BYTES} bytes")
    if not ev.mem.write(ptr, os.urandom(n)):
        return ev.bad_pointer("random_fill")
    return 0


IMPORTS: dict[str, Callable[..., int]] = {
    "input_read": input_read,
    "response_set": response_set,
    "result_read": result_read,
    "last_error": last_error,
    "log": log,
    "now_ms": now_ms,
    "random_fill": random_fill,
}

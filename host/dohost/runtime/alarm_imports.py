"""The alarm imports (abi/README.md, section 5, "Alarms"): alarm_set, alarm_get and
alarm_delete, functions over the running `Event` (runtime/event.py).

The change is made in the object's storage, inside the event's transaction, and
recorded on the event: `Event.finish` writes the host-wide alarm index entry before the
commit (ARCHITECTURE.md, "Alarms").
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from dohost.core.errors import Code, DohostError
from dohost.runtime.event import Event

_I64 = struct.Struct("<q")


def alarm_set(ev: Event, time_ms: int) -> int:
    ev.storage_op()
    if time_ms < 0:
        raise DohostError(
            Code.INVALID_ARGUMENT, "alarm time must be milliseconds since the Unix epoch (>= 0)"
        )
    if ev.inline:
        # Committing an alarm writes the alarm index durably (an fsync): not on the
        # loop thread. Abandon the inline attempt; the event reruns on a worker.
        ev.offload()
    ev.storage.set_alarm(time_ms)
    ev.set_alarm_change(time_ms)
    ev.writes += 1
    return 0


def alarm_get(ev: Event, out_ptr: int) -> int:
    if not ev.mem.check(out_ptr, 8):
        return ev.bad_pointer("alarm_get")
    ev.storage_op()
    due = ev.storage.get_alarm()
    ev.reads += 1
    if due is None:
        return 0
    ev.mem.write(out_ptr, _I64.pack(due))
    return 1


def alarm_delete(ev: Event) -> int:
    ev.storage_op()
    ev.storage.set_alarm(None)
    ev.set_alarm_change(None)
    ev.writes += 1
    return 0


IMPORTS: dict[str, Callable[..., int]] = {
    "alarm_set": alarm_set,
    "alarm_get": alarm_get,
    "alarm_delete": alarm_delete,
}

"""Live records of what objects do: each event (request or alarm: status, duration, CPU,
error) and each guest log line, tagged with the object's name. `dohost tail`, `dohost
dev` and `serve --access-log` read them.

Publishing costs one attribute check while nobody listens (`TailHub.active`), so the hot
path pays nothing for it. Subscribers get a bounded buffer each: a reader too slow to
keep up loses records (counted, and told with a `dropped` record), never slows objects.
Guest log lines are produced on worker threads and handed to the loop with
`run_sync_soon`, in order.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from typing import Any

import trio

LEVELS = ("debug", "info", "warn", "error")
SUBSCRIBER_BUFFER = 4096


@dataclass(frozen=True, slots=True)
class TailRecord:
    kind: str  # "request", "alarm", "log" or "dropped"
    tenant: str
    class_name: str
    object: str  # the object's name when known, else its id (64 hex)
    at_ms: float
    method: str = ""
    path: str = ""
    status: int = 0  # a request's HTTP status (500 and up for a failed event)
    duration_ms: float = 0.0
    cpu_ms: float = 0.0
    error: str = ""  # "code: message" of a failed event (a trap's backtrace included)
    level: str = ""  # a log line's level
    message: str = ""  # a log line's text; `dropped`: how many were lost

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["class"] = d.pop("class_name")
        return {k: v for k, v in d.items() if v not in ("", 0, 0.0) or k in ("kind", "at_ms")}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TailRecord:
        d = dict(d)
        d["class_name"] = d.pop("class", "")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def who(self) -> str:
        obj = self.object if len(self.object) != 64 else self.object[:16] + "…"
        return f"{self.class_name}/{obj}"

    def line(self) -> str:
        """One human line: what `dohost tail` and `dohost dev` print."""
        when = datetime.datetime.fromtimestamp(self.at_ms / 1000).strftime("%H:%M:%S.%f")[:-3]
        if self.kind == "log":
            return f"{when} [{self.who()}] {self.level}: {self.message}"
        if self.kind == "dropped":
            return f"{when} ({self.message} records dropped: the reader was too slow)"
        what = f"{self.method} {self.path}" if self.kind == "request" else "alarm"
        text = (
            f"{when} {what} {self.who()} {self.status} "
            f"{self.duration_ms:.1f} ms (cpu {self.cpu_ms:.1f} ms)"
        )
        return text + (f" {self.error}" if self.error else "")


@dataclass(frozen=True)
class TailFilter:
    tenant: str | None = None  # None: every tenant (the embedded host, dev)
    class_name: str | None = None
    object: str | None = None  # a name or an id (64 hex)
    status: str | None = None  # "error" (>= 400 or failed), "ok" (< 400), or a number
    logs: bool = True

    def matches(self, r: TailRecord) -> bool:
        if r.kind == "dropped":
            return True
        if self.tenant is not None and r.tenant != self.tenant:
            return False
        if self.class_name is not None and r.class_name != self.class_name:
            return False
        if self.object is not None and r.object != self.object:
            return False
        if r.kind == "log":
            return self.logs and self.status is None
        if self.status == "error":
            return r.status >= 400
        if self.status == "ok":
            return r.status < 400
        return self.status is None or str(r.status) == self.status


@dataclass
class _Subscriber:
    filter: TailFilter
    send: trio.MemorySendChannel[TailRecord]
    receive: trio.MemoryReceiveChannel[TailRecord]
    dropped: int = 0


@dataclass
class TailHub:
    """Fans records out to subscribers (streams) and listeners (callbacks on the loop)."""

    _subs: list[_Subscriber] = field(default_factory=list)
    listeners: list[Callable[[TailRecord], None]] = field(default_factory=list)
    _token: trio.lowlevel.TrioToken | None = None
    _loop_thread: int = 0
    active: bool = False

    def attach(self, token: trio.lowlevel.TrioToken) -> None:
        """Called on the loop thread: records from other threads are handed to it."""
        self._token = token
        self._loop_thread = threading.get_ident()

    def _update(self) -> None:
        self.active = bool(self._subs or self.listeners)

    def add_listener(self, listener: Callable[[TailRecord], None]) -> None:
        self.listeners.append(listener)
        self._update()

    @contextmanager
    def subscribe(self, flt: TailFilter) -> Iterator[trio.MemoryReceiveChannel[TailRecord]]:
        send, receive = trio.open_memory_channel[TailRecord](SUBSCRIBER_BUFFER)
        sub = _Subscriber(flt, send, receive)
        self._subs.append(sub)
        self._update()
        try:
            yield receive
        finally:
            self._subs.remove(sub)
            self._update()
            send.close()

    def publish(self, record: TailRecord) -> None:
        """On the loop thread."""
        for listener in self.listeners:
            listener(record)
        for sub in self._subs:
            if not sub.filter.matches(record):
                continue
            try:
                if sub.dropped:
                    lost = TailRecord("dropped", "", "", "", record.at_ms, message=str(sub.dropped))
                    sub.send.send_nowait(lost)
                    sub.dropped = 0
                sub.send.send_nowait(record)
            except trio.WouldBlock:
                sub.dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    def publish_threadsafe(self, record: TailRecord) -> None:
        """From any thread (guest log lines come from workers)."""
        if self._token is None:
            return
        if threading.get_ident() == self._loop_thread:
            self.publish(record)  # an inline event: keep its lines before its record
            return
        with suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self.publish, record)

    def guest_line(self, tenant: str, class_name: str, obj: str, level: int, text: str) -> None:
        """A guest's log line (the activation's `on_log`)."""
        if not self.active:
            return
        name = LEVELS[level] if 0 <= level < len(LEVELS) else str(level)
        self.publish_threadsafe(
            TailRecord("log", tenant, class_name, obj, time.time() * 1000, level=name, message=text)
        )

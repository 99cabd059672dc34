"""dohost: a host for durable objects compiled to WebAssembly.

The embedded API is `Host` (see dohost/server/host.py); `Request` and `Response` are the
fetch event's envelopes, `ObjectId` an object's checked id, and `DohostError` carries a
stable `Code` for every failure. `Host` is imported lazily so that `dohost.core` stays
free of trio, wasmtime and apsw for whoever imports only it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dohost.core.envelopes import Request, Response
from dohost.core.errors import Code, DohostError
from dohost.core.ids import ObjectId

if TYPE_CHECKING:
    from dohost.server.host import ClassInfo, Host

__all__ = ["ClassInfo", "Code", "DohostError", "Host", "ObjectId", "Request", "Response"]


def __getattr__(name: str) -> Any:
    if name in ("Host", "ClassInfo"):
        from dohost.server import host

        return getattr(host, name)
    raise AttributeError(name)

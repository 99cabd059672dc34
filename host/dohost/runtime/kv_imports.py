"""The key/value imports (abi/README.md, section 5, "Storage"): kv_get, kv_put,
kv_delete, their `_many` forms, kv_list and kv_delete_all.

Each is a function over the running `Event` (runtime/event.py), bound once by the
linker. Every range is checked first (`bad_pointer`), then the operation is counted
against the event's limit, then the arguments; storage refusals (quotas, sizes) arrive
as `DohostError` and become the import's status.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dohost.core import cbor
from dohost.core.errors import Code, DohostError
from dohost.core.limits import MAX_KEY_BYTES, MAX_KEYS_PER_CALL
from dohost.runtime.event import U32, Event
from dohost.storage.api import ListOptions


def kv_get(ev: Event, kptr: int, klen: int, optr: int, ocap: int) -> int:
    # The hottest import: the common case (key in range and within the limit, value
    # cached) is written out inline; every other case takes the general helpers, in
    # the same order (ranges first, then the operation count, then the key's size).
    ev.pending = None  # any call of an import that produces bytes drops it
    mem = ev.mem
    if not mem.check(optr, ocap):
        return ev.bad_pointer("kv_get output buffer")
    key = mem.read(kptr, klen) if (klen & U32) <= MAX_KEY_BYTES else None
    if key is None:
        if not mem.check(kptr, klen):
            return ev.bad_pointer("key")
        ev.storage_op()
        key = ev.key(kptr, klen)
    else:
        ev.storage_op()
    value = ev.storage.get(key)
    ev.reads += 1
    if value is None:
        return ev.err(Code.NOT_FOUND, "no such key")
    n = len(value)
    if n <= (ocap & U32):
        mem.write(optr, value)  # in range: checked above
    else:
        ev.pending = value
    return n


def kv_put(ev: Event, kptr: int, klen: int, vptr: int, vlen: int) -> int:
    ev.storage_op()
    key = ev.key(kptr, klen)
    value = ev.read(vptr, vlen, "value")
    ev.storage.put(key, value)
    ev.writes += 1
    return 0


def kv_delete(ev: Event, kptr: int, klen: int) -> int:
    ev.storage_op()
    key = ev.key(kptr, klen)
    existed = ev.storage.delete(key)
    ev.writes += 1
    return 1 if existed else 0


def _check_count(n: int, items: str) -> None:
    if n > MAX_KEYS_PER_CALL:
        raise DohostError(
            Code.TOO_MANY_KEYS, f"{n} {items} in one call; the limit is {MAX_KEYS_PER_CALL}"
        )


def _key_list(ev: Event, ptr: int, n: int, what: str) -> list[bytes]:
    keys = ev.decode(ptr, n, what, MAX_KEYS_PER_CALL, Code.TOO_MANY_KEYS, "keys")
    if not isinstance(keys, list) or not all(isinstance(k, bytes) for k in keys):
        raise DohostError(Code.BAD_ENCODING, f"{what}: expected a CBOR array of byte strings")
    _check_count(len(keys), "keys")
    return keys


def kv_get_many(ev: Event, kptr: int, klen: int, optr: int, ocap: int) -> int:
    ev.pending = None  # any call of an import that produces bytes drops it
    if not ev.mem.check(optr, ocap):
        return ev.bad_pointer("kv_get_many output buffer")
    ev.storage_op()
    keys = _key_list(ev, kptr, klen, "kv_get_many")
    found = ev.storage.get_many(keys)
    ev.reads += len(keys)
    return ev.output(cbor.encode(found), optr, ocap)


def kv_put_many(ev: Event, ptr: int, n: int) -> int:
    ev.storage_op()
    entries = ev.decode(ptr, n, "kv_put_many", MAX_KEYS_PER_CALL, Code.TOO_MANY_KEYS)
    if not isinstance(entries, dict) or not all(
        isinstance(k, bytes) and isinstance(v, bytes) for k, v in entries.items()
    ):
        raise DohostError(
            Code.BAD_ENCODING, "kv_put_many: expected a CBOR map of byte strings to byte strings"
        )
    _check_count(len(entries), "entries")
    ev.storage.put_many(entries)
    ev.writes += len(entries)
    return 0


def kv_delete_many(ev: Event, ptr: int, n: int) -> int:
    ev.storage_op()
    keys = _key_list(ev, ptr, n, "kv_delete_many")
    count = ev.storage.delete_many(keys)
    ev.writes += len(keys)
    return count


def kv_list(ev: Event, optr: int, olen: int, outptr: int, outcap: int) -> int:
    ev.pending = None  # any call of an import that produces bytes drops it
    if not ev.mem.check(outptr, outcap):
        return ev.bad_pointer("kv_list output buffer")
    ev.storage_op()
    raw: Any = ev.decode(optr, olen, "kv_list options") if olen & U32 else {}
    result = ev.storage.list(_list_options(raw))
    ev.reads += max(1, len(result.entries))
    out = cbor.encode({"entries": [[k, v] for k, v in result.entries], "more": result.more})
    return ev.output(out, outptr, outcap)


def _list_options(raw: Any) -> ListOptions:
    if not isinstance(raw, dict):
        raise DohostError(Code.BAD_ENCODING, "kv_list options must be a CBOR map")
    prefix, start, end = raw.get("prefix", b""), raw.get("start"), raw.get("end")
    reverse, limit = raw.get("reverse", False), raw.get("limit", 0)
    for name, v in (("prefix", prefix), ("start", start), ("end", end)):
        if v is not None and not isinstance(v, bytes):
            raise DohostError(Code.INVALID_ARGUMENT, f"kv_list option {name} must be a byte string")
    if not isinstance(reverse, bool):
        raise DohostError(Code.INVALID_ARGUMENT, "kv_list option reverse must be a boolean")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise DohostError(Code.INVALID_ARGUMENT, "kv_list option limit must be an unsigned integer")
    return ListOptions(
        prefix=prefix, start=start, end=end, reverse=reverse, limit=min(limit, 1 << 62)
    )


def kv_delete_all(ev: Event) -> int:
    ev.storage_op()
    ev.storage.delete_all()
    ev.set_alarm_change(None)  # delete_all takes the alarm too
    ev.writes += 1
    return 0


IMPORTS: dict[str, Callable[..., int]] = {
    "kv_get": kv_get,
    "kv_put": kv_put,
    "kv_delete": kv_delete,
    "kv_get_many": kv_get_many,
    "kv_put_many": kv_put_many,
    "kv_delete_many": kv_delete_many,
    "kv_list": kv_list,
    "kv_delete_all": kv_delete_all,
}

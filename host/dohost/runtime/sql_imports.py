"""The `sql_exec` host import (abi/README.md, section 5, "SQL").

`sql_exec(sql_ptr, sql_len, params_ptr, params_len, out_ptr, out_cap) -> i32` runs one
statement with bound parameters in the event's transaction and returns the length of a
CBOR `sql-result` (abi/sql.cddl) under the output-buffer rule. The statement checks live
in storage/sql_exec.py; this module is the ABI side: ranges, limits, metering and time.

Time: SQL runs in the host, where the wasm CPU deadline does not tick, so an event's
statements share a budget of their own, the event's CPU limit (`EventLimits.cpu_ms`); a
statement past it is interrupted and the event ends with `cpu_limit`, as a guest past its
deadline does. An inline attempt on the event loop's thread gets `INLINE_SQL_S` of it: a
statement that runs longer abandons the attempt (rolled back, nothing escaped) and the
event runs again on a worker thread, as for any import that must not block the loop.

Ending the event: when the statement reached the database size limit, ran out of time, or
SQLite ended the event's transaction (INSERT OR ROLLBACK, RAISE(ROLLBACK), an I/O error),
the import traps with that error's code instead of returning a status: the event's
writes are rolled back, and nothing the guest could do next would be stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dohost.core.errors import Code
from dohost.runtime.event import U32, Event
from dohost.storage.sql_exec import EventFailure, check_sql_length, decode_params, decode_sql

INLINE_SQL_S = 0.005  # SQL time an inline attempt may spend before moving to a worker

NOT_SUPPORTED = (
    "SQL needs a class deployed with storage=sqlite; this class uses the kv backend: "
    "deploy it again with storage=sqlite (a class's backend is chosen at deploy time)"
)


def sql_exec(ev: Event, sptr: int, slen: int, pptr: int, plen: int, optr: int, ocap: int) -> int:
    mem = ev.mem
    if not (mem.check(sptr, slen) and mem.check(pptr, plen) and mem.check(optr, ocap)):
        return ev.bad_pointer("sql_exec")
    ev.storage_op()
    run = getattr(ev.storage, "sql_exec", None)
    if run is None:
        return ev.err(Code.NOT_SUPPORTED, NOT_SUPPORTED)
    slen &= U32
    plen &= U32
    check_sql_length(slen)
    ev.loop_bound(pptr, plen, "sql_exec parameters")  # (the text is at most 100,000 bytes)
    sql_bytes = ev.read(sptr, slen, "sql_exec")
    params_bytes = ev.read(pptr, plen, "sql_exec") if plen else b""
    sql = decode_sql(sql_bytes)
    params = decode_params(params_bytes)
    budget = ev.limits.cpu_ms / 1000.0 - ev.sql_seconds
    if ev.inline:
        budget = min(budget, INLINE_SQL_S - ev.sql_seconds)
    t0 = time.perf_counter()
    try:
        result = run(sql, params, t0 + max(budget, 0.0))
    except EventFailure as e:
        if e.interrupted and ev.inline:
            # Abandon the inline attempt: the event reruns on a worker with the full budget.
            ev.offload()
        # The event cannot go on (its transaction is gone, or it must not go on): end it.
        reason = e.message
        if e.interrupted:
            reason += f" (limit {ev.limits.cpu_ms} ms)"
        ev.trap(e.code, reason)
    finally:
        ev.sql_seconds += time.perf_counter() - t0
    ev.sql_rows_read += result.rows_read
    ev.sql_rows_written += result.rows_written
    return ev.output(result.data, optr, ocap)


IMPORTS: dict[str, Callable[..., int]] = {"sql_exec": sql_exec}

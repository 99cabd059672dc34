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
from typing import TYPE_CHECKING

from dohost.core.errors import Code, DohostError
from dohost.runtime.fastcall import GuestTrapRequest
from dohost.storage.sql_exec import EventFailure, check_sql_length, decode_params, decode_sql

if TYPE_CHECKING:
    from dohost.runtime.activation import Activation

_U32 = 0xFFFFFFFF
INLINE_SQL_S = 0.005  # SQL time an inline attempt may spend before moving to a worker

NOT_SUPPORTED = (
    "SQL needs a class deployed with storage=sqlite; this class uses the kv backend: "
    "deploy it again with storage=sqlite (a class's backend is chosen at deploy time)"
)


def sql_exec(
    act: Activation, sptr: int, slen: int, pptr: int, plen: int, optr: int, ocap: int
) -> int:
    """The import; `act` is the activation whose event is running."""
    mem = act.mem
    if not (mem.check(sptr, slen) and mem.check(pptr, plen) and mem.check(optr, ocap)):
        return act._bad_pointer("sql_exec")
    st = act._storage_op()
    if st:
        return st
    run = getattr(act.storage, "sql_exec", None)
    if run is None:
        return act._err(Code.NOT_SUPPORTED, NOT_SUPPORTED)
    slen &= _U32
    plen &= _U32
    try:
        check_sql_length(slen)
        sql_bytes = act._read(sptr, slen)
        params_bytes = act._read(pptr, plen) if plen else b""
        if sql_bytes is None or params_bytes is None:
            return act._bad_pointer("sql_exec")
        sql = decode_sql(sql_bytes)
        params = decode_params(params_bytes)
    except DohostError as e:
        return act._err(e.code, e.message)
    budget = act.limits.cpu_ms / 1000.0 - act.sql_seconds
    if act.inline:
        budget = min(budget, INLINE_SQL_S - act.sql_seconds)
    t0 = time.perf_counter()
    try:
        result = run(sql, params, t0 + max(budget, 0.0))
    except EventFailure as e:
        from dohost.runtime.activation import OFFLOAD  # (a cycle at import time)

        if e.interrupted and act.inline:
            # Abandon the inline attempt: the event reruns on a worker with the full budget.
            act._trap_reason = OFFLOAD
            raise GuestTrapRequest(OFFLOAD) from None
        # The event cannot go on (its transaction is gone, or it must not go on): end it.
        act._trap_code = e.code
        act._trap_reason = e.message
        if e.interrupted:
            act._trap_reason += f" (limit {act.limits.cpu_ms} ms)"
        raise GuestTrapRequest(act._trap_reason) from None
    except DohostError as e:
        return act._err(e.code, e.message)
    finally:
        act.sql_seconds += time.perf_counter() - t0
    act.sql_rows_read += result.rows_read
    act.sql_rows_written += result.rows_written
    return act._output(result.data, optr, ocap)

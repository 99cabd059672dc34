"""Read-only SQL on a sqlite-backed object's database, for people (`dohost sql`).

A separate read-only connection (WAL lets it read beside the object's own, which it
never blocks) with three guards: the file is opened read-only with `query_only` on; an
authorizer allows reading and nothing else (no writes, no ATTACH, no pragmas, not the
host's own `_dohost_*` tables); a progress handler stops a query after its time budget.
At most `max_rows` rows come back (`truncated` says when there were more).
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from typing import Any

import apsw

from dohost.core.errors import Code, DohostError

DEFAULT_MAX_ROWS = 1000
DEFAULT_TIME_S = 2.0
_ALLOWED = {apsw.SQLITE_SELECT, apsw.SQLITE_READ, apsw.SQLITE_FUNCTION, apsw.SQLITE_RECURSIVE}


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]  # JSON-ready: blobs as {"base64": ...}
    truncated: bool


def _authorize(action: int, a: str | None, b: str | None, db: str | None, _t: str | None) -> int:
    if action not in _ALLOWED:
        return apsw.SQLITE_DENY
    if action == apsw.SQLITE_READ and a is not None and a.startswith("_dohost"):
        return apsw.SQLITE_DENY
    return apsw.SQLITE_OK


def _cell(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"base64": base64.b64encode(v).decode()}
    return v


def query(
    path: str,
    sql: str,
    params: list[Any] | None = None,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    time_s: float = DEFAULT_TIME_S,
) -> QueryResult:
    """Run one read-only statement on the database at `path`."""
    if not os.path.exists(path):
        return QueryResult([], [], False)  # the object never stored anything
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        conn.setbusytimeout(1000)
        conn.execute("PRAGMA query_only = 1")
        conn.authorizer = _authorize
        deadline = time.monotonic() + time_s
        conn.setprogresshandler(lambda: time.monotonic() > deadline, 1000)
        try:
            cursor = conn.cursor()
            rows_iter = cursor.execute(sql, params or [])
            columns: list[str] = []
            rows: list[list[Any]] = []
            truncated = False
            for row in rows_iter:
                if not columns:
                    columns = [d[0] for d in cursor.getdescription()]
                if len(rows) == max_rows:
                    truncated = True
                    break
                rows.append([_cell(v) for v in row])
            if not columns:
                try:
                    columns = [d[0] for d in cursor.getdescription()]
                except apsw.ExecutionCompleteError:
                    columns = []
            return QueryResult(columns, rows, truncated)
        except apsw.AuthError:
            raise DohostError(
                Code.SQL_REFUSED,
                "only reading is allowed here (SELECT; not the host's _dohost_* tables)",
            ) from None
        except apsw.InterruptError:
            raise DohostError(
                Code.LIMIT_EXCEEDED, f"the query ran past its {time_s:g} s budget"
            ) from None
        except apsw.ReadOnlyError:
            raise DohostError(Code.SQL_REFUSED, "only reading is allowed here") from None
        except apsw.Error as e:
            raise DohostError(Code.SQL_ERROR, str(e).split(": ", 1)[-1]) from None
    finally:
        conn.close()

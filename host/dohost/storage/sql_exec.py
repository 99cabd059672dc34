"""Guest SQL on an object's own connection: running one `sql_exec` statement.

The `sqlite` backend runs each guest statement on the object's connection, inside the
event's transaction (storage/sqlite_object.py), so the statement sees the event's KV
writes and the event's later KV reads see it. This module holds everything between the
guest's bytes and SQLite; what a statement may touch is storage/sql_authorizer.py, and
the wasm import on top is runtime/sql_imports.py. No trio and no wasmtime here.

- **The authorizer** is installed once per connection and enforces only while a guest
  statement is prepared and run (a flag): installing or removing an authorizer makes
  SQLite expire every prepared statement of the connection, the host's own included.
  VACUUM has no authorizer action; it is refused from the statement's text.
- **Prepared-statement cache.** Guest text is prefixed with `GUEST_MARK`, so a guest
  statement never shares a cache entry with a host statement: every guest statement that
  runs was prepared (and re-prepared after a schema change) under the authorizer.
- **One statement per call.** An exec tracer sees every statement before it runs and
  aborts a second one; what the first did is rolled back.
- **Atomic statements.** A statement that writes runs inside a host SAVEPOINT, so one that
  fails (a constraint, `OR FAIL`, a full database) undoes only itself; the event's
  transaction and earlier writes stay. (A guest cannot name savepoints: refused.)
  `INSERT OR ROLLBACK` and `RAISE(ROLLBACK)` end the whole transaction: the storage then
  fails the event (storage_error), as for an I/O error.
- **Limits**: text length and parameter count (checked before SQLite sees them), values
  and rows up to `MAX_SQL_VALUE_BYTES` (SQLITE_LIMIT_LENGTH while a guest statement runs),
  results up to `MAX_SQL_RESULT_BYTES`, and a deadline enforced by a progress handler. The
  per-object database size limit (max_page_count) reports `quota_exceeded`.
- **Plain inserts skip both** the savepoint and the metering trace (together ~13 µs of a
  ~30 µs statement): an INSERT/REPLACE whose text has no SELECT, FAIL, RETURNING or inner `;`, in a
  database without triggers or FAIL conflict clauses, is atomic by itself (SQLite's
  default ABORT undoes a failing statement) and reads no rows but the ones it returns.
  What the schema holds is cached and forgotten after any guest CREATE/DROP/ALTER and
  after a rollback (which may bring back a dropped trigger).
- **Metering**: rows written = SQLite's total_changes delta (triggers included); rows read =
  the larger of the rows returned and SQLite's full-scan steps (SQLITE_STMTSTATUS_
  FULLSCAN_STEP, from a PROFILE trace). Stock SQLite has no exact rows-read counter
  (workerd patches SQLite for one): index range scans count only the rows they return.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import apsw

from dohost.core import cbor
from dohost.core.errors import Code, DohostError
from dohost.core.limits import (
    MAX_SQL_BYTES,
    MAX_SQL_PARAMS,
    MAX_SQL_RESULT_BYTES,
    MAX_SQL_VALUE_BYTES,
)
from dohost.storage.sql_authorizer import HOST_PREFIX, Authorizer

SqlValue = None | int | float | str | bytes

# Guest statements carry this prefix in the statement cache (see the module docstring).
GUEST_MARK = "/*dohost guest*/"
SAVEPOINT = "_dohost_sql"
SNIPPET_CHARS = 200  # of the statement's text in error messages
PROGRESS_STEPS = 1000  # VM steps between deadline checks
DISK_FULL_MARGIN = 64 * 1024 * 1024  # free bytes below which SQLITE_FULL means the disk

# ------------------------------------------------------------------ inputs


def decode_sql(data: bytes) -> str:
    """The statement's text from the guest's bytes (length checked by the caller)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DohostError(Code.BAD_ENCODING, f"the SQL text is not valid UTF-8 ({e.reason})") from e
    if "\x00" in text:
        raise DohostError(Code.INVALID_ARGUMENT, "the SQL text contains a NUL character")
    return text


def check_sql_length(n: int) -> None:
    if n > MAX_SQL_BYTES:
        raise DohostError(
            Code.INVALID_ARGUMENT,
            f"the SQL text is {n} bytes; the limit is {MAX_SQL_BYTES}: bind large values as "
            "parameters",
        )


_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


_F32 = struct.Struct(">f").unpack_from
_F64 = struct.Struct(">d").unpack_from


def _simple_params(data: bytes) -> tuple[SqlValue, ...] | None:
    """The common case of decode_params, without the generic decoder (a statement's
    parameters cross once per sql_exec): an array of at most 23 items, each an integer
    within 64-bit signed range, text, bytes, null or a single/double float. None for
    anything else, which the generic path then decodes (and refuses, if need be)."""
    head = data[0]
    if not 0x80 <= head <= 0x97:
        return None
    out: list[SqlValue] = []
    pos, end = 1, len(data)
    try:
        for _ in range(head - 0x80):
            major, arg, pos = cbor.read_head(data, pos)
            if major <= 3:
                if major == 0:
                    if arg > _I64_MAX:
                        return None
                    out.append(arg)
                elif major == 1:
                    if arg > _I64_MAX:
                        return None
                    out.append(-1 - arg)
                else:
                    chunk = data[pos : pos + arg]
                    if len(chunk) != arg:
                        return None
                    pos += arg
                    out.append(chunk.decode("utf-8") if major == 3 else chunk)
            elif major == 7 and arg == 22:  # null
                out.append(None)
            elif major == 7 and arg == 27:  # double
                out.append(_F64(data, pos)[0])
                pos += 8
            elif major == 7 and arg == 26:  # single
                out.append(_F32(data, pos)[0])
                pos += 4
            else:
                return None
    except (cbor.CborError, IndexError, UnicodeDecodeError, struct.error):
        return None
    if pos != end:
        return None
    return tuple(out)


def decode_params(data: bytes) -> tuple[SqlValue, ...]:
    """The bound parameters: a CBOR array of null, integer, float, text or bytes
    (abi/sql.cddl). Empty input means no parameters."""
    if not data:
        return ()
    simple = _simple_params(data)
    if simple is not None:
        return simple
    count = cbor.head_count(data)
    if count is not None and count > MAX_SQL_PARAMS:  # before decoding any of them
        raise DohostError(
            Code.INVALID_ARGUMENT,
            f"{count} parameters; the limit is {MAX_SQL_PARAMS} per statement",
        )
    try:
        value = cbor.decode(data, 1 + MAX_SQL_PARAMS)  # CborError is BAD_ENCODING
    except cbor.CborTooMany:
        raise DohostError(
            Code.BAD_ENCODING,
            "SQL parameters must be an array of null, integer, float, text or bytes",
        ) from None
    if not isinstance(value, list):
        raise DohostError(Code.BAD_ENCODING, "SQL parameters must be a CBOR array")
    if len(value) > MAX_SQL_PARAMS:
        raise DohostError(
            Code.INVALID_ARGUMENT,
            f"{len(value)} parameters; the limit is {MAX_SQL_PARAMS} per statement",
        )
    for i, v in enumerate(value):
        t = type(v)
        if t is int:
            if not _I64_MIN <= v <= _I64_MAX:
                raise DohostError(
                    Code.INVALID_ARGUMENT, f"parameter {i + 1}: integer outside 64-bit signed range"
                )
        elif t is not str and t is not bytes and t is not float and v is not None:
            raise DohostError(
                Code.BAD_ENCODING,
                f"parameter {i + 1}: expected null, integer, float, text or bytes, "
                f"not {'a boolean' if t is bool else t.__name__}",
            )
    return tuple(value)


# A write that may need the savepoint or the trace even when it starts with INSERT.
_NOT_PLAIN = re.compile(r"select|fail|returning", re.IGNORECASE)
_PLAIN_WRITES = frozenset(("INSERT", "REPLACE"))
_SCHEMA_WORDS = frozenset(("CREATE", "DROP", "ALTER"))
_SCHEMA_NOT_PLAIN = "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' OR sql LIKE '%fail%'"

_FIRST_WORD = re.compile(r"[ \t\r\n]*([A-Za-z_][A-Za-z0-9_]*)")


def leading_keyword(sql: str) -> str | None:
    """The statement's first keyword in upper case, after comments and any EXPLAIN
    [QUERY PLAN] prefix; '' when it starts with something else; None when the text holds
    only whitespace and comments."""
    m = _FIRST_WORD.match(sql)  # the common case: no comment before the keyword
    if m is not None:
        word = m.group(1).upper()
        if word not in ("EXPLAIN", "QUERY", "PLAN"):
            return word
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in " \t\r\n\f\v":
            i += 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c.isalpha() or c == "_":
            j = i
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            word = sql[i:j].upper()
            if word not in ("EXPLAIN", "QUERY", "PLAN"):
                return word
            i = j
        else:
            return ""
    return None


def snippet(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"


def refused(reason: str, sql: str) -> DohostError:
    return DohostError(Code.SQL_REFUSED, f"refused: {reason}; statement: {snippet(sql)}")


# ------------------------------------------------------------------ results


_f64 = struct.Struct(">d").pack
_H8 = struct.Struct(">BB").pack
_H16 = struct.Struct(">BH").pack
_H32 = struct.Struct(">BI").pack
_H64 = struct.Struct(">BQ").pack


def _head(major: int, n: int) -> bytes:
    """A CBOR head: `major` is the major type already shifted (0x00, 0x20, ... 0xa0)."""
    if n < 24:
        return bytes((major | n,))
    if n < 0x100:
        return _H8(major | 24, n)
    if n < 0x10000:
        return _H16(major | 25, n)
    if n < 0x100000000:
        return _H32(major | 26, n)
    return _H64(major | 27, n)


def _encode_row(row: tuple[Any, ...], out: list[bytes]) -> int:
    """Appends one row as a CBOR array; returns its size in bytes. A loop of its own
    (not cbor.encode) because results are the hot path of SELECTs."""
    app = out.append
    head = _head(0x80, len(row))
    app(head)
    size = len(head)
    for v in row:
        t = v.__class__
        if t is int:
            h = _head(0x00, v) if v >= 0 else _head(0x20, -1 - v)
            app(h)
            size += len(h)
        elif t is str:
            b = v.encode("utf-8", "surrogatepass")
            h = _head(0x60, len(b))
            app(h)
            app(b)
            size += len(h) + len(b)
        elif t is bytes:
            h = _head(0x40, len(v))
            app(h)
            app(v)
            size += len(h) + len(v)
        elif t is float:
            app(b"\xfb" + _f64(v))
            size += 9
        else:  # None: SQLite has no other type
            app(b"\xf6")
            size += 1
    return size


@dataclass(frozen=True)
class SqlResult:
    """One statement's outcome; `data` is the CBOR `sql-result` (abi/sql.cddl)."""

    data: bytes
    rows: int
    rows_read: int
    rows_written: int


_COLUMNS: dict[tuple[str, ...], bytes] = {}  # encodings of recent column lists
_WRITTEN: dict[int, bytes] = {}  # results of plain writes, by rows written
_TEXTS_MAX = 512  # statement texts remembered per connection (GuestSql._texts)
_COLUMNS_MAX = 1024


def _columns(columns: tuple[str, ...]) -> bytes:
    enc = _COLUMNS.get(columns)
    if enc is None:
        enc = cbor.encode(list(columns))
        if len(_COLUMNS) >= _COLUMNS_MAX:
            _COLUMNS.clear()
        _COLUMNS[columns] = enc
    return enc


def encode_result(
    columns: tuple[str, ...], row_chunks: list[bytes], rows: int, read: int, written: int
) -> bytes:
    return b"".join(
        (
            b"\xa4\x67columns",
            _columns(columns),
            b"\x64rows",
            _head(0x80, rows),
            *row_chunks,
            b"\x69rows_read",
            _head(0x00, read),
            b"\x6crows_written",
            _head(0x00, written),
        )
    )


class EventFailure(DohostError):
    """The event cannot go on: the import ends it (a trap) with this code and message,
    and its writes are rolled back. Raised when the statement ran past the event's time
    limit (`interrupted`), reached the database size limit, or ended the transaction."""

    def __init__(self, code: Code, message: str, *, interrupted: bool = False) -> None:
        super().__init__(code, message)
        self.interrupted = interrupted


class TransactionLost(EventFailure):
    """SQLite itself ended the event's transaction (INSERT OR ROLLBACK, RAISE(ROLLBACK),
    an interrupted or failed write): the storage must learn that the event's writes are
    gone (`cause`) before the event ends."""

    def __init__(self, failure: EventFailure, cause: BaseException) -> None:
        super().__init__(failure.code, failure.message, interrupted=failure.interrupted)
        self.cause = cause


# ------------------------------------------------------------------ running


class GuestSql:
    """Runs guest statements on one object's connection, inside its open transaction.

    One instance per connection (it installs the connection's authorizer); used by one
    thread at a time, like the connection. Errors: DohostError for what the guest caused
    (refusals, SQL errors, limits, the database size limit); any other apsw.Error is
    re-raised for the storage to classify, after the statement's writes were undone (if
    SQLite itself abandoned the transaction, the storage must fail the event).
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._auth = Authorizer()
        conn.authorizer = self._auth  # once: (re)setting it expires every statement
        self._cur = conn.cursor()
        self._cur.exec_trace = self._on_exec
        self._statements = 0
        self._empty = False
        self._columns: tuple[str, ...] = ()
        self._savepoint = False
        self._traced = False
        self._scanned = 0
        self._deadline = 0.0
        # Per statement text: its keyword and whether the text is a plain write.
        self._texts: dict[str, tuple[str, bool]] = {}
        self._plain_cur = conn.cursor()  # no exec tracer: plain statements only
        self._plain_schema: bool | None = None  # no triggers, no FAIL clauses; None: unknown

    # ---- callbacks

    def _on_exec(self, cur: Any, sql: str, bindings: Any) -> bool:
        """Before each statement of the text runs (after it was prepared and bound)."""
        self._statements += 1
        if self._statements > 1:
            return False  # a second statement: apsw raises ExecTraceAbort, nothing ran
        if not cur.has_vdbe:  # ";" alone: SQLite skips empty statements before others
            self._empty = True
            return True
        self._columns = tuple(d[0] for d in cur.get_description())
        if not cur.is_readonly:
            # Writes run inside a savepoint, so a failing statement undoes only itself.
            self._auth.active = False
            try:
                self.conn.execute(f"SAVEPOINT {SAVEPOINT}")
            finally:
                self._auth.active = True
            self._savepoint = True
        # Metering from here on: the savepoint above is the host's, not the guest's.
        self.conn.trace_v2(apsw.SQLITE_TRACE_PROFILE, self._on_profile, id=self)
        self._traced = True
        return True

    def _on_profile(self, event: dict[str, Any]) -> None:
        status = event.get("stmt_status")
        if status:
            self._scanned += status.get("SQLITE_STMTSTATUS_FULLSCAN_STEP", 0)

    def _on_progress(self) -> bool:
        return time.perf_counter() > self._deadline  # True interrupts the statement

    # ---- one statement

    def run(
        self,
        sql: str,
        params: Sequence[SqlValue],
        deadline: float,
        max_result_bytes: int = MAX_SQL_RESULT_BYTES,
    ) -> SqlResult:
        """Run one statement; `deadline` is a time.perf_counter() value."""
        known = self._texts.get(sql)
        if known is None:
            known = self._learn(sql)
        keyword, plain_text = known
        if plain_text and self._schema_is_plain():
            return self._run_plain(sql, params, deadline)
        conn = self.conn
        if keyword in _SCHEMA_WORDS:
            self._plain_schema = None
        reserved_before = self._reserved_names() if keyword == "ALTER" else None
        self._statements = 0
        self._empty = False
        self._columns = ()
        self._savepoint = False
        self._scanned = 0
        changes_before = conn.total_changes()
        chunks: list[bytes] = []
        rows = size = 0
        failure: BaseException | None = None
        saved = self._arm(deadline)
        try:
            for row in self._cur.execute(GUEST_MARK + sql, params):
                size += _encode_row(row, chunks)
                rows += 1
                if size > max_result_bytes:
                    raise DohostError(
                        Code.LIMIT_EXCEEDED,
                        f"the result is above {max_result_bytes} bytes; select fewer rows "
                        "(LIMIT, or a WHERE clause on a key) and page",
                    )
        except BaseException as e:
            failure = e
        finally:
            self._disarm(saved)
            if failure is not None:
                # Reset the statement now (its PROFILE event arrives) and start clean.
                self._cur.close(True)
                self._cur = conn.cursor()
                self._cur.exec_trace = self._on_exec
            if self._traced:
                conn.trace_v2(0, None, id=self)
                self._traced = False
        if failure is None and self._empty:
            failure = DohostError(Code.INVALID_ARGUMENT, "the SQL text holds no statement")
        if (
            failure is None
            and reserved_before is not None
            and self._reserved_names() - reserved_before
        ):
            failure = refused(
                f"ALTER TABLE ... RENAME TO a name beginning with {HOST_PREFIX} (reserved "
                "for the host)",
                sql,
            )
        if failure is not None:
            self._raise_failure(failure, sql)
        if self._savepoint:
            conn.execute(f"RELEASE {SAVEPOINT}")
        written = conn.total_changes() - changes_before
        read = max(rows, self._scanned)
        return SqlResult(
            encode_result(self._columns, chunks, rows, read, written), rows, read, written
        )

    def _learn(self, sql: str) -> tuple[str, bool]:
        """The statement's keyword and whether its text is a plain write (module
        docstring), refusing what needs no SQLite to refuse; cached per text."""
        keyword = leading_keyword(sql)
        if keyword is None:
            raise DohostError(Code.INVALID_ARGUMENT, "the SQL text holds no statement")
        if keyword == "VACUUM":
            raise refused("VACUUM (and VACUUM INTO) rewrites the whole database file", sql)
        plain = (
            keyword in _PLAIN_WRITES
            and _NOT_PLAIN.search(sql) is None
            and ";" not in sql.rstrip(" \t\r\n;")  # a second statement must undo the first
        )
        if len(self._texts) >= _TEXTS_MAX:
            self._texts.clear()
        self._texts[sql] = known = (keyword, plain)
        return known

    def _run_plain(self, sql: str, params: Sequence[SqlValue], deadline: float) -> SqlResult:
        """`run` for a plain write: one statement (no inner `;`), no rows (no RETURNING),
        atomic by itself (no FAIL anywhere), nothing scanned to meter (no SELECT, no
        triggers). So: no exec tracer, no savepoint, no profile trace."""
        conn = self.conn
        self._savepoint = False  # none to undo: _raise_failure must not roll back to one
        changes_before = conn.total_changes()
        failure: BaseException | None = None
        saved = self._arm(deadline)
        try:
            for _ in self._plain_cur.execute(GUEST_MARK + sql, params):
                pass  # no RETURNING: there are no rows
        except BaseException as e:
            failure = e
        finally:
            self._disarm(saved)
            if failure is not None:
                self._plain_cur.close(True)
                self._plain_cur = conn.cursor()
        if failure is not None:
            self._raise_failure(failure, sql)
        written = conn.total_changes() - changes_before
        data = _WRITTEN.get(written)
        if data is None:
            data = encode_result((), [], 0, 0, written)
            if written < 64:
                _WRITTEN[written] = data
        return SqlResult(data, 0, 0, written)

    def _arm(self, deadline: float) -> tuple[int, int]:
        """Put the guest-statement guards on: the value/row and parameter limits, the
        deadline's progress handler and the authorizer. Returns the limits to restore."""
        conn = self.conn
        self._deadline = deadline
        saved = (
            conn.limit(apsw.SQLITE_LIMIT_LENGTH, MAX_SQL_VALUE_BYTES),
            conn.limit(apsw.SQLITE_LIMIT_VARIABLE_NUMBER, MAX_SQL_PARAMS),
        )
        conn.set_progress_handler(self._on_progress, PROGRESS_STEPS)
        self._auth.reset()
        self._auth.active = True
        return saved

    def _disarm(self, saved: tuple[int, int]) -> None:
        """Take `_arm`'s guards off again: the host's own statements run unguarded."""
        conn = self.conn
        self._auth.active = False
        conn.set_progress_handler(None)
        conn.limit(apsw.SQLITE_LIMIT_LENGTH, saved[0])
        conn.limit(apsw.SQLITE_LIMIT_VARIABLE_NUMBER, saved[1])

    def _raise_failure(self, failure: BaseException, sql: str) -> NoReturn:
        """Raise what a failed guest statement becomes, after undoing its writes."""
        error = self._classify(failure, sql)  # before the rollback: page count
        if self.conn.get_autocommit():
            # SQLite rolled back the whole transaction: no statement-level undo is
            # possible, and the storage must fail the event (the schema may be back too).
            self._savepoint = False
            self._plain_schema = None
            raise TransactionLost(self._lost(error, failure), failure)
        self._undo()
        if error is None:
            raise failure
        raise error

    def _schema_is_plain(self) -> bool:
        """No triggers and no FAIL conflict clauses in the schema (cached)."""
        if self._plain_schema is None:
            self._auth.active = False  # the host's own query
            n = self.conn.execute(_SCHEMA_NOT_PLAIN).fetchall()[0][0]
            self._plain_schema = n == 0
        return self._plain_schema

    def forget_schema(self) -> None:
        """The transaction was rolled back: the schema may be what it was before."""
        self._plain_schema = None

    def _undo(self) -> None:
        """Roll back the failed statement's writes, unless SQLite already ended the whole
        transaction (INSERT OR ROLLBACK, RAISE(ROLLBACK), some I/O errors)."""
        conn = self.conn
        if self._savepoint and not conn.get_autocommit():
            conn.execute(f"ROLLBACK TO {SAVEPOINT}")
            conn.execute(f"RELEASE {SAVEPOINT}")
        self._savepoint = False

    @staticmethod
    def _lost(error: DohostError | None, failure: BaseException) -> EventFailure:
        """How an event whose transaction SQLite ended fails."""
        if isinstance(error, EventFailure):
            return error
        if error is not None and error.code is Code.SQL_ERROR:
            return EventFailure(
                Code.OBJECT_ERROR,
                f"{error.message}: the statement rolled back the event's transaction "
                "(ON CONFLICT ROLLBACK or RAISE(ROLLBACK)), so the event failed",
            )
        return EventFailure(
            Code.STORAGE_ERROR,
            f"the storage failed in sql_exec ({_first_line(failure)}); the event's writes "
            "were rolled back",
        )

    def _classify(self, e: BaseException, sql: str) -> DohostError | None:
        """The error for `e`, or None to re-raise `e` for the storage."""
        if isinstance(e, DohostError):
            return e
        if self._auth.refusal is not None:  # AuthError, or SQLError for a function
            return refused(self._auth.refusal, sql)
        if isinstance(e, apsw.AuthError):
            return refused("not authorized", sql)
        if isinstance(e, apsw.ExecTraceAbort):
            return refused(
                "sql_exec runs exactly one statement and the text holds more; make one call "
                "per statement",
                sql,
            )
        if isinstance(e, apsw.InterruptError):
            return EventFailure(
                Code.CPU_LIMIT,
                f"an SQL statement ran past the event's CPU time limit: {snippet(sql)}",
                interrupted=True,
            )
        if isinstance(e, apsw.FullError):
            if self._size_limit_reached():
                return EventFailure(
                    Code.QUOTA_EXCEEDED,
                    "the object's database reached its size limit in sql_exec, so the event "
                    "was rolled back; delete data first",
                )
            return None
        if isinstance(e, apsw.BindingsError):
            return DohostError(Code.INVALID_ARGUMENT, f"parameters: {_first_line(e)}")
        if isinstance(
            e,
            apsw.SQLError
            | apsw.ConstraintError
            | apsw.MismatchError
            | apsw.RangeError
            | apsw.TooBigError
            | apsw.SchemaChangeError
            | apsw.ReadOnlyError
            | apsw.AbortError,
        ):
            return DohostError(Code.SQL_ERROR, f"{_first_line(e)}; statement: {snippet(sql)}")
        if isinstance(e, apsw.Error):
            return None
        if isinstance(e, ValueError | TypeError | OverflowError):
            return DohostError(Code.SQL_ERROR, f"{_first_line(e)}; statement: {snippet(sql)}")
        return None

    def _size_limit_reached(self) -> bool:
        """After SQLITE_FULL: was it the database's size limit (max_page_count) rather than
        a full disk? SQLite reports both alike, and when it rolled the transaction back
        the page count no longer shows it; so: at the limit now, or the disk has room."""
        conn = self.conn
        try:
            page_count = conn.execute("PRAGMA page_count").fetchall()[0][0]
            max_pages = conn.execute("PRAGMA max_page_count").fetchall()[0][0]
            if page_count + 8 >= max_pages:
                return True
            free = shutil.disk_usage(os.path.dirname(conn.filename) or ".").free
        except (apsw.Error, OSError):
            return False
        return free >= DISK_FULL_MARGIN

    def _reserved_names(self) -> set[str]:
        rows = self.conn.execute(
            "SELECT name FROM sqlite_schema WHERE name LIKE '\\_dohost\\_%' ESCAPE '\\'"
        ).fetchall()
        return {r[0] for r in rows}


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__

"""The authorizer of guest SQL: what one `sql_exec` statement may touch.

SQLite asks the authorizer about every action while it prepares a statement (and again
when it re-prepares one after a schema change). This one refuses, with a reason the guest
sees in `sql_refused`: transaction control, ATTACH/DETACH, pragmas outside
`ALLOWED_PRAGMAS`, dangerous functions, virtual-table modules outside `VTAB_MODULES`,
TEMP objects, and any access to the host's tables (`_dohost_*`) or SQLite's internal ones
(`sqlite_*`, except reading the catalog). See storage/sql_exec.py for how it is installed.

Views and triggers are checked where they are used: a guest may create a view or trigger
whose body names a host table, but every statement that would run that body is refused.
"""

from __future__ import annotations

from collections.abc import Callable

import apsw

HOST_PREFIX = "_dohost_"

# Readable catalog tables. SQLite writes the schema tables itself for DDL and refuses
# direct writes (they need `writable_schema`); the bookkeeping ones may be written only as
# a side effect of DDL in the same statement (DROP TABLE, ALTER TABLE, ANALYZE).
SCHEMA_TABLES = frozenset(
    {"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"}
)
BOOKKEEPING_TABLES = frozenset({"sqlite_sequence", "sqlite_stat1", "sqlite_stat4"})
# Eponymous virtual tables that reach past the guest's own data: page statistics of every
# table (the host's included) and raw-pointer arrays.
DENIED_TABLES = frozenset({"dbstat", "carray"})
# Read-only introspection pragmas (as statements or as pragma_* table-valued functions).
ALLOWED_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "foreign_key_check",
        "quick_check",
    }
)
# Pragmas the virtual-table modules below read on their own (fts3/4 and rtree read
# page_size, fts5 data_version): allowed as plain reads, without an argument.
READ_PRAGMAS = frozenset({"page_size", "data_version"})
VTAB_MODULES = frozenset({"fts3", "fts4", "fts5", "fts5vocab", "rtree", "rtree_i32", "geopoly"})
DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer"})

_TXN_REASON = (
    "transaction control is not available: each event is one transaction, committed when "
    "the handler succeeds and rolled back when it fails"
)
_TEMP_REASON = (
    "TEMP tables, views, indexes and triggers are not available (they would last only as "
    "long as the object's activation); create ordinary ones"
)


def _host_name(name: str | None) -> bool:
    return name is not None and name.lower().startswith(HOST_PREFIX)


def reserved(kind: str, name: str) -> str:
    return f"{kind} {name!r}: names beginning with {HOST_PREFIX} belong to the host"


class Authorizer:
    """The connection's authorizer; checks only while `active` (a guest statement)."""

    __slots__ = ("active", "altered", "ddl", "refusal")

    def __init__(self) -> None:
        self.active = False
        self.ddl = False  # the statement being prepared does DDL (see BOOKKEEPING_TABLES)
        self.altered = False  # ... renames or alters a table (checked afterwards)
        self.refusal: str | None = None  # the first refusal's reason

    def reset(self) -> None:
        self.ddl = self.altered = False
        self.refusal = None

    def __call__(
        self, action: int, p1: str | None, p2: str | None, db: str | None, source: str | None
    ) -> int:
        if not self.active:
            return apsw.SQLITE_OK
        reason = self.check(action, p1, p2)
        if reason is None:
            return apsw.SQLITE_OK
        if self.refusal is None:
            self.refusal = reason
        return apsw.SQLITE_DENY

    def check(self, action: int, p1: str | None, p2: str | None) -> str | None:
        """None when allowed, else why not."""
        handler = _CHECKS.get(action)
        if handler is None:
            return f"this kind of statement is not available (SQLite action {action})"
        return handler(self, p1, p2)

    # ---- one method per family of SQLite authorizer actions

    def _allow(self, p1: str | None, p2: str | None) -> str | None:
        return None

    def _table_access(self, p1: str | None, p2: str | None, write: bool) -> str | None:
        name = (p1 or "").lower()
        if name.startswith(HOST_PREFIX):
            return f"table {p1!r} belongs to the host"
        if name in DENIED_TABLES:
            return f"{p1!r} is not available (it reads beyond the object's own tables)"
        if not name.startswith("sqlite_"):
            return None
        if name in SCHEMA_TABLES:
            return None
        if name in BOOKKEEPING_TABLES and (not write or self.ddl):
            return None
        return f"SQLite's internal table {p1!r} is not available" + (
            " for writing" if name in BOOKKEEPING_TABLES else ""
        )

    def _read(self, p1: str | None, p2: str | None) -> str | None:
        return self._table_access(p1, p2, write=False)

    def _write(self, p1: str | None, p2: str | None) -> str | None:
        return self._table_access(p1, p2, write=True)

    def _create(self, p1: str | None, p2: str | None) -> str | None:
        # CREATE TABLE/VIEW (p1 = name); CREATE INDEX/TRIGGER (p1 = name, p2 = table).
        self.ddl = True
        if _host_name(p1):
            return reserved("creating", p1 or "")
        if _host_name(p2):
            return f"table {p2!r} belongs to the host"
        return None

    def _drop(self, p1: str | None, p2: str | None) -> str | None:
        self.ddl = True
        if _host_name(p1) or _host_name(p2):
            return f"{p1!r} belongs to the host"
        return None

    def _temp(self, p1: str | None, p2: str | None) -> str | None:
        return _TEMP_REASON

    def _alter(self, p1: str | None, p2: str | None) -> str | None:
        # p1 = database, p2 = table. The new name of a RENAME is not given: checked after.
        self.ddl = self.altered = True
        return f"table {p2!r} belongs to the host" if _host_name(p2) else None

    def _analyze(self, p1: str | None, p2: str | None) -> str | None:
        self.ddl = True
        if _host_name(p1):
            return (
                f"ANALYZE of the host's table {p1!r}; name your own tables "
                "(ANALYZE without a name includes the host's)"
            )
        return None

    def _reindex(self, p1: str | None, p2: str | None) -> str | None:
        return f"index {p1!r} belongs to the host" if _host_name(p1) else None

    def _create_vtable(self, p1: str | None, p2: str | None) -> str | None:
        self.ddl = True
        if _host_name(p1):
            return reserved("creating", p1 or "")
        if (p2 or "").lower() not in VTAB_MODULES:
            available = ", ".join(sorted(VTAB_MODULES))
            return f"virtual table module {p2!r} is not available (available: {available})"
        return None

    def _pragma(self, p1: str | None, p2: str | None) -> str | None:
        name = (p1 or "").lower()
        if name in READ_PRAGMAS and p2 is None:
            return None
        if name not in ALLOWED_PRAGMAS:
            available = ", ".join(sorted(ALLOWED_PRAGMAS))
            return f"PRAGMA {p1} is not available (available: {available})"
        if p2 is not None and (
            _host_name(p2) or p2.lower().startswith("sqlite_autoindex_" + HOST_PREFIX)
        ):
            return f"PRAGMA {p1} of the host's {p2!r}"
        return None

    def _transaction(self, p1: str | None, p2: str | None) -> str | None:
        return f"{p1 or 'transaction control'}: {_TXN_REASON}"

    def _savepoint(self, p1: str | None, p2: str | None) -> str | None:
        word = "SAVEPOINT" if p1 == "BEGIN" else (p1 or "SAVEPOINT")
        return f"{word}: {_TXN_REASON}"

    def _attach(self, p1: str | None, p2: str | None) -> str | None:
        return "ATTACH and DETACH are not available: an object has exactly one database"

    def _function(self, p1: str | None, p2: str | None) -> str | None:
        if (p2 or "").lower() in DENIED_FUNCTIONS:
            return f"function {p2}() is not available"
        return None


_Check = Callable[[Authorizer, str | None, str | None], str | None]
_CHECKS: dict[int, _Check] = {
    apsw.SQLITE_SELECT: Authorizer._allow,
    apsw.SQLITE_RECURSIVE: Authorizer._allow,
    apsw.SQLITE_READ: Authorizer._read,
    apsw.SQLITE_INSERT: Authorizer._write,
    apsw.SQLITE_UPDATE: Authorizer._write,
    apsw.SQLITE_DELETE: Authorizer._write,
    apsw.SQLITE_FUNCTION: Authorizer._function,
    apsw.SQLITE_PRAGMA: Authorizer._pragma,
    apsw.SQLITE_CREATE_TABLE: Authorizer._create,
    apsw.SQLITE_CREATE_VIEW: Authorizer._create,
    apsw.SQLITE_CREATE_INDEX: Authorizer._create,
    apsw.SQLITE_CREATE_TRIGGER: Authorizer._create,
    apsw.SQLITE_DROP_TABLE: Authorizer._drop,
    apsw.SQLITE_DROP_VIEW: Authorizer._drop,
    apsw.SQLITE_DROP_INDEX: Authorizer._drop,
    apsw.SQLITE_DROP_TRIGGER: Authorizer._drop,
    apsw.SQLITE_DROP_VTABLE: Authorizer._drop,
    apsw.SQLITE_CREATE_TEMP_TABLE: Authorizer._temp,
    apsw.SQLITE_CREATE_TEMP_VIEW: Authorizer._temp,
    apsw.SQLITE_CREATE_TEMP_INDEX: Authorizer._temp,
    apsw.SQLITE_CREATE_TEMP_TRIGGER: Authorizer._temp,
    apsw.SQLITE_DROP_TEMP_TABLE: Authorizer._temp,
    apsw.SQLITE_DROP_TEMP_VIEW: Authorizer._temp,
    apsw.SQLITE_DROP_TEMP_INDEX: Authorizer._temp,
    apsw.SQLITE_DROP_TEMP_TRIGGER: Authorizer._temp,
    apsw.SQLITE_ALTER_TABLE: Authorizer._alter,
    apsw.SQLITE_ANALYZE: Authorizer._analyze,
    apsw.SQLITE_REINDEX: Authorizer._reindex,
    apsw.SQLITE_CREATE_VTABLE: Authorizer._create_vtable,
    apsw.SQLITE_TRANSACTION: Authorizer._transaction,
    apsw.SQLITE_SAVEPOINT: Authorizer._savepoint,
    apsw.SQLITE_ATTACH: Authorizer._attach,
    apsw.SQLITE_DETACH: Authorizer._attach,
}

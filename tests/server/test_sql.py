"""sql_exec through a real guest (tests/fixtures/c/sqltest.c and the C SDK's sql.h).

The guest runs the steps of a request in one event (SQL statements, KV calls) and
answers with each step's outcome, so these tests drive the import end to end through
`dohost.Host`: refusals, errors, limits, parameter types, transactions shared with KV,
metering, and the `kv` backend refusing SQL.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from dohost import Code, DohostError, Host, Request
from dohost.core import cbor
from dohost.core.limits import EventLimits
from dohost.server.quotas import Quotas
from dohost.server.state import ServerState

SQL_ERROR, SQL_REFUSED, NOT_SUPPORTED, INVALID_ARGUMENT = -18, -19, -9, -11
BAD_ENCODING, LIMIT_EXCEEDED = -8, -14


class Sql:
    """The sqltest guest deployed as `sql` (storage=sqlite) and `kvsql` (storage=kv)."""

    def __init__(self, host: Host) -> None:
        self.host = host

    async def run(
        self, steps: list[dict[str, Any]], obj: str = "o", cls: str = "sql", then: str | None = None
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"steps": steps}
        if then is not None:
            body["then"] = then
        r = await self.host.fetch(
            "acme", cls, obj, Request("POST", "/exec", "", [], cbor.encode(body))
        )
        assert r.status == 200, r.body
        out: list[dict[str, Any]] = cbor.decode(r.body)
        return out

    async def one(
        self, sql: str, params: list[Any] | None = None, obj: str = "o"
    ) -> dict[str, Any]:
        step: dict[str, Any] = {"sql": sql}
        if params is not None:
            step["params"] = params
        return (await self.run([step], obj))[0]

    async def rows(self, sql: str, obj: str = "o") -> list[list[Any]]:
        r = await self.one(sql, obj=obj)
        assert r["status"] >= 0, r
        rows: list[list[Any]] = r["rows"]
        return rows


@asynccontextmanager
async def make_host(tmp_path: Path, **kw: Any) -> AsyncIterator[Sql]:
    async with Host(tmp_path / "data", durability="os", **kw) as host:
        wasm = (
            Path(__file__).resolve().parents[1] / "fixtures" / "build" / "sqltest.wasm"
        ).read_bytes()
        await host.deploy("acme", "sql", wasm, "sqlite")
        await host.deploy("acme", "kvsql", wasm, "kv")
        yield Sql(host)


@pytest.fixture(params=[True, False], ids=["fast", "portable"])
async def sql(request: Any, tmp_path: Path) -> AsyncIterator[Sql]:
    async with make_host(tmp_path, fastcall=request.param) as s:
        yield s


@pytest.fixture
async def sql1(tmp_path: Path) -> AsyncIterator[Sql]:
    """One crossing path only, for tests about SQL semantics rather than the ABI."""
    async with make_host(tmp_path) as s:
        yield s


def ok(r: dict[str, Any]) -> dict[str, Any]:
    assert r["status"] >= 0, r
    return r


# ---------------------------------------------------------------- refusals

SETUP = [
    {"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, v)"},
    {"sql": "INSERT INTO t(v) VALUES (1)"},
]

REFUSED = [
    # transaction control: each event is one transaction
    "BEGIN",
    "BEGIN IMMEDIATE TRANSACTION",
    "COMMIT",
    "END",
    "ROLLBACK",
    "SAVEPOINT s",
    "RELEASE s",
    "ROLLBACK TO s",
    # other databases
    "ATTACH DATABASE '/tmp/dohost-sql-attach.db' AS other",
    "DETACH DATABASE main",
    # whole-file rewrites
    "VACUUM",
    "VACUUM INTO '/tmp/dohost-sql-vacuum.db'",
    "/* comment */ vacuum",
    # dangerous functions
    "SELECT load_extension('/tmp/libevil')",
    "SELECT fts3_tokenizer('simple')",
    # pragmas outside the allow-list, and pragmas about host tables
    "PRAGMA journal_mode = DELETE",
    "PRAGMA writable_schema = ON",
    "PRAGMA foreign_keys = ON",
    "PRAGMA synchronous = OFF",
    "PRAGMA compile_options",
    "SELECT * FROM pragma_compile_options",
    "PRAGMA table_info(_dohost_kv)",
    "SELECT * FROM pragma_index_list('_dohost_meta')",
    # the host's tables, in any case and any statement
    "SELECT * FROM _dohost_kv",
    "select key from _DOHOST_KV",
    "SELECT count(*) FROM t, _dohost_meta",
    "INSERT INTO _dohost_kv(key, value) VALUES (x'00', x'00')",
    "UPDATE _dohost_meta SET kv_bytes = 0",
    "DELETE FROM _dohost_alarm",
    "DROP TABLE _dohost_kv",
    "CREATE TABLE _dohost_mine(x)",
    "CREATE VIEW _dohost_view AS SELECT 1",
    "ALTER TABLE _dohost_kv ADD COLUMN extra",
    "ALTER TABLE _dohost_kv RENAME TO stolen",
    "ALTER TABLE t RENAME TO _dohost_t",
    "CREATE INDEX sneaky ON _dohost_kv(value)",
    "CREATE TRIGGER sneaky AFTER INSERT ON _dohost_kv BEGIN SELECT 1; END",
    "ANALYZE",
    "ANALYZE _dohost_kv",
    # SQLite's internal tables: only reading the catalog is allowed
    "UPDATE sqlite_sequence SET seq = 0",
    "SELECT * FROM dbstat",
    "CREATE VIRTUAL TABLE pages USING dbstat",
    # objects that would live only as long as the activation
    "CREATE TEMP TABLE scratch(x)",
    "CREATE TEMPORARY VIEW scratch_view AS SELECT 1",
    # one statement per call
    "SELECT 1; SELECT 2",
    "INSERT INTO t(v) VALUES (2); DROP TABLE t",
]


@pytest.mark.parametrize("statement", REFUSED)
async def test_refused_statements(sql1: Sql, statement: str) -> None:
    steps = [*SETUP, {"sql": statement}, {"sql": "SELECT id, v FROM t"}, {"put": [b"after", b"1"]}]
    out = await sql1.run(steps)
    r = out[len(SETUP)]
    assert r["status"] == SQL_REFUSED, r
    assert r["name"] == "sql_refused"
    assert "refused: " in r["message"]
    assert " ".join(statement.split())[:40] in r["message"]  # the statement's text
    # Nothing of it remains, and the event goes on and commits.
    assert out[-2]["rows"] == [[1, 1]]
    assert out[-1]["status"] == 0
    assert await sql1.rows("SELECT id, v FROM t") == [[1, 1]]
    assert (await sql1.run([{"get": b"after"}]))[0]["value"] == b"1"


async def test_refusal_message_is_truncated(sql1: Sql) -> None:
    r = await sql1.one("SELECT * FROM _dohost_kv WHERE key = '" + "x" * 10_000 + "'")
    assert r["status"] == SQL_REFUSED and len(r["message"]) < 600 and r["message"].endswith("…")


async def test_views_and_triggers_over_host_tables_are_refused_where_used(sql1: Sql) -> None:
    out = await sql1.run(
        [
            {"sql": "CREATE TABLE t(x)"},
            {"sql": "CREATE VIEW peek AS SELECT * FROM _dohost_kv"},
            {"sql": "SELECT * FROM peek"},
            {"sql": "CREATE TRIGGER wipe AFTER INSERT ON t BEGIN DELETE FROM _dohost_kv; END"},
            {"put": [b"k", b"v"]},
            {"sql": "INSERT INTO t VALUES (1)"},
            {"get": b"k"},
        ]
    )
    assert out[2]["status"] == SQL_REFUSED and "_dohost_kv" in out[2]["message"]
    assert out[5]["status"] == SQL_REFUSED and "_dohost_kv" in out[5]["message"]
    assert out[6]["value"] == b"v"
    assert await sql1.rows("SELECT count(*) FROM t") == [[0]]


async def test_allowed_introspection(sql1: Sql) -> None:
    await sql1.run([{"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)"}])
    await sql1.run([{"sql": "CREATE INDEX t_v ON t(v)"}, {"sql": "INSERT INTO t(v) VALUES ('a')"}])
    names = [r[0] for r in await sql1.rows("SELECT name FROM sqlite_schema WHERE type = 'table'")]
    assert "t" in names and "_dohost_kv" in names  # the catalog is readable, names and all
    assert [r[1] for r in await sql1.rows("PRAGMA table_info(t)")] == ["id", "v"]
    assert await sql1.rows("SELECT name FROM pragma_index_list('t')") == [["t_v"]]
    assert await sql1.rows("SELECT seq FROM sqlite_sequence WHERE name = 't'") == [[1]]
    assert await sql1.rows("PRAGMA quick_check") == [["ok"]]
    assert ok(await sql1.one("CREATE VIRTUAL TABLE docs USING fts5(body)"))
    assert ok(await sql1.one("INSERT INTO docs(body) VALUES ('durable objects in sql')"))
    assert await sql1.rows("SELECT body FROM docs WHERE docs MATCH 'objects'") == [
        ["durable objects in sql"]
    ]
    assert await sql1.rows("SELECT value FROM json_each('[1,2]')") == [[1], [2]]
    assert ok(await sql1.one("ALTER TABLE t RENAME TO renamed"))
    assert ok(await sql1.one("ANALYZE renamed"))
    assert ok(await sql1.one("DROP TABLE renamed"))
    # Writing the schema table directly: SQLite itself refuses (writable_schema is refused).
    r = await sql1.one("DELETE FROM sqlite_master")
    assert r["status"] == SQL_ERROR and "may not be modified" in r["message"]


# ---------------------------------------------------------------- backends


async def test_kv_class_gets_not_supported(sql: Sql) -> None:
    out = await sql.run([{"sql": "SELECT 1"}, {"put": [b"k", b"v"]}], cls="kvsql")
    assert out[0]["status"] == NOT_SUPPORTED
    assert out[0]["name"] == "not_supported" and "storage=sqlite" in out[0]["message"]
    assert out[1]["status"] == 0  # KV works as usual


# ---------------------------------------------------------------- values and results


VALUES: list[Any] = [
    None,
    0,
    1,
    -1,
    23,
    24,
    -(2**63),
    2**63 - 1,
    0.5,
    -0.0,
    1e-300,
    1.7976931348623157e308,
    math.inf,
    -math.inf,
    "",
    "text",
    "ünïcødé ✓ 🎉",
    "nul\x00inside",
    b"",
    b"\x00\x01\xff",
    bytes(range(256)) * 20,  # above the SDK's 4 KiB scratch buffer
]


async def test_params_of_every_type_round_trip(sql: Sql) -> None:
    marks = ", ".join("?" for _ in VALUES)
    out = await sql.run(
        [
            {"sql": f"SELECT {marks}", "params": VALUES},
            {"sql": "CREATE TABLE vals(i INTEGER PRIMARY KEY, v)"},
            *(
                {"sql": "INSERT INTO vals(i, v) VALUES (?, ?)", "params": [i, v]}
                for i, v in enumerate(VALUES)
            ),
        ]
    )
    (row,) = ok(out[0])["rows"]
    assert_same(row, VALUES)
    stored = await sql.rows("SELECT v FROM vals ORDER BY i")
    assert_same([r[0] for r in stored], VALUES)
    types = await sql.rows("SELECT typeof(v) FROM vals ORDER BY i")
    assert [t[0] for t in types[:3]] == ["null", "integer", "integer"]
    assert types[8][0] == "real" and types[15][0] == "text" and types[18][0] == "blob"


def assert_same(got: list[Any], want: list[Any]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert type(g) is type(w) and g == w, (g, w)
        if isinstance(w, float):
            assert math.copysign(1, g) == math.copysign(1, w)


async def test_nan_is_stored_as_null(sql1: Sql) -> None:
    assert (await sql1.one("SELECT ?", [math.nan]))["rows"] == [[None]]


async def test_columns_and_empty_results(sql1: Sql) -> None:
    out = await sql1.run(
        [
            {"sql": "CREATE TABLE t(a INTEGER, b TEXT)"},
            {"sql": "SELECT a, b AS bee FROM t"},
            {"sql": "INSERT INTO t VALUES (1, 'x'), (2, 'y') RETURNING a"},
        ]
    )
    assert out[0]["columns"] == [] and out[0]["rows"] == []
    assert out[1]["columns"] == ["a", "bee"] and out[1]["rows"] == [] and out[1]["status"] == 0
    assert out[2]["status"] == 2 and out[2]["rows"] == [[1], [2]] and out[2]["rows_written"] == 2


async def test_bad_params_are_refused_before_sqlite(sql1: Sql) -> None:
    def raw(params: bytes, text: bytes = b"SELECT ?") -> dict[str, Any]:
        return {"raw_sql": text, "raw_params": params, "cap": 4096}

    out = await sql1.run(
        [
            raw(cbor.encode([True])),
            raw(cbor.encode({"a": 1})),
            raw(b"\x9f"),  # indefinite-length array: malformed for the host's codec
            raw(cbor.encode([2**64 - 1])),
            raw(cbor.encode([[1]])),
            raw(b"", b"SELECT \xff"),
            raw(b"", b"SELECT 1 \x00"),
            raw(b"", b""),
            raw(b"", b"  -- only a comment"),
            raw(b"", b";"),
            raw(cbor.encode([1, 2]), b"SELECT ?"),
            raw(b"", b"SELECT ?"),  # a placeholder without a value
        ]
    )
    codes = [r["status"] for r in out]
    assert codes[:3] == [BAD_ENCODING] * 3
    assert "boolean" in out[0]["message"]
    assert codes[3] == INVALID_ARGUMENT and "64-bit" in out[3]["message"]
    assert codes[4] == BAD_ENCODING
    assert codes[5] == BAD_ENCODING and "UTF-8" in out[5]["message"]
    assert codes[6:10] == [INVALID_ARGUMENT] * 4
    assert codes[10] == INVALID_ARGUMENT and "bindings" in out[10]["message"].lower()
    assert codes[11] == INVALID_ARGUMENT


async def test_output_buffer_rule(sql1: Sql) -> None:
    result = ok(await sql1.one("SELECT randomblob(100000)"))  # through result_read
    assert len(result["rows"][0][0]) == 100000
    (small,) = await sql1.run([{"raw_sql": b"SELECT 42", "raw_params": b"", "cap": 1}])
    expected = cbor.encode({"columns": ["42"], "rows": [[42]], "rows_read": 1, "rows_written": 0})
    assert small["status"] == len(expected)  # too big for the buffer: its length, kept pending


# ---------------------------------------------------------------- limits


async def test_parameter_count_limit(sql: Sql) -> None:
    hundred = list(range(100))
    r = ok(await sql.one("SELECT " + ", ".join("?" for _ in hundred), hundred))
    assert r["rows"] == [hundred]
    r = await sql.one("SELECT " + ", ".join("?" for _ in range(101)), [*hundred, 100])
    assert r["status"] == INVALID_ARGUMENT and "100" in r["message"]
    r = await sql.one("SELECT ?101")
    assert r["status"] == SQL_ERROR and "?100" in r["message"]


async def test_statement_length_limit(sql: Sql) -> None:
    def padded(n: int) -> str:
        head = "SELECT 1 -- "
        return head + "x" * (n - len(head))

    assert ok(await sql.one(padded(100_000)))["rows"] == [[1]]
    r = await sql.one(padded(100_001))
    assert r["status"] == INVALID_ARGUMENT and "100000" in r["message"]
    r = await sql.one("SELECT '" + "é" * 50_000 + "'")  # 100,009 bytes of UTF-8
    assert r["status"] == INVALID_ARGUMENT


async def test_value_and_result_size_limits(sql1: Sql) -> None:
    r = await sql1.one("SELECT zeroblob(3 * 1024 * 1024)")
    assert r["status"] == SQL_ERROR and "too big" in r["message"]
    r = await sql1.one("SELECT ?", [b"x" * (2 * 1024 * 1024 + 1)])
    assert r["status"] == SQL_ERROR
    r = await sql1.one(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 9)"
        " SELECT zeroblob(2000000) FROM n"
    )
    assert r["status"] == LIMIT_EXCEEDED and "16777216" in r["message"]


@pytest.mark.parametrize(
    "statement",
    [
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) INSERT INTO t SELECT x FROM c",
    ],
    ids=["read", "write"],
)
async def test_runaway_statement_ends_the_event_at_its_cpu_limit(
    tmp_path: Path, statement: str
) -> None:
    async with make_host(tmp_path, limits=EventLimits(cpu_ms=300)) as s:
        await s.run([{"sql": "CREATE TABLE t(x)"}])
        t0 = time.monotonic()
        with pytest.raises(DohostError) as ei:
            await s.run(
                [{"put": [b"k", b"1"]}, {"sql": "INSERT INTO t VALUES (0)"}, {"sql": statement}]
            )
        assert time.monotonic() - t0 < 10
        assert ei.value.code is Code.CPU_LIMIT
        assert "CPU time limit" in ei.value.message and "(limit 300 ms)" in ei.value.message
        # Everything the event wrote is rolled back; the next event starts afresh.
        assert await s.rows("SELECT count(*) FROM t") == [[0]]
        assert (await s.run([{"get": b"k"}]))[0]["status"] == -3


# ---------------------------------------------------------------- transactions


async def test_sql_and_kv_writes_commit_together(sql: Sql) -> None:
    out = await sql.run(
        [
            {"sql": "CREATE TABLE t(x)"},
            {"put": [b"k", b"1"]},
            {"sql": "INSERT INTO t VALUES (1)"},
            {"sql": "SELECT count(*) FROM t"},  # the event's own write, seen at once
            {"get": b"k"},
        ]
    )
    assert out[3]["rows"] == [[1]] and out[4]["value"] == b"1"
    assert await sql.rows("SELECT x FROM t") == [[1]]
    assert (await sql.run([{"get": b"k"}]))[0]["value"] == b"1"


@pytest.mark.parametrize("then", ["trap", "fail"])
async def test_sql_and_kv_writes_roll_back_together(sql: Sql, then: str) -> None:
    await sql.run([{"sql": "CREATE TABLE t(x)"}])
    steps = [
        {"put": [b"k", b"1"]},
        {"sql": "INSERT INTO t VALUES (1)"},
        {"sql": "CREATE TABLE u(y)"},
    ]
    with pytest.raises(DohostError) as ei:
        await sql.run(steps, then=then)
    assert ei.value.code is Code.OBJECT_ERROR
    assert await sql.rows("SELECT count(*) FROM t") == [[0]]
    assert await sql.rows("SELECT count(*) FROM sqlite_schema WHERE name = 'u'") == [[0]]
    assert (await sql.run([{"get": b"k"}]))[0]["status"] == -3  # not_found


async def test_a_failed_statement_does_not_abort_the_event(sql: Sql) -> None:
    out = await sql.run(
        [
            {"sql": "CREATE TABLE t(x INTEGER PRIMARY KEY)"},
            {"sql": "INSERT INTO t VALUES (1)"},
            {"put": [b"k", b"1"]},
            {"sql": "INSERT INTO t VALUES (1)"},  # UNIQUE
            {"sql": "INSERT OR FAIL INTO t VALUES (3), (1)"},  # fails after writing 3
            {"sql": "SELEC 1"},  # syntax
            {"sql": "INSERT INTO nowhere VALUES (1)"},
            {"sql": "INSERT INTO t VALUES (2)"},
        ]
    )
    assert [r["status"] for r in out[3:7]] == [SQL_ERROR] * 4
    assert out[3]["name"] == "sql_error" and "UNIQUE constraint failed: t.x" in out[3]["message"]
    assert "syntax error" in out[5]["message"] and "no such table" in out[6]["message"]
    assert out[7]["status"] == 0
    assert await sql.rows("SELECT x FROM t ORDER BY x") == [[1], [2]]  # 3 was undone
    assert (await sql.run([{"get": b"k"}]))[0]["value"] == b"1"


async def test_insert_or_rollback_ends_the_event(sql1: Sql) -> None:
    await sql1.run(
        [{"sql": "CREATE TABLE t(x INTEGER PRIMARY KEY)"}, {"sql": "INSERT INTO t VALUES (1)"}]
    )
    with pytest.raises(DohostError) as ei:
        await sql1.run(
            [
                {"put": [b"k", b"1"]},
                {"sql": "INSERT INTO t VALUES (2)"},
                {"sql": "INSERT OR ROLLBACK INTO t VALUES (1)"},
            ]
        )
    assert ei.value.code is Code.OBJECT_ERROR
    assert "UNIQUE constraint failed" in ei.value.message and "rolled back" in ei.value.message
    assert await sql1.rows("SELECT x FROM t") == [[1]]
    assert (await sql1.run([{"get": b"k"}]))[0]["status"] == -3


async def test_sql_data_survive_a_restart(tmp_path: Path) -> None:
    async with make_host(tmp_path) as s:
        await s.run([{"sql": "CREATE TABLE t(x)"}, {"sql": "INSERT INTO t VALUES ('kept')"}])
    async with make_host(tmp_path) as s:
        assert await s.rows("SELECT x FROM t") == [["kept"]]


async def test_objects_have_separate_databases(sql1: Sql) -> None:
    await sql1.run([{"sql": "CREATE TABLE t(x)"}, {"sql": "INSERT INTO t VALUES (1)"}], obj="a")
    r = await sql1.one("SELECT * FROM t", obj="b")
    assert r["status"] == SQL_ERROR and "no such table" in r["message"]


# ---------------------------------------------------------------- metering


async def test_rows_read_and_written_reach_the_event_result_and_metrics(tmp_path: Path) -> None:
    async with Host(tmp_path / "data", durability="os") as host:
        state = await ServerState.attach(host, "admin-token-" + "x" * 20, Quotas())
        seen: list[Any] = []
        metrics = host.supervisor.observer
        assert metrics is not None

        class Recorder:
            def event(self, tenant: str, cls: str, kind: str, result: Any, seconds: float) -> None:
                seen.append(result)
                metrics.event(tenant, cls, kind, result, seconds)

            def dropped(self, tenant: str, cls: str, reason: str) -> None:
                metrics.dropped(tenant, cls, reason)

        host.supervisor.observer = Recorder()  # type: ignore[assignment]
        wasm = (
            Path(__file__).resolve().parents[1] / "fixtures" / "build" / "sqltest.wasm"
        ).read_bytes()
        await host.deploy("acme", "sql", wasm, "sqlite")
        s = Sql(host)
        out = await s.run(
            [
                {"sql": "CREATE TABLE t(x INTEGER PRIMARY KEY, y)"},
                *({"sql": "INSERT INTO t VALUES (?, ?)", "params": [i, i % 7]} for i in range(50)),
                {"sql": "UPDATE t SET y = y + 1 WHERE x < 10"},
                {"sql": "DELETE FROM t WHERE x >= 45"},
            ]
        )
        assert out[-2]["rows_written"] == 10 and out[-1]["rows_written"] == 5
        assert seen[-1].sql_rows_written == 65 and seen[-1].error is None
        out = await s.run(
            [{"sql": "SELECT x FROM t WHERE x < 3"}, {"sql": "SELECT count(*) FROM t WHERE y = 3"}]
        )
        assert out[0]["rows_read"] == 3  # by the primary key: only the rows returned
        assert out[1]["rows_read"] >= 44  # a full scan of 45 rows, though one row returned
        assert seen[-1].sql_rows_read == 3 + out[1]["rows_read"] and seen[-1].sql_rows_written == 0
        with pytest.raises(DohostError):
            await s.run([{"sql": "INSERT INTO t VALUES (100, 0)"}], then="trap")
        assert seen[-1].error is not None and seen[-1].sql_rows_written == 1  # done, then undone
        text = state.metrics.render().decode()
        labels = 'class="sql",tenant="acme"'
        assert f"dohost_sql_rows_written_total{{{labels}}} 66.0" in text
        assert f"dohost_sql_rows_read_total{{{labels}}} {float(3 + out[1]['rows_read'])}" in text


# ---------------------------------------------------------------- hostile use


async def test_authorizer_leaves_the_hosts_own_statements_alone(sql1: Sql) -> None:
    # Guest statements around KV calls: the host's statements (on the same connection,
    # cached) must keep working, and a guest text equal to one of them must not reuse
    # the host's prepared statement (it would skip the authorizer).
    out = await sql1.run(
        [
            {"sql": "SELECT value FROM _dohost_kv WHERE key=?", "params": [b"k"]},
            {"put": [b"k", b"v"]},
            {"sql": "SELECT value FROM _dohost_kv WHERE key=?", "params": [b"k"]},
            {"get": b"k"},
            {"sql": "COMMIT"},
            {"get": b"k"},
        ]
    )
    assert [r["status"] for r in out] == [SQL_REFUSED, 0, SQL_REFUSED, 1, SQL_REFUSED, 1]


async def test_many_objects_and_statements(sql1: Sql) -> None:
    for obj in ("a", "b", "c"):
        await sql1.run([{"sql": "CREATE TABLE t(x)"}], obj=obj)
    for i in range(20):
        for obj in ("a", "b", "c"):
            ok((await sql1.run([{"sql": "INSERT INTO t VALUES (?)", "params": [i]}], obj=obj))[0])
    for obj in ("a", "b", "c"):
        assert await sql1.rows("SELECT count(*), sum(x) FROM t", obj=obj) == [[20, 190]]

"""SQL (`sql_exec`) through every language's SDK: the same spec against the C, Zig, Rust
and AssemblyScript conformance guests, deployed with storage="sqlite".

The guests' /sql route (tests/fixtures/c/kvtest.c) runs the body's statement with typed
"p" parameters (n, i:<decimal>, f:<IEEE-754 bits in hex>, t:<text>, b:<hex>) and writes
the result back in the same notation, so floats and bytes round-trip exactly and a test
checks both the SDK's encoding of every parameter type and its decoding of every value.
"""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from conformance_helpers import Guest, deploy

from dohost import Host


@pytest.fixture
async def db(lang: str, tmp_path: Path) -> AsyncIterator[Guest]:
    async with Host(tmp_path / "data", durability="os") as host:
        yield await deploy(host, lang, storage="sqlite")


def param(v: Any) -> str:
    """A value in the guests' "p" notation, percent-encoded for the query."""
    if v is None:
        return "n"
    if isinstance(v, bool):
        raise TypeError("no booleans in SQL")
    if isinstance(v, int):
        return f"i:{v}"
    if isinstance(v, float):
        return "f:" + struct.pack(">d", v).hex()
    if isinstance(v, str):
        return "t:" + quote(v.encode(), safe="")
    return "b:" + bytes(v).hex()


def value(s: str) -> Any:
    if s == "n":
        return None
    kind, text = s[0], s[2:]
    if kind == "i":
        return int(text)
    if kind == "f":
        return struct.unpack(">d", bytes.fromhex(text))[0]
    if kind == "t":
        return text
    assert kind == "b", s
    return bytes.fromhex(text)


class Outcome:
    """A /sql answer: columns, rows and the counts, or the status text of a failure."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.ok = text.startswith("columns=")
        self.columns: list[str] = []
        self.rows: list[list[Any]] = []
        self.counts: tuple[int, int, int] = (-1, -1, -1)
        if not self.ok:
            return
        lines = text.split("\n")
        head = lines[0].removeprefix("columns=")
        self.columns = head.split(",") if head else []
        for line in lines[1:-1]:
            assert line.startswith("row="), line
            body = line.removeprefix("row=")
            self.rows.append([value(v) for v in body.split(",")] if self.columns else [])
        n, read, written = (int(part.split("=")[1]) for part in lines[-1].split())
        self.counts = (n, read, written)
        assert n == len(self.rows)


async def sql(guest: Guest, statement: str, *params: Any, obj: str = "o") -> Outcome:
    query = "&".join(f"p={param(p)}" for p in params)
    status, body = await guest.req("POST", "/sql?" + query, statement.encode(), obj)
    assert status == 200, body[:200]
    return Outcome(body.decode())


def same(got: list[Any], want: list[Any]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert type(g) is type(w) and g == w, (g, w)
        if isinstance(w, float):
            assert math.copysign(1, g) == math.copysign(1, w)


# No commas or newlines in texts: they separate the guests' values and rows.
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
    "x" * 5000,  # above the SDKs' 4 KiB scratch buffer
    b"",
    b"\x00\x01\xff",
    bytes(range(256)) * 20,
]


async def test_create_insert_and_select_every_type(db: Guest) -> None:
    created = await sql(db, "CREATE TABLE vals(i INTEGER PRIMARY KEY, v)")
    assert (created.ok, created.columns, created.rows) == (True, [], []), created.text
    for i, v in enumerate(VALUES):
        r = await sql(db, "INSERT INTO vals(i, v) VALUES (?, ?)", i, v)
        assert r.ok and r.counts[2] == 1, (v, r.text)
    r = await sql(db, "SELECT i, v AS value FROM vals ORDER BY i")
    assert r.columns == ["i", "value"]
    same([row[1] for row in r.rows], VALUES)
    assert r.counts == (len(VALUES), len(VALUES), 0)
    types = await sql(db, "SELECT typeof(v) FROM vals ORDER BY i")
    assert [t[0] for t in types.rows[:3]] == ["null", "integer", "integer"]
    assert types.rows[8][0] == "real" and types.rows[15][0] == "text"
    assert types.rows[19][0] == "blob"
    # All of them bound in one statement and read back in one row.
    r = await sql(db, "SELECT " + ", ".join("?" for _ in VALUES), *VALUES)
    (row,) = r.rows
    same(row, VALUES)


async def test_nan_is_null_and_named_placeholders(db: Guest) -> None:
    assert (await sql(db, "SELECT ?", math.nan)).rows == [[None]]
    r = await sql(db, "SELECT :a + @b, $c", 2, 3, "c")
    assert r.rows == [[5, "c"]]


async def test_updates_count_rows_written_and_results_past_the_scratch_buffer(db: Guest) -> None:
    assert (await sql(db, "CREATE TABLE t(x INTEGER)")).ok
    r = await sql(
        db,
        "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
        " WHERE x < 1000) SELECT x FROM c",
    )
    assert r.ok and r.counts[2] == 1000, r.text
    r = await sql(db, "SELECT x, 'row ' || x FROM t ORDER BY x")  # ~20 KB: result_read
    assert len(r.rows) == 1000 and r.rows[999] == [1000, "row 1000"]
    assert r.columns == ["x", "'row ' || x"] and r.counts[1] >= 1000
    r = await sql(db, "UPDATE t SET x = x * 2 WHERE x <= ? RETURNING x", 10)
    assert r.counts[0] == 10 and r.counts[2] == 10 and r.rows[0] == [2]
    r = await sql(db, "DELETE FROM t WHERE x > ?", 500)
    assert r.ok and r.counts[2] == 500
    assert (await sql(db, "SELECT count(*) FROM t")).rows == [[500]]


async def test_sql_error_carries_sqlites_message_and_the_event_goes_on(db: Guest) -> None:
    r = await sql(db, "SELECT * FROM nope")
    assert r.text == "-18 sql_error no such table: nope; statement: SELECT * FROM nope"
    assert (await sql(db, "CREATE TABLE t(id INTEGER PRIMARY KEY)")).ok
    assert (await sql(db, "INSERT INTO t VALUES (?)", 1)).ok
    r = await sql(db, "INSERT INTO t VALUES (?)", 1)
    assert r.text.startswith("-18 sql_error UNIQUE constraint failed: t.id; statement: INSERT")
    r = await sql(db, "SELEKT 1")
    assert r.text.startswith('-18 sql_error near "SELEKT": syntax error'), r.text
    assert (await sql(db, "SELECT id FROM t")).rows == [[1]]


REFUSED = [
    "BEGIN",
    "COMMIT",
    "SAVEPOINT s",
    "ATTACH DATABASE 'other.db' AS other",
    "VACUUM",
    "PRAGMA journal_mode = DELETE",
    "SELECT * FROM _dohost_kv",
    "DROP TABLE _dohost_kv",
    "CREATE TEMP TABLE scratch(x)",
    "SELECT 1; SELECT 2",
]


async def test_refused_statements(db: Guest) -> None:
    for statement in REFUSED:  # one host per language: the cases share it
        r = await sql(db, statement)
        assert r.text.startswith("-19 sql_refused refused: "), r.text
        assert f"; statement: {statement}" in r.text
    assert (await sql(db, "SELECT 1")).rows == [[1]]  # the event and the object go on


async def test_not_supported_on_a_kv_class(guest: Guest) -> None:
    r = await sql(guest, "SELECT 1")
    assert r.text.startswith("-9 not_supported "), r.text
    assert "storage=sqlite" in r.text


async def test_statement_and_parameter_limits(db: Guest) -> None:
    def padded(n: int) -> str:
        head = "SELECT 1 -- "
        return head + "x" * (n - len(head))

    assert (await sql(db, padded(100_000))).rows == [[1]]
    r = await sql(db, padded(100_001))
    assert r.text.startswith("-11 invalid_argument ") and "100000" in r.text, r.text[:200]
    hundred = list(range(100))
    assert (await sql(db, "SELECT " + ", ".join("?" for _ in hundred), *hundred)).rows == [hundred]
    r = await sql(db, "SELECT " + ", ".join("?" for _ in range(101)), *range(101))
    assert r.text.startswith("-11 invalid_argument ") and "100" in r.text, r.text
    r = await sql(db, "SELECT ?, ?", 1)
    assert r.text.startswith("-11 invalid_argument "), r.text
    assert (await sql(db, "")).text.startswith("-11 invalid_argument ")


SQL_SCRIPT: list[tuple[str, list[Any]]] = [
    ("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, data BLOB)", []),
    ("INSERT INTO t(name, score, data) VALUES (?, ?, ?)", ["ada", 1.25, b"\x00\xff"]),
    ("INSERT INTO t(name, score, data) VALUES (?, ?, ?)", ["bob", None, b""]),
    ("INSERT INTO t(name) VALUES (?)", [None]),
    ("SELECT * FROM t ORDER BY id", []),
    ("SELECT name FROM t WHERE score > ?", [1]),
    ("UPDATE t SET score = score * 2 RETURNING id, score", []),
    ("SELECT count(*), sum(score), max(length(data)) FROM t", []),
    ("BEGIN", []),
    ("SELECT ?", []),
    ("SELECT type, name, tbl_name FROM sqlite_master WHERE name = 't'", []),
]


@pytest.mark.parametrize("other", ["zig", "rust", "assemblyscript"])
async def test_same_sql_answers_as_the_c_guest(other: str, tmp_path: Path) -> None:
    answers = {}
    for lang in ("c", other):
        async with Host(tmp_path / lang, durability="os") as host:
            g = await deploy(host, lang, storage="sqlite")
            answers[lang] = [(await sql(g, s, *p)).text for s, p in SQL_SCRIPT]
    for (statement, _), c, got in zip(SQL_SCRIPT, answers["c"], answers[other], strict=True):
        assert got == c, statement

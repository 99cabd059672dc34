"""Looking inside: `dohost alarms` (pending alarms) and `dohost sql` (read-only SQL on a
sqlite-backed object), both through a running server's API, and `alarms --data-dir`
for a data directory on this machine."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import click

from dohost.cli_client import fail, id_option, run, table, token_option, url_option
from dohost.core.errors import Code


def _json_call(method: str, path: str, **kw: Any) -> Any:
    from dohost.client.calls import Call

    return Call(method, path, lambda r: r.json(), **kw)


def _when(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(
        timespec="milliseconds"
    )


@click.command()
@click.option("--class", "class_name", default=None, help="Only this class's alarms.")
@click.option(
    "--data-dir",
    "data_dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Read a data directory on this machine instead of asking a server.",
)
@click.option(
    "--tenant", default=None, help="With --data-dir: only this tenant's alarms (default: all)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@url_option
@token_option
def alarms(
    class_name: str | None,
    data_dir: Path | None,
    tenant: str | None,
    as_json: bool,
    url: str,
    token: str | None,
) -> None:
    """List your pending alarms (alarms that already fired are not shown): object, due
    time, retry count."""
    if data_dir is not None:
        rows = _local_alarms(data_dir, tenant, class_name)
    else:
        params = {"class": class_name} if class_name else None
        data = run(url, token, lambda c: c.send(_json_call("GET", "/v1/alarms", params=params)))
        rows = [
            {"tenant": None, **a} for a in data["alarms"]
        ]  # the server answers for the token's tenant
    if as_json:
        click.echo(json.dumps({"alarms": rows}, indent=2))
        return
    cols = ["class", "object", "id", "due (UTC)", "retries"]
    if data_dir is not None:
        cols.insert(0, "tenant")
    out = []
    for a in rows:
        row = [a["class"], a["name"] or "-", a["id"], _when(a["due_ms"]), str(a["retry_count"])]
        out.append([a["tenant"], *row] if data_dir is not None else row)
    table(cols, out)
    click.echo(f"{len(rows)} pending alarm{'s' if len(rows) != 1 else ''}")


def _local_alarms(
    data_dir: Path, tenant: str | None, class_name: str | None
) -> list[dict[str, Any]]:
    """The alarm index of a data directory. A running server applies the removal of a
    fired alarm within moments; the index may still name an alarm whose event never
    committed (it is a superset), which the server's own list never shows."""
    from dohost.storage.alarm_index import read_entries

    path = data_dir / "alarms.db"
    if not path.exists():
        fail(
            f"{Code.NOT_FOUND.code}: no alarm index in {data_dir} (not a dohost data "
            "directory, or no alarm was ever set); pass --data-dir the server's --data"
        )
    # Read-only: safe beside a server that holds the data set (its lock is not taken).
    entries = read_entries(path, tenant, class_name)
    return [
        {
            "tenant": e.tenant,
            "class": e.class_name,
            "id": e.object_id.hex(),
            "name": e.name,
            "due_ms": e.next_ms,
            "retry_count": e.retry_count,
        }
        for e in entries
    ]


@click.command()
@click.argument("class_name", metavar="CLASS")
@click.argument("obj", metavar="OBJECT")
@click.argument("query", metavar='"SELECT ..."')
@click.option(
    "-p", "--param", "params", multiple=True, help="A value for a ? in the query (repeatable)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@id_option
@url_option
@token_option
def sql(
    class_name: str,
    obj: str,
    query: str,
    params: tuple[str, ...],
    as_json: bool,
    by_id: bool,
    url: str,
    token: str | None,
) -> None:
    """Run a read-only SQL query on OBJECT of a sqlite-backed CLASS and print the rows."""
    data = run_sql(url, token, class_name, obj, by_id, query, list(params))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table(data["columns"], [[cell_text(v) for v in row] for row in data["rows"]])
    n = len(data["rows"])
    more = " (more not shown)" if data["truncated"] else ""
    click.echo(f"{n} row{'s' if n != 1 else ''}{more}")


def run_sql(
    url: str,
    token: str | None,
    class_name: str,
    obj: str,
    by_id: bool,
    query: str,
    params: list[Any],
) -> Any:
    from dohost.client.calls import object_path

    body = json.dumps({"sql": query, "params": params}).encode()
    call = _json_call(
        "POST",
        object_path(class_name, obj, by_id) + "/storage/sql",
        body=body,
        headers=[("content-type", "application/json")],
    )
    return run(url, token, lambda c: c.send(call))


TABLES = "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name"
SHOWN_ROWS = 20


def show_tables(url: str, token: str | None, class_name: str, obj: str, by_id: bool) -> None:
    """Each SQL table of the object with its first rows (`dohost storage`)."""
    names = [r[0] for r in run_sql(url, token, class_name, obj, by_id, TABLES, [])["rows"]]
    names = [n for n in names if not n.startswith(("_dohost", "sqlite_"))]
    if not names:
        click.echo("(no SQL tables)")
    for name in names:
        quoted = '"' + name.replace('"', '""') + '"'
        q = f"SELECT * FROM {quoted} LIMIT {SHOWN_ROWS + 1}"
        data = run_sql(url, token, class_name, obj, by_id, q, [])
        rows = [[cell_text(v) for v in row] for row in data["rows"][:SHOWN_ROWS]]
        more = ", first 20 shown" if len(data["rows"]) > SHOWN_ROWS else ""
        click.echo(f"\ntable {name} ({len(rows)} rows{more})")
        table(data["columns"], rows)


def cell_text(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, dict) and "base64" in v:
        return f"base64:{v['base64']}"
    return str(v)


def register(group: click.Group) -> None:
    for cmd in (alarms, sql):
        group.add_command(cmd)

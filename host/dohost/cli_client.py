"""The CLI client of a running `dohost serve`: tenants, deploys, calls, objects, storage.

    dohost tenant create|ls|rm NAME      (admin token)
    dohost deploy CLASS FILE.wasm [--storage kv|sqlite]
    dohost call CLASS OBJECT [PATH] [-X METHOD] [-d BODY] [-H 'Name: value']
    dohost classes | objects CLASS | storage CLASS OBJECT | rm CLASS OBJECT

The server comes from `--url` or `DOHOST_URL` (default http://127.0.0.1:8080), the token
from `--token` or `DOHOST_TOKEN` (tenant commands: `DOHOST_ADMIN_TOKEN` first). Every
failure is one line on stderr, `error: <code>: <message>`, and exit status 1.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from dohost.client import Client

DEFAULT_URL = "http://127.0.0.1:8080"
T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@contextmanager
def connect(url: str, token: str | None, *, admin: bool = False) -> Iterator[Client]:
    """A `dohost.client.Client` for one command; any client error ends the command with
    one line (`error: <code>: <message>`, or `error: cannot_reach: ...`). `admin`: the
    command wants the admin token (what a missing one says)."""
    # Imported here, not at the top: httpx costs a third of the CLI's start time.
    from dohost.client import Client, ClientError, TransportError

    if not token:
        if admin:
            fail(
                "unauthorized: no admin token: pass --token or set DOHOST_ADMIN_TOKEN "
                "(a local server keeps it in DATA/admin.token)"
            )
        fail(
            "unauthorized: no tenant token: pass --token or set DOHOST_TOKEN "
            "(`dohost tenant create NAME` prints one)"
        )
    try:
        with Client(url, token) as client:
            yield client
    except TransportError as e:
        fail(f"cannot_reach: {e}: is `dohost serve` running there? (--url or DOHOST_URL)")
    except ClientError as e:
        fail(str(e) + _did_you_mean(e, url, token))


def _did_you_mean(e: Exception, url: str, token: str | None) -> str:
    """For `unknown_class`: the closest class name this token can see, if one is close."""
    import difflib
    import re

    from dohost.client import ApiError, Client, ClientError

    if not isinstance(e, ApiError) or e.code != "unknown_class":
        return ""
    m = re.search(r"no class named '([^']*)'", e.message)
    if m is None:
        return ""
    try:
        with Client(url, token) as client:
            names = [c.name for c in client.list_classes()]
    except ClientError:
        return ""
    close = difflib.get_close_matches(m.group(1), names, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def confirm(what: str, name: str, yes: bool) -> None:
    """Destructive commands ask first: type the name (a terminal), or pass --yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.UsageError(
            f"deleting {what} {name} deletes all its data: pass --yes to confirm"
        )
    typed = click.prompt(
        f"This deletes {what} {name} and ALL its data. Type {name!r} to confirm",
        default="",
        show_default=False,
    )
    if typed != name:
        fail("aborted: the name did not match; nothing was deleted")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError


def human_count(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,}"


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")
yes_option = click.option(
    "-y", "--yes", is_flag=True, help="Do not ask for confirmation (needed when not a terminal)."
)


def run(url: str, token: str | None, op: Callable[[Client], T], *, admin: bool = False) -> T:
    """`op(client)` with `connect`'s error handling: the usual shape of a command."""
    with connect(url, token, admin=admin) as client:
        return op(client)


url_option = click.option(
    "--url",
    envvar="DOHOST_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Server URL (env DOHOST_URL).",
)
token_option = click.option(
    "--token", envvar="DOHOST_TOKEN", help="Tenant token (env DOHOST_TOKEN)."
)
admin_token_option = click.option(
    "--token",
    envvar=["DOHOST_ADMIN_TOKEN", "DOHOST_TOKEN"],
    help="Admin token (env DOHOST_ADMIN_TOKEN, else DOHOST_TOKEN).",
)
id_option = click.option("--id", "by_id", is_flag=True, help="OBJECT is an object id, not a name.")


def _table(title: str | None, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_edge=False, header_style="bold")
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*r)
    # Piped output is not cut to 80 columns: ids stay whole for scripts.
    Console(width=None if sys.stdout.isatty() else 10_000).print(table)


def table(columns: list[str], rows: list[list[str]]) -> None:
    _table(None, columns, rows)


def _shown(data: bytes) -> str:
    """Bytes for a table cell: the text when it is printable UTF-8, else base64."""
    try:
        text = data.decode("utf-8")
        if text.isprintable():
            return text
    except UnicodeDecodeError:
        pass
    return "base64:" + base64.b64encode(data).decode()


# ------------------------------------------------------------------------ tenants


@click.group()
def tenant() -> None:
    """Create, list and remove tenants (needs the admin token)."""


@tenant.command("create")
@click.argument("name")
@url_option
@admin_token_option
def tenant_create(name: str, url: str, token: str | None) -> None:
    """Create tenant NAME and print its token (shown only this once)."""
    _, secret = run(url, token, lambda c: c.create_tenant(name), admin=True)
    click.echo(secret)
    click.echo(
        f"created tenant {name}; keep the token above, it is not shown again "
        f"(export DOHOST_TOKEN=...)",
        err=True,
    )


@tenant.command("ls")
@json_option
@url_option
@admin_token_option
def tenant_ls(as_json: bool, url: str, token: str | None) -> None:
    """List tenants with their classes and usage."""
    tenants = run(url, token, lambda c: c.list_tenants(), admin=True)
    if as_json:
        echo_json({"tenants": [dataclasses.asdict(t) for t in tenants]})
        return
    rows = []
    for t in tenants:
        q = t.quotas
        rows.append(
            [
                t.name,
                ", ".join(t.classes) or "-",
                f"{human_count(t.objects)} of {human_count(q['objects'])}",
                f"{human_bytes(t.storage_bytes)} of {human_bytes(q['storage_bytes'])}",
                human_count(q["requests_per_s"]),
            ]
        )
    _table(None, ["tenant", "classes", "objects", "storage", "req/s"], rows)


@tenant.command("rm")
@click.argument("name")
@yes_option
@url_option
@admin_token_option
def tenant_rm(name: str, yes: bool, url: str, token: str | None) -> None:
    """Delete tenant NAME with all its classes, objects and data (asks first)."""
    confirm("tenant", name, yes)
    run(url, token, lambda c: c.delete_tenant(name), admin=True)
    click.echo(f"deleted tenant {name}")


# ------------------------------------------------------------------------ classes


@click.command()
@click.argument("class_name", metavar="CLASS")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--storage",
    type=click.Choice(["kv", "sqlite"]),
    default="kv",
    show_default=True,
    help="Storage backend, chosen at the first deploy: kv, or sqlite (SQL, one database each).",
)
@click.option(
    "--deferred",
    is_flag=True,
    help="Each object gets the new version at its next activation (or after --max-delay).",
)
@click.option(
    "--max-delay",
    type=click.FloatRange(min=0),
    default=None,
    help="With --deferred: seconds until every object's next event runs it (default 600).",
)
@url_option
@token_option
def deploy(
    class_name: str,
    file: Path,
    storage: str,
    deferred: bool,
    max_delay: float | None,
    url: str,
    token: str | None,
) -> None:
    """Deploy FILE.wasm as the next version of CLASS."""
    try:
        wasm = file.read_bytes()
    except OSError as e:
        fail(f"os_error: cannot read {file}: {e.strerror}")
    if max_delay is not None and not deferred:
        raise click.BadParameter("--max-delay goes with --deferred", param_hint="--max-delay")
    update = "deferred" if deferred else "immediate"
    d = run(
        url,
        token,
        lambda c: c.deploy(class_name, wasm, storage, update=update, max_delay_s=max_delay),
    )
    what = "deployed" if d.changed else "unchanged:"
    i = d.info
    click.echo(f"{what} {i.name} version {i.version} ({i.storage}, sha256 {i.sha256[:16]})")


@click.command()
@json_option
@url_option
@token_option
def classes(as_json: bool, url: str, token: str | None) -> None:
    """List the deployed classes."""
    found = run(url, token, lambda c: c.list_classes())
    if as_json:
        echo_json({"classes": [dataclasses.asdict(c) for c in found]})
        return
    rows = [
        [c.name, str(c.version), c.storage, human_bytes(c.size or 0), c.sha256[:16]] for c in found
    ]
    _table(None, ["class", "version", "storage", "bytes", "sha256"], rows)


# ------------------------------------------------------------------------ objects


def read_body(data: str | None) -> bytes | None:
    """A `-d/--data` value: the text itself, @FILE's bytes, or @- stdin."""
    if data is None:
        return None
    if data == "@-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_bytes()
        except OSError as e:
            fail(f"os_error: cannot read {data[1:] or '(no file name after @)'}: {e.strerror}")
    return data.encode()


@click.command()
@click.argument("class_name", metavar="CLASS")
@click.argument("obj", metavar="OBJECT")
@click.argument("path", default="/")
@click.option("-X", "--method", default=None, help="HTTP method (default GET, or POST with -d).")
@click.option(
    "-d", "--data", "data", default=None, help="Request body; @FILE reads a file, @- stdin."
)
@click.option("-H", "--header", "headers", multiple=True, help="Header 'Name: value' (repeatable).")
@id_option
@url_option
@token_option
def call(
    class_name: str,
    obj: str,
    path: str,
    method: str | None,
    data: str | None,
    headers: tuple[str, ...],
    by_id: bool,
    url: str,
    token: str | None,
) -> None:
    """Send a request to OBJECT of CLASS (PATH may carry ?query) and print the body."""
    hdrs = []
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            fail(f"bad header {h!r}: use 'Name: value'", 2)
        hdrs.append((name.strip(), value.strip()))
    body = read_body(data)
    resp = run(
        url,
        token,
        lambda c: c.fetch(
            class_name, obj, path, method=method, body=body, headers=hdrs, by_id=by_id
        ),
    )
    out = resp.body
    sys.stdout.buffer.write(out)
    if out and not out.endswith(b"\n") and sys.stdout.isatty():
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    if resp.status >= 400:
        fail(f"the object answered {resp.status}")


@click.command()
@click.argument("class_name", metavar="CLASS")
@json_option
@url_option
@token_option
def objects(class_name: str, as_json: bool, url: str, token: str | None) -> None:
    """List the objects of CLASS that have stored something."""
    with connect(url, token) as client:
        found = list(client.iter_objects(class_name))
    if as_json:
        echo_json({"objects": [dataclasses.asdict(o) for o in found]})
        return
    rows = [[o.id, o.name if o.name is not None else "-", human_bytes(o.bytes)] for o in found]
    _table(None, ["id", "name", "bytes"], rows)


@click.command()
@click.argument("class_name", metavar="CLASS")
@click.argument("obj", metavar="OBJECT")
@id_option
@url_option
@token_option
def storage(class_name: str, obj: str, by_id: bool, url: str, token: str | None) -> None:
    """Show the stored keys and values of OBJECT (read-only), and the tables of a
    sqlite-backed class's object (its first 20 rows each; `dohost sql` for more)."""
    with connect(url, token) as client:
        rows = [[_shown(k), _shown(v)] for k, v in client.iter_storage(class_name, obj, by_id)]
        backend = client.get_class(class_name).storage
    _table(None, ["key", "value"], rows)
    if backend == "sqlite":
        from dohost.cli_inspect import show_tables

        show_tables(url, token, class_name, obj, by_id)


@click.command("rm")
@click.argument("class_name", metavar="CLASS")
@click.argument("obj", metavar="OBJECT")
@id_option
@yes_option
@url_option
@token_option
def rm(class_name: str, obj: str, by_id: bool, yes: bool, url: str, token: str | None) -> None:
    """Delete OBJECT of CLASS: its storage, alarm and activation (asks first)."""
    with connect(url, token) as client:
        ref = client.get_object(class_name, obj, by_id)
        if not _has_stored(client, class_name, ref.id):
            fail(
                f"not_found: {class_name} object {obj} has stored nothing: nothing to delete "
                f"(`dohost objects {class_name}` lists those that have)"
            )
        confirm(f"{class_name} object", obj, yes)
        oid = client.delete_object(class_name, obj, by_id)
    click.echo(f"deleted {class_name} object {obj} ({oid[:16]}…)")


@click.command("restore-object")
@click.argument("class_name", metavar="CLASS")
@click.argument("obj", metavar="OBJECT")
@click.option("--at", "at", required=True, help="ms since 1970, or ISO 8601 with its zone.")
@click.option(
    "--to",
    "to",
    default=None,
    metavar="NAME",
    help="Fork: copy the state at --at into this new or empty object; OBJECT is untouched.",
)
@id_option
@json_option
@url_option
@token_option
def restore_object(
    class_name: str,
    obj: str,
    at: str,
    to: str | None,
    by_id: bool,
    as_json: bool,
    url: str,
    token: str | None,
) -> None:
    """Restore OBJECT of CLASS to its state at --at from the server's replica (its
    keys and alarm; the object is deactivated first), or with --to fork that state into
    another object. Needs `dohost serve --replica`; kv-backed classes only."""
    from dohost.core.errors import DohostError
    from dohost.core.time_text import parse_time_ms

    try:
        at_ms = parse_time_ms(at)
    except DohostError as e:
        fail(f"{e.code.code}: {e.message}", 2)
    done = run(url, token, lambda c: c.restore_object(class_name, obj, at_ms, to=to, by_id=by_id))
    if as_json:
        echo_json(
            {
                "class": done.class_name,
                "id": done.id,
                "name": done.name,
                "source": done.source,
                "at_ms": done.at_ms,
                "keys": done.keys,
                "alarm": done.alarm,
                "fork": done.fork,
            }
        )
        return
    alarm = "no alarm" if done.alarm is None else f"alarm at {done.alarm} ms"
    if done.fork:
        click.echo(
            f"forked {class_name} object {obj} as of {at_ms} ms into {to}: "
            f"{done.keys} keys, {alarm}"
        )
    else:
        click.echo(f"restored {class_name} object {obj} to {at_ms} ms: {done.keys} keys, {alarm}")


def _has_stored(client: Client, class_name: str, object_id: str) -> bool:
    """Whether the object is in the class's listing (objects that stored something):
    the page that starts right before its id."""
    before = int(object_id, 16) - 1
    after = f"{before:064x}" if before >= 0 else None
    page = client.list_objects(class_name, limit=1, after=after)
    return bool(page.objects) and page.objects[0].id == object_id


def register(group: click.Group) -> None:
    from dohost import cli_ops

    for cmd in (tenant, deploy, classes, call, objects, storage, rm, restore_object):
        group.add_command(cmd)
    cli_ops.register(group, tenant)

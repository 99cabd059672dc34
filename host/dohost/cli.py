"""The `dohost` command.

Every failure is one line on stderr and a non-zero exit, never a traceback:
`main()` turns `DohostError` (and any other exception) into `error: <code>: <message>`.
Exit codes: 0 ok, 1 the object answered with a status >= 400 or the host refused,
2 usage errors (click's own).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import trio

from dohost.core.envelopes import Request
from dohost.core.errors import Code, DohostError


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def class_name_from_path(path: Path) -> str:
    """`samples/counter/counter.wasm` -> `counter`; anything else becomes a valid name."""
    name = re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-_") or "module"
    return name[:63]


def _split_path(path: str) -> tuple[str, str]:
    if not path.startswith("/"):
        path = "/" + path
    p, _, q = path.partition("?")
    return p, q


data_dir_option = click.option(
    "--data-dir",
    "data_dir",
    default="./dohost-data",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Data directory of the embedded host (created if missing).",
)
durability_option = click.option(
    "--durability",
    type=click.Choice(["fsync", "os"]),
    default="fsync",
    show_default=True,
    help="fsync: commits survive power loss. os: a process crash only (development).",
)


def _log_level(verbose: int) -> int:
    return logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG


def _more_verbose(ctx: click.Context, param: click.Parameter, value: int) -> None:
    """`-v` after a subcommand (`dohost serve -v`) means what it means before it."""
    if value:
        root = logging.getLogger()
        root.setLevel(min(root.level, _log_level(value)))


VERBOSE_HELP = "Log more (-v info, -vv debug); also after the subcommand."


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help=VERBOSE_HELP)
@click.version_option(package_name="dohost", message="dohost %(version)s")
def cli(verbose: int) -> None:
    """dohost: durable objects compiled to WebAssembly, on your machine."""
    logging.basicConfig(
        level=_log_level(verbose), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


@cli.command()
@click.argument("module", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--object", "object_name", required=True, help="Name of the object that receives the event."
)
@data_dir_option
@click.option("-X", "--method", default=None, help="HTTP method (default GET, or POST with -d).")
@click.option(
    "--path", "path", default="/", show_default=True, help="Path (and ?query) inside the object."
)
@click.option(
    "-d",
    "--data",
    "body",
    default=None,
    help="Request body, as in `dohost call`; @FILE reads a file, @- stdin.",
)
@click.option(
    "-H", "--header", "headers", multiple=True, help="Request header 'Name: value' (repeatable)."
)
@click.option(
    "--storage",
    type=click.Choice(["kv", "sqlite"]),
    default="kv",
    show_default=True,
    help="Storage backend of the class: kv (sharded) or sqlite (one database per object, SQL).",
)
@click.option(
    "--class", "class_name", default=None, help="Class name (default: from the file name)."
)
@click.option(
    "--tenant", default="local", show_default=True, help="Tenant the class is deployed for."
)
@durability_option
def run(
    module: Path,
    object_name: str,
    data_dir: Path,
    method: str | None,
    path: str,
    body: str | None,
    headers: tuple[str, ...],
    storage: str,
    class_name: str | None,
    tenant: str,
    durability: str,
) -> None:
    """Deliver one fetch event to an object of MODULE in an embedded host and print the body."""
    from dohost.cli_client import read_body
    from dohost.server.host import Host

    if not object_name:
        _fail(f"{Code.INVALID_NAME.code}: the object name is empty: give --object a name")
    try:
        wasm = module.read_bytes()
    except OSError as e:
        _fail(f"{Code.OS_ERROR.code}: cannot read {module}: {e.strerror}")
    raw = read_body(body) or b""
    hdrs = []
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            _fail(f"bad header {h!r}: use 'Name: value'", 2)
        hdrs.append((name.strip().lower(), value.strip()))
    p, q = _split_path(path)
    req = Request((method or ("POST" if body is not None else "GET")).upper(), p, q, hdrs, raw)
    cname = class_name or class_name_from_path(module)

    async def go() -> int:
        async with Host(data_dir, durability=durability) as host:
            await host.deploy(tenant, cname, wasm, storage)
            resp = await host.fetch(tenant, cname, object_name, req)
        sys.stdout.buffer.write(resp.body)
        if resp.body and not resp.body.endswith(b"\n") and sys.stdout.isatty():
            sys.stdout.buffer.write(b"\n")
        sys.stdout.flush()
        if resp.status >= 400:
            click.echo(f"error: the object answered {resp.status}", err=True)
            return 1
        return 0

    sys.exit(trio.run(go))


def _register_commands() -> None:
    from dohost import cli_dev, cli_inspect
    from dohost.cli_client import register
    from dohost.cli_replica import restore
    from dohost.cli_serve import serve

    cli.add_command(serve)
    cli.add_command(restore)
    register(cli)
    cli_dev.register(cli)
    cli_inspect.register(cli)
    for path, cmd in _walk(cli, ()):
        if path:
            cmd.short_help = SUMMARIES.get(" ".join(path), cmd.short_help)
            cmd.params.append(
                click.Option(
                    ["-v", "--verbose"],
                    count=True,
                    expose_value=False,
                    callback=_more_verbose,
                    help=VERBOSE_HELP,
                )
            )


# What `dohost --help` (and a group's --help) lists: one line each, whole at 80 columns.
SUMMARIES = {
    "alarms": "List your pending alarms.",
    "build": "Build a project into build/NAME.wasm.",
    "call": "Send a request to an object and print its body.",
    "class": "Versions, rollback, rename and deletion of a class.",
    "class rename": "Rename a class, keeping its objects and ids.",
    "class rollback": "Deploy an earlier version again.",
    "dev": "Serve a project; rebuild and redeploy on every save.",
    "id": "Print a new unique object id, or an object's id.",
    "init": "Create a project (C, Zig, Rust or AssemblyScript).",
    "restore": "Rebuild a data set from its replica.",
    "restore-object": "Restore an object to a past time, or fork it.",
    "rm": "Delete an object's storage and alarm (asks first).",
    "run": "Deliver one event to an object in an embedded host.",
    "sdk": "Print where the guest SDK of a language is.",
    "serve": "Serve the HTTP API for many tenants.",
    "sql": "Run a read-only SQL query on an object.",
    "storage": "Show an object's stored keys, values and tables.",
    "tail": "Follow a server's events and guest log lines.",
    "tenant quotas": "Show or change a tenant's quotas.",
    "tenant rm": "Delete a tenant and all its data (asks first).",
    "tenant token": "Give a tenant a new token.",
    "token": "Mint, list, rotate and revoke scoped tokens.",
    "token rotate": "Give a scoped token a new secret.",
}


def _walk(
    cmd: click.Command, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _walk(sub, (*path, name))


_register_commands()


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except SystemExit:
        raise
    except BaseException as e:
        _fail(describe_failure(e))


def describe_failure(e: BaseException) -> str:
    """`code: message` for anything that ended a command. A DohostError (also inside a
    trio exception group) says it itself; an OS error names its file and what failed;
    only a real bug is `internal`, logged with its traceback at -vv."""
    leaf = _first_leaf(e)
    if isinstance(leaf, DohostError):
        return f"{leaf.code.code}: {leaf.message}"
    if isinstance(leaf, OSError) and leaf.strerror:
        where = f"{leaf.filename}: " if leaf.filename else ""
        return f"{Code.OS_ERROR.code}: {where}{leaf.strerror}"
    logging.getLogger("dohost").debug("unexpected error", exc_info=e)
    return f"{Code.INTERNAL.code}: {type(leaf).__name__}: {leaf} (a bug: please report it)"


def _first_leaf(e: BaseException) -> BaseException:
    """The DohostError inside nested exception groups if there is one, else the first."""
    if not isinstance(e, BaseExceptionGroup):
        return e
    leaves = [_first_leaf(x) for x in e.exceptions]
    for x in leaves:
        if isinstance(x, DohostError):
            return x
    return leaves[0]


if __name__ == "__main__":
    main()

"""The developer's loop on the command line: `init`, `build`, `sdk`, `dev` and `tail`.

dohost init NAME --lang c|zig|rust|assemblyscript   a project outside any checkout
dohost build [DIR]                                  build/NAME.wasm, once
dohost dev [DIR]                                    watch, rebuild, redeploy, serve, log
dohost sdk LANG                                     where the packaged SDK is
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dohost.cli_client import fail, token_option, url_option
from dohost.dev.project import LANGS


@click.command()
@click.argument("name")
@click.option(
    "--lang",
    type=click.Choice(LANGS),
    required=True,
    help="The object's language; its SDK comes with dohost.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to create the project (default: ./NAME).",
)
def init(name: str, lang: str, directory: Path | None) -> None:
    """Create a project NAME: a counter-like object, dohost.toml, test.sh."""
    from dohost.dev.project import init as make

    root = directory if directory is not None else Path(name)
    project = make(root, name, lang)
    click.echo(f"created {lang} project {name} in {root}/ ({project.main.relative_to(root)})")
    click.echo(f"next: cd {root} && dohost dev    (or ./test.sh to build and check it)")


@click.command()
@click.argument(
    "directory", default=".", type=click.Path(file_okay=False, path_type=Path), metavar="[DIR]"
)
def build(directory: Path) -> None:
    """Build the project in DIR (default: here) into build/NAME.wasm."""
    from dohost.dev.project import load
    from dohost.dev.toolchains import build as run_build

    project = load(directory)
    result = run_build(project)
    if not result.ok:
        click.echo(result.failure_block(), err=True)
        fail(f"build_failed: {project.name} did not build (the compiler's words are above)")
    if result.output:
        click.echo(result.output, err=True)  # warnings
    size = project.wasm.stat().st_size
    click.echo(f"built {project.wasm} ({size:,} B in {result.seconds:.1f} s)")


@click.command()
@click.argument("lang", type=click.Choice(LANGS))
def sdk(lang: str) -> None:
    """Print where the guest SDK of LANG is (it ships with dohost)."""
    from dohost.dev.project import sdk_root

    click.echo(str((sdk_root() / lang).resolve()))


@click.command()
@click.argument(
    "directory", default=".", type=click.Path(file_okay=False, path_type=Path), metavar="[DIR]"
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8787,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
def dev(directory: Path, host: str, port: int) -> None:
    """Serve the project in DIR, rebuild and redeploy it on every save (data kept), and
    print each request and guest log line. Like `wrangler dev`."""
    import trio

    from dohost.dev import loop
    from dohost.dev.project import load

    project = load(directory.resolve())

    def say(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    trio.run(loop.run, project, host, port, say)


@click.command()
@click.argument("class_name", metavar="[CLASS]", required=False)
@click.argument("obj", metavar="[OBJECT]", required=False)
@click.option(
    "--status",
    default=None,
    metavar="ok|error|CODE",
    help="Only events with this outcome: ok (< 400), error (>= 400) or one HTTP status.",
)
@click.option("--no-logs", is_flag=True, help="Events only, not the guest log lines.")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line.")
@url_option
@token_option
def tail(
    class_name: str | None,
    obj: str | None,
    status: str | None,
    no_logs: bool,
    as_json: bool,
    url: str,
    token: str | None,
) -> None:
    """Follow a running server's events and guest log lines for your tenant (optionally
    of one CLASS, one OBJECT by name or id). Like `wrangler tail`. Ctrl-C stops."""
    import json

    import httpx

    from dohost.server.tail import TailRecord

    if not token:
        fail("unauthorized: no tenant token: pass --token or set DOHOST_TOKEN")
    params = {"class": class_name or "", "object": obj or "", "status": status or ""}
    if no_logs:
        params["logs"] = "0"
    headers = {"authorization": f"Bearer {token}"}
    timeout = httpx.Timeout(10.0, read=60.0)  # the server sends a heartbeat every 15 s
    try:
        with (
            httpx.Client(timeout=timeout) as http,
            http.stream("GET", url.rstrip("/") + "/v1/tail", params=params, headers=headers) as r,
        ):
            if r.status_code != 200:
                r.read()
                fail(_error_text(r))
            click.echo(f"following {url} (Ctrl-C stops)", err=True)
            for line in r.iter_lines():
                if not line.strip():
                    continue  # heartbeat
                record = json.loads(line)
                click.echo(line if as_json else TailRecord.from_json(record).line())
    except KeyboardInterrupt:
        return
    except httpx.HTTPError as e:
        fail(f"cannot_reach: cannot reach {url} ({e or type(e).__name__}): is the server running?")


def _error_text(r: object) -> str:
    import httpx

    assert isinstance(r, httpx.Response)
    try:
        err = r.json()["error"]
        return f"{err['code']}: {err['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {r.status_code}"


def register(group: click.Group) -> None:
    for cmd in (init, build, sdk, dev, tail):
        group.add_command(cmd)

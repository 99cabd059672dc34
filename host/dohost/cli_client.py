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
import json
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
ERROR_HEADER = "x-dohost-error"
TIMEOUT_S, CONNECT_TIMEOUT_S = 60.0, 10.0


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@dataclass
class Client:
    url: str
    token: str | None

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        headers: list[tuple[str, str]] | None = None,
        ok: Callable[[httpx.Response], bool] | None = None,
    ) -> httpx.Response:
        """Send a request; any host error or transport failure ends the command."""
        import httpx  # here, not at the top: it costs a third of the CLI's start time

        if not self.token:
            fail("no token: pass --token or set DOHOST_TOKEN")
        hdrs = [("authorization", f"Bearer {self.token}"), *(headers or [])]
        content = body
        if json_body is not None:
            content = json.dumps(json_body).encode()
            hdrs.append(("content-type", "application/json"))
        try:
            timeout = httpx.Timeout(TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
            with httpx.Client(timeout=timeout) as http:
                resp = http.request(
                    method, self.url + path, content=content, params=params, headers=hdrs
                )
        except httpx.HTTPError as e:
            fail(f"cannot reach {self.url}: {e or type(e).__name__}")
        if ok is not None and ok(resp):
            return resp
        if resp.status_code >= 400:
            fail(describe_error(resp))
        return resp

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        return self.request("GET", path, params=params).json()


def describe_error(resp: httpx.Response) -> str:
    """`code: message` from a JSON error body, or the status line."""
    try:
        err = resp.json()["error"]
        return f"{err['code']}: {err['message']}"
    except (ValueError, KeyError, TypeError):
        text = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else ""
        return f"HTTP {resp.status_code}" + (f": {text}" if text else "")


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def object_path(class_name: str, obj: str, by_id: bool) -> str:
    kind = "ids" if by_id else "objects"
    return f"/v1/classes/{quote(class_name)}/{kind}/{quote(obj)}"


def _client(url: str, token: str | None) -> Client:
    return Client(url.rstrip("/"), token)


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
    data = _client(url, token).request("POST", "/v1/tenants", json_body={"name": name}).json()
    click.echo(data["token"])
    click.echo(
        f"created tenant {name}; keep the token above, it is not shown again "
        f"(export DOHOST_TOKEN=...)",
        err=True,
    )


@tenant.command("ls")
@url_option
@admin_token_option
def tenant_ls(url: str, token: str | None) -> None:
    """List tenants with their classes and usage."""
    data = _client(url, token).get_json("/v1/tenants")
    rows = []
    for t in data["tenants"]:
        q, u = t["quotas"], t["usage"]
        rows.append(
            [
                t["name"],
                ", ".join(t["classes"]) or "-",
                f"{u['objects']}/{q['objects']}",
                f"{u['storage_bytes']}/{q['storage_bytes']}",
                f"{q['requests_per_s']:g}",
            ]
        )
    _table(None, ["tenant", "classes", "objects", "storage bytes", "req/s"], rows)


@tenant.command("rm")
@click.argument("name")
@url_option
@admin_token_option
def tenant_rm(name: str, url: str, token: str | None) -> None:
    """Delete tenant NAME with all its classes, objects and data."""
    _client(url, token).request("DELETE", f"/v1/tenants/{quote(name)}")
    click.echo(f"deleted tenant {name}")


# ------------------------------------------------------------------------ classes


@click.command()
@click.argument("class_name", metavar="CLASS")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--storage", type=click.Choice(["kv", "sqlite"]), default="kv", show_default=True)
@url_option
@token_option
def deploy(class_name: str, file: Path, storage: str, url: str, token: str | None) -> None:
    """Deploy FILE.wasm as the next version of CLASS."""
    try:
        wasm = file.read_bytes()
    except OSError as e:
        fail(f"cannot read {file}: {e.strerror}")
    resp = _client(url, token).request(
        "PUT",
        f"/v1/classes/{quote(class_name)}",
        body=wasm,
        params={"storage": storage},
        headers=[("content-type", "application/wasm")],
    )
    d = resp.json()
    what = "deployed" if resp.status_code == 201 else "unchanged:"
    click.echo(
        f"{what} {d['class']} version {d['version']} ({d['storage']}, sha256 {d['sha256'][:16]})"
    )


@click.command()
@url_option
@token_option
def classes(url: str, token: str | None) -> None:
    """List the deployed classes."""
    data = _client(url, token).get_json("/v1/classes")
    rows = [
        [c["class"], str(c["version"]), c["storage"], str(c["size"]), c["sha256"][:16]]
        for c in data["classes"]
    ]
    _table(None, ["class", "version", "storage", "bytes", "sha256"], rows)


# ------------------------------------------------------------------------ objects


def _body(data: str | None) -> bytes | None:
    if data is None:
        return None
    if data == "@-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_bytes()
        except OSError as e:
            fail(f"cannot read {data[1:]}: {e.strerror}")
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
    body = _body(data)
    p, _, q = path.partition("?")
    target = object_path(class_name, obj, by_id) + (p if p.startswith("/") else "/" + p)
    if q:
        target += "?" + q
    verb = (method or ("POST" if body is not None else "GET")).upper()
    resp = _client(url, token).request(
        verb, target, body=body, headers=hdrs, ok=lambda r: ERROR_HEADER not in r.headers
    )
    out = resp.content
    sys.stdout.buffer.write(out)
    if out and not out.endswith(b"\n") and sys.stdout.isatty():
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    if resp.status_code >= 400:
        fail(f"the object answered {resp.status_code}")


@click.command()
@click.argument("class_name", metavar="CLASS")
@url_option
@token_option
def objects(class_name: str, url: str, token: str | None) -> None:
    """List the objects of CLASS that have stored something."""
    client = _client(url, token)
    rows = []
    params: dict[str, str] = {"limit": "1000"}
    while True:
        data = client.get_json(f"/v1/classes/{quote(class_name)}/objects", params)
        for o in data["objects"]:
            rows.append([o["id"], o["name"] if o["name"] is not None else "-", str(o["bytes"])])
        if data["next"] is None:
            break
        params["after"] = data["next"]
    _table(None, ["id", "name", "bytes"], rows)


@click.command()
@click.argument("class_name", metavar="CLASS")
@click.argument("obj", metavar="OBJECT")
@id_option
@url_option
@token_option
def storage(class_name: str, obj: str, by_id: bool, url: str, token: str | None) -> None:
    """Show the stored keys and values of OBJECT (read-only)."""
    client = _client(url, token)
    rows = []
    params: dict[str, str] = {"limit": "1000"}
    while True:
        data = client.get_json(object_path(class_name, obj, by_id) + "/storage", params)
        for e in data["entries"]:
            rows.append([_shown(base64.b64decode(e["key"])), _shown(base64.b64decode(e["value"]))])
        if data["next"] is None:
            break
        params["cursor"] = data["next"]
    _table(None, ["key", "value"], rows)


@click.command("rm")
@click.argument("class_name", metavar="CLASS")
@click.argument("obj", metavar="OBJECT")
@id_option
@url_option
@token_option
def rm(class_name: str, obj: str, by_id: bool, url: str, token: str | None) -> None:
    """Delete OBJECT of CLASS: its storage and its activation."""
    d = _client(url, token).request("DELETE", object_path(class_name, obj, by_id)).json()
    click.echo(f"deleted {class_name} object {obj} ({d['id'][:16]}…)")


def register(group: click.Group) -> None:
    for cmd in (tenant, deploy, classes, call, objects, storage, rm):
        group.add_command(cmd)

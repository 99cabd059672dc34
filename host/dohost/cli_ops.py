"""The CLI's operator commands: scoped tokens, a tenant's token and quotas, object ids.

    dohost token create [--class C]... [--objects-only] [--read-only] [--expires-in 7d]
    dohost token ls | rotate ID | revoke ID            (the tenant's own token)
    dohost tenant token NAME                           (admin: a new tenant token)
    dohost tenant quotas NAME [KEY=VALUE|KEY=default]... (admin: show or change)
    dohost id CLASS [NAME]                             (a new unique id, or NAME's id)
    dohost class versions CLASS | rollback CLASS VERSION [--deferred] | rename OLD NEW
    dohost class rm CLASS [--yes]                      (asks to type the class name)

Secrets go to stdout alone (one line, for `$(...)`); what was done goes to stderr.
"""

from __future__ import annotations

import datetime
import json
import re

import click

from dohost.cli_client import (
    _table,
    admin_token_option,
    confirm,
    run,
    token_option,
    url_option,
)

DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90`, `90s`, `15m`, `12h`, `7d` -> seconds."""
    m = DURATION.match(text.strip())
    if m is None or float(m.group(1)) <= 0:
        raise click.BadParameter(f"{text!r}: use a positive number with s, m, h or d (e.g. 7d)")
    return float(m.group(1)) * UNIT_S[m.group(2)]


def _when(ms: int | None) -> str:
    if ms is None:
        return "never"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------ scoped tokens


@click.group()
def token() -> None:
    """Mint, list, rotate and revoke scoped tokens (with the tenant's own token)."""


@token.command("create")
@click.option(
    "--class", "classes", multiple=True, help="Limit to this class (repeatable; default: all)."
)
@click.option(
    "--objects-only", is_flag=True, help="Only object requests (no class or admin routes)."
)
@click.option("--read-only", is_flag=True, help="Only GET and HEAD (no WebSockets).")
@click.option("--expires-in", default=None, help="Lifetime: 90s, 15m, 12h, 7d (default: none).")
@click.option("--label", default="", help="A note shown by `token ls`.")
@url_option
@token_option
def token_create(
    classes: tuple[str, ...],
    objects_only: bool,
    read_only: bool,
    expires_in: str | None,
    label: str,
    url: str,
    token: str | None,
) -> None:
    """Mint a scoped token and print it (shown only this once)."""
    seconds = parse_duration(expires_in) if expires_in is not None else None
    info, secret = run(
        url,
        token,
        lambda c: c.mint_token(
            classes=list(classes) or None,
            objects_only=objects_only,
            read_only=read_only,
            expires_in_s=seconds,
            label=label,
        ),
    )
    click.echo(secret)
    click.echo(f"created token {info.id} (expires {_when(info.expires_ms)})", err=True)


@token.command("ls")
@url_option
@token_option
def token_ls(url: str, token: str | None) -> None:
    """List the tenant's scoped tokens (ids and scopes; never secrets)."""
    rows = [
        [
            t.id,
            ", ".join(t.classes) if t.classes is not None else "(all)",
            "objects" if t.objects_only else "all routes",
            "read-only" if t.read_only else "read-write",
            _when(t.expires_ms),
            t.label,
        ]
        for t in run(url, token, lambda c: c.list_tokens())
    ]
    _table(None, ["id", "classes", "routes", "methods", "expires (UTC)", "label"], rows)


@token.command("rotate")
@click.argument("token_id", metavar="ID")
@url_option
@token_option
def token_rotate(token_id: str, url: str, token: str | None) -> None:
    """Give token ID a new secret (same scope) and print it; the old one stops working."""
    info, secret = run(url, token, lambda c: c.rotate_token(token_id))
    click.echo(secret)
    click.echo(f"rotated token {info.id}; the old secret no longer works", err=True)


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@url_option
@token_option
def token_revoke(token_id: str, url: str, token: str | None) -> None:
    """Revoke token ID at once."""
    run(url, token, lambda c: c.revoke_token(token_id))
    click.echo(f"revoked token {token_id}")


# ------------------------------------------------------------------ tenant (admin)


@click.command("token")
@click.argument("name")
@url_option
@admin_token_option
def tenant_token(name: str, url: str, token: str | None) -> None:
    """Give tenant NAME a new token and print it; the old one stops working at once."""
    secret = run(url, token, lambda c: c.rotate_tenant_token(name), admin=True)
    click.echo(secret)
    click.echo(f"rotated the token of tenant {name}; the old one no longer works", err=True)


def _quota_value(text: str) -> object:
    if text in ("default", "null", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a number (or 'default')") from None


@click.command("quotas")
@click.argument("name")
@click.argument("changes", nargs=-1, metavar="[KEY=VALUE|KEY=default]...")
@url_option
@admin_token_option
def tenant_quotas(name: str, changes: tuple[str, ...], url: str, token: str | None) -> None:
    """Show tenant NAME's quotas, or change some (KEY=default: back to the server's)."""
    patch: dict[str, object] = {}
    for ch in changes:
        key, sep, value = ch.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{ch!r}: use KEY=VALUE", param_hint="CHANGES")
        patch[key.strip()] = _quota_value(value.strip())
    t = run(
        url, token, lambda c: c.set_quotas(name, patch) if patch else c.get_tenant(name), admin=True
    )
    rows = [
        [k, json.dumps(v), "set" if k in t.overrides else "default"]
        for k, v in sorted(t.quotas.items())
    ]
    _table(f"tenant {t.name}", ["quota", "value", "from"], rows)


# ------------------------------------------------------------------ ids


@click.command("id")
@click.argument("class_name", metavar="CLASS")
@click.argument("name", required=False)
@url_option
@token_option
def object_id(class_name: str, name: str | None, url: str, token: str | None) -> None:
    """Print a new unique object id of CLASS, or the id of the object NAME."""
    if name is None:
        click.echo(run(url, token, lambda c: c.new_id(class_name)))
    else:
        click.echo(run(url, token, lambda c: c.get_object(class_name, name)).id)


# ------------------------------------------------------------------ class lifecycle


@click.group("class")
def class_group() -> None:
    """Versions, rollback, rename and deletion of a class (docs/http-api.md)."""


@class_group.command("versions")
@click.argument("class_name", metavar="CLASS")
@url_option
@token_option
def class_versions(class_name: str, url: str, token: str | None) -> None:
    """List the recorded versions of CLASS (* marks the current one)."""
    rows = [
        [("* " if v.current else "  ") + str(v.version), v.sha256[:16], _when(v.created_ms)]
        for v in run(url, token, lambda c: c.class_versions(class_name))
    ]
    _table(None, ["version", "sha256", "deployed (UTC)"], rows)


@class_group.command("rollback")
@click.argument("class_name", metavar="CLASS")
@click.argument("version", type=int)
@click.option("--deferred", is_flag=True, help="Objects switch at their next activation.")
@click.option("--max-delay", type=click.FloatRange(min=0), default=None, help="With --deferred.")
@url_option
@token_option
def class_rollback(
    class_name: str,
    version: int,
    deferred: bool,
    max_delay: float | None,
    url: str,
    token: str | None,
) -> None:
    """Deploy the module of VERSION again, as the next version of CLASS."""
    update = "deferred" if deferred else "immediate"
    i = run(
        url,
        token,
        lambda c: c.rollback(class_name, version, update=update, max_delay_s=max_delay),
    )
    click.echo(f"rolled {i.name} back to version {version}'s module: now version {i.version}")


@class_group.command("rename")
@click.argument("class_name", metavar="CLASS")
@click.argument("new_name", metavar="NEW")
@url_option
@token_option
def class_rename(class_name: str, new_name: str, url: str, token: str | None) -> None:
    """Rename CLASS to NEW, keeping its objects, their ids, versions and alarms."""
    i = run(url, token, lambda c: c.rename_class(class_name, new_name))
    click.echo(f"renamed {class_name} to {i.name} (version {i.version})")


@class_group.command("rm")
@click.argument("class_name", metavar="CLASS")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@url_option
@token_option
def class_rm(class_name: str, yes: bool, url: str, token: str | None) -> None:
    """Delete CLASS with every object's storage and alarm (asks first)."""
    confirm("class", class_name, yes)
    n = run(url, token, lambda c: c.delete_class(class_name))
    click.echo(f"deleted class {class_name} and {n} object{'s' if n != 1 else ''}")


@click.group("cluster")
def cluster_group() -> None:
    """Inspect a cluster of `serve --cluster` nodes."""


@cluster_group.command("status")
@url_option
@admin_token_option
@click.option("--json", "as_json", is_flag=True, help="The node's view as JSON.")
def cluster_status(url: str, token: str | None, as_json: bool) -> None:
    """Show a cluster node's members and partitions."""
    st = run(url, token, lambda c: c.cluster_status(), admin=True)
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    title = (
        f"cluster {st['cluster']} seen from node {st['node']}: {st['partitions']} partitions, "
        f"{st['unclaimed']} unclaimed; this node serves {st.get('serving', 0)}, its lease "
        f"holds {st['lease_valid_s']:.1f} s more"
    )
    rows = [
        [m["name"], m["advertise"], m.get("location") or "-", str(m["partitions"])]
        for m in st["members"]
    ]
    _table(title, ["NODE", "ADVERTISE", "LOCATION", "PARTITIONS"], rows)


def register(group: click.Group, tenant_group: click.Group) -> None:
    group.add_command(cluster_group)
    group.add_command(token)
    group.add_command(object_id)
    group.add_command(class_group)
    tenant_group.add_command(tenant_token)
    tenant_group.add_command(tenant_quotas)

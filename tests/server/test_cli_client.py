"""The CLI client against a real `dohost serve`, typed as a user would:
tenant create -> deploy -> call -> objects -> storage -> rm (and every failure as one
line on stderr with a non-zero exit)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
COUNTER = ROOT / "samples" / "counter" / "counter.wasm"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path_factory.mktemp("cli") / "data")
    yield s
    assert s.stop() == 0, s.stderr()


def dohost(
    *args: str, env: dict[str, str], stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DOHOST_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "dohost.cli", *args],
        capture_output=True,
        text=True,
        env=full,
        input=stdin.decode() if stdin is not None else None,
        timeout=120,
    )


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_round_trip_as_a_user_types_it(server: ServerProcess) -> None:
    admin = {"DOHOST_URL": server.url, "DOHOST_TOKEN": server.admin_token}
    token = ok(dohost("tenant", "create", "acme", env=admin)).strip()
    assert len(token) >= 40 and "\n" not in token  # stdout is the token alone
    listed = ok(dohost("tenant", "ls", env=admin))
    assert "acme" in listed

    me = {"DOHOST_URL": server.url, "DOHOST_TOKEN": token}
    out = ok(dohost("deploy", "counter", str(COUNTER), env=me))
    assert out.startswith("deployed counter version 1 (kv")
    assert ok(dohost("call", "counter", "room-1", "/incr", "-X", "POST", env=me)) == "1"
    assert ok(dohost("call", "counter", "room-1", "/incr", "-d", "41", env=me)) == "42"
    assert ok(dohost("call", "counter", "room 2", "incr", "-d", "@-", env=me, stdin=b"5")) == "5"
    assert ok(dohost("call", "counter", "room-1", env=me)) == "42"

    objects = ok(dohost("objects", "counter", env=me))
    assert "room-1" in objects and "room 2" in objects
    ids = [w for w in objects.split() if len(w) == 64]
    assert len(ids) == 2  # whole ids, even when piped
    storage = ok(dohost("storage", "counter", "room-1", env=me))
    assert "count" in storage and "42" in storage
    by_id = [i for i in ids if i in objects.split("room-1")[0].splitlines()[-1]]
    assert "42" in ok(dohost("storage", "counter", by_id[0], "--id", env=me))
    assert ok(dohost("call", "counter", by_id[0], "--id", env=me)) == "42"
    assert "counter" in ok(dohost("classes", env=me))

    assert ok(dohost("rm", "counter", "room-1", "--yes", env=me)).startswith(
        "deleted counter object room-1"
    )
    objects = ok(dohost("objects", "counter", env=me))
    assert "room-1" not in objects and "room 2" in objects
    assert ok(dohost("call", "counter", "room-1", env=me)) == "0"

    assert ok(dohost("tenant", "rm", "acme", "--yes", env=admin)) == "deleted tenant acme\n"
    err = one_line_error(dohost("objects", "counter", env=me))
    assert err == "error: unauthorized: unknown token"


def test_flags_override_the_environment_and_failures_are_one_line(
    server: ServerProcess,
) -> None:
    admin = ["--url", server.url, "--token", server.admin_token]
    token = ok(dohost("tenant", "create", "beta", *admin, env={})).strip()
    me = ["--url", server.url, "--token", token]
    ok(dohost("deploy", "counter", str(COUNTER), *me, env={}))
    assert ok(dohost("deploy", "counter", str(COUNTER), *me, env={})).startswith("unchanged:")

    # The object's own error status: its body on stdout, one line on stderr, exit 1.
    r = dohost("call", "counter", "x", "/nope", *me, env={})
    assert (r.returncode, r.stdout, r.stderr) == (
        1,
        "not found\n",
        "error: the object answered 404\n",
    )
    cases = [
        (["call", "nothere", "x", *me], "error: unknown_class: no class named 'nothere' is deployed"),
        (["call", "counter", "0" * 64, "--id", *me], "error: invalid_id: no such object id in this class"),
        (["deploy", "c", str(COUNTER / "missing"), *me], "error: os_error: cannot read"),
        (["deploy", "Bad", str(COUNTER), *me], "error: invalid_name:"),
        (["objects", "counter", "--url", server.url], "error: unauthorized: no tenant token: pass --token or set DOHOST_TOKEN"),
        (["objects", "counter", "--url", "http://127.0.0.1:1", "--token", "x"], "error: cannot_reach: cannot reach http://127.0.0.1:1"),
        (["tenant", "ls", *me], "error: unauthorized: this route needs the admin token"),
        (["tenant", "create", "beta", *admin], "error: already_exists: tenant 'beta' already exists"),
        (["tenant", "rm", "nobody", "--yes", *admin], "error: unknown_tenant: no tenant named 'nobody'"),
    ]  # fmt: skip
    for args, start in cases:
        line = one_line_error(dohost(*args, env={}))
        assert line.startswith(start), (args, line)
    # A usage error is click's: exit 2.
    assert dohost("call", env={}).returncode == 2


def cells(table: str) -> list[list[str]]:
    return [line.replace("│", " ").split() for line in table.splitlines()]


def test_tokens_quotas_and_ids_from_the_cli(server: ServerProcess) -> None:
    admin = {"DOHOST_URL": server.url, "DOHOST_TOKEN": server.admin_token}
    token = ok(dohost("tenant", "create", "ops", env=admin)).strip()
    me = {"DOHOST_URL": server.url, "DOHOST_TOKEN": token}
    ok(dohost("deploy", "counter", str(COUNTER), env=me))

    # A scoped token: the secret alone on stdout; it works inside its scope only.
    r = dohost(
        "token", "create", "--class", "counter", "--objects-only", "--expires-in", "1d",
        "--label", "page", env=me,
    )  # fmt: skip
    scoped = ok(r).strip()
    assert "\n" not in scoped and r.stderr.startswith("created token tok_")
    tok_id = r.stderr.split()[2]
    link = {"DOHOST_URL": server.url, "DOHOST_TOKEN": scoped}
    assert ok(dohost("call", "counter", "r", "/incr", "-X", "POST", env=link)) == "1"
    assert one_line_error(dohost("objects", "counter", env=link)).startswith("error: forbidden:")
    listed = ok(dohost("token", "ls", env=me))
    assert tok_id in listed and "counter" in listed and "page" in listed and scoped not in listed

    rotated = ok(dohost("token", "rotate", tok_id, env=me)).strip()
    assert rotated != scoped
    err = one_line_error(dohost("call", "counter", "r", env=link))
    assert err == "error: unauthorized: unknown token"
    link["DOHOST_TOKEN"] = rotated
    assert ok(dohost("call", "counter", "r", env=link)) == "1"
    assert ok(dohost("token", "revoke", tok_id, env=me)) == f"revoked token {tok_id}\n"
    assert one_line_error(dohost("call", "counter", "r", env=link)).startswith(
        "error: unauthorized"
    )

    # Ids: a new unique one, and the id of a name (the one `objects` lists).
    new = ok(dohost("id", "counter", env=me)).strip()
    assert len(new) == 64 and new != ok(dohost("id", "counter", env=me)).strip()
    assert ok(dohost("id", "counter", "r", env=me)).strip() in ok(
        dohost("objects", "counter", env=me)
    )

    # Quotas: shown, changed, back to the default.
    assert "objects" in ok(dohost("tenant", "quotas", "ops", env=admin))
    out = ok(dohost("tenant", "quotas", "ops", "objects=7", "requests_per_s=2.5", env=admin))
    assert ["objects", "7", "set"] in cells(out)
    out = ok(dohost("tenant", "quotas", "ops", "objects=default", env=admin))
    assert any(r[:1] == ["objects"] and r[2:] == ["default"] for r in cells(out))
    bad = one_line_error(dohost("tenant", "quotas", "ops", "nosuch=1", env=admin))
    assert bad.startswith("error: invalid_argument:") and "nosuch" in bad
    r = dohost("tenant", "quotas", "ops", "objects=many", env=admin)
    assert r.returncode == 2 and "not a number" in r.stderr
    r = dohost("token", "create", "--expires-in", "soon", env=me)
    assert r.returncode == 2 and "7d" in r.stderr

    # The tenant's own token, rotated by the admin: the old one stops at once.
    fresh = ok(dohost("tenant", "token", "ops", env=admin)).strip()
    assert one_line_error(dohost("classes", env=me)) == "error: unauthorized: unknown token"
    assert "counter" in ok(dohost("classes", env={**me, "DOHOST_TOKEN": fresh}))


def test_class_lifecycle_from_the_cli(server: ServerProcess, tmp_path: Path) -> None:
    admin = {"DOHOST_URL": server.url, "DOHOST_TOKEN": server.admin_token}
    me = {
        "DOHOST_URL": server.url,
        "DOHOST_TOKEN": ok(dohost("tenant", "create", "life", env=admin)).strip(),
    }
    v2 = tmp_path / "v2.wasm"
    v2.write_bytes(COUNTER.read_bytes() + b"\0\x07\x06custom")  # same code, new bytes
    ok(dohost("deploy", "counter", str(COUNTER), env=me))
    out = ok(dohost("deploy", "counter", str(v2), "--deferred", "--max-delay", "5", env=me))
    assert out.startswith("deployed counter version 2")
    assert ok(dohost("call", "counter", "r", "/incr", "-X", "POST", env=me)) == "1"
    versions = cells(ok(dohost("class", "versions", "counter", env=me)))
    assert ["*", "2"] in [r[:2] for r in versions] and ["1"] in [r[:1] for r in versions]
    out = ok(dohost("class", "rollback", "counter", "1", env=me))
    assert out == "rolled counter back to version 1's module: now version 3\n"
    err = one_line_error(dohost("class", "rollback", "counter", "9", env=me))
    assert err.startswith("error: unknown_version: class 'counter' has no version 9")
    ok(dohost("deploy", "other", str(COUNTER), env=me))
    err = one_line_error(dohost("class", "rename", "counter", "other", env=me))
    assert err == "error: already_exists: a class named 'other' already exists"
    assert (
        ok(dohost("class", "rename", "counter", "tally", env=me))
        == "renamed counter to tally (version 3)\n"
    )
    assert ok(dohost("call", "tally", "r", env=me)) == "1"
    r = dohost("class", "rm", "tally", env=me)  # no terminal to ask on, no --yes: refused
    assert r.returncode == 2 and "--yes" in r.stderr
    assert ok(dohost("call", "tally", "r", env=me)) == "1"
    assert (
        ok(dohost("class", "rm", "tally", "--yes", env=me)) == "deleted class tally and 1 object\n"
    )
    assert one_line_error(dohost("call", "tally", "r", env=me)).startswith("error: unknown_class")

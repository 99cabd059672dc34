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

    assert ok(dohost("rm", "counter", "room-1", env=me)).startswith("deleted counter object room-1")
    objects = ok(dohost("objects", "counter", env=me))
    assert "room-1" not in objects and "room 2" in objects
    assert ok(dohost("call", "counter", "room-1", env=me)) == "0"

    assert ok(dohost("tenant", "rm", "acme", env=admin)) == "deleted tenant acme\n"
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
        (["tenant", "rm", "nobody", *admin], "error: unknown_tenant: no tenant named 'nobody'"),
    ]  # fmt: skip
    for args, start in cases:
        line = one_line_error(dohost(*args, env={}))
        assert line.startswith(start), (args, line)
    # A usage error is click's: exit 2.
    assert dohost("call", env={}).returncode == 2

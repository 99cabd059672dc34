"""The CLI's small promises, each checked as a user meets it: help text for every option
and whole summaries, `--version`, `-v` after the subcommand, `--json` on listings,
readable numbers, `--yes` on destructive commands, `rm` of an object that never stored
anything, and a did-you-mean for a mistyped class."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from api_helpers import ServerProcess

from dohost.cli import _walk, cli

ROOT = Path(__file__).resolve().parents[2]
COUNTER = ROOT / "samples" / "counter" / "counter.wasm"
KVTEST = ROOT / "tests" / "fixtures" / "build" / "kvtest.wasm"


def dohost(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DOHOST_")}
    full.update(env or {}, COLUMNS="80")
    return subprocess.run(
        [sys.executable, "-m", "dohost.cli", *args],
        capture_output=True,
        text=True,
        env=full,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path_factory.mktemp("polish") / "data")
    yield s
    assert s.stop() == 0, s.stderr()


def test_every_option_has_help_and_every_summary_is_whole() -> None:
    missing = [
        (" ".join(path), p.opts)
        for path, cmd in _walk(cli, ())
        for p in cmd.params
        if isinstance(p, click.Option) and not p.hidden and not p.help
    ]
    assert missing == []
    groups = [" ".join(path) for path, cmd in _walk(cli, ()) if isinstance(cmd, click.Group)]
    for group in groups:
        out = dohost(*group.split(), "--help").stdout
        commands = out.split("Commands:")[1]
        assert "..." not in commands, (group, commands)


def test_version_and_verbose_after_the_subcommand(tmp_path: Path) -> None:
    r = dohost("--version")
    assert r.returncode == 0 and r.stdout.startswith("dohost 0.")
    # `-v` after the subcommand: the guest's log line shows, named by the object.
    r = dohost(
        "run", str(KVTEST), "--object", "desk", "--data-dir", str(tmp_path), "--path", "/log",
        "-d", "hello from the guest", "-v",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "[local/kvtest/desk] hello from the guest" in r.stderr
    r = dohost("run", str(KVTEST), "--object", "desk", "--data-dir", str(tmp_path), "--path", "/")
    assert "hello from the guest" not in r.stderr  # quiet without -v


def test_listings_json_numbers_confirmations_and_did_you_mean(server: ServerProcess) -> None:
    admin = {"DOHOST_URL": server.url, "DOHOST_TOKEN": server.admin_token}
    token = dohost("tenant", "create", "polish", env=admin).stdout.strip()
    me = {"DOHOST_URL": server.url, "DOHOST_TOKEN": token}
    assert dohost("deploy", "counter", str(COUNTER), env=me).returncode == 0
    assert dohost("call", "counter", "room-1", "/incr", "-X", "POST", env=me).stdout == "1"

    classes = json.loads(dohost("classes", "--json", env=me).stdout)["classes"]
    assert [(c["name"], c["version"], c["storage"]) for c in classes] == [("counter", 1, "kv")]
    objects = json.loads(dohost("objects", "counter", "--json", env=me).stdout)["objects"]
    assert [o["name"] for o in objects] == ["room-1"]
    tenants = json.loads(dohost("tenant", "ls", "--json", env=admin).stdout)["tenants"]
    assert "polish" in [t["name"] for t in tenants]
    table = dohost("tenant", "ls", env=admin).stdout
    assert "e+0" not in table and "1,000,000" in table and "GiB" in table

    # A mistyped class: the closest name this token can see.
    r = dohost("call", "countr", "room-1", env=me)
    assert r.stderr.strip().endswith("did you mean 'counter'?"), r.stderr
    r = dohost("objects", "zzzz", env=me)
    assert "did you mean" not in r.stderr and "unknown_class" in r.stderr

    # rm: an object that never stored anything is not "deleted".
    r = dohost("rm", "counter", "never-was", "--yes", env=me)
    assert r.returncode == 1 and r.stderr.startswith("error: not_found:"), r.stderr
    assert "has stored nothing" in r.stderr
    # Destructive commands ask; without a terminal they need --yes.
    r = dohost("rm", "counter", "room-1", env=me)
    assert r.returncode == 2 and "--yes" in r.stderr
    assert dohost("call", "counter", "room-1", env=me).stdout == "1"  # still there
    r = dohost("rm", "counter", "room-1", "--yes", env=me)
    assert r.returncode == 0 and r.stdout.startswith("deleted counter object room-1")
    r = dohost("tenant", "rm", "polish", env=admin)
    assert r.returncode == 2 and "--yes" in r.stderr
    assert dohost("classes", env=me).returncode == 0  # the tenant is still there
    assert dohost("tenant", "rm", "polish", "--yes", env=admin).returncode == 0

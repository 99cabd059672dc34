"""`dohost serve --config FILE` (host/dohost/config_file.py): every flag is a key, the
file's values reach the server, flags on the command line win, and an unknown key or a
bad value is one line naming the key."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import click
import httpx
import pytest

from dohost import config_file
from dohost.cli import cli  # noqa: F401  (registers every command, -v included)
from dohost.cli_serve import serve

# A valid value for every serve flag: the test fails when a flag is added without one,
# which is the reminder to document it in docs/operating.md's example too.
EVERY_KEY = {
    "data": '"DATA"',
    "host": '"127.0.0.1"',
    "port": "0",
    "durability": '"os"',
    "cpu-ms": "5000",
    "quota": "{ objects = 7, requests_per_s = 50.5 }",
    "max-body-bytes": "4096",
    "grace": "5.0",
    "workers": "2",
    "ws-max-message-bytes": "65536",
    "ws_max_connections_per_object": "100",  # underscores work as well as dashes
    "processes": "1",
    "forward-timeout": "10.0",
    "access-log": "true",  # a flag: true or false
    "replica": '"file:///tmp/replica"',
    "replica-endpoint": '"http://127.0.0.1:8333"',
    "replica-region": '"eu-west-3"',
    "replica-access-key": '"AK"',
    "replica-secret-key": '"SK"',
    "replica-sync": '"off"',
    "replica-timeout": "2.5",
    "replica-retention": "7",
    "cluster": '"etcd://127.0.0.1:2379/c"',
    "node": '"n1"',
    "advertise": '"http://127.0.0.1:8081"',
    "location": '"eu"',
    "lease-ttl": "5",
}


def test_every_serve_flag_is_a_config_key(tmp_path: Path) -> None:
    longs = {
        o[2:]
        for p in serve.params
        if isinstance(p, click.Option)
        for o in p.opts
        if o.startswith("--") and o not in ("--config", "--help", "--verbose")
    }
    assert {k.replace("_", "-") for k in EVERY_KEY} == longs
    path = tmp_path / "dohost.toml"
    path.write_text("".join(f"{k} = {v}\n" for k, v in EVERY_KEY.items()))
    with click.Context(serve) as ctx:
        loaded = config_file.load(path, serve, ctx)
    assert set(loaded) == {
        p.name for p in serve.params if p.name not in ("config", "help", "verbose")
    }
    assert loaded["quotas"] == ["objects=7", "requests_per_s=50.5"]
    assert loaded["data_dir"] == Path("DATA") and loaded["port"] == 0
    assert loaded["access_log"] is True


def boolean_flags() -> list[click.Option]:
    return [p for p in serve.params if isinstance(p, click.Option) and p.is_flag]


def test_every_boolean_flag_has_an_off_form() -> None:
    # A flag with no --no- form could be switched on by a config file and never off.
    flags = boolean_flags()
    assert [p.name for p in flags] == ["access_log"]  # the test below covers each
    for p in flags:
        assert p.secondary_opts == [f"--no-{p.opts[0][2:]}"], p.opts


@pytest.mark.parametrize("flag", [p.name for p in boolean_flags()])
@pytest.mark.parametrize("in_file", [True, False])
def test_a_flag_overrides_the_file_both_ways(tmp_path: Path, flag: str, in_file: bool) -> None:
    (opt,) = [p for p in boolean_flags() if p.name == flag]
    cfg = tmp_path / "dohost.toml"
    cfg.write_text(f"{opt.opts[0][2:]} = {str(in_file).lower()}\n")
    # The file alone gives its value; the other form on the command line wins.
    assert serve.make_context("serve", ["--config", str(cfg)]).params[flag] is in_file
    other = opt.secondary_opts[0] if in_file else opt.opts[0]
    for args in (["--config", str(cfg), other], [other, "--config", str(cfg)]):
        assert serve.make_context("serve", args).params[flag] is (not in_file)


def start(args: list[str], cwd: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOHOST_")}
    env["DOHOST_ADMIN_TOKEN"] = "config-test-admin-token"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dohost.cli", "serve", "--processes", "1", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    line: list[bytes] = []
    t = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    t.start()
    t.join(60)
    m = re.search(rb"http://\S+", line[0]) if line else None
    if m is None:
        proc.kill()
        raise AssertionError(proc.communicate()[1].decode())
    return proc, m.group(0).decode()


def test_the_file_configures_the_server_and_flags_win(tmp_path: Path) -> None:
    cfg = tmp_path / "dohost.toml"
    cfg.write_text(
        'data = "srv-data"\nport = 0\ndurability = "os"\nmax_body_bytes = 4096\n'
        "[quota]\nobjects = 7\n"
    )
    proc, url = start(["--config", str(cfg), "--max-body-bytes", "2048"], tmp_path)
    try:
        admin = {"authorization": "Bearer config-test-admin-token"}
        with httpx.Client(base_url=url, headers=admin, timeout=30) as c:
            t = c.post("/v1/tenants", json={"name": "acme"}).json()
            assert t["quotas"]["objects"] == 7  # from the file's [quota]
            r = c.post("/v1/tenants", content=b"x" * 3000)  # over the flag's 2048
            assert r.status_code == 413
        assert (tmp_path / "srv-data" / "system.db").exists()  # `data` from the file
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert b"durability os" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prot = 80\n", "key 'prot': not a serve setting (known: access-log, advertise, cluster,"),
        ('access-log = "yes"\n', "key 'access-log': must be true or false"),
        ('port = "eighty"\n', "key 'port': 'eighty' is not a valid integer"),
        ("port = 70000\n", "key 'port': 70000 is not in the range 0<=x<=65535"),
        ("port = true\n", "key 'port': must be a single integer range value"),
        ('durability = "never"\n', "key 'durability': 'never' is not one of 'fsync', 'os'"),
        ("grace = -1\n", "key 'grace': -1.0 is not in the range x>=0"),
        ("host = [1, 2]\n", "key 'host': must be a single text value"),
        ("quota = 5\n", "key 'quota': must be a table"),
        ('[quota]\nobjects = "many"\n', "key 'quota': --quota 'objects=many': the value must be a number"),
        ("[quota]\nnope = 5\n", "key 'quota': unknown quota 'nope'"),
        ("port = \n", "not valid TOML"),
        (None, "No such file or directory"),
    ],
)  # fmt: skip
def test_a_bad_config_file_is_one_line_naming_the_key(
    tmp_path: Path, text: str | None, expected: str
) -> None:
    cfg = tmp_path / "dohost.toml"
    if text is not None:
        cfg.write_text(text)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dohost.cli",
            "serve",
            "--config",
            str(cfg),
            "--data",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: invalid_config: {cfg}: "), lines[0]
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "d").exists()  # nothing was started or created

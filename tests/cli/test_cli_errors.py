"""The CLI's error paths, walked as a user meets them: every failure is one line that
says what to do, with a stable code, never `internal:` and never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COUNTER = ROOT / "samples" / "counter" / "counter.wasm"


def dohost(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DOHOST_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "dohost.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full,
        cwd=ROOT,
    )


def one_line(r: subprocess.CompletedProcess[str], code: str) -> str:
    """The single stderr line of a failed command, checked for `code` and no internals."""
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith(f"error: {code}: "), line
    assert "internal" not in line and "Traceback" not in r.stderr
    assert "ExceptionGroup" not in line
    return line


@pytest.fixture
def busy_port() -> object:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


def test_serve_on_a_port_in_use_names_the_process_holding_it(
    tmp_path: Path, busy_port: int
) -> None:
    r = dohost("serve", "--data", str(tmp_path / "d"), "--port", str(busy_port))
    line = one_line(r, "address_in_use")
    assert f"port {busy_port} on 127.0.0.1 is already in use by process {os.getpid()}" in line
    assert "--port" in line


@pytest.mark.parametrize("host", ["203.0.113.7", "no-such-host.invalid"])
def test_serve_on_an_address_not_of_this_machine(tmp_path: Path, host: str) -> None:
    line = one_line(dohost("serve", "--data", str(tmp_path / "d"), "--host", host), "cannot_listen")
    assert host in line and "--host 127.0.0.1" in line


def test_a_data_directory_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    r = dohost("serve", "--data", str(f), "--port", "0")  # click's own check: a usage error
    assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr
    line = one_line(
        dohost("run", str(COUNTER), "--object", "a", "--data-dir", str(f)), "data_dir_unusable"
    )
    assert f"{f} is a file" in line
    # A file in the middle of the path.
    line = one_line(dohost("serve", "--data", str(f / "sub"), "--port", "0"), "data_dir_unusable")
    assert "a part of the path is a file" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_data_directory_this_user_cannot_write(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    line = one_line(dohost("serve", "--data", str(ro / "d"), "--port", "0"), "data_dir_unusable")
    assert "Permission denied" in line


def test_client_commands_without_a_server_or_a_token(tmp_path: Path, busy_port: int) -> None:
    # Nothing listening: a closed port.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = s.getsockname()[1]
    s.close()
    url = f"http://127.0.0.1:{closed}"
    line = one_line(dohost("classes", "--url", url, "--token", "t"), "cannot_reach")
    assert url in line and "dohost serve" in line
    line = one_line(dohost("classes", "--url", url), "unauthorized")
    assert "DOHOST_TOKEN" in line
    line = one_line(dohost("tenant", "ls", "--url", url), "unauthorized")
    assert "DOHOST_ADMIN_TOKEN" in line and "admin.token" in line


def test_run_errors(tmp_path: Path) -> None:
    line = one_line(
        dohost("run", str(tmp_path / "nope.wasm"), "--object", "a", "--data-dir", str(tmp_path)),
        "os_error",
    )
    assert "nope.wasm" in line and "No such file" in line
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"hello world")
    line = one_line(
        dohost("run", str(bad), "--object", "a", "--data-dir", str(tmp_path / "d")),
        "invalid_module",
    )
    assert "b'hell'" not in line
    line = one_line(
        dohost("run", str(COUNTER), "--object", "", "--data-dir", str(tmp_path / "d")),
        "invalid_name",
    )
    line = one_line(
        dohost("run", str(COUNTER), "--object", "a", "--data-dir", str(tmp_path / "d"), "-d", "@"),
        "os_error",
    )


def test_alarms_of_a_directory_without_an_index(tmp_path: Path) -> None:
    line = one_line(dohost("alarms", "--data-dir", str(tmp_path)), "not_found")
    assert str(tmp_path) in line

"""`dohost run`: one event in an embedded host, as a user types it. `--data-dir` is the
data directory and `-d/--data` the request body, as in `dohost call`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COUNTER = ROOT / "samples" / "counter" / "counter.wasm"


def dohost(
    *args: str, stdin: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dohost.cli", *args],
        capture_output=True,
        text=True,
        input=stdin.decode() if stdin is not None else None,
        cwd=cwd,
        timeout=120,
    )


def test_run_increments_and_persists(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    r = dohost(
        "run", str(COUNTER), "--object", "a", "--data-dir", data, "-X", "POST", "--path", "/incr"
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, "1", "")
    r = dohost(
        "run", str(COUNTER), "--object", "a", "--data-dir", data, "--path", "/incr", "-d", "41"
    )
    assert (r.returncode, r.stdout) == (0, "42")  # -d implies POST
    r = dohost("run", str(COUNTER), "--object", "a", "--data-dir", data)
    assert (r.returncode, r.stdout) == (0, "42")
    r = dohost(
        "run",
        str(COUNTER),
        "--object",
        "b",
        "--data-dir",
        data,
        "--storage",
        "sqlite",
        "--class",
        "c2",
    )
    assert (r.returncode, r.stdout) == (0, "0")


def test_default_data_dir_is_in_the_working_directory(tmp_path: Path) -> None:
    r = dohost("run", str(COUNTER), "--object", "x", "-X", "POST", "--path", "/incr", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "dohost-data" / "system.db").exists()


def test_status_400_and_above_exits_nonzero(tmp_path: Path) -> None:
    r = dohost("run", str(COUNTER), "--object", "a", "--data-dir", str(tmp_path), "--path", "/nope")
    assert r.returncode == 1
    assert r.stdout == "not found\n"
    assert r.stderr.strip() == "error: the object answered 404"


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"this is not wasm", "invalid_module"), (b"\0asm\x01\0\0\0\x05", "invalid_module")],
)
def test_refused_module_is_one_line_without_traceback(
    tmp_path: Path, content: bytes, code: str
) -> None:
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(content)
    r = dohost("run", str(bad), "--object", "a", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {code}:"), r.stderr
    assert "Traceback" not in r.stderr


def test_missing_file_and_bad_usage(tmp_path: Path) -> None:
    r = dohost("run", str(tmp_path / "nope.wasm"), "--object", "a", "--data-dir", str(tmp_path))
    assert (
        r.returncode == 1
        and r.stderr.startswith("error: os_error: cannot read")
        and "Traceback" not in r.stderr
    )
    r = dohost("run", str(COUNTER), "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "--object" in r.stderr and "Traceback" not in r.stderr


def test_body_from_file_and_stdin(tmp_path: Path) -> None:
    f = tmp_path / "n.txt"
    f.write_text("5")
    data = str(tmp_path / "d")
    assert (
        dohost(
            "run",
            str(COUNTER),
            "--object",
            "a",
            "--data-dir",
            data,
            "--path",
            "/incr",
            "-d",
            f"@{f}",
        ).stdout
        == "5"
    )
    assert (
        dohost(
            "run",
            str(COUNTER),
            "--object",
            "a",
            "--data-dir",
            data,
            "--path",
            "/incr",
            "-d",
            "@-",
            stdin=b"2",
        ).stdout
        == "7"
    )


def test_data_is_the_body_as_in_call(tmp_path: Path) -> None:
    """`--data '{"n":1}'` used to create a directory of that name and send a GET."""
    r = dohost("run", str(COUNTER), "--object", "a", "--path", "/incr", "--data", "3", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dohost-data"]

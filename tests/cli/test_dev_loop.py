"""The developer's loop as a new user types it, without a browser: `dohost init` makes a
project outside the checkout, `dohost dev` builds and serves it, an edit of the source
is rebuilt and redeployed, and the next request answers with the new behaviour while
the object's data are kept. Also: every request and guest log line is printed with the
object's name, a trap shows its backtrace, a failed build is one block and the previous
version keeps serving."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("DOHOST_")}
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    # The checkout's warm zig cache (the Makefile exports the same): a cold one costs
    # ~25 s for the first wasm32 build.
    e.setdefault("ZIG_GLOBAL_CACHE_DIR", str(ROOT / ".zig-cache" / "global"))
    return e


def dohost(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dohost.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
        cwd=cwd,
    )


class DevProcess:
    """`dohost dev --port 0` with its stdout collected line by line."""

    def __init__(self, project: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dohost.cli", "dev", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env(),
            cwd=project,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.url = re.search(r"http://\S+", self.wait_for("dohost dev: serving")).group(0)  # type: ignore[union-attr]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, text: str, after: int = 0, timeout: float = 300.0) -> str:
        """The first line from index `after` on that contains `text` (bounded wait)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[after:]:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no {text!r} in:\n" + "\n".join(self.lines))
                self._changed.wait(min(left, 1.0))

    def mark(self) -> int:
        with self._changed:
            return len(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def test_init_dev_edit_and_the_next_request_runs_the_new_code_on_the_same_data(
    tmp_path: Path,
) -> None:
    r = dohost("init", "hello", "--lang", "c", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    project = tmp_path / "hello"
    source = project / "src" / "hello.c"
    assert source.exists() and (project / "dohost.toml").exists()
    assert not str(project).startswith(str(ROOT))  # outside the checkout
    dev = DevProcess(project)
    try:
        dev.wait_for("deployed version 1")
        with httpx.Client(base_url=dev.url, timeout=60) as http:
            assert http.post("/demo/incr").text == "1"
            assert http.post("/demo/incr").text == "2"
            # Each request and the guest's log line, named by the object's name.
            dev.wait_for("POST /incr hello/demo 200")
            dev.wait_for("[hello/demo] info: incremented")

            # Edit: each increment now adds 10. The next request runs the new code...
            mark = dev.mark()
            source.write_text(source.read_text().replace("#define STEP 1", "#define STEP 10"))
            dev.wait_for("deployed version 2", after=mark)
            # ... on the same storage: 2 + 10.
            assert http.post("/demo/incr").text == "12"
            assert http.get("/demo/").text == "12"

            # A trap: the error names the functions it went through.
            mark = dev.mark()
            source.write_text(
                source.read_text().replace("value += STEP;", "value += STEP; __builtin_trap();")
            )
            dev.wait_for("deployed version 3", after=mark)
            r = http.post("/demo/incr")
            assert r.status_code == 500
            message = r.json()["error"]["message"]
            assert "wasm backtrace: on_fetch @0x" in message and "<- dohost_fetch" in message
            line = dev.wait_for("POST /incr hello/demo 500", after=mark)
            assert "wasm backtrace: on_fetch" in line

            # A build error: one block with the compiler's words; version 3 keeps serving.
            mark = dev.mark()
            source.write_text(source.read_text().replace("__builtin_trap();", "oops"))
            dev.wait_for("✗ build failed", after=mark)
            dev.wait_for("use of undeclared identifier 'oops'", after=mark)
            dev.wait_for("still serving version 3", after=mark)
            assert http.get("/demo/").text == "12"  # the trap rolled its write back

            # The API works beside the short routes, with the dev tenant's token.
            token = (project / ".dohost" / "dev.token").read_text().strip()
            r = http.get(
                "/v1/classes/hello/objects/demo/storage",
                headers={"authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200 and len(r.json()["entries"]) == 1
    finally:
        assert dev.stop() == 0, "\n".join(dev.lines)
    # Restarted, the data are still there.
    source.write_text(source.read_text().replace("oops", ""))
    dev = DevProcess(project)
    try:
        dev.wait_for("deployed version")
        with httpx.Client(base_url=dev.url, timeout=60) as http:
            assert http.get("/demo/").text == "12"
    finally:
        dev.stop()


@pytest.mark.parametrize("lang", ["c", "zig", "rust", "assemblyscript"])
def test_each_language_project_builds_outside_the_checkout_and_answers(
    tmp_path: Path, lang: str
) -> None:
    """The generated project's own test command: build with the packaged SDK, then run."""
    r = dohost("init", "obj", "--lang", lang, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    t = subprocess.run(
        ["./test.sh"], cwd=tmp_path / "obj", capture_output=True, text=True, env=env(), timeout=900
    )
    assert t.returncode == 0, t.stdout + t.stderr
    assert "ok: obj answers" in t.stdout
    assert (tmp_path / "obj" / "build" / "obj.wasm").stat().st_size < 64 * 1024


def test_init_refuses_a_directory_in_use_and_build_outside_a_project(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    r = dohost("init", "taken", "--lang", "c", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("error: already_exists:"), r.stderr
    r = dohost("build", cwd=tmp_path)
    assert r.returncode == 1 and "dohost init" in r.stderr and "internal" not in r.stderr
    r = dohost("init", "Bad Name", "--lang", "c", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("error: invalid_name:"), r.stderr

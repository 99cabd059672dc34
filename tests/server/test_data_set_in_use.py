"""Two programs on one data set (issue 13): every pair of `dohost serve`, `dohost run`
and the embedded `Host` — the second one stops with one line naming the holder and
what to do, and the first one goes on. Also: a SIGKILLed server's lock file does not
block a restart, `make run` refuses a data set in use, and the six-increment scenario
of the issue ends at 6."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from api_helpers import ROOT, ServerProcess

from dohost import Code, DohostError, Host
from dohost.storage.dataset_lock import read_holder

COUNTER = ROOT / "samples" / "counter" / "counter.wasm"
CPU_BURN = ROOT / "tests" / "fixtures" / "build" / "cpu_burn.wasm"


def dohost(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dohost.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def run_counter(data: Path) -> subprocess.CompletedProcess[str]:
    return dohost(
        "run", str(COUNTER), "--object", "a", "--data-dir", str(data), "--path", "/incr", "-X", "POST",
        "--durability", "os",
    )  # fmt: skip


def assert_refused(r: subprocess.CompletedProcess[str], data: Path, holder: str) -> None:
    """One line on stderr, non-zero exit, naming the directory, the holder and the way out."""
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith(f"error: data_in_use: {data} is used by pid "), line
    assert holder in line, line
    assert "talk to it with 'dohost call', or give this command another data directory" in line


@contextmanager
def stopped_run(data: Path) -> Iterator[int]:
    """A `dohost run` that holds the data set: it runs a guest that burns CPU, and is
    stopped (SIGSTOP) as soon as the lock file names it. Killed at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dohost.cli", "run", str(CPU_BURN), "--object", "a",
         "--data-dir", str(data), "--durability", "os"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while read_holder(data)[0] != proc.pid:
            assert proc.poll() is None, "dohost run ended before it was seen holding the lock"
            assert time.monotonic() < deadline, "dohost run never took the lock"
            time.sleep(0.002)
        proc.send_signal(signal.SIGSTOP)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_serve_then_serve_and_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data)
    try:
        holder = f"pid {server.proc.pid} (dohost serve --data {data} --port 0"
        assert_refused(
            dohost("serve", "--data", str(data), "--port", "0", "--processes", "1"), data, holder
        )
        assert_refused(run_counter(data), data, holder)
        assert server.proc.poll() is None
        with server.admin() as c:
            assert c.get("/v1/tenants").status_code == 200  # still serving
    finally:
        assert server.stop() == 0


async def test_serve_then_embedded_host(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data)
    try:
        with pytest.raises(DohostError) as e:
            async with Host(data, durability="os"):
                pass
        assert e.value.code is Code.DATA_IN_USE
        assert f"pid {server.proc.pid} (dohost serve" in e.value.message
    finally:
        assert server.stop() == 0


async def test_embedded_host_then_serve_and_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with Host(data, durability="os", program="my-app --embedded"):
        holder = f"pid {os.getpid()} (my-app --embedded)"
        assert_refused(
            dohost("serve", "--data", str(data), "--port", "0", "--processes", "1"), data, holder
        )
        assert_refused(run_counter(data), data, holder)


async def test_run_then_serve_run_and_embedded_host(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with stopped_run(data) as pid:
        holder = f"pid {pid} (dohost run {CPU_BURN}"
        assert_refused(
            dohost("serve", "--data", str(data), "--port", "0", "--processes", "1"), data, holder
        )
        assert_refused(run_counter(data), data, holder)
        with pytest.raises(DohostError) as e:
            async with Host(data, durability="os"):
                pass
        assert e.value.code is Code.DATA_IN_USE and holder in e.value.message
    # killed: the data set is free again
    r = run_counter(data)
    assert r.returncode == 0 and r.stdout == "1", r.stderr


def test_a_sigkilled_server_does_not_block_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data)
    server.stop(signal.SIGKILL)
    assert (data / "dohost.lock").exists()
    again = ServerProcess(data)
    assert read_holder(data)[0] == again.proc.pid
    assert again.stop() == 0


def test_six_increments_over_two_servers_end_at_six(tmp_path: Path) -> None:
    """The issue's scenario: a second server on the same data set cannot start, so all
    six increments go to the one server and none is lost."""
    data = tmp_path / "data"
    server = ServerProcess(data)
    try:
        second = dohost("serve", "--data", str(data), "--port", "0", "--processes", "1")
        assert second.returncode != 0 and "data_in_use" in second.stderr
        token = server.new_tenant()
        with server.client(token) as c:
            assert c.put("/v1/classes/counter", content=COUNTER.read_bytes()).status_code < 300
            for _ in range(6):
                assert c.post("/v1/classes/counter/objects/x/incr").status_code == 200
            assert c.get("/v1/classes/counter/objects/x/").text == "6"
    finally:
        assert server.stop() == 0


def test_make_run_refuses_a_data_set_in_use(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data)
    try:
        r = subprocess.run(
            [sys.executable, str(ROOT / "tools" / "dev_server.py"), "--data", str(data),
             "--port", "0"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )  # fmt: skip
        assert r.returncode != 0
        assert f"error: data_in_use: {data} is used by pid {server.proc.pid}" in r.stderr
        assert "listening" not in r.stdout
    finally:
        assert server.stop() == 0

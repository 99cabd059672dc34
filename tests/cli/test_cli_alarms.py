"""`dohost alarms --data-dir DIR`: pending alarms as a table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio

from dohost import Host, Request

ROOT = Path(__file__).resolve().parents[2]


def alarms(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dohost.cli", "alarms", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_lists_pending_alarms(tmp_path: Path) -> None:
    data = tmp_path / "data"
    due = 4_102_444_800_000  # 2100-01-01: stays pending
    async with Host(data, durability="os") as host:
        await host.deploy("acme", "k", (ROOT / "tests/fixtures/build/kvtest.wasm").read_bytes())
        await host.deploy("other", "k", (ROOT / "tests/fixtures/build/kvtest.wasm").read_bytes())
        await host.fetch("acme", "k", "room-1", Request("POST", "/alarm_set", f"ms={due}"))
        await host.fetch("other", "k", "x", Request("POST", "/alarm_set", f"ms={due + 1}"))
        oid = host.id_from_name("acme", "k", "room-1").hex
    r = alarms("--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    assert "room-1" in r.stdout and oid in r.stdout
    assert "2100-01-01T00:00:00.000" in r.stdout and "2 pending alarms" in r.stdout
    r = alarms("--data-dir", str(data), "--tenant", "acme", "--class", "k")
    assert "1 pending alarm" in r.stdout and "00:00:00.001" not in r.stdout
    r = alarms("--data-dir", str(data), "--tenant", "nobody")
    assert "0 pending alarms" in r.stdout


def test_not_a_data_directory(tmp_path: Path) -> None:
    r = alarms("--data-dir", str(tmp_path))
    assert (
        r.returncode == 1
        and r.stderr.startswith("error: not_found: no alarm index")
        and "Traceback" not in r.stderr
    )


async def test_lists_alarms_beside_the_host_that_holds_the_data_set(tmp_path: Path) -> None:
    """Read-only: works while a host holds the data set lock, and changes nothing."""
    data = tmp_path / "data"
    due = 4_102_444_800_000
    async with Host(data, durability="os") as host:
        await host.deploy("acme", "k", (ROOT / "tests/fixtures/build/kvtest.wasm").read_bytes())
        await host.fetch("acme", "k", "room-1", Request("POST", "/alarm_set", f"ms={due}"))
        r = await trio.to_thread.run_sync(alarms, "--data-dir", str(data))
        assert r.returncode == 0, r.stderr
        assert "room-1" in r.stdout and "1 pending alarm" in r.stdout
        # the host goes on using its index
        await host.fetch("acme", "k", "room-2", Request("POST", "/alarm_set", f"ms={due + 1}"))
        assert len(host.pending_alarms()) == 2

"""A host process killed with SIGKILL mid-stream loses no acknowledged increment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dohost import Host, Request

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("storage", ["kv", "sqlite"])
async def test_sigkill_loses_no_acknowledged_increment(tmp_path: Path, storage: str) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "helpers" / "incr_forever.py"),
            str(data),
            str(ROOT / "samples" / "counter" / "counter.wasm"),
            storage,
            "3",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    acked: dict[str, int] = {}
    try:
        assert proc.stdout.readline().strip() == "ready"
        for _ in range(150):  # let a stream of acknowledged increments go by, then kill
            name, value = proc.stdout.readline().split()
            acked[name] = int(value)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    async with Host(data) as host:
        for name, last in acked.items():
            r = await host.fetch("acme", "counter", name, Request("GET", "/"))
            # Never less than acknowledged; at most the one increment in flight beyond it.
            assert last <= int(r.text) <= last + 1, (name, last, r.text)

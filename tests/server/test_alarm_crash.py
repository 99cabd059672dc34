"""A host killed (SIGKILL) while an alarm handler runs: after restart the handler runs
again, and its effect is stored exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from dohost import Host, Request

ROOT = Path(__file__).resolve().parents[2]
KVTEST = ROOT / "tests" / "fixtures" / "build" / "kvtest.wasm"


async def test_sigkill_during_an_alarm_handler(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "helpers" / "alarm_crash.py"),
            str(data),
            str(KVTEST),
            "1500",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "firing"  # the handler is now busy for 1.5 s
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    async with Host(data) as host:
        # Nothing was stored by the killed handler; the alarm is still pending and fires
        # again at start (overdue), this time to completion.
        await host.alarms.settled()
        r = await host.fetch("acme", "k", "a", Request("GET", "/get", "key=__alarm_runs"))
        assert r.status == 200 and len(r.text.splitlines()) == 1, r.text
        assert host.alarms.stats.runs == 1
        r = await host.fetch("acme", "k", "a", Request("GET", "/alarm_get"))
        assert r.text == "none"

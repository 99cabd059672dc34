"""Crash test: a writer process acknowledges each commit once its ticket resolved, and is
SIGKILLed mid-stream. After reopening, everything acknowledged is there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dohost.storage.api import Backend, Durability
from dohost.storage.manager import StorageManager

HOST = str(Path(__file__).resolve().parents[2] / "host")
WRITERS = 4

WRITER = textwrap.dedent(
    """
    import sys, threading
    sys.path.insert(0, sys.argv[1])
    from dohost.storage.manager import StorageManager

    data, backend, writers = sys.argv[2], sys.argv[3], int(sys.argv[4])
    m = StorageManager(data, "fsync")
    out = threading.Lock()

    def writer(w):
        o = m.open_object("t", "c", bytes([w]) * 32, None, backend)
        n = 0
        while True:
            o.begin_event()
            o.put(b"k%08d" % n, b"v" * 100)
            o.put(b"last", b"%d" % n)
            if n % 10 == 9:
                o.delete(b"k%08d" % (n - 5))
            err = o.commit_event().wait(30)
            if err is not None:
                raise SystemExit(f"commit failed: {err}")
            with out:
                sys.stdout.write(f"{w} {n}\\n")
                sys.stdout.flush()
            n += 1

    for w in range(writers):
        threading.Thread(target=writer, args=(w,), daemon=True).start()
    threading.Event().wait()
    """
)


@pytest.mark.parametrize("backend", [Backend.KV, Backend.SQLITE])
def test_acknowledged_commits_survive_sigkill(tmp_path: Path, backend: str) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, str(script), HOST, str(data), backend, str(WRITERS)],
        stdout=subprocess.PIPE,
        text=True,
    )
    acked = [-1] * WRITERS
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    try:
        while sum(n + 1 for n in acked) < 400 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            w, n = map(int, line.split())
            acked[w] = n
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert sum(n + 1 for n in acked) >= 400, f"writer made too little progress: {acked}"

    m = StorageManager(data, Durability.FSYNC)
    try:
        for w in range(WRITERS):
            o = m.open_object("t", "c", bytes([w]) * 32, None, backend)
            o.begin_event()
            last = o.get(b"last")
            assert last is not None and int(last) >= acked[w]
            for n in range(acked[w] + 1):
                got = o.get(b"k%08d" % n)
                if n % 10 != 4:
                    assert got == b"v" * 100, (w, n)
                elif n + 5 <= acked[w]:  # its deletion was acknowledged too
                    assert got is None, (w, n)
                else:  # deleted by a commit that may or may not have happened
                    assert got in (None, b"v" * 100), (w, n)
            o.close()
    finally:
        m.close()

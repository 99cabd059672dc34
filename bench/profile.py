"""py-spy profiles of the dohost server during a load (`python -m bench --profile ...`).

py-spy samples the server process (all non-idle threads) while one load runs. It pauses
the process for each sample: slower, but --nonblocking was seen to attribute samples to
the wrong functions (a generator that costs ~1 µs per request showed as 10% of the loop
thread). It writes raw collapsed stacks; `summarize` turns them
into each function's share of the samples: self (the function was the leaf) and inclusive
(the function was anywhere on the stack).
"""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import CLIENT_CPU, BenchError, pin

_FRAME_FILE = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str:
    exe = Path(sys.executable).parent / "py-spy"
    if exe.exists():
        return str(exe)
    found = shutil.which("py-spy")
    if found:
        return found
    raise BenchError("py-spy is missing: .venv/bin/pip install py-spy")


class Profiler:
    """py-spy attached to a running server from now until stop()."""

    def __init__(self, pid: int, out: Path, rate: int = 100) -> None:
        self.out = out
        self.rate = rate
        cmd = [*pin(CLIENT_CPU), py_spy(), "record", "--pid", str(pid), "--format", "raw",
               "--output", str(out), "--rate", str(rate), "--nolineno", "--threads"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.t0 = time.perf_counter()

    def stop(self) -> None:
        secs = time.perf_counter() - self.t0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.out.with_suffix(".meta").write_text(f"{self.rate} {secs}\n")


def startup_prefix(out: Path, rate: int = 500) -> list[str]:
    """A command prefix that runs a program under py-spy from its first instruction."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".meta").write_text(f"{rate} 0\n")
    return [py_spy(), "record", "--format", "raw", "--output", str(out), "--rate", str(rate),
            "--nolineno", "--threads", "--"]  # fmt: skip


def _name(frame: str) -> str:
    m = _FRAME_FILE.match(frame.strip())
    if not m:
        return frame.strip()
    return f"{m.group('file')}:{m.group('func')}"


# Leaf frames that mean "waiting", which py-spy does not always recognise as idle.
_WAITS = ("threading.py:Condition.wait", "threading.py:Event.wait", "threading.py:Thread.join",
          "trio/_core/_io_epoll.py:EpollIOManager.get_events", "threading.py:Lock.acquire",
          "threading.py:Thread._wait_for_tstate_lock", "queue.py:Queue.get")  # fmt: skip


def _thread_class(name: str) -> str:
    if name.startswith("MainThread"):
        return "loop"
    for prefix, cls in (("kv-committer", "committer"), ("dohost-worker", "worker"),
                        ("dohost-epoch", "epoch"), ("wal", "wal-flusher")):  # fmt: skip
        if name.startswith(prefix):
            return cls
    return "other"


def summarize(path: Path, top: int = 10) -> dict[str, Any]:
    """Busy time per thread class (as a fraction of the load's wall time: 1.0 = one thread
    busy all along), and the top functions of the loop thread and of the committers:
    (file:function, self share, inclusive share) of that class's busy samples."""
    if not path.exists():
        return {}
    meta = path.with_suffix(".meta")
    rate, secs = (float(x) for x in meta.read_text().split()) if meta.exists() else (0.0, 0.0)
    busy: collections.Counter[str] = collections.Counter()
    waits = 0
    self_n: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    incl_n: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        parts = stack.split(";")
        cls = "loop"
        if parts and parts[0].startswith("thread ("):
            # "thread (tid): name"; the main thread has no name before threading names it
            head = parts[0]
            cls = _thread_class(head.split(": ", 1)[1]) if ": " in head else "loop"
        frames = [_name(f) for f in parts if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if frames[-1] in _WAITS:
            waits += n
            continue
        busy[cls] += n
        self_n[cls][frames[-1]] += n
        for f in set(frames):
            incl_n[cls][f] += n
    out: dict[str, Any] = {"rate": rate, "secs": secs, "wait_samples": waits}
    if rate and secs:
        out["busy"] = {cls: n / (rate * secs) for cls, n in busy.most_common()}
    else:  # a whole process run (startup): shares of all samples
        total = sum(busy.values()) or 1
        out["share"] = {cls: n / total for cls, n in busy.most_common()}
    for cls in ("loop", "committer"):
        total = busy[cls]
        if not total:
            continue
        chosen = [name for name, _ in self_n[cls].most_common(top)]
        for name, _ in incl_n[cls].most_common(80):
            if len(chosen) >= 2 * top:
                break
            if name.startswith("dohost/") and name not in chosen:
                chosen.append(name)
        out[cls] = [(nm, self_n[cls][nm] / total, incl_n[cls][nm] / total) for nm in chosen]
    return out

"""Crash loop (issue 8, item 1): a host under a steady increment load across 100 objects is
killed with SIGKILL at random moments, again and again, on the same data directory.

Each life is a real process (crash_loop_process.py: `dohost.Host` with fsync durability,
the checksum_counter guest). After every restart, before new load, the process reports
each object's state, and the test checks:
- every acknowledged increment is there: n >= the highest n acknowledged so far, and
  n <= that + the increments that were in flight (one per load task) at the kill;
- no object holds part of an event: the guest writes n, a log entry, maybe `armed`, and a
  checksum of them with separate puts per event, and its /verify recomputes the checksum;
- alarms that were set still fire: each life's clock is an hour past the last, so every
  alarm set before the kill (10 minutes ahead) is overdue at start; the process waits for
  them (`alarms.settled`) and then every object's `fired` must equal its `armed`, and
  `armed` must be at least the last acknowledged increment that set an alarm.

The kill moments come from a seeded random (SEED) so a failure reproduces: most lives are
killed after a random number of acknowledged increments, some during the start (while
overdue alarms fire or objects are being verified).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROCESS = Path(__file__).resolve().parent / "crash_loop_process.py"
WASM = ROOT / "tests" / "fixtures" / "build" / "checksum_counter.wasm"

SEED = 8001
OBJECTS = 100
TASKS = 8  # concurrent load tasks: at most this many increments in flight at a kill
ALARM_EVERY = 7  # crash_loop_process.ALARM_EVERY
HOUR_MS = 3_600_000
MAX_ACKS_BEFORE_KILL = 200  # short lives keep the default run fast
KILL_DURING_START = 0.1  # share of lives killed before the load starts
LIFE_TIMEOUT_S = 120.0  # a hung life is killed and fails the test


@dataclass
class CrashLoopStats:
    crashes: int = 0  # lives ended by SIGKILL, each followed by a restart and a check
    acked: int = 0  # acknowledged increments checked
    in_flight_landed: int = 0  # increments found stored that were never acknowledged
    alarms_fired_after_restart: int = 0
    objects_checked: int = 0


@dataclass
class Model:
    """What the test knows must be stored."""

    n: dict[str, int] = field(default_factory=dict)  # highest n known durable
    armed: dict[str, int] = field(default_factory=dict)  # highest acked n that set an alarm
    fired: dict[str, int] = field(default_factory=dict)


def check_state(model: Model, stats: CrashLoopStats, line: str, life: int) -> None:
    _, name, rest = line.split(" ", 2)
    assert not rest.startswith("corrupt"), f"life {life}: {name} holds a partial event: {rest}"
    n, armed, fired = (int(x) for x in rest.split())
    known = model.n.get(name, 0)
    assert n >= known, f"life {life}: {name} lost acknowledged increments: {n} < {known}"
    assert n <= known + TASKS, f"life {life}: {name} = {n}, more than {known} + {TASKS} in flight"
    assert armed >= model.armed.get(name, 0), (
        f"life {life}: {name} lost an acknowledged alarm_set: armed {armed} < "
        f"{model.armed.get(name, 0)}"
    )
    assert fired == armed, f"life {life}: {name}'s alarm set at n={armed} did not fire ({fired})"
    stats.in_flight_landed += n - known
    if fired > model.fired.get(name, 0):
        stats.alarms_fired_after_restart += 1
    model.n[name] = n
    model.armed[name] = armed
    model.fired[name] = fired
    stats.objects_checked += 1


def check_ack(model: Model, stats: CrashLoopStats, line: str, life: int) -> None:
    _, name, value = line.split()
    n = int(value)
    if n > model.n.get(name, 0):
        model.n[name] = n
    if n % ALARM_EVERY == 0 and n > model.armed.get(name, 0):
        model.armed[name] = n
    stats.acked += 1


class Lives:
    """crash_loop_process.py: forks one host process per life on request."""

    def __init__(self, errlog: Path) -> None:
        self.errlog = errlog
        with errlog.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(PROCESS)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin = self.proc.stdin
        self.stdout = self.proc.stdout

    def start(self, *args: object) -> int:
        self.stdin.write(" ".join(["life", *map(str, args)]) + "\n")
        self.stdin.flush()
        kind, pid = self.line().split()
        assert kind == "pid", kind
        return int(pid)

    def line(self) -> str:
        line = self.stdout.readline()
        assert line.endswith("\n"), f"the crash loop process ended:\n{self.errlog.read_text()}"
        return line.rstrip("\n")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.stdin.close()
        self.stdout.close()


def one_life(
    lives: Lives,
    data: Path,
    storage: str,
    life: int,
    rng: random.Random,
    model: Model,
    stats: CrashLoopStats,
) -> None:
    pid = lives.start(data, WASM, storage, life * HOUR_MS, OBJECTS, TASKS, rng.randrange(1 << 30))
    watchdog = threading.Timer(LIFE_TIMEOUT_S, os.kill, (pid, signal.SIGKILL))
    watchdog.start()
    reaped = False
    try:
        during_start = rng.random() < KILL_DURING_START
        kill_after = (
            rng.randint(0, OBJECTS) if during_start else rng.randint(1, MAX_ACKS_BEFORE_KILL)
        )
        seen = 0
        started = False
        while True:
            line = lives.line()
            kind = line.split(" ", 1)[0]
            if kind == "state":
                check_state(model, stats, line, life)
                seen += during_start
            elif kind == "ready":
                started = True
            elif kind == "ack":
                check_ack(model, stats, line, life)
                seen += 1
            else:
                pytest.fail(f"life {life}: unexpected line {line!r}:\n{lives.errlog.read_text()}")
            if (during_start or started) and seen >= kill_after:
                break
        os.kill(pid, signal.SIGKILL)
        # Lines written before the kill count too; then the child is reaped.
        while not (line := lives.line()).startswith("exited "):
            if line.startswith("ack "):
                check_ack(model, stats, line, life)
            elif line.startswith("state "):
                check_state(model, stats, line, life)
            elif line != "ready":
                pytest.fail(f"life {life}: unexpected line {line!r}")
        reaped = True
        assert line.split()[1:] == [str(pid), str(int(signal.SIGKILL))], line  # wait status
        stats.crashes += 1
    finally:
        watchdog.cancel()
        if not reaped:  # a failed check: leave no host running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def crash_loop(tmp_path: Path, storage: str, lives: int) -> CrashLoopStats:
    assert WASM.exists(), "checksum_counter is not built: run tools/build_guests.py"
    data = tmp_path / "data"
    rng = random.Random(f"{SEED}-{storage}")
    model = Model()
    stats = CrashLoopStats()
    procs = Lives(tmp_path / "stderr.txt")
    try:
        for life in range(1, lives + 2):  # the last life checks what the last kill left
            one_life(procs, data, storage, life, rng, model, stats)
    finally:
        procs.close()
    assert stats.objects_checked >= lives * OBJECTS * (1 - 2 * KILL_DURING_START)
    assert stats.alarms_fired_after_restart > 0
    print(f"\ncrash loop ({storage}): {stats}")
    return stats


def test_crash_loop_kv(tmp_path: Path) -> None:
    stats = crash_loop(tmp_path, "kv", 50)
    assert stats.crashes == 51


def test_crash_loop_sqlite_short(tmp_path: Path) -> None:
    """The sqlite backend in the default run too, with fewer lives (slow: 500)."""
    stats = crash_loop(tmp_path, "sqlite", 10)
    assert stats.crashes == 11


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["kv", "sqlite"])
def test_crash_loop_500(tmp_path: Path, storage: str) -> None:
    stats = crash_loop(tmp_path, storage, 500)
    assert stats.crashes == 501

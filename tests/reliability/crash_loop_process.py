"""Test helper process for test_crash_loop.py: the lives of a host in a crash loop.

    crash_loop_process.py

reads one command per line on stdin,

    life DATA_DIR WASM STORAGE CLOCK_OFFSET_MS OBJECTS CONCURRENCY SEED

and forks a child process for each: a life of the host, which the test SIGKILLs. This
process imports everything once and forks before any thread or host exists, so a life
starts in ~0.2 s instead of the ~1 s that importing dohost, trio, wasmtime and apsw takes
on a busy 2-core machine (the crash loop runs 50-500 lives). After a child ends this
process writes `exited <pid> <wait status>` and reads the next command.

A life prints `pid <its pid>` first; then it opens a Host on DATA_DIR (fsync durability, the default) whose wall clock runs
CLOCK_OFFSET_MS ahead of real time (each life starts an hour later than the last, so every
alarm an earlier life set is overdue), deploys the checksum_counter guest if the class is
not there yet, and then, writing one flushed line per step to stdout:

1. waits until every overdue alarm has fired (`alarms.settled`), then prints
   `state <object> <verify answer>` for each object: "<n> <armed> <fired>", or the guest's
   "corrupt: ..." text; then `ready`;
2. runs CONCURRENCY tasks that increment random objects forever (POST /incr, an alarm
   every ALARM_EVERY increments of an object, ALARM_IN_MS ahead), printing `ack <object>
   <n>` for each acknowledged increment and `err <object> <code>` for a failed one.

The test SIGKILLs the process at a random moment and starts the next life.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path

import trio

from dohost import Host, Request
from dohost.core.errors import DohostError

TENANT = "crash"
CLASS = "cc"
ALARM_EVERY = 7
ALARM_IN_MS = 10 * 60 * 1000  # far beyond one life (the test's lives are an hour apart)
PR_SET_PDEATHSIG = 1  # prctl(2)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(
    data: str, wasm: str, storage: str, offset_ms: int, objects: int, tasks: int, seed: int
) -> None:
    def clock() -> float:
        return time.time() * 1000.0 + offset_ms

    async with Host(data, wall_clock_ms=clock) as host:
        try:
            host.class_info(TENANT, CLASS)
        except DohostError:
            await host.deploy(TENANT, CLASS, Path(wasm).read_bytes(), storage)
        await host.alarms.settled()
        for i in range(objects):
            r = await host.fetch(TENANT, CLASS, f"o{i}", Request("GET", "/verify"))
            say(f"state o{i} {r.text.strip()}")
        say("ready")
        incr = Request("POST", "/incr", f"alarm_every={ALARM_EVERY}&alarm_in={ALARM_IN_MS}")

        async def load(rng: random.Random) -> None:
            while True:
                name = f"o{rng.randrange(objects)}"
                try:
                    r = await host.fetch(TENANT, CLASS, name, incr)
                except DohostError as e:
                    say(f"err {name} {e.code.code}")
                    continue
                say(f"ack {name} {r.text}")

        async with trio.open_nursery() as nursery:
            for t in range(tasks):
                nursery.start_soon(load, random.Random(seed * 1000 + t))


def life(a: list[str]) -> None:
    """In the forked child: run one life; never return into the command loop."""
    code = 1
    # Die with this process (the test kills it when it ends or fails), never run on.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
        say(f"pid {os.getpid()}")
        trio.run(main, a[0], a[1], a[2], int(a[3]), int(a[4]), int(a[5]), int(a[6]))
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def serve_commands() -> None:
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd != "life":
            raise SystemExit(f"unknown command {cmd!r}")
        pid = os.fork()
        if pid == 0:
            life(args)
        _, status = os.waitpid(pid, 0)
        say(f"exited {pid} {status}")


if __name__ == "__main__":
    serve_commands()

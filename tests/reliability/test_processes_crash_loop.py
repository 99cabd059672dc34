"""Crash loop of `dohost serve --processes 2` (issue 13, "Must show"): random nodes are
SIGKILLed again and again while 8 clients increment 100 objects through the front door;
the parent restarts each killed node, which claims its partitions again.

The guests are the ones of test_crash_loop.py and test_single_activation.py:
- checksum_counter (POST /incr, an alarm every 7th increment of an object, 300 ms
  ahead; GET /verify checks the checksum over its keys): at the end every acknowledged
  increment is there (n >= the highest acknowledged; n <= that + the requests whose
  outcome the client could not know), no object holds part of an event (/verify), and
  every alarm that was set has fired (fired == armed, polled with a bound);
- activation_probe (GET /): each answer's activation token is the stored one and its
  in-memory constructor count is 1, so no two activations of one object were ever live
  (two nodes serving one object would overwrite each other's token).

The kill moments come from a seeded random (SEED). `make test` runs KILLS_SHORT kills;
the 100-kill run is `@pytest.mark.slow`.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from api_helpers import ServerProcess
from multi_helpers import node_pids, wait_until

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tests" / "fixtures" / "build"
SEED = 1301
OBJECTS = 100
PROBES = 10
CLIENTS = 8
ALARM_EVERY = 7
ALARM_IN_MS = 300
KILLS_SHORT = 12
KILLS_LONG = 100


class Book:
    """What the clients saw, per object (under one lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: dict[str, int] = defaultdict(int)  # highest acknowledged n
        self.armed_acked: dict[str, int] = defaultdict(int)  # highest acked n that set an alarm
        self.unknown: dict[str, int] = defaultdict(int)  # requests with no known outcome
        self.acks = 0
        self.errors: dict[str, int] = defaultdict(int)
        self.bad_probes: list[str] = []
        self.probes = 0


def client(url: str, token: str, seed: int, book: Book, stop: threading.Event) -> None:
    rng = random.Random(seed)
    headers = {"authorization": f"Bearer {token}"}
    c = httpx.Client(base_url=url, headers=headers, timeout=30.0)
    try:
        while not stop.is_set():
            if rng.random() < 0.2:
                name = f"p{rng.randrange(PROBES)}"
                try:
                    r = c.get(f"/v1/classes/probe/objects/{name}/")
                except httpx.HTTPError:
                    c.close()
                    c = httpx.Client(base_url=url, headers=headers, timeout=30.0)
                    continue
                if r.status_code == 200:
                    _, mem_inits, token_, stored = r.text.split()
                    with book.lock:
                        book.probes += 1
                        if mem_inits != "1" or token_ != stored:
                            book.bad_probes.append(f"{name}: {r.text}")
                continue
            name = f"o{rng.randrange(OBJECTS)}"
            try:
                r = c.post(
                    f"/v1/classes/cc/objects/{name}/incr",
                    params={"alarm_every": ALARM_EVERY, "alarm_in": ALARM_IN_MS},
                )
            except httpx.HTTPError as e:
                # The connection broke (its node was killed): the increment may have run.
                with book.lock:
                    book.unknown[name] += 1
                    book.errors[f"{type(e).__name__}: {str(e)[:60]}"] += 1
                c.close()
                c = httpx.Client(base_url=url, headers=headers, timeout=30.0)
                continue
            with book.lock:
                if r.status_code == 200:
                    n = int(r.text)
                    book.acked[name] = max(book.acked[name], n)
                    if n % ALARM_EVERY == 0:
                        book.armed_acked[name] = max(book.armed_acked[name], n)
                    book.acks += 1
                else:
                    code = r.headers.get("x-dohost-error", str(r.status_code))
                    book.errors[code] += 1
                    # owner_unavailable: may have run. Anything else: it did not.
                    if code == "owner_unavailable" or r.status_code >= 500:
                        book.unknown[name] += 1
    finally:
        c.close()


def node_listens(server: ServerProcess, node: int) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(server.data_dir / "run" / f"node-{node}.sock"))
        except OSError:
            return False
    return True


def run_crash_loop(tmp_path: Path, kills: int) -> None:
    server = ServerProcess(tmp_path / "data", "--forward-timeout", "10", processes=2)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        token = server.new_tenant("crash")
        with server.client(token) as c:
            for cls, wasm in (("cc", "checksum_counter"), ("probe", "activation_probe")):
                r = c.put(f"/v1/classes/{cls}", content=(BUILD / f"{wasm}.wasm").read_bytes())
                assert r.status_code == 201, r.text
        book = Book()
        for i in range(CLIENTS):
            t = threading.Thread(target=client, args=(server.url, token, SEED + i, book, stop))
            t.start()
            threads.append(t)
        rng = random.Random(SEED)
        restarts = 0
        for _ in range(kills):
            time.sleep(rng.uniform(0.2, 1.0))
            pids = node_pids(server)
            assert len(pids) == 2, f"nodes: {pids}\n{server.stderr()[-3000:]}"
            node = rng.randrange(2)
            os.kill(pids[node], signal.SIGKILL)
            # The parent restarts it: a new pid for that node, listening on its Unix
            # socket again (bounded); then the next kill may take either node.
            wait_until(lambda n=node, old=pids[node]: node_pids(server).get(n, old) != old, 30)
            wait_until(lambda n=node: node_listens(server, n), 60)
            restarts += 1
        time.sleep(1.0)  # load on the last restarted node
        stop.set()
        for t in threads:
            t.join(60)
        assert book.acks > kills, (book.acks, dict(book.errors))
        assert not book.bad_probes, book.bad_probes[:5]
        assert book.probes > 0
        # Every acknowledged increment is there, no partial event, alarms all fired.
        with server.client(token) as c:

            def settled() -> bool:
                for i in range(OBJECTS):
                    r = c.get(f"/v1/classes/cc/objects/o{i}/verify")
                    assert r.status_code == 200, r.text  # "corrupt: ..." is a 500
                    _, armed, fired = (int(x) for x in r.text.split())
                    if fired != armed:
                        return False
                return True

            wait_until(settled, 60)
            for i in range(OBJECTS):
                name = f"o{i}"
                n, armed, fired = (
                    int(x) for x in c.get(f"/v1/classes/cc/objects/{name}/verify").text.split()
                )
                assert book.acked[name] <= n <= book.acked[name] + book.unknown[name], (
                    name,
                    n,
                    book.acked[name],
                    book.unknown[name],
                )
                assert armed >= book.armed_acked[name], (name, armed, book.armed_acked[name])
                assert fired == armed
        print(
            f"{kills} kills, {restarts} restarts, {book.acks} acks, {book.probes} probes, "
            f"errors {dict(book.errors)}"
        )
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        server.stop()


def test_crash_loop_of_two_nodes(tmp_path: Path) -> None:
    run_crash_loop(tmp_path, KILLS_SHORT)


@pytest.mark.slow
def test_crash_loop_of_two_nodes_100_kills(tmp_path: Path) -> None:
    run_crash_loop(tmp_path, KILLS_LONG)

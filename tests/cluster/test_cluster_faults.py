"""Faults of a two-node cluster (one real etcd, SeaweedFS as the replica store) under a
load of counter increments, judged by the history checker (core/counter_history.py):
nothing acknowledged is lost, no value is acknowledged twice (two owners, or a stale
copy), increments are linearizable, nothing surfaces from nowhere.

- SIGKILL of a node under load: its lease expires, the other node claims its
  partitions, restores them from the replica store and serves them.
- SIGSTOP of a node past its lease TTL, then SIGCONT: meanwhile the other node took its
  partitions over; once running again the paused node acknowledges nothing of what it
  had been sent, its late writes never surface, and it rejoins with a new lease and
  takes a share of the partitions back (restored from the replica store).

Short runs (seconds): `make test`. No sleeps wait for anything: every wait polls a
condition with a bound."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
from cluster_helpers import Load, final_values, seed, settled, start_node, wait_until

from dohost.core.counter_history import Op, check_counters

KEYS = [f"k{i}" for i in range(16)]


def test_sigkill_of_an_owner_under_load_loses_nothing(
    tmp_path: Path, cluster_url: str, replica_args: list[str]
) -> None:
    seed_dir, token = seed(tmp_path)
    a = start_node(tmp_path, seed_dir, cluster_url, "a", replica_args)
    b = start_node(tmp_path, seed_dir, cluster_url, "b", replica_args)
    try:
        wait_until(lambda: settled(a, {"a", "b"}) and settled(b, {"a", "b"}), 60, "two nodes")
        with Load([a.url, b.url], token, KEYS) as load:
            wait_until(lambda: load.acked() >= 100, 120, "100 increments before the fault")
            os.kill(b.proc.pid, signal.SIGKILL)
            killed_at = load.acked()
            wait_until(lambda: settled(a, {"a"}), 60, "a took every partition over")
            wait_until(lambda: load.acked() >= killed_at + 100, 120, "100 increments after")
        final = final_values(a, token, KEYS)
        verdict = check_counters(load.ops, final)
        assert verdict.valid, (verdict.problems, load.errors)
        # b's objects were served by both nodes, so the check covered the move.
        nodes = {op.node for op in load.ops if op.ok}
        assert nodes == {"a", "b"}
    finally:
        a.stop()
        b.stop()


def test_a_node_paused_past_its_lease_acknowledges_nothing_after_and_rejoins(
    tmp_path: Path, cluster_url: str, replica_args: list[str]
) -> None:
    seed_dir, token = seed(tmp_path)
    a = start_node(tmp_path, seed_dir, cluster_url, "a", replica_args)
    b = start_node(tmp_path, seed_dir, cluster_url, "b", replica_args)
    late: list[Op] = []  # requests sent to b while it was stopped
    try:
        wait_until(lambda: settled(a, {"a", "b"}) and settled(b, {"a", "b"}), 60, "two nodes")
        with Load([a.url], token, KEYS) as load:  # through a: it forwards to b
            wait_until(lambda: load.acked() >= 100, 120, "100 increments before the fault")
            os.kill(b.proc.pid, signal.SIGSTOP)
            # Requests reach b's sockets while it is stopped, for objects of both nodes.
            senders = [
                threading.Thread(target=_send_late, args=(b.url, token, key, late))
                for key in KEYS[:6]
            ]
            for t in senders:
                t.start()
            wait_until(lambda: settled(a, {"a"}), 60, "a took b's partitions (lease expired)")
            stopped_at = load.acked()
            wait_until(lambda: load.acked() >= stopped_at + 100, 120, "100 increments after")
            os.kill(b.proc.pid, signal.SIGCONT)
            for t in senders:
                t.join(120)
            # b noticed its lease had lapsed and rejoined: it serves a share again,
            # restored. What it had been sent meanwhile was answered either `fenced`
            # (under the lapsed lease: acknowledging nothing) or, once rejoined, by the
            # current owner: those answers go into the history and are judged with it.
            assert len(late) == 6
            wait_until(lambda: settled(a, {"a", "b"}), 60, "b rejoined and claimed a share")
            with Load([b.url], token, KEYS, threads=2) as load_b:
                rejoined_at = load.acked() + load_b.acked()
                wait_until(
                    lambda: load.acked() + load_b.acked() >= rejoined_at + 100,
                    120,
                    "100 increments after b rejoined",
                )
        assert b.proc.poll() is None
        log = b.stderr()
        assert "lost its cluster membership" in log and "rejoined cluster" in log, log[-2000:]
        final = final_values(a, token, KEYS)
        ops = load.ops + load_b.ops + late
        verdict = check_counters(ops, final)
        assert verdict.valid, (verdict.problems, load.errors, load_b.errors)
        assert {op.node for op in load_b.ops if op.ok} == {"a", "b"}
    finally:
        if b.proc.poll() is None:
            os.kill(b.proc.pid, signal.SIGCONT)
        a.stop()
        b.stop()


def _send_late(url: str, token: str, key: str, out: list[Op]) -> None:
    start = time.monotonic()
    try:
        r = httpx.post(
            f"{url}/v1/classes/counter/objects/{key}/incr",
            headers={"authorization": f"Bearer {token}"},
            timeout=120,
        )
    except httpx.HTTPError:
        out.append(Op(key, start, time.monotonic(), False))
        return
    ok = r.status_code == 200
    node = r.headers.get("x-dohost-node")
    out.append(Op(key, start, time.monotonic(), ok, int(r.text) if ok else None, node))

"""etcd faults under a two-node cluster with load, on a real three-member etcd, judged by
the history checker (core/counter_history.py):

- one of three members killed (the one every node talks to first): the others keep a
  quorum, clients fail over, service goes on;
- quorum lost (two of three killed): no lease can be renewed, so every owner stops
  acknowledging before its lease could expire; once the members are back, the nodes
  rejoin with new leases and service resumes. Nothing acknowledged is lost.

No sleeps wait for anything: every wait polls a condition with a bound."""

from __future__ import annotations

import secrets
from pathlib import Path

from cluster_helpers import Load, final_values, seed, settled, start_node, status, wait_until
from etcd_server import Etcd

from dohost.core.counter_history import check_counters

KEYS = [f"k{i}" for i in range(12)]


def test_losing_one_of_three_etcd_members_does_not_stop_service(
    tmp_path: Path, etcd3: Etcd, replica_args: list[str]
) -> None:
    url = f"{etcd3.url}/c{secrets.token_hex(4)}"
    seed_dir, token = seed(tmp_path)
    a = start_node(tmp_path, seed_dir, url, "a", replica_args)
    b = start_node(tmp_path, seed_dir, url, "b", replica_args)
    try:
        wait_until(lambda: settled(a, {"a", "b"}) and settled(b, {"a", "b"}), 60, "two nodes")
        with Load([a.url, b.url], token, KEYS) as load:
            wait_until(lambda: load.acked() >= 50, 120, "50 increments before the fault")
            etcd3.members[0].kill()  # every node's first endpoint
            killed_at = load.acked()
            wait_until(lambda: load.acked() >= killed_at + 100, 120, "100 increments after")
            wait_until(lambda: settled(a, {"a", "b"}), 60, "both nodes members still")
        verdict = check_counters(load.ops, final_values(a, token, KEYS))
        assert verdict.valid, (verdict.problems, load.errors)
    finally:
        a.stop()
        b.stop()


def test_losing_etcd_quorum_stops_acknowledging_and_service_resumes(
    tmp_path: Path, etcd3: Etcd, replica_args: list[str]
) -> None:
    url = f"{etcd3.url}/c{secrets.token_hex(4)}"
    seed_dir, token = seed(tmp_path)
    a = start_node(tmp_path, seed_dir, url, "a", replica_args)
    b = start_node(tmp_path, seed_dir, url, "b", replica_args)
    try:
        wait_until(lambda: settled(a, {"a", "b"}) and settled(b, {"a", "b"}), 60, "two nodes")
        with Load([a.url, b.url], token, KEYS) as load:
            wait_until(lambda: load.acked() >= 50, 120, "50 increments before the fault")
            lost = etcd3.members[1:]
            for m in lost:
                m.kill()
            # No lease can be renewed: both nodes stop serving (their view says so).
            wait_until(
                lambda: all(
                    (st := status(n)) is not None and st["lease_valid_s"] == 0 for n in (a, b)
                ),
                60,
                "both nodes past their lease deadline",
            )
            quiet_at = load.acked()
            for m in lost:
                etcd3.start(m)
            etcd3.wait_healthy()
            wait_until(lambda: settled(a, {"a", "b"}) and settled(b, {"a", "b"}), 90, "rejoined")
            wait_until(lambda: load.acked() >= quiet_at + 100, 120, "100 increments after")
        for n in (a, b):
            log = n.stderr()
            assert "lost its cluster membership" in log and "rejoined cluster" in log, log[-2000:]
        verdict = check_counters(load.ops, final_values(a, token, KEYS))
        assert verdict.valid, (verdict.problems, load.errors)
    finally:
        a.stop()
        b.stop()

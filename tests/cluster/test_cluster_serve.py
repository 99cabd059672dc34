"""Two `dohost serve --cluster` nodes on one real etcd, with SeaweedFS as the replica
store: any node serves any object (forwarding to its owner, one hop, naming the node that
served), the node port serves only the cluster's nodes, a graceful leave hands every
partition over with its data, and `serve --cluster`'s mistakes are one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from cluster_helpers import ROOT, final_values, seed, settled, start_node, status, wait_until
from etcd_server import free_ports

from dohost.server.forward import CLUSTER_KEY_HEADER

KEYS = [f"o{i}" for i in range(12)]


def test_any_node_serves_any_object_and_a_leave_hands_over(
    tmp_path: Path, cluster_url: str, replica_args: list[str]
) -> None:
    seed_dir, token = seed(tmp_path)
    a = start_node(tmp_path, seed_dir, cluster_url, "a", replica_args)
    b = start_node(tmp_path, seed_dir, cluster_url, "b", replica_args)
    try:
        wait_until(lambda: settled(a, {"a", "b"}) and settled(b, {"a", "b"}), 60, "two nodes")
        served: dict[str, str] = {}
        with a.client(token) as ca, b.client(token) as cb:
            for key in KEYS:
                r1 = ca.post(f"/v1/classes/counter/objects/{key}/incr")
                r2 = cb.post(f"/v1/classes/counter/objects/{key}/incr")
                assert (r1.status_code, r1.text, r2.status_code, r2.text) == (200, "1", 200, "2")
                owner = r1.headers["x-dohost-node"]
                assert r2.headers["x-dohost-node"] == owner  # one owner, whoever was asked
                for r, via in ((r1, "a"), (r2, "b")):
                    assert r.headers.get("x-dohost-via") == (via if via != owner else None)
                served[key] = owner
        assert set(served.values()) == {"a", "b"}  # both own some of twelve objects
        st = status(a)
        assert st is not None and st["node"] == "a" and st["partitions"] == 16
        assert {m["name"] for m in st["members"]} == {"a", "b"}
        assert sum(m["partitions"] for m in st["members"]) == 16
        # `dohost cluster status` shows the same view.
        r = subprocess.run(
            [sys.executable, "-m", "dohost.cli", "cluster", "status", "--url", a.url,
             "--token", a.admin_token],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        words = " ".join(r.stdout.split())  # (the table wraps to the terminal's width)
        assert "seen from node a: 16 partitions, 0 unclaimed" in words, r.stdout
        assert all(f" {n} │ http://127.0.0.1:" in words for n in ("a", "b")), r.stdout

        # Graceful leave: b drains and releases; a claims b's partitions, restores them
        # from the replica store, and serves them with every acknowledged count.
        assert b.stop() == 0
        wait_until(lambda: settled(a, {"a"}), 60, "a holds every partition")
        assert final_values(a, token, KEYS) == dict.fromkeys(KEYS, 2)
        with a.client(token) as ca:
            r = ca.post("/v1/classes/counter/objects/o0/incr")
            assert (r.status_code, r.text, r.headers["x-dohost-node"]) == (200, "3", "a")
    finally:
        a.stop()
        b.stop()


def test_the_node_port_serves_only_the_clusters_nodes(
    tmp_path: Path, cluster_url: str, replica_args: list[str]
) -> None:
    seed_dir, token = seed(tmp_path)
    a = start_node(tmp_path, seed_dir, cluster_url, "a", replica_args)
    try:
        wait_until(lambda: settled(a, {"a"}), 60, "a holds every partition")
        advertise = next(arg for arg in a.proc.args if str(arg).startswith("http://"))  # type: ignore[union-attr]
        headers = {"authorization": f"Bearer {token}"}
        for extra in ({}, {CLUSTER_KEY_HEADER: "0" * 64}):
            r = httpx.post(
                f"{advertise}/v1/classes/counter/objects/x/incr",
                headers={**headers, **extra},
            )
            assert r.status_code == 403 and r.headers["x-dohost-error"] == "forbidden"
        # The public port ignores a client's cluster key (and serves as usual).
        with a.client(token) as c:
            r = c.post("/v1/classes/counter/objects/x/incr", headers={CLUSTER_KEY_HEADER: "x"})
            assert r.status_code == 200
    finally:
        a.stop()


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOHOST_ADMIN_TOKEN": "t" * 32}
    return subprocess.run(
        [sys.executable, "-m", "dohost.cli", "serve", "--port", "0", *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )  # fmt: skip


def test_cluster_options_are_checked(tmp_path: Path) -> None:
    data = ["--data", str(tmp_path / "d")]
    replica = ["--replica", f"file://{tmp_path}/r"]
    (port,) = free_ports(1)
    adv = ["--advertise", f"http://127.0.0.1:{port}"]
    cases = [
        (["--cluster", "etcd://127.0.0.1:1", *replica], "--cluster needs --node, --advertise"),
        (["--cluster", "etcd://127.0.0.1:1", "--node", "a", *adv], "--cluster needs --replica"),
        (["--cluster", "http://127.0.0.1:1", "--node", "a", *adv, *replica], "etcd://"),
        (["--cluster", "etcd://127.0.0.1:x", "--node", "a", *adv, *replica], "is not HOST:PORT"),
        (["--cluster", "etcd://127.0.0.1:1", "--node", "a b", *adv, *replica], "a node name"),
        (
            ["--cluster", "etcd://127.0.0.1:1", "--node", "a", "--advertise", "ftp://x", *replica],
            "--advertise",
        ),
        (
            ["--cluster", "etcd://127.0.0.1:1", "--node", "a", *adv, *replica, "--processes", "2"],
            "one process per node",
        ),
        (["--node", "a"], "need --cluster"),
    ]
    for args, words in cases:
        r = _serve(*data, *args)
        assert r.returncode != 0, args
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert lines and lines[-1].startswith("error: "), (args, r.stderr)
        assert words in lines[-1], (args, lines[-1])


def test_no_etcd_and_a_taken_name_are_one_line_errors(
    tmp_path: Path, cluster_url: str, replica_args: list[str]
) -> None:
    (dead, port) = free_ports(2)
    r = _serve(
        "--data", str(tmp_path / "x"), "--cluster", f"etcd://127.0.0.1:{dead}",
        "--node", "a", "--advertise", f"http://127.0.0.1:{port}", *replica_args,
    )  # fmt: skip
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith("error: cluster_unavailable: "), r.stderr

    seed_dir, _ = seed(tmp_path)
    a = start_node(tmp_path, seed_dir, cluster_url, "a", replica_args)
    try:
        wait_until(lambda: settled(a, {"a"}), 60, "a holds every partition")
        (port,) = free_ports(1)
        # Another data set of another partition count cannot join.
        r = _serve(
            "--data", str(tmp_path / "other"), "--cluster", cluster_url, "--node", "c",
            "--advertise", f"http://127.0.0.1:{port}", *replica_args,
        )  # fmt: skip
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode != 0 and last.startswith("error: invalid_config: cluster "), last
        assert "has 16 partitions but this node's data set has 4096" in last
        # A second node named like a live one cannot join.
        (tmp_path / "a2").mkdir()
        (tmp_path / "a2" / "PARTITIONS").write_text("16\n")
        r = _serve(
            "--data", str(tmp_path / "a2"), "--cluster", cluster_url, "--node", "a",
            "--advertise", f"http://127.0.0.1:{port}", *replica_args,
        )  # fmt: skip
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode != 0
        assert last.startswith("error: already_exists: node a is already a live member"), last
    finally:
        a.stop()

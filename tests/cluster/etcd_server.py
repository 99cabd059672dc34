"""A real etcd on loopback for the cluster tests: Debian's `etcd-server` (3.4).

Each member listens on two free ports of 127.0.0.1 (clients, peers), keeps its data in a
temporary directory, and is stopped by its pid. One member or three (a real Raft group:
killing one leaves a quorum, killing two loses it). Ready means: every member answers
`/health` with `"health":"true"` (the cluster has a leader), polled with a bound.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# One port picker for every loopback service the tests start (tests/replica's SeaweedFS
# fixture owns it); the cluster tests import it from here.
_REPLICA_HELPERS = str(Path(__file__).resolve().parents[1] / "replica")
if _REPLICA_HELPERS not in sys.path:
    sys.path.insert(0, _REPLICA_HELPERS)
from seaweedfs_server import free_ports  # noqa: E402

READY_TIMEOUT_S = 60.0  # a second or two in practice; the bound is for a loaded machine
STOP_TIMEOUT_S = 20.0


def etcd_binary() -> str:
    found = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
    if found is None:
        raise RuntimeError(
            "no `etcd` binary: install Debian's etcd-server (tools/install_toolchains.sh "
            "does, as root)"
        )
    return found


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL by pid (its data stays: `start` brings the same member back)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT_S)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.client_url + "/health", timeout=2) as r:
                return bool(json.loads(r.read()).get("health") == "true")
        except (OSError, ValueError):
            return False


@dataclass
class Etcd:
    members: list[Member]
    cluster: str  # the --initial-cluster value
    started_in_s: float = 0.0
    _new: bool = field(default=True, repr=False)

    @property
    def endpoints(self) -> str:
        """`HOST:PORT,HOST:PORT` of every member (what `serve --cluster etcd://` takes)."""
        return ",".join(f"127.0.0.1:{m.client_port}" for m in self.members)

    @property
    def url(self) -> str:
        return "etcd://" + self.endpoints

    def start(self, member: Member) -> None:
        """Start (or restart, on its data) one member."""
        member.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            etcd_binary(),
            f"--name={member.name}",
            f"--data-dir={member.workdir / 'data'}",
            f"--listen-client-urls={member.client_url}",
            f"--advertise-client-urls={member.client_url}",
            f"--listen-peer-urls={member.peer_url}",
            f"--initial-advertise-peer-urls={member.peer_url}",
            f"--initial-cluster={self.cluster}",
            "--initial-cluster-state=new",
            "--initial-cluster-token=dohost-test",
            # Short Raft timers: a lost leader is replaced in about a second.
            "--heartbeat-interval=100",
            "--election-timeout=1000",
            "--log-level=warn",
        ]
        log = open(member.workdir / "etcd.log", "ab")  # noqa: SIM115 (the child keeps it)
        try:
            member.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()

    def wait_healthy(self, members: list[Member] | None = None) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for m in members or self.members:
            while not m.healthy():
                if m.process is not None and m.process.poll() is not None:
                    raise RuntimeError(f"etcd {m.name} exited: {self.log_tail(m)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd {m.name} not healthy: {self.log_tail(m)}")
                time.sleep(0.05)

    def log_tail(self, member: Member, lines: int = 20) -> str:
        path = member.workdir / "etcd.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        for m in self.members:
            m.kill()


def start_etcd(workdir: Path, members: int = 1) -> Etcd:
    """Start an etcd cluster of `members` members in `workdir`; returns once healthy."""
    ports = free_ports(2 * members)
    ms = [
        Member(f"m{i}", ports[2 * i], ports[2 * i + 1], workdir / f"m{i}") for i in range(members)
    ]
    etcd = Etcd(ms, ",".join(f"{m.name}={m.peer_url}" for m in ms))
    began = time.monotonic()
    try:
        for m in ms:
            etcd.start(m)
        etcd.wait_healthy()
    except BaseException:
        etcd.stop()
        raise
    etcd.started_in_s = time.monotonic() - began
    return etcd

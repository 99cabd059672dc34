"""Which S3 client the replica store uses: our SigV4 signer over httpx vs boto3.

Starts SeaweedFS on loopback (tests/replica/seaweedfs_server.py) and times, for each
client: the import, building a client, create-only PUTs (`If-None-Match: *`) of 1 KiB and
1 MiB, GETs of 1 KiB, a listing of 200 keys, and 4 threads doing 1 KiB PUTs at once.
Latencies are wall-clock p50/p99; "cpu" is this process's CPU time per operation, which
is what the host pays on a shared machine (the server's CPU is not counted).

    python bench/replica_s3_client.py [--n 300]

boto3 is not a dependency of dohost: run with a python that has it to compare
(`pip install boto3` in a scratch venv, PYTHONPATH=host); without it only httpx runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_REPO / "host"))
sys.path.insert(0, str(_REPO / "tests" / "replica"))

from seaweedfs_server import SeaweedFS, start_seaweedfs  # noqa: E402

BUCKET = "bench"


def import_ms(module: str) -> float:
    """Best of 3: a fresh interpreter importing `module`, minus one importing nothing."""

    def run(code: str) -> float:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})
        return time.perf_counter() - t

    base = min(run("pass") for _ in range(3))
    return (min(run(f"import {module}") for _ in range(3)) - base) * 1000


class Client:
    name = ""

    def put_new(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def list(self, prefix: str) -> list[str]: ...


class HttpxClient(Client):
    name = "httpx + core/sigv4"

    def __init__(self, server: SeaweedFS, prefix: str) -> None:
        self.store = server.store(BUCKET, prefix)

    def put_new(self, key: str, data: bytes) -> None:
        self.store.put_new(key, data)

    def get(self, key: str) -> bytes:
        return self.store.get(key)

    def list(self, prefix: str) -> list[str]:
        return self.store.list(prefix)


class Boto3Client(Client):
    name = "boto3"

    def __init__(self, server: SeaweedFS, prefix: str) -> None:
        import boto3
        from botocore.config import Config

        self.prefix = prefix + "/"
        self.s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
            config=Config(s3={"addressing_style": "path"}, max_pool_connections=16),
        )

    def put_new(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=self.prefix + key, Body=data, IfNoneMatch="*")

    def get(self, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=BUCKET, Key=self.prefix + key)["Body"].read()
        return body

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=self.prefix + prefix
        )
        for page in pages:
            keys += [c["Key"] for c in page.get("Contents", [])]
        return keys


def timed(n: int, op: Callable[[int], object]) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, cpu µs per op) of n calls of op(i)."""
    lat = []
    cpu0 = time.process_time()
    for i in range(n):
        t = time.perf_counter()
        op(i)
        lat.append((time.perf_counter() - t) * 1000)
    cpu = (time.process_time() - cpu0) / n * 1e6
    lat.sort()
    return statistics.median(lat), lat[int(len(lat) * 0.99) - 1], cpu


def threaded_puts(client: Client, threads: int, per_thread: int) -> float:
    """PUTs per second with `threads` threads sharing one client."""
    data = b"t" * 1024

    def work(t: int) -> None:
        for i in range(per_thread):
            client.put_new(f"threads/{t}/{i}", data)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    start = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return threads * per_thread / (time.perf_counter() - start)


def measure(make: Callable[[], Client], n: int) -> None:
    t = time.perf_counter()
    client = make()
    build_ms = (time.perf_counter() - t) * 1000
    small, big = b"s" * 1024, b"b" * (1 << 20)
    for i in range(20):  # warm the connection pool
        client.put_new(f"warm/{i}", small)
    put = timed(n, lambda i: client.put_new(f"small/{i}", small))
    get = timed(n, lambda i: client.get(f"small/{i}"))
    put_big = timed(max(n // 10, 10), lambda i: client.put_new(f"big/{i}", big))
    for i in range(200):
        client.put_new(f"listed/{i:04d}", b"")
    listing = timed(20, lambda i: client.list("listed/"))
    rate = threaded_puts(client, 4, n // 4)
    print(f"\n{client.name}: client built in {build_ms:.1f} ms")
    for label, (p50, p99, cpu) in (
        ("PUT 1 KiB (If-None-Match)", put),
        ("GET 1 KiB", get),
        ("PUT 1 MiB (If-None-Match)", put_big),
        ("LIST 200 keys", listing),
    ):
        print(f"  {label:28} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  cpu {cpu:7.0f} µs/op")
    print(f"  4 threads, PUT 1 KiB          {rate:6.0f} /s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} (1 min)")
    makers: list[tuple[str, Callable[[SeaweedFS, str], Client]]] = [("httpx", HttpxClient)]
    try:
        import boto3  # noqa: F401

        makers.append(("boto3", Boto3Client))
    except ImportError:
        print("boto3 is not installed here: measuring httpx only")
    for module, _ in makers:
        print(f"import {module}: {import_ms(module):.0f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        server = start_seaweedfs(Path(tmp), BUCKET)
        try:
            print(f"SeaweedFS ready in {server.started_in_s:.1f} s")
            for round_ in range(2):  # alternate, so neither gets all the quiet moments
                for name, maker in makers:
                    prefix = f"{name}-{round_}"
                    measure(lambda m=maker, p=prefix: m(server, p), args.n)  # type: ignore[misc]
        finally:
            server.stop()


if __name__ == "__main__":
    main()

"""Shared pieces of the benchmark suite: paths, pinning, processes, wrk, a load client.

Everything here talks to 127.0.0.1 only, and stops only the processes it started (by
their process id).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
WORK = BENCH / ".work"  # git-ignored: workerd's install, data directories, raw outputs
RESULTS = BENCH / "results"
LUA = BENCH / "wrk_stats.lua"

SERVER_CPU = 0
CLIENT_CPU = 1
# Servers get room for many open files: workerd keeps 3 descriptors per live object.
SERVER_NOFILE = 65536


class BenchError(Exception):
    """A benchmark could not run (a tool is missing, a server did not start)."""


# ---------------------------------------------------------------- pinning and processes


def pin(cpu: int) -> list[str]:
    """`taskset -c CPU` when taskset exists and the CPU does; else nothing."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > cpu:
        return ["taskset", "-c", str(cpu)]
    return []


def raise_nofile() -> None:
    """preexec_fn for servers: a higher descriptor limit (we are root: hard too)."""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (SERVER_NOFILE, SERVER_NOFILE))
    except (ValueError, OSError):
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def server_nofile() -> int:
    """The descriptor limit servers get: SERVER_NOFILE, or the hard limit when raising it
    is not allowed (no CAP_SYS_RESOURCE in a container)."""
    return min(SERVER_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_process(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 30
) -> None:
    """SIGTERM the process we started (by its pid), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def du_bytes(path: Path) -> int:
    """Bytes allocated on disk under path (like du), not apparent sizes."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
    return total


# ---------------------------------------------------------------- machine and versions


def machine() -> dict[str, object]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "load_avg_start": os.getloadavg(),
    }


def git_commit(short: bool = True) -> str:
    tree = os.environ.get("DOHOST_BENCH_TREE")
    if tree:  # running HEAD's host/ extracted at the start of the run (bench/suite.py)
        return Path(tree).name[:7]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short" if short else "--verify", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "host"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return out + ("-dirty" if dirty else "")


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version(), "dohost": git_commit()}
    for pkg in ("wasmtime", "apsw", "trio"):
        try:
            out[pkg] = version(pkg)
        except Exception:
            out[pkg] = "missing"
    try:
        out["wrk"] = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1]
    except (OSError, IndexError):
        out["wrk"] = "missing"
    return out


# ---------------------------------------------------------------- tools


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: apt-get install -y wrk", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update", "-q"], check=False)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False)
    if not shutil.which("wrk"):
        raise BenchError("wrk is missing and could not be installed: run `apt-get install -y wrk`")


# ---------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    reqs: int
    errors: int  # connect/read/write/timeout
    non2xx: int

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def run_wrk(
    url: str,
    connections: int,
    duration: float,
    *,
    method: str = "GET",
    token: str | None = None,
    random_objs: int = 0,
    path_pre: str = "",
    path_post: str = "",
    log: Path | None = None,
) -> WrkResult:
    """One wrk run (one thread, keep-alive), pinned to the client CPU. With random_objs
    N each request goes to path_pre + rand(0..N-1) + path_post instead of url's path."""
    env = {
        **os.environ,
        "WRK_METHOD": method,
        "WRK_TOKEN": token or "",
        "WRK_RANDOM_OBJS": str(random_objs),
        "WRK_PATH_PRE": path_pre,
        "WRK_PATH_POST": path_post,
    }
    secs = max(1, round(duration))
    cmd = [*pin(CLIENT_CPU), "wrk", "-t1", f"-c{connections}", f"-d{secs}s", "--timeout", "10s"]
    cmd += ["-s", str(LUA), url]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=secs + 60)
    if log is not None:
        with log.open("a") as f:
            f.write("$ " + " ".join(cmd) + f"  # method={method} random={random_objs}\n")
            f.write(out.stdout + out.stderr)
    m = re.search(r"^RESULT (.*)$", out.stdout, re.M)
    if not m:
        raise BenchError(f"wrk gave no RESULT line: {out.stdout[-500:]} {out.stderr[-500:]}")
    kv = dict(part.split("=") for part in m.group(1).split())
    return WrkResult(
        rps=float(kv["rps"]),
        p50_ms=float(kv["p50_ms"]),
        p99_ms=float(kv["p99_ms"]),
        max_ms=float(kv["max_ms"]),
        reqs=int(kv["reqs"]),
        errors=int(kv["errors"]),
        non2xx=int(kv["non2xx"]),
    )


# ---------------------------------------------------------------- a small load client


class RawClient:
    """A keep-alive HTTP/1.1 client over one socket, with no parsing beyond what it needs
    (status, Content-Length or chunked). Costs a few µs per request, so it does not
    bound the servers it drives the way http.client would."""

    def __init__(self, port: int, headers: Sequence[tuple[str, str]] = (), timeout: float = 60):
        self.port = port
        self.timeout = timeout
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
        self.sock: socket.socket | None = None
        self.buf = b""

    def _connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = s, b""
        return s

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        s = self.sock or self._connect()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.extra}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        s.sendall(head.encode() + body)
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head_b, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head_b.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = -1
        chunked = False
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        self.buf = rest
        if chunked:
            body_out = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._more()
                size_line, _, self.buf = self.buf.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._more()
                body_out += self.buf[:size]
                self.buf = self.buf[size + 2 :]
                if size == 0:
                    break
        else:
            length = max(length, 0)
            while len(self.buf) < length:
                self._more()
            body_out, self.buf = self.buf[:length], self.buf[length:]
        if close:
            self.close()
        return status, body_out

    def _more(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            self.close()
            raise ConnectionError("server closed the connection")
        self.buf += chunk


@dataclass
class LoadResult:
    n: int  # requests sent (all of them, unless the time cap stopped the load early)
    secs: float
    errors: int
    bodies: list[bytes] | None = None
    done: list[bool] | None = None  # per path: was it sent
    capped: bool = False  # the time cap stopped the load before the last path

    @property
    def rate(self) -> float:
        return self.n / self.secs if self.secs > 0 else 0.0

    @property
    def prefix(self) -> int:
        """How many paths from the first were all sent (the contiguous prefix)."""
        if self.done is None:
            return self.n
        for i, d in enumerate(self.done):
            if not d:
                return i
        return len(self.done)


def drive(
    port: int,
    method: str,
    paths: Sequence[str],
    *,
    threads: int = 4,
    headers: Sequence[tuple[str, str]] = (),
    keep_bodies: bool = False,
    progress: Callable[[int], None] | None = None,
    max_secs: float | None = None,
) -> LoadResult:
    """Send one request per path over `threads` keep-alive connections (thread k takes
    paths k, k+threads, ...), like helper.py populate. Returns elapsed time and errors
    (a non-2xx status or a failed request); with keep_bodies, the bodies in path order.
    With max_secs, no request starts after that many seconds (a bounded run on a slow
    server): `done` says which paths were sent."""
    n = len(paths)
    bodies: list[bytes] | None = [b""] * n if keep_bodies else None
    sent = [False] * n
    errors = [0] * threads
    count = [0] * threads
    t0 = time.perf_counter()
    stop_at = t0 + max_secs if max_secs else float("inf")

    def work(k: int) -> None:
        c = RawClient(port, headers)
        for i in range(k, n, threads):
            if time.perf_counter() > stop_at:
                break
            try:
                st, body = c.request(method, paths[i])
                if not 200 <= st < 300:
                    errors[k] += 1
                if bodies is not None:
                    bodies[i] = body
            except (OSError, ValueError, IndexError):
                errors[k] += 1
                c.close()
            sent[i] = True
            count[k] += 1
        c.close()

    ts = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    if progress is not None:
        while any(t.is_alive() for t in ts):
            time.sleep(0.2)
            progress(sum(count))
    for t in ts:
        t.join()
    secs = time.perf_counter() - t0
    total = sum(count)
    return LoadResult(total, secs, sum(errors), bodies, sent, total < n)


def wait_http(
    port: int,
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    *,
    deadline_s: float = 60.0,
) -> float:
    """Poll until a request answers 200; returns when (perf_counter)."""
    end = time.perf_counter() + deadline_s
    while True:
        c = RawClient(port, headers, timeout=5)
        try:
            st, _ = c.request(method, path)
            if st == 200:
                return time.perf_counter()
        except OSError:
            time.sleep(0.001)
        finally:
            c.close()
        if time.perf_counter() > end:
            raise BenchError(f"no 200 from 127.0.0.1:{port}{path} within {deadline_s:.0f} s")


# ---------------------------------------------------------------- small utilities


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: Sequence[float], p: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(len(ys) * p / 100))] if ys else float("nan")


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


@contextlib.contextmanager
def timer() -> Iterator[Callable[[], float]]:
    t0 = time.perf_counter()
    yield lambda: time.perf_counter() - t0


def python() -> str:
    return sys.executable

"""The two servers the suite drives: `dohost serve` and workerd (the peer).

Both run pinned to CPU 0 on 127.0.0.1 with kernel-chosen ports, are started and stopped
by process id, and get the same descriptor limit. A server object can be restarted on
the same data directory (cold start, restart after N objects).

The two expose the same operations under different URL shapes:

    operation              workerd (peer worker.js)   dohost (HTTP API v1, tenant token)
    no-op                  GET /<name>/noop           GET  /v1/classes/noop/objects/<name>/
    read the counter       GET /<name>/get            GET  /v1/classes/counter/objects/<name>/
    durable increment      GET /<name>/incr           POST /v1/classes/counter/objects/<name>/incr
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    SERVER_CPU,
    WORK,
    BenchError,
    RawClient,
    pin,
    raise_nofile,
    stop_process,
)

PEER_SRC = REPO.parent / "shared" / "peers" / "workerd"
PEER_FILES = ("README.md", "config.capnp", "helper.py", "package.json", "run_bench.sh",
              "stats.lua", "worker.js")  # fmt: skip
WORKERD_DIR = WORK / "workerd"
WORKERD_BIN = WORKERD_DIR / "node_modules" / "@cloudflare" / "workerd-linux-64" / "bin" / "workerd"

COUNTER_WASM = REPO / "samples" / "counter" / "counter.wasm"
NOOP_WASM = REPO / "tests" / "fixtures" / "build" / "noop.wasm"
NOOP_WAT = REPO / "tests" / "fixtures" / "noop.wat"
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
TENANT = "bench"


# ---------------------------------------------------------------- workerd


def ensure_workerd() -> Path:
    """Copy the peer folder into bench/.work/workerd (git-ignored) and `npm install` there
    when its binary is missing. Returns the binary."""
    if not PEER_SRC.is_dir():
        raise BenchError(f"the workerd peer folder is missing: {PEER_SRC}")
    WORKERD_DIR.mkdir(parents=True, exist_ok=True)
    for name in PEER_FILES:
        src, dst = PEER_SRC / name, WORKERD_DIR / name
        if src.exists() and (not dst.exists() or not filecmp.cmp(src, dst, shallow=False)):
            with contextlib.suppress(FileNotFoundError):
                dst.chmod(0o644)
            shutil.copyfile(src, dst)
    if not WORKERD_BIN.exists():
        if shutil.which("npm") is None:
            raise BenchError(
                "workerd is not installed and npm is missing: apt-get install -y npm, then "
                f"`cd {WORKERD_DIR} && npm install`"
            )
        print(f"installing workerd: npm install in {WORKERD_DIR}", flush=True)
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=WORKERD_DIR)
        if r.returncode != 0 or not WORKERD_BIN.exists():
            raise BenchError(f"npm install failed: run `cd {WORKERD_DIR} && npm install` by hand")
    return WORKERD_BIN


def workerd_version() -> str:
    try:
        out = subprocess.run([str(WORKERD_BIN), "--version"], capture_output=True, text=True)
        return out.stdout.strip().removeprefix("workerd ")
    except OSError:
        return "missing"


class Workerd:
    """workerd serving the peer's config.capnp: sockets http (kv), http-sql, http-pin; or
    another config (its socket names given), e.g. bench/workerd_sql/config.capnp."""

    name = "workerd"

    def __init__(
        self,
        data: Path,
        log_dir: Path,
        config: Path | None = None,
        sockets: tuple[str, ...] = ("http", "http-sql", "http-pin"),
    ) -> None:
        self.data = data
        self.log_dir = log_dir
        self.config = config or WORKERD_DIR / "config.capnp"
        self.sockets = sockets
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.port = 0
        self.fd0 = 0
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> float:
        """Start and wait for a listen event per socket; returns seconds spawn -> listen."""
        self.data.mkdir(parents=True, exist_ok=True)
        rfd, wfd = os.pipe()
        self.starts += 1
        log = _log_file(self.log_dir, "workerd").open("wb")
        argv = [*pin(SERVER_CPU), str(WORKERD_BIN), "serve", str(self.config),
                *(a for s in self.sockets for a in ("-s", f"{s}=127.0.0.1:0")),
                "-d", f"do-storage={self.data}", "--control-fd", str(wfd)]  # fmt: skip
        t0 = time.perf_counter()
        # taskset execs workerd: the pid is workerd's own.
        self.proc = subprocess.Popen(
            argv, cwd=WORKERD_DIR, pass_fds=(wfd,), stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=raise_nofile,
        )  # fmt: skip
        os.close(wfd)
        log.close()
        buf = b""
        self.ports = {}
        try:
            while len(self.ports) < len(self.sockets):
                ready, _, _ = select.select([rfd], [], [], 30)
                if not ready:
                    raise BenchError("workerd did not listen within 30 s")
                chunk = os.read(rfd, 4096)
                if not chunk:
                    raise BenchError(f"workerd exited before listening; see {log.name}")
                buf += chunk
                for line in buf.split(b"\n"):
                    with contextlib.suppress(ValueError):
                        ev = json.loads(line)
                        if ev.get("event") == "listen":
                            self.ports[ev["socket"]] = ev["port"]
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(rfd)
        t = time.perf_counter() - t0
        self.port = self.ports["http"]
        self.fd0 = len(os.listdir(f"/proc/{self.pid}/fd"))
        return t

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def live_objects(self) -> int:
        """3 descriptors (db, wal, shm) per live SQLite-backed object, as run_bench.sh."""
        return (len(os.listdir(f"/proc/{self.pid}/fd")) - self.fd0) // 3

    # the operations, as (method, path)
    def noop(self, name: str) -> tuple[str, str]:
        return "GET", f"/{name}/noop"

    def get(self, name: str) -> tuple[str, str]:
        return "GET", f"/{name}/get"

    def incr(self, name: str) -> tuple[str, str]:
        return "GET", f"/{name}/incr"

    def wrk_random(self, prefix: str) -> tuple[str, str, str]:
        """method, path before the object number, path after (random-object wrk runs)."""
        return "GET", f"/{prefix}", "/incr"

    headers: tuple[tuple[str, str], ...] = ()
    token: str | None = None

    def port_for(self, socket_name: str = "http") -> int:
        return self.ports[socket_name]


# ---------------------------------------------------------------- dohost


_LOGS = [0]


def _log_file(log_dir: Path, name: str) -> Path:
    """A new log file per server start: <name>.<n>.log, n counting all starts of the run."""
    _LOGS[0] += 1
    return log_dir / f"{name}.{_LOGS[0]}.log"


def log_tail(path: Path | None, lines: int = 1) -> str:
    """The last lines of a server log (why it died)."""
    if path is None or not path.exists():
        return ""
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def noop_wasm() -> bytes:
    if NOOP_WASM.exists():
        return NOOP_WASM.read_bytes()
    import wasmtime

    return bytes(wasmtime.wat2wasm(NOOP_WAT.read_text()))


def _tree_knows_processes() -> bool:
    """Whether the dohost under test has `serve --processes` (a before/after comparison may
    run a tree from before issue 13 through DOHOST_BENCH_TREE, whose serve refuses it)."""
    tree = os.environ.get("DOHOST_BENCH_TREE")
    if not tree:
        return True
    sources = Path(tree, "host", "dohost").glob("cli*.py")
    return any('"--processes"' in f.read_text() for f in sources)


class Dohost:
    """`dohost serve` over one data directory, with tenant "bench" and classes `counter`
    (samples/counter, kv storage) and `noop` (tests/fixtures/noop.wat).

    With `idle_timeout`/`max_resident` set, the server runs through bench/_dohost_serve.py,
    which passes them to the Host (`dohost serve` has no flags for them)."""

    name = "dohost"

    def __init__(
        self,
        data: Path,
        log_dir: Path,
        durability: str = "fsync",
        *,
        idle_timeout: float | None = None,
        max_resident: int | None = None,
    ) -> None:
        self.data = data
        self.log_dir = log_dir
        self.durability = durability
        self.idle_timeout = idle_timeout
        self.max_resident = max_resident
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.url = ""
        self.token: str | None = None
        self.headers: tuple[tuple[str, str], ...] = ()
        self.starts = 0
        self.prefix: list[str] = []  # e.g. a profiler: py-spy record ... --
        self.log: Path | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def argv(self) -> list[str]:
        serve = ["serve", "--data", str(self.data), "--port", "0",
                 "--durability", self.durability]  # fmt: skip
        if _tree_knows_processes():
            serve += ["--processes", "1"]
        if self.idle_timeout is None and self.max_resident is None:
            dohost_bin = Path(sys.executable).parent / "dohost"
            exe = [str(dohost_bin)] if dohost_bin.exists() else [sys.executable, "-m", "dohost.cli"]
            return [*pin(SERVER_CPU), *exe, *serve]
        extra = []
        if self.idle_timeout is not None:
            extra += ["--idle-timeout", str(self.idle_timeout)]
        if self.max_resident is not None:
            extra += ["--max-resident", str(self.max_resident)]
        wrapper = str(REPO / "bench" / "_dohost_serve.py")
        return [*pin(SERVER_CPU), sys.executable, wrapper, *extra, "--", *serve]

    def start(self) -> float:
        """Start, wait for the URL line; returns seconds spawn -> listening.

        Python's bytecode cache is on (in bench/.work/pycache), as in an installed
        package: the Makefile exports PYTHONDONTWRITEBYTECODE, which would otherwise make
        every start compile dohost's modules from source."""
        self.starts += 1
        env = {**os.environ, "DOHOST_ADMIN_TOKEN": ADMIN_TOKEN,
               "PYTHONPYCACHEPREFIX": str(WORK / "pycache")}  # fmt: skip
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.log = _log_file(self.log_dir, "dohost")
        err = self.log.open("w")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [*self.prefix, *self.argv()], stdout=subprocess.PIPE, stderr=err, text=True,
            env=env, preexec_fn=raise_nofile,
        )  # fmt: skip
        err.close()
        assert self.proc.stdout is not None
        line = ""
        deadline = t0 + 120
        while "listening on" not in line:
            ready, _, _ = select.select(
                [self.proc.stdout], [], [], max(0, deadline - time.perf_counter())
            )
            line = self.proc.stdout.readline() if ready else ""
            if not line:
                self.stop()
                raise BenchError(f"dohost serve did not start; see {err.name}")
        t = time.perf_counter() - t0
        self.url = line.split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1])
        return t

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.prefix:  # a profiler runs the server: SIGINT makes it write its output
            kids = _children(self.proc.pid)
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            for pid in kids:  # the server, if the profiler left it running
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        else:
            stop_process(self.proc, timeout=60)
        self.proc = None

    def _json(self, method: str, path: str, token: str, body: Any = None) -> Any:
        import httpx

        r = httpx.request(
            method, self.url + path, json=body, timeout=120,
            headers={"authorization": f"Bearer {token}"},
        )  # fmt: skip
        if r.status_code >= 300:
            raise BenchError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json()

    def setup(self) -> None:
        """Create the tenant (quotas high enough not to be what is measured) and deploy
        the classes; the token is kept across restarts of the same data directory."""
        if self.token is None:
            quotas = {"requests_per_s": 1e9, "objects": 10**9, "storage_bytes": 1 << 50}
            t = self._json("POST", "/v1/tenants", ADMIN_TOKEN, {"name": TENANT, "quotas": quotas})
            self.token = t["token"]
            self.headers = (("Authorization", f"Bearer {self.token}"),)
        self.deploy("counter", COUNTER_WASM.read_bytes())
        self.deploy("noop", noop_wasm())

    def deploy(self, cls: str, wasm: bytes, storage: str = "kv") -> None:
        """Deploy a class to the bench tenant (after setup)."""
        import httpx

        r = httpx.put(
            f"{self.url}/v1/classes/{cls}", params={"storage": storage}, content=wasm,
            timeout=120, headers={"authorization": f"Bearer {self.token}"},
        )  # fmt: skip
        if r.status_code >= 300:
            raise BenchError(f"deploy {cls}: {r.status_code} {r.text[:300]}")

    def metrics(self) -> dict[str, float]:
        """Sums of the /metrics series by name (labels summed over)."""
        import httpx

        r = httpx.get(
            self.url + "/metrics", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
        )
        out: dict[str, float] = {}
        for line in r.text.splitlines():
            if not line or line.startswith("#"):
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            with contextlib.suppress(ValueError):
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        return out

    def noop(self, name: str) -> tuple[str, str]:
        return "GET", f"/v1/classes/noop/objects/{name}/"

    def get(self, name: str) -> tuple[str, str]:
        return "GET", f"/v1/classes/counter/objects/{name}/"

    def incr(self, name: str) -> tuple[str, str]:
        return "POST", f"/v1/classes/counter/objects/{name}/incr"

    def wrk_random(self, prefix: str) -> tuple[str, str, str]:
        return "POST", f"/v1/classes/counter/objects/{prefix}", "/incr"

    def port_for(self, socket_name: str = "http") -> int:
        return self.port


Server = Workerd | Dohost


def request(server: Server, op: tuple[str, str], port: int | None = None) -> tuple[int, bytes]:
    c = RawClient(port or server.port, server.headers)
    try:
        return c.request(*op)
    finally:
        c.close()


def counter_value(server: Server, name: str, port: int | None = None) -> int:
    st, body = request(server, server.get(name), port)
    if st != 200:
        raise BenchError(f"{server.name}: reading counter {name}: {st} {body[:200]!r}")
    return int(body or b"0")

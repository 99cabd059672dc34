"""Compile every module in a child process with a time, CPU and memory limit.

wasmtime cannot interrupt a compile, and its cost is not bounded by the module's size in
any useful way: measured on a shared 2-core machine, 10^5 tiny functions (1 MB) took
7-25 s and 1.6 MB of straight-line code 18-27 s, and crafted modules well under 256 KiB
take over ten seconds of CPU and more than a gigabyte of memory. A child process can be
limited and killed, so every compile runs in one:

- the child is forked from a small fork server (`python -m dohost.runtime.compile_child`,
  started on first use and kept between compiles) that has already imported wasmtime and
  dohost, so a compile costs a fork, a few ms, instead of a Python start (~0.2 s);
- it first checks the module's shape (core/wasm_shape.py: counts of exports, functions,
  locals, ...), then compiles with one thread (`parallel_compilation` off: one compile
  takes one core), at nice 19, under `RLIMIT_AS` (`memory_bytes`) and `RLIMIT_CPU`;
- the parent waits at most `timeout_s` and kills it after; a child that ran out of
  memory dies (wasmtime aborts on a failed allocation) and the deploy is refused
  `module_too_large` naming the limit;
- it writes the serialized code to the host's own module cache, where the parent
  deserializes it (only code this host compiled is deserialized: the child is the host).

The caller blocks until the child ends: call it from a thread that is not one of the
event workers (server/host.py uses trio's thread pool), so a compile holds no worker.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

from dohost.core.errors import Code, DohostError
from dohost.core.wasm_shape import ShapeLimits, check_module_shape
from dohost.runtime.engine import EngineSettings, make_engine

# Address space a compile may use (RLIMIT_AS). The forked child starts at ~150 MiB of
# mappings (Python, wasmtime); a 1 MB module of 10^5 functions needs ~300 MiB more.
COMPILE_MEMORY_BYTES = 1024 * 1024 * 1024
COMPILE_TIMEOUT_S = 60.0
# Output of a refused module's error (bounded: the message is one line).
_MAX_ERROR_BYTES = 64 * 1024


class _Server:
    """A started fork server: `python -m dohost.runtime.compile_child`, one job at a time.

    Protocol (pipes): the parent writes `>II` (header length, wasm length), a JSON header
    and the wasm; the server forks a child for the job and answers one JSON line
    `{"pid": N}`, then, when the child has ended, `{"status": S}` (its exit code, or
    minus the signal that killed it). It exits when its stdin closes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dohost.runtime.compile_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # Unbuffered: the parent selects on stdout's fd between two lines, and a
            # buffered reader could already hold the second one.
            bufsize=0,
            # (A compile that runs out of memory aborts with a message there: its exit
            # status is what the parent reports.)
            stderr=subprocess.DEVNULL,
            env=_child_env(),
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def run(self, header: dict[str, object], wasm: bytes, timeout_s: float) -> int | None:
        """Run one job; its exit status, or None when it ran past `timeout_s` (killed)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        head = json.dumps(header).encode()
        out = memoryview(struct.pack(">II", len(head), len(wasm)) + head + wasm)
        while out:
            out = out[self.proc.stdin.write(out) or 0 :]
        pid = int(json.loads(self.proc.stdout.readline())["pid"])
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        timed_out = not ready
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        status = int(json.loads(self.proc.stdout.readline())["status"])
        return None if timed_out else status


def _child_env() -> dict[str, str]:
    """The parent's environment, with this package importable even when the parent found
    it through sys.path rather than an installed distribution (embedders, bench/)."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else root + os.pathsep + path}


_idle_lock = threading.Lock()
_idle: list[_Server] = []  # servers between jobs (as many as compiles ran at once)


def _take_server() -> _Server:
    with _idle_lock:
        while _idle:
            server = _idle.pop()
            if server.alive():
                return server
    return _Server()


def _give_back(server: _Server) -> None:
    with _idle_lock:
        _idle.append(server)


@atexit.register
def _close_servers() -> None:
    with _idle_lock:
        servers, _idle[:] = list(_idle), []
    for server in servers:
        server.close()


def compile_in_child(
    wasm: bytes,
    out: Path,
    settings: EngineSettings,
    timeout_s: float = COMPILE_TIMEOUT_S,
    memory_bytes: int = COMPILE_MEMORY_BYTES,
    shape: ShapeLimits | None = None,
) -> None:
    """Compile `wasm` into `out` (serialized) in a child process limited to `timeout_s`
    seconds and `memory_bytes` of address space. Raises DohostError: the module's own
    error (invalid_module, module_limit, ...), or module_too_large when the compile ran
    out of time or memory."""
    err_path = out.with_name(out.name + f".err{os.getpid()}.{threading.get_ident()}")
    header: dict[str, object] = {
        "out": str(out),
        "err": str(err_path),
        "stack": settings.max_wasm_stack,
        "opt": settings.opt_level,
        "reserve": settings.memory_reservation,
        "memory_bytes": memory_bytes,
        "cpu_s": int(timeout_s) + 1,
        "shape": dataclasses.asdict(shape or ShapeLimits()),
    }
    server = _take_server()
    try:
        status = server.run(header, wasm, timeout_s)
    except (OSError, ValueError, KeyError):
        server.close()  # a broken server is not reused
        raise DohostError(Code.INTERNAL, "the module compiler process failed") from None
    _give_back(server)
    try:
        if status is None:
            raise DohostError(
                Code.MODULE_TOO_LARGE,
                f"compiling the module took longer than {timeout_s:g} s, the host's limit; "
                "make it smaller (fewer or smaller functions)",
            )
        if status == 0:
            return
        if status == 1:
            try:
                err = json.loads(err_path.read_bytes()[:_MAX_ERROR_BYTES])
                raise DohostError(Code[err["code"].upper()], str(err["message"]))
            except (OSError, ValueError, KeyError, TypeError):
                pass
        raise DohostError(
            Code.MODULE_TOO_LARGE,
            f"compiling the module failed (exit {status}): it needs more than "
            f"{memory_bytes >> 20} MiB or {int(timeout_s)} s of CPU, the host's limits; "
            "make it smaller (fewer or smaller functions)",
        )
    finally:
        with contextlib.suppress(OSError):
            err_path.unlink()


def _job(header: dict[str, Any], wasm: bytes) -> int:
    """The forked child: limits first, then check the shape, compile, write the result."""
    from dohost.runtime.module_loader import compile_module  # (module_loader imports us)

    memory_bytes, cpu_s = int(header["memory_bytes"]), int(header["cpu_s"])
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    with contextlib.suppress(OSError):
        os.nice(19)
    try:
        check_module_shape(wasm, ShapeLimits(**header["shape"]))
        settings = EngineSettings(
            max_wasm_stack=int(header["stack"]),
            opt_level=header["opt"],
            memory_reservation=int(header["reserve"]),
        )
        module = compile_module(make_engine(settings, threads=False), wasm)
        data = module.serialize()
    except DohostError as e:
        Path(header["err"]).write_text(json.dumps({"code": e.code.code, "message": e.message}))
        return 1
    except MemoryError:
        return 3
    dest = Path(header["out"])
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    return 0


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    return data if len(data) == n else None


def serve() -> int:
    """The fork server's loop (see _Server). Single-threaded, so forking is safe."""
    import dohost.runtime.module_loader  # noqa: F401  (preload: each child starts warm)

    with contextlib.suppress(OSError):
        os.nice(19)  # below the host's loop and workers, as its children are

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        sizes = _read_exact(stdin, 8)
        if sizes is None:
            return 0
        hlen, wlen = struct.unpack(">II", sizes)
        head, wasm = _read_exact(stdin, hlen), _read_exact(stdin, wlen)
        if head is None or wasm is None:
            return 0
        pid = os.fork()
        if pid == 0:
            code = 4
            try:
                code = _job(json.loads(head), wasm)
            finally:
                os._exit(code)
        stdout.write(json.dumps({"pid": pid}).encode() + b"\n")
        stdout.flush()
        _, st = os.waitpid(pid, 0)
        status = os.waitstatus_to_exitcode(st)
        stdout.write(json.dumps({"status": status}).encode() + b"\n")
        stdout.flush()


if __name__ == "__main__":
    sys.exit(serve())

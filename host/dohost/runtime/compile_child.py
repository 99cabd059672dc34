"""Compile a module in a child process, so a deploy's compile time has a bound.

wasmtime cannot interrupt a compile, and its time is not bounded by the module size limit
in any useful way: measured on a shared 2-core machine, 10^5 tiny functions (1 MB) took
7-25 s and 1.6 MB of straight-line code 18-27 s, so a 32 MiB module could hold a worker
thread (and wasmtime's compile threads on every core) for many minutes. A child process
can be killed: `compile_in_child` runs this module as `python -m`, which compiles with
an engine built from the same `EngineSettings` and writes the serialized code to the
host's own module cache, where the parent deserializes it (the rule that only code this
host compiled is deserialized holds: the child is the host).

    python -m dohost.runtime.compile_child OUT_PATH MAX_WASM_STACK OPT_LEVEL  < module.wasm

Exit 0: OUT_PATH written. Exit 1: stdout holds {"code", "message"} of the DohostError
that refused the module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dohost.core.errors import Code, DohostError
from dohost.runtime.engine import EngineSettings, make_engine

# Output of a refused module's error (bounded: the message is one line).
_MAX_ERROR_BYTES = 64 * 1024


def _child_env() -> dict[str, str]:
    """The parent's environment, with this package importable even when the parent found
    it through sys.path rather than an installed distribution (embedders, bench/)."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else root + os.pathsep + path}


def compile_in_child(wasm: bytes, out: Path, settings: EngineSettings, timeout_s: float) -> None:
    """Compile `wasm` into `out` (serialized) in a child process that gets at most
    `timeout_s` seconds. Raises DohostError: the module's own error (invalid_module),
    or module_too_large when the compile ran out of time."""
    cmd = [
        sys.executable,
        "-m",
        "dohost.runtime.compile_child",
        str(out),
        str(settings.max_wasm_stack),
        settings.opt_level,
    ]
    try:
        proc = subprocess.run(
            cmd, input=wasm, capture_output=True, timeout=timeout_s, env=_child_env()
        )
    except subprocess.TimeoutExpired:  # (run() has killed and reaped the child)
        raise DohostError(
            Code.MODULE_TOO_LARGE,
            f"compiling the module took longer than {timeout_s:g} s, the host's limit; "
            "make it smaller (fewer or smaller functions)",
        ) from None
    if proc.returncode == 0:
        return
    if proc.returncode == 1:
        try:
            err = json.loads(proc.stdout[:_MAX_ERROR_BYTES])
            raise DohostError(Code[err["code"].upper()], str(err["message"]))
        except (ValueError, KeyError, TypeError):
            pass
    raise DohostError(
        Code.INTERNAL,
        f"the module compiler process failed (exit {proc.returncode}): "
        f"{proc.stderr[-500:].decode(errors='replace').strip()}",
    )


def main(argv: list[str]) -> int:
    from dohost.runtime.module_loader import compile_module  # (module_loader imports us)

    out, stack, opt = Path(argv[0]), int(argv[1]), argv[2]
    wasm = sys.stdin.buffer.read()
    engine = make_engine(EngineSettings(max_wasm_stack=stack, opt_level=opt))
    try:
        module = compile_module(engine, wasm)
    except DohostError as e:
        sys.stdout.write(json.dumps({"code": e.code.code, "message": e.message}))
        return 1
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(module.serialize())
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

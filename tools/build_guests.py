"""Build the guest modules: C samples and test guests, and the WAT test fixtures.

    .venv/bin/python tools/build_guests.py            # build what is out of date
    .venv/bin/python tools/build_guests.py --force    # rebuild everything
    .venv/bin/python tools/build_guests.py counter    # only the named guests

Outputs: samples/<name>/<name>.wasm, tests/fixtures/build/<name>.wasm (both git-ignored).
To add a guest, add a row to GUESTS; to add a language, add a builder to BUILDERS.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
C_SDK = ROOT / "guest-sdk" / "c"
FIXTURES = ROOT / "tests" / "fixtures"
FIXTURE_BUILD = FIXTURES / "build"


@dataclass(frozen=True)
class Guest:
    name: str
    lang: str  # a key of BUILDERS
    sources: tuple[str, ...]  # relative to the repository root
    output: str  # relative to the repository root
    flags: tuple[str, ...] = ()  # extra compiler flags


# Every compiled guest. WAT fixtures (tests/fixtures/*.wat) are found without a row.
GUESTS: list[Guest] = [
    Guest("counter", "c", ("samples/counter/counter.c",), "samples/counter/counter.wasm"),
    Guest("kvtest", "c", ("tests/fixtures/c/kvtest.c",), "tests/fixtures/build/kvtest.wasm"),
    # The same test guest against wasi-libc: a reactor module that exports _initialize.
    Guest(
        "kvtest_wasi",
        "c",
        ("tests/fixtures/c/kvtest.c",),
        "tests/fixtures/build/kvtest_wasi.wasm",
        flags=("--target=wasm32-wasi", "-mexec-model=reactor", "-s"),  # -s: libc debug info
    ),
]

C_FLAGS = ["-O2", "-g0", "-std=c11", "-Wall", "-Wextra"]
C_FREESTANDING = ["--target=wasm32-freestanding", "-nostdlib", "-Wl,--no-entry"]


class BuildError(Exception):
    pass


def c_sdk_files() -> list[Path]:
    return sorted([*C_SDK.glob("*.c"), *C_SDK.glob("*.h")])


def zig_env() -> dict[str, str]:
    env = dict(os.environ)
    cache = ROOT / ".zig-cache"  # git-ignored
    env.setdefault("ZIG_GLOBAL_CACHE_DIR", str(cache / "global"))
    env.setdefault("ZIG_LOCAL_CACHE_DIR", str(cache / "local"))
    return env


def build_c(guest: Guest, out: Path) -> None:
    if importlib.util.find_spec("ziglang") is None:
        raise BuildError(
            "C guests need the ziglang package (a C compiler for wasm32): "
            "run `make build` or `.venv/bin/pip install ziglang`"
        )
    # A --target in the row replaces the freestanding defaults (e.g. wasm32-wasi + libc).
    wasi = any(f.startswith("--target=") for f in guest.flags)
    cmd = [sys.executable, "-m", "ziglang", "cc"]
    cmd += [] if wasi else C_FREESTANDING
    cmd += [*C_FLAGS, *guest.flags, f"-I{C_SDK}", "-o", str(out)]
    cmd += [str(ROOT / s) for s in guest.sources]
    cmd += [str(p) for p in C_SDK.glob("*.c")]
    proc = subprocess.run(cmd, cwd=ROOT, env=zig_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{guest.name}: compiler failed\n$ {' '.join(cmd)}\n{proc.stderr}")
    if proc.stderr.strip():  # warnings
        print(proc.stderr, file=sys.stderr, end="")


def build_wat(guest: Guest, out: Path) -> None:
    import wasmtime

    (source,) = guest.sources
    try:
        out.write_bytes(wasmtime.wat2wasm((ROOT / source).read_text()))
    except wasmtime.WasmtimeError as e:
        raise BuildError(f"{guest.name}: {source}: {e}") from e


BUILDERS: dict[str, Callable[[Guest, Path], None]] = {"c": build_c, "wat": build_wat}
EXTRA_INPUTS: dict[str, Callable[[], list[Path]]] = {"c": c_sdk_files}


def wat_fixtures() -> list[Guest]:
    return [
        Guest(p.stem, "wat", (str(p.relative_to(ROOT)),), f"tests/fixtures/build/{p.stem}.wasm")
        for p in sorted(FIXTURES.glob("*.wat"))
    ]


def inputs(guest: Guest) -> list[Path]:
    extra = EXTRA_INPUTS.get(guest.lang, list)()
    return [*(ROOT / s for s in guest.sources), *extra, Path(__file__).resolve()]


def up_to_date(guest: Guest) -> bool:
    out = ROOT / guest.output
    if not out.exists():
        return False
    newest = max(p.stat().st_mtime for p in inputs(guest))
    return out.stat().st_mtime >= newest


def build(guest: Guest) -> None:
    """Builds into a temporary file and renames it, so readers never see half a module."""
    out = ROOT / guest.output
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{guest.name}.", suffix=".wasm", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        BUILDERS[guest.lang](guest, tmp)
        tmp.chmod(0o644)  # mkstemp creates 0600
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="build only these guests")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)

    # WAT first: it needs only wasmtime, so fixtures build even without a C compiler.
    guests = wat_fixtures() + GUESTS
    unknown = set(args.names) - {g.name for g in guests}
    if unknown:
        print(f"unknown guest(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    listed = {Path(s).parent for g in GUESTS for s in g.sources}
    for src in sorted(ROOT.glob("samples/*/*.c")):
        if src.parent.relative_to(ROOT) not in listed:
            print(
                f"build_guests: note: {src.relative_to(ROOT)} has no row in GUESTS", file=sys.stderr
            )
    built = 0
    for guest in guests:
        if args.names and guest.name not in args.names:
            continue
        if not args.force and up_to_date(guest):
            continue
        try:
            build(guest)
        except BuildError as e:
            print(f"build_guests: {e}", file=sys.stderr)
            return 1
        size = (ROOT / guest.output).stat().st_size
        print(f"built {guest.output} ({size} bytes)")
        built += 1
    if built == 0:
        print("build_guests: everything up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build the guest modules: samples and test guests in C, Zig, Rust and AssemblyScript, and
the WAT test fixtures.

    .venv/bin/python tools/build_guests.py            # build what is out of date
    .venv/bin/python tools/build_guests.py --force    # rebuild everything
    .venv/bin/python tools/build_guests.py counter    # only the named guests

Outputs: samples/<name>/<name>.wasm, tests/fixtures/build/<name>.wasm,
guest-sdk/<lang>/examples/<name>/<name>.wasm (all git-ignored).
To add a guest, add a row to GUESTS; to add a language, add a builder to BUILDERS.
Toolchains: tools/install_toolchains.sh (run by `make build`) installs what is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
C_SDK = ROOT / "guest-sdk" / "c"
ZIG_SDK = ROOT / "guest-sdk" / "zig"
RUST_SDK = ROOT / "guest-sdk" / "rust"
AS_SDK = ROOT / "guest-sdk" / "assemblyscript"
FIXTURES = ROOT / "tests" / "fixtures"
FIXTURE_BUILD = FIXTURES / "build"


@dataclass(frozen=True)
class Guest:
    name: str
    lang: str  # a key of BUILDERS
    sources: tuple[str, ...]  # relative to the repository root
    output: str  # relative to the repository root
    flags: tuple[str, ...] = ()  # extra compiler flags


# Every compiled guest. WAT fixtures (tests/fixtures/*.wat, hostile/*.wat) are found without a row.
GUESTS: list[Guest] = [
    Guest("counter", "c", ("samples/counter/counter.c",), "samples/counter/counter.wasm"),
    Guest("reminder", "c", ("samples/reminder/reminder.c",), "samples/reminder/reminder.wasm"),
    Guest(
        "kvtest",
        "c",
        ("tests/fixtures/c/kvtest.c", "tests/fixtures/c/text.h"),
        "tests/fixtures/build/kvtest.wasm",
    ),
    Guest("sqltest", "c", ("tests/fixtures/c/sqltest.c",), "tests/fixtures/build/sqltest.wasm"),
    Guest(
        "calltest",
        "c",
        ("tests/fixtures/c/calltest.c", "tests/fixtures/c/text.h"),
        "tests/fixtures/build/calltest.wasm",
    ),
    Guest("wstest", "c", ("tests/fixtures/c/wstest.c",), "tests/fixtures/build/wstest.wasm"),
    # tests/reliability/: several keys and a checksum per event (partial events show)
    Guest(
        "checksum_counter",
        "c",
        ("tests/fixtures/c/checksum_counter.c",),
        "tests/fixtures/build/checksum_counter.wasm",
    ),
    # Two classes of one sample; headers listed in sources are inputs, not compiled.
    Guest(
        "pipeline",
        "c",
        ("samples/pipeline/pipeline.c", "samples/pipeline/common.h"),
        "samples/pipeline/pipeline.wasm",
    ),
    Guest(
        "pipeline-run",
        "c",
        ("samples/pipeline/run.c", "samples/pipeline/common.h"),
        "samples/pipeline/run.wasm",
    ),
    Guest("booking", "c", ("samples/booking/booking.c",), "samples/booking/booking.wasm"),
    # bench/sql_http.py's guest (beside workerd's bench/workerd_sql/).
    Guest("sqlbench", "c", ("bench/guests/sqlbench.c",), "tests/fixtures/build/sqlbench.wasm"),
    # The same test guest against wasi-libc: a reactor module that exports _initialize.
    Guest(
        "kvtest_wasi",
        "c",
        ("tests/fixtures/c/kvtest.c", "tests/fixtures/c/text.h"),
        "tests/fixtures/build/kvtest_wasi.wasm",
        flags=("--target=wasm32-wasi", "-mexec-model=reactor", "-s"),  # -s: libc debug info
    ),
    # Guest SDKs (guest-sdk/README.md): each language's counter example, conformance guest
    # (tests/conformance/) and sample.
    Guest(
        "counter_zig",
        "zig",
        ("guest-sdk/zig/examples/counter/counter.zig",),
        "guest-sdk/zig/examples/counter/counter.wasm",
    ),
    Guest(
        "counter_rust",
        "rust",
        ("guest-sdk/rust/examples/counter/counter.rs",),
        "guest-sdk/rust/examples/counter/counter.wasm",
    ),
    Guest(
        "counter_as",
        "as",
        ("guest-sdk/assemblyscript/examples/counter/counter.ts",),
        "guest-sdk/assemblyscript/examples/counter/counter.wasm",
    ),
    Guest(
        "kvtest_zig",
        "zig",
        ("tests/conformance/guests/kvtest.zig",),
        "tests/fixtures/build/kvtest_zig.wasm",
    ),
    Guest(
        "wstest_zig",
        "zig",
        ("tests/conformance/guests/wstest.zig",),
        "tests/fixtures/build/wstest_zig.wasm",
    ),
    Guest(
        "kvtest_rust",
        "rust",
        ("tests/conformance/guests/kvtest.rs",),
        "tests/fixtures/build/kvtest_rust.wasm",
    ),
    Guest(
        "kvtest_as",
        "as",
        ("tests/conformance/guests/kvtest.ts",),
        "tests/fixtures/build/kvtest_as.wasm",
    ),
    Guest(
        "wstest_rust",
        "rust",
        ("tests/conformance/guests/wstest.rs",),
        "tests/fixtures/build/wstest_rust.wasm",
    ),
    Guest(
        "wstest_as",
        "as",
        ("tests/conformance/guests/wstest.ts",),
        "tests/fixtures/build/wstest_as.wasm",
    ),
    Guest(
        "chat-room",
        "zig",
        ("samples/chat-room/chat-room.zig", "samples/chat-room/chat.html"),  # the page is embedded
        "samples/chat-room/chat-room.wasm",
    ),
    Guest(
        "rate-limiter",
        "rust",
        ("samples/rate-limiter/src/lib.rs",),
        "samples/rate-limiter/rate-limiter.wasm",
    ),
    Guest(
        "document",
        "as",
        ("samples/document/document.ts", "samples/document/json.ts"),
        "samples/document/document.wasm",
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
    cmd += [str(ROOT / s) for s in guest.sources if not s.endswith(".h")]
    cmd += [str(p) for p in C_SDK.glob("*.c")]
    proc = subprocess.run(cmd, cwd=ROOT, env=zig_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{guest.name}: compiler failed\n$ {' '.join(cmd)}\n{proc.stderr}")
    if proc.stderr.strip():  # warnings
        print(proc.stderr, file=sys.stderr, end="")


def zig_sdk_files() -> list[Path]:
    return sorted(ZIG_SDK.glob("*.zig"))


def build_zig(guest: Guest, out: Path) -> None:
    """The first source is the root module; it imports the SDK as @import("dohost")."""
    if importlib.util.find_spec("ziglang") is None:
        raise BuildError(
            "Zig guests need the ziglang package: run `make build` or `.venv/bin/pip install ziglang`"
        )
    cmd = [sys.executable, "-m", "ziglang", "build-exe", "-target", "wasm32-freestanding"]
    cmd += ["-fno-entry", "-rdynamic", "-O", "ReleaseSmall", *guest.flags]
    cmd += [
        "--dep",
        "dohost",
        f"-Mroot={ROOT / guest.sources[0]}",
        f"-Mdohost={ZIG_SDK / 'dohost.zig'}",
    ]
    cmd += [f"-femit-bin={out}"]
    run_compiler(guest, cmd, zig_env())


# Debian's rustc 1.63 (`apt-get install rustc libstd-rust-dev-wasm32 lld`): a rustup rustc
# earlier on PATH is another compiler without the wasm32 standard library.
RUSTC = os.environ.get("DOHOST_RUSTC", "/usr/bin/rustc")
RUST_TARGET = ["--edition", "2021", "--target", "wasm32-unknown-unknown"]
RUST_FLAGS = ["-C", "opt-level=s", "-C", "panic=abort"]
RUST_RLIB = ROOT / "build" / "rust" / "libdohost.rlib"  # the SDK crate, built once


def rust_sdk_files() -> list[Path]:
    return sorted((RUST_SDK / "src").glob("*.rs"))


def check_rust() -> None:
    hint = "run `make build` (tools/install_toolchains.sh) or `apt-get install rustc libstd-rust-dev-wasm32 lld`"
    if not Path(RUSTC).exists():
        raise BuildError(f"Rust guests need Debian's rustc at {RUSTC}: {hint}")
    if shutil.which("wasm-ld") is None:
        raise BuildError(f"Rust guests need the wasm-ld linker: {hint}")


def rust_sdk_rlib() -> Path:
    """Builds the dohost crate when a source (or this script) is newer than the rlib."""
    newest = max(p.stat().st_mtime for p in [*rust_sdk_files(), Path(__file__).resolve()])
    if RUST_RLIB.exists() and RUST_RLIB.stat().st_mtime >= newest:
        return RUST_RLIB
    RUST_RLIB.parent.mkdir(parents=True, exist_ok=True)
    # rustc names its temporary files after the output: a private directory keeps builds
    # running at the same time (two test sessions) from deleting each other's.
    with tempfile.TemporaryDirectory(dir=RUST_RLIB.parent) as tmp:
        out = Path(tmp) / "libdohost.rlib"
        cmd = [RUSTC, *RUST_TARGET, *RUST_FLAGS, "--crate-type", "rlib", "--crate-name", "dohost"]
        cmd += ["-o", str(out), str(RUST_SDK / "src" / "lib.rs")]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"the Rust SDK does not compile\n$ {' '.join(cmd)}\n{proc.stderr}")
        out.replace(RUST_RLIB)
    return RUST_RLIB


def build_rust(guest: Guest, out: Path) -> None:
    """The first source is the crate root of a cdylib that depends on the SDK crate."""
    check_rust()
    rlib = rust_sdk_rlib()
    with tempfile.TemporaryDirectory(dir=RUST_RLIB.parent) as tmp:  # see rust_sdk_rlib
        tmp_out = Path(tmp) / "out.wasm"
        cmd = [RUSTC, *RUST_TARGET, *RUST_FLAGS, "--crate-type", "cdylib"]
        cmd += ["--crate-name", guest.name.replace("-", "_"), "-C", "lto", "-C", "linker=wasm-ld"]
        cmd += ["-C", "strip=symbols", "--extern", f"dohost={rlib}", *guest.flags]
        cmd += ["-o", str(tmp_out), str(ROOT / guest.sources[0])]
        run_compiler(guest, cmd, None)
        tmp_out.replace(out)


def as_sdk_files() -> list[Path]:
    return sorted([*(AS_SDK / "assembly").glob("*.ts"), AS_SDK / "package-lock.json"])


def build_as(guest: Guest, out: Path) -> None:
    """The first source is the entry file; it re-exports the SDK's dohost_* exports."""
    asc = AS_SDK / "node_modules" / "assemblyscript" / "bin" / "asc.js"
    node = shutil.which("node")
    if node is None:
        raise BuildError(
            "AssemblyScript guests need Node.js 20+: run `make build` (tools/install_toolchains.sh)"
        )
    if not asc.exists():
        raise BuildError(
            "AssemblyScript guests need the pinned compiler: run `make build` "
            "(tools/install_toolchains.sh) or `cd guest-sdk/assemblyscript && npm ci`"
        )
    # minimal runtime: the SDK collects garbage at the end of each event (object.ts)
    cmd = [node, str(asc), str(ROOT / guest.sources[0]), "-O3z", "--runtime", "minimal"]
    cmd += ["--use", "abort=", *guest.flags, "-o", str(out)]
    run_compiler(guest, cmd, None)


def run_compiler(guest: Guest, cmd: list[str], env: dict[str, str] | None) -> None:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
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


BUILDERS: dict[str, Callable[[Guest, Path], None]] = {
    "c": build_c,
    "wat": build_wat,
    "zig": build_zig,
    "rust": build_rust,
    "as": build_as,
}
EXTRA_INPUTS: dict[str, Callable[[], list[Path]]] = {
    "c": c_sdk_files,
    "zig": zig_sdk_files,
    "rust": rust_sdk_files,
    "as": as_sdk_files,
}


def wat_fixtures() -> list[Guest]:
    return [
        Guest(p.stem, "wat", (str(p.relative_to(ROOT)),), f"tests/fixtures/build/{p.stem}.wasm")
        for p in wat_fixture_paths()
    ]


def wat_fixture_paths() -> list[Path]:
    """tests/fixtures/*.wat and the hostile guests corpus, tests/fixtures/hostile/*.wat
    (one build directory: their names must differ)."""
    return sorted([*FIXTURES.glob("*.wat"), *FIXTURES.glob("hostile/*.wat")])


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
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="one summary line instead of one per guest"
    )
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
        if not args.quiet:
            print(f"built {guest.output} ({size} bytes)")
        built += 1
    if built == 0:
        print("build_guests: everything up to date")
    elif args.quiet:
        print(f"build_guests: built {built} guest{'s' if built != 1 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

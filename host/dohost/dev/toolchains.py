"""Building a project's module with its language's toolchain and the packaged SDK.

The same commands as `tools/build_guests.py` in a checkout (guest-sdk/README.md), with
the SDK taken from the installed package, so a project builds anywhere dohost is
installed: C and Zig with PyPI's `ziglang`, Rust with Debian's rustc 1.63 and wasm-ld,
AssemblyScript with npm's `assemblyscript` 0.28 (the project's `node_modules`, or the
SDK's own in a checkout). Function names are kept, so a trap's backtrace names them.
A missing toolchain is a failed build whose text says how to install it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from dohost.dev.project import Project, sdk_root

RUSTC = os.environ.get("DOHOST_RUSTC", "/usr/bin/rustc")
RUST_FLAGS = ["--edition", "2021", "--target", "wasm32-unknown-unknown"]
RUST_FLAGS += ["-C", "opt-level=s", "-C", "panic=abort"]


@dataclass
class BuildResult:
    ok: bool
    seconds: float
    output: str  # the compiler's messages (warnings, or why it failed)
    command: list[str]

    def failure_block(self) -> str:
        """What a failed build shows: the command and the compiler's own words."""
        return f"$ {' '.join(self.command)}\n{self.output.rstrip()}"


class MissingToolchain(Exception):
    pass


def build(project: Project) -> BuildResult:
    """Build `project.wasm` (replaced only when the build succeeds)."""
    t0 = time.monotonic()
    project.build_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".wasm", dir=project.build_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            cmd, env = _command(project, tmp)
        except MissingToolchain as e:
            return BuildResult(False, time.monotonic() - t0, str(e), [])
        proc = subprocess.run(
            cmd, cwd=project.root, env=env, capture_output=True, text=True, timeout=600
        )
        ok = proc.returncode == 0 and tmp.stat().st_size > 0
        if ok:
            tmp.replace(project.wasm)
        output = (proc.stdout + proc.stderr).strip()
        return BuildResult(ok, time.monotonic() - t0, output, cmd)
    finally:
        tmp.unlink(missing_ok=True)


def _command(p: Project, out: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    sdk = sdk_root()
    if p.lang in ("c", "zig"):
        if importlib.util.find_spec("ziglang") is None:
            raise MissingToolchain(
                f"{p.lang} projects need the ziglang package (a wasm32 compiler): "
                f"{sys.executable} -m pip install ziglang"
            )
        env.setdefault("ZIG_LOCAL_CACHE_DIR", str(p.build_dir / ".zig-cache"))
    if p.lang == "c":
        sources = [s for s in p.sources() if s.suffix == ".c"]
        if p.main not in sources:
            sources.insert(0, p.main)
        cmd = [sys.executable, "-m", "ziglang", "cc", "--target=wasm32-freestanding"]
        cmd += ["-nostdlib", "-Wl,--no-entry", "-O2", "-g0", "-std=c11", "-Wall", "-Wextra"]
        cmd += [f"-I{sdk / 'c'}", f"-I{p.main.parent}", "-o", str(out)]
        cmd += [str(s) for s in sources] + [str(s) for s in sorted((sdk / "c").glob("*.c"))]
        return cmd, env
    if p.lang == "zig":
        cmd = [sys.executable, "-m", "ziglang", "build-exe", "-target", "wasm32-freestanding"]
        cmd += ["-fno-entry", "-rdynamic", "-O", "ReleaseSmall", "--dep", "dohost"]
        cmd += [f"-Mroot={p.main}", f"-Mdohost={sdk / 'zig' / 'dohost.zig'}"]
        return [*cmd, f"-femit-bin={out}"], env
    if p.lang == "rust":
        rlib = _rust_sdk(p, sdk)
        cmd = [
            RUSTC,
            *RUST_FLAGS,
            "--crate-type",
            "cdylib",
            "--crate-name",
            p.name.replace("-", "_"),
        ]
        cmd += ["-C", "lto", "-C", "linker=wasm-ld", "-C", "strip=debuginfo"]
        return [*cmd, "--extern", f"dohost={rlib}", "-o", str(out), str(p.main)], env
    node = shutil.which("node")
    asc = _find_asc(p, sdk)
    if node is None or asc is None:
        raise MissingToolchain(
            "AssemblyScript projects need Node.js 20+ and the compiler: "
            f"cd {p.root} && npm install --save-dev assemblyscript@0.28.20"
        )
    lib = p.build_dir / "aslib"
    lib.mkdir(exist_ok=True)
    link = lib / "dohost"  # `import ... from "dohost/assembly/index"` resolves here
    if not link.is_symlink() or link.resolve() != (sdk / "assemblyscript").resolve():
        link.unlink(missing_ok=True)
        link.symlink_to(sdk / "assemblyscript", target_is_directory=True)
    cmd = [node, str(asc), str(p.main), "-O3z", "--runtime", "minimal", "--use", "abort="]
    return [*cmd, "--path", str(lib), "-o", str(out)], env


def _find_asc(p: Project, sdk: Path) -> Path | None:
    for base in (p.root, sdk / "assemblyscript"):
        asc = base / "node_modules" / "assemblyscript" / "bin" / "asc.js"
        if asc.exists():
            return asc
    return None


def _rust_sdk(p: Project, sdk: Path) -> Path:
    """The SDK crate, compiled into the project's build directory when it is missing or
    older than the SDK's sources."""
    if not Path(RUSTC).exists() or shutil.which("wasm-ld") is None:
        raise MissingToolchain(
            f"Rust projects need Debian's rustc at {RUSTC} and wasm-ld: "
            "apt-get install rustc libstd-rust-dev-wasm32 lld (or set DOHOST_RUSTC)"
        )
    rlib = p.build_dir / "rust" / "libdohost.rlib"
    sources = list((sdk / "rust" / "src").glob("*.rs"))
    newest = max(s.stat().st_mtime for s in sources)
    if rlib.exists() and rlib.stat().st_mtime >= newest:
        return rlib
    rlib.parent.mkdir(parents=True, exist_ok=True)
    cmd = [RUSTC, *RUST_FLAGS, "--crate-type", "rlib", "--crate-name", "dohost"]
    cmd += ["-o", str(rlib), str(sdk / "rust" / "src" / "lib.rs")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise MissingToolchain(f"the Rust SDK does not compile:\n$ {' '.join(cmd)}\n{proc.stderr}")
    return rlib

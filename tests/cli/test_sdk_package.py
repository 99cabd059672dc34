"""The guest SDKs ship inside the package: the wheel holds them as plain files, and
`dohost init` + `dohost build` work from that wheel alone (no checkout)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_package_build_carries_the_sdks_and_builds_a_project_with_them(tmp_path: Path) -> None:
    out = tmp_path / "wheel"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-w", str(out), "-q"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (wheel,) = out.glob("dohost-*.whl")
    lib = tmp_path / "lib"
    with zipfile.ZipFile(wheel) as z:  # a wheel unpacked is an importable tree
        z.extractall(lib)
    sdk = lib / "dohost" / "sdk"
    for f in ("c/dohost.h", "c/json.c", "c/README.md", "zig/dohost.zig", "zig/build.zig.zon",
              "zig/build.zig", "rust/src/lib.rs",
              "assemblyscript/assembly/index.ts", "assemblyscript/package.json"):  # fmt: skip
        assert (sdk / f).is_file() and not (sdk / f).is_symlink(), f
    assert not (sdk / "assemblyscript" / "node_modules").exists()
    assert not list(sdk.rglob("*.wasm"))
    # Only that build on the path, from a directory far from the checkout.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOHOST_")}
    env["PYTHONPATH"] = str(lib)
    env.setdefault("ZIG_GLOBAL_CACHE_DIR", str(ROOT / ".zig-cache" / "global"))
    work = tmp_path / "work"
    work.mkdir()

    def dohost(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); "
             "from dohost.cli import main; main()", str(lib), *args],
            cwd=cwd, capture_output=True, text=True, timeout=600, env=env,
        )  # fmt: skip

    where = dohost("sdk", "c", cwd=work)
    assert where.stdout.strip() == str((sdk / "c").resolve()), where.stderr
    assert dohost("init", "pkg", "--lang", "c", cwd=work).returncode == 0
    built = dohost("build", cwd=work / "pkg")
    assert built.returncode == 0, built.stderr
    assert (
        str(sdk / "c") in " ".join(built.stderr.split()) or (work / "pkg/build/pkg.wasm").exists()
    )
    assert (work / "pkg" / "build" / "pkg.wasm").read_bytes()[:4] == b"\0asm"

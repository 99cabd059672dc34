"""The SDK documentation's build commands work as written: the C README's line builds a
module that uses json.h, the Rust quick start gives a small module, and the
AssemblyScript quick start compiles where its header says to save it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "guest-sdk"


def blocks_in(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def shell(cmd: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.setdefault("ZIG_GLOBAL_CACHE_DIR", str(ROOT / ".zig-cache" / "global"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_c_readme_build_line_builds_a_module_using_json_h(tmp_path: Path) -> None:
    line = next(
        b
        for b in blocks_in((SDK / "c" / "README.md").read_text(), "sh")
        if "wasm32-freestanding" in b
    )
    assert "guest-sdk/c/*.c" in line  # json.c, sql.c, call.c, ws.c included
    app = tmp_path / "app.c"
    shutil.copy(ROOT / "samples" / "booking" / "booking.c", app)  # uses json.h and sql.h
    cmd = line.replace(".venv/bin/python", sys.executable).replace("app.c", str(app))
    cmd = cmd.replace("app.wasm", str(tmp_path / "app.wasm"))
    r = shell(cmd, ROOT)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "app.wasm").read_bytes()[:4] == b"\0asm"


@pytest.mark.skipif(not Path("/usr/bin/rustc").exists(), reason="Debian's rustc not installed")
def test_rust_quick_start_strips_symbols(tmp_path: Path) -> None:
    text = (SDK / "README.md").read_text()
    section = text[text.index("## Quick start: Rust") :]
    source = blocks_in(section, "rust")[0]
    commands = blocks_in(section, "sh")[0]
    (tmp_path / "hello.rs").write_text(source)
    build = "\n".join(ln for ln in commands.splitlines() if "dohost run" not in ln)
    build = build.replace("guest-sdk/rust/src/lib.rs", str(SDK / "rust" / "src" / "lib.rs"))
    r = shell(build, tmp_path)
    assert r.returncode == 0, r.stderr
    size = (tmp_path / "hello.wasm").stat().st_size
    assert size < 64 * 1024, size  # not the 361 KB of an unstripped build


def test_assemblyscript_quick_start_compiles_where_its_header_says(tmp_path: Path) -> None:
    asc = SDK / "assemblyscript" / "node_modules" / "assemblyscript" / "bin" / "asc.js"
    if shutil.which("node") is None or not asc.exists():
        pytest.skip("AssemblyScript compiler not installed")
    text = (SDK / "README.md").read_text()
    section = text[text.index("## Quick start: AssemblyScript") :]
    source = blocks_in(section, "ts")[0]
    where = re.search(r"Save it as\s*//\s*(\S+):", source.replace("\n", " "))
    assert where is not None, source[:300]
    rel = Path(where.group(1))
    assert rel.parts[:2] == ("guest-sdk", "assemblyscript")
    # The same layout in a scratch copy: the SDK's assembly/ beside examples/hello/.
    root = tmp_path / "as"
    root.mkdir()
    (root / "assembly").symlink_to(SDK / "assemblyscript" / "assembly")
    target = root / Path(*rel.parts[2:])
    target.parent.mkdir(parents=True)
    target.write_text(source)
    r = shell(
        f"node {asc} {target} -O3z --runtime minimal --use abort= -o {tmp_path / 'hello.wasm'}",
        tmp_path,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    assert (tmp_path / "hello.wasm").read_bytes()[:4] == b"\0asm"

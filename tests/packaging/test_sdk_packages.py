"""The guest SDKs packaged as their ecosystems expect, checked offline: each package is
built, consumed the way a user outside this repository would consume it, and the module
that comes out serves a request in a real Host.

- C: `make -C guest-sdk/c install PREFIX=...` (headers, a wasm32 libdohost.a, a
  pkg-config file); the counter sample is compiled against the prefix alone.
- AssemblyScript: `npm pack`; the tarball unpacked as node_modules/dohost-guest-sdk and
  the counter example compiled with imports from "dohost-guest-sdk".
- Rust: `cargo package` (offline); the packaged crate's sources compiled for wasm32 and
  the counter example linked against them.
- Zig: tools/pack_zig_sdk.py makes the package tarball from guest-sdk/zig/build.zig.zon;
  the counter example compiled against the unpacked tarball; and (slow) a consumer's
  `zig fetch --save` of the tarball and `zig build`.

The AssemblyScript and Rust compiles (and Zig's build system) take a minute on a loaded machine, so they are
`slow` (make test-slow); their packages' contents are checked in every run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from dohost import Host, Request

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "guest-sdk"
ZIG = [sys.executable, "-m", "ziglang"]


def zig_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("ZIG_GLOBAL_CACHE_DIR", str(ROOT / ".zig-cache" / "global"))
    env.setdefault("ZIG_LOCAL_CACHE_DIR", str(ROOT / ".zig-cache" / "local"))
    return env


async def serves_a_counter(wasm: bytes, data: Path) -> None:
    async with Host(data, durability="os", workers=1) as host:
        await host.deploy("t", "counter", wasm)
        for want in ("1", "2"):
            r = await host.fetch("t", "counter", "a", Request("POST", "/incr", "", [], b""))
            assert (r.status, r.text) == (200, want)


def run(cmd: list[str], timeout: float = 600, **kw: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    assert r.returncode == 0, f"$ {' '.join(cmd)}\n{r.stdout}\n{r.stderr}"
    return r  # type: ignore[no-any-return]


async def test_c_sdk_installs_to_a_prefix(tmp_path: Path) -> None:
    prefix, build = tmp_path / "prefix", tmp_path / "build"
    zig = " ".join(ZIG)
    run(
        [
            "make",
            "-s",
            "-C",
            str(SDK / "c"),
            "install",
            f"PREFIX={prefix}",
            f"BUILD={build}",
            f"ZIG={zig}",
        ],
        env=zig_env(),
    )
    headers = sorted(p.name for p in (prefix / "include" / "dohost").iterdir())
    assert headers == ["bookmark.h", "call.h", "cbor.h", "dohost.h", "json.h", "sql.h", "ws.h"]
    pc = (prefix / "lib" / "pkgconfig" / "dohost.pc").read_text()
    assert f"prefix={prefix}" in pc and "Libs: -L${libdir} -ldohost" in pc
    lib = prefix / "lib" / "wasm32-freestanding"
    out = tmp_path / "counter.wasm"
    # The sample, with nothing of the repository but its own source: only the prefix.
    src = tmp_path / "counter.c"
    shutil.copy(ROOT / "samples" / "counter" / "counter.c", src)
    run([*ZIG, "cc", "--target=wasm32-freestanding", "-O2", "-nostdlib", "-Wl,--no-entry",
         f"-I{prefix / 'include' / 'dohost'}", f"-L{lib}", "-ldohost", "-o", str(out), str(src)],
        env=zig_env())  # fmt: skip
    await serves_a_counter(out.read_bytes(), tmp_path / "data")


@pytest.mark.slow
async def test_assemblyscript_sdk_is_an_npm_package(tmp_path: Path) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    asc = SDK / "assemblyscript" / "node_modules" / "assemblyscript" / "bin" / "asc.js"
    if node is None or npm is None or not asc.exists():
        pytest.skip("needs node, npm and the pinned asc (make build)")
    r = run(
        [npm, "pack", "--json", "--pack-destination", str(tmp_path)], cwd=SDK / "assemblyscript"
    )
    (info,) = json.loads(r.stdout)
    files = sorted(f["path"] for f in info["files"])
    assert "index.ts" in files and "assembly/index.ts" in files and "package.json" in files
    assert not any(f.startswith(("node_modules", "examples")) for f in files), files
    pkg = tmp_path / "app" / "node_modules" / "dohost-guest-sdk"
    pkg.mkdir(parents=True)
    with tarfile.open(tmp_path / info["filename"]) as t:
        for m in t.getmembers():
            m.name = m.name.removeprefix("package/")
        t.extractall(pkg, filter="data")
    manifest = json.loads((pkg / "package.json").read_text())
    assert (manifest["name"], manifest["license"]) == ("dohost-guest-sdk", "Apache-2.0")
    example = (SDK / "assemblyscript" / "examples" / "counter" / "counter.ts").read_text()
    app = tmp_path / "app" / "app.ts"
    app.write_text(
        example.replace('"../../assembly/exports"', '"dohost-guest-sdk/assembly/exports"').replace(
            '"../../assembly"', '"dohost-guest-sdk"'
        )
    )
    assert "../../assembly" not in app.read_text()
    out = tmp_path / "app" / "app.wasm"
    run(
        [
            node,
            str(asc),
            "app.ts",
            "-O3z",
            "--runtime",
            "minimal",
            "--use",
            "abort=",
            "-o",
            str(out),
        ],
        cwd=tmp_path / "app",
    )
    await serves_a_counter(out.read_bytes(), tmp_path / "data")


@pytest.mark.slow
async def test_rust_sdk_is_a_cargo_package(tmp_path: Path) -> None:
    cargo, rustc = shutil.which("cargo"), os.environ.get("DOHOST_RUSTC", "/usr/bin/rustc")
    if cargo is None or not Path(rustc).exists():
        pytest.skip("needs cargo and Debian's rustc with the wasm32 std (make build)")
    target = tmp_path / "target"
    run(
        [
            cargo,
            "package",
            "--offline",
            "--allow-dirty",
            "--no-verify",
            "--target-dir",
            str(target),
        ],
        cwd=SDK / "rust",
    )
    crate = target / "package" / "dohost-0.1.0.crate"
    with tarfile.open(crate) as t:
        names = sorted(t.getnames())
        t.extractall(tmp_path, filter="data")
    assert "dohost-0.1.0/src/lib.rs" in names and "dohost-0.1.0/Cargo.toml" in names
    assert not any("/examples/" in n or "/target/" in n for n in names), names
    packaged = tmp_path / "dohost-0.1.0"
    assert 'license = "Apache-2.0"' in (packaged / "Cargo.toml").read_text()
    flags = [
        "--edition",
        "2021",
        "--target",
        "wasm32-unknown-unknown",
        "-C",
        "opt-level=s",
        "-C",
        "panic=abort",
    ]
    run(
        [
            rustc,
            *flags,
            "--crate-type",
            "rlib",
            "--crate-name",
            "dohost",
            "-o",
            str(tmp_path / "libdohost.rlib"),
            str(packaged / "src" / "lib.rs"),
        ]
    )
    out = tmp_path / "counter.wasm"
    run([rustc, *flags, "--crate-type", "cdylib", "--extern", f"dohost={tmp_path / 'libdohost.rlib'}",
         "-o", str(out), str(SDK / "rust" / "examples" / "counter" / "counter.rs")])  # fmt: skip
    await serves_a_counter(out.read_bytes(), tmp_path / "data")


def test_package_contents_npm_and_cargo(tmp_path: Path) -> None:
    """The quick half of the two slow tests above: what each package would ship."""
    npm, cargo = shutil.which("npm"), shutil.which("cargo")
    if npm is None or cargo is None:
        pytest.skip("needs npm and cargo")
    r = run([npm, "pack", "--dry-run", "--json"], cwd=SDK / "assemblyscript")
    (info,) = json.loads(r.stdout)
    files = sorted(f["path"] for f in info["files"])
    assert info["name"] == "dohost-guest-sdk"
    assert files == sorted(
        [
            "index.ts",
            "package.json",
            *(f"assembly/{p.name}" for p in (SDK / "assemblyscript" / "assembly").glob("*.ts")),
        ]
    )
    r = run(
        [cargo, "package", "--list", "--offline", "--allow-dirty", "--target-dir", str(tmp_path)],
        cwd=SDK / "rust",
    )
    listed = set(r.stdout.split())
    assert {f"src/{p.name}" for p in (SDK / "rust" / "src").glob("*.rs")} <= listed
    assert not any(n.startswith(("examples/", "target/")) for n in listed), listed
    meta = json.loads(
        run(
            [cargo, "metadata", "--offline", "--no-deps", "--format-version", "1"], cwd=SDK / "rust"
        ).stdout
    )
    assert meta["packages"][0]["license"] == "Apache-2.0"


def zig_packer() -> Any:
    """tools/pack_zig_sdk.py, imported."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import pack_zig_sdk
    finally:
        sys.path.remove(str(ROOT / "tools"))
    return pack_zig_sdk


def test_zig_sdk_is_a_zig_package(tmp_path: Path) -> None:
    """The package's manifest names every SDK file and a valid fingerprint, its tarball
    holds exactly those, and an app compiled against the unpacked tarball alone (no file
    of the repository) serves. No build runner: see the slow test below for that."""
    pack_zig_sdk = zig_packer()
    name, version, paths = pack_zig_sdk.manifest()
    assert (name, version) == ("dohost", "0.1.0")
    sdk_files = {p.name for p in (SDK / "zig").glob("*.zig")} | {"build.zig.zon", "README.md"}
    assert set(paths) == sdk_files  # a new SDK file must be listed, or it is not shipped
    zon = (SDK / "zig" / "build.zig.zon").read_text()
    fingerprint = int(re.search(r"\.fingerprint = 0x([0-9a-f]+)", zon).group(1), 16)  # type: ignore[union-attr]
    # Zig's check (Package.Fingerprint): high half the CRC-32 of the name, low half an id.
    assert fingerprint >> 32 == zlib.crc32(name.encode())
    assert fingerprint & 0xFFFFFFFF not in (0, 0xFFFFFFFF)
    tarball = pack_zig_sdk.pack(tmp_path / "dist")
    assert tarball.name == "dohost-zig-0.1.0.tar.gz"
    with tarfile.open(tarball) as t:
        assert sorted(t.getnames()) == sorted(f"dohost-zig-0.1.0/{p}" for p in paths)
        t.extractall(tmp_path / "unpacked", filter="data")
    pkg = tmp_path / "unpacked" / "dohost-zig-0.1.0"
    app = tmp_path / "app.zig"
    shutil.copy(SDK / "zig" / "examples" / "counter" / "counter.zig", app)
    out = tmp_path / "app.wasm"
    run([*ZIG, "build-exe", "-target", "wasm32-freestanding", "-fno-entry", "-rdynamic",
         "-O", "ReleaseSmall", "--dep", "dohost", f"-Mroot={app}", f"-Mdohost={pkg / 'dohost.zig'}",
         f"-femit-bin={out}"], env=zig_env(), cwd=tmp_path)  # fmt: skip
    await_counter(out)


def await_counter(wasm: Path) -> None:
    import trio

    trio.run(serves_a_counter, wasm.read_bytes(), wasm.parent / "data")


ZIG_APP_BUILD = """const std = @import("std");

pub fn build(b: *std.Build) void {
    const exe = b.addExecutable(.{
        .name = "app",
        .root_module = b.createModule(.{
            .root_source_file = b.path("app.zig"),
            .target = b.resolveTargetQuery(.{ .cpu_arch = .wasm32, .os_tag = .freestanding }),
            .optimize = .ReleaseSmall,
            .imports = &.{.{ .name = "dohost", .module = b.dependency("dohost", .{}).module("dohost") }},
        }),
    });
    exe.entry = .disabled;
    exe.rdynamic = true;
    b.installArtifact(exe);
}
"""

ZIG_APP_ZON = """.{
    .name = .app,
    .version = "0.0.1",
    .fingerprint = 0x%x,
    .dependencies = .{},
    .paths = .{ "build.zig", "build.zig.zon", "app.zig" },
}
"""


@pytest.mark.slow
def test_zig_package_through_zig_fetch_and_zig_build(tmp_path: Path) -> None:
    """A consumer as a Zig user makes one: `zig fetch --save=dohost <tarball>` (offline:
    a local file), then `zig build`. Slow: Zig 0.17 compiles its build system from
    source at first use (minutes of CPU; guest-sdk/zig/README.md)."""
    pack_zig_sdk = zig_packer()
    tarball = pack_zig_sdk.pack(tmp_path / "dist")
    app = tmp_path / "app"
    app.mkdir()
    (app / "build.zig").write_text(ZIG_APP_BUILD)
    (app / "build.zig.zon").write_text(ZIG_APP_ZON % ((zlib.crc32(b"app") << 32) | 0x1234567))
    shutil.copy(SDK / "zig" / "examples" / "counter" / "counter.zig", app / "app.zig")
    run([*ZIG, "fetch", "--save=dohost", str(tarball)], env=zig_env(), cwd=app, timeout=3000)
    zon = (app / "build.zig.zon").read_text()
    assert ".dohost = .{" in zon and ".hash = " in zon, zon
    run([*ZIG, "build"], env=zig_env(), cwd=app, timeout=3000)
    await_counter(app / "zig-out" / "bin" / "app.wasm")

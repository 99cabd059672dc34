"""Pack the Zig guest SDK as a Zig package tarball: dohost-zig-<version>.tar.gz holding
the files guest-sdk/zig/build.zig.zon lists in `.paths`, under one top directory (which
Zig strips when it unpacks a dependency).

    .venv/bin/python tools/pack_zig_sdk.py [-o DIR]     # prints the tarball's path

Then, in an app's directory: `zig fetch --save=dohost <tarball>` (offline), and
`b.dependency("dohost", .{}).module("dohost")` in its build.zig (guest-sdk/zig/README.md).
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SDK = ROOT / "guest-sdk" / "zig"


def manifest(sdk: Path = SDK) -> tuple[str, str, list[str]]:
    """(name, version, paths) of the package's build.zig.zon."""
    text = (sdk / "build.zig.zon").read_text()
    name = re.search(r"^\s*\.name = \.(\w+),", text, re.M)
    version = re.search(r'^\s*\.version = "([^"]+)",', text, re.M)
    paths = re.search(r"^\s*\.paths = \.\{(.*?)\}", text, re.M | re.S)
    if name is None or version is None or paths is None:
        raise SystemExit(f"{sdk / 'build.zig.zon'}: no .name, .version or .paths")
    return name.group(1), version.group(1), re.findall(r'"([^"]+)"', paths.group(1))


def pack(out_dir: Path, sdk: Path = SDK) -> Path:
    name, version, paths = manifest(sdk)
    top = f"{name}-zig-{version}"
    out = out_dir / f"{top}.tar.gz"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        for rel in sorted(paths):
            data = (sdk / rel).read_bytes()
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0  # reproducible
            tar.addfile(info, io.BytesIO(data))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "dist", help="directory (dist/)")
    print(pack(ap.parse_args().out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

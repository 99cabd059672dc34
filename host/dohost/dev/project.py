"""A dohost project: a directory with `dohost.toml`, made by `dohost init`.

    name = "hello"        # the class name (also the wasm file's name)
    lang = "c"            # c | zig | rust | assemblyscript
    storage = "kv"        # kv | sqlite (SQL)
    main = "src/hello.c"  # the entry source
    watch = ["src"]       # what `dohost dev` watches

The project needs nothing of a dohost checkout: the SDK comes from the installed package
(`sdk_root()`), the build commands from `toolchains.py`. Objects' data live in
`.dohost/data` of the project, so `dohost dev` keeps them across rebuilds and restarts.
"""

from __future__ import annotations

import stat
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dohost.core.errors import Code, DohostError
from dohost.core.names import check_name

LANGS = ("c", "zig", "rust", "assemblyscript")
_EXT = {"c": "c", "zig": "zig", "rust": "rs", "assemblyscript": "ts"}
CONFIG = "dohost.toml"


def sdk_root() -> Path:
    """The guest SDKs shipped in the package (`host/dohost/sdk` is a link to `guest-sdk/`
    in a checkout; a wheel holds copies)."""
    return Path(str(resources.files("dohost") / "sdk"))


@dataclass(frozen=True)
class Project:
    root: Path
    name: str
    lang: str
    storage: str
    main: Path
    watch: tuple[Path, ...]

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def wasm(self) -> Path:
        return self.build_dir / f"{self.name}.wasm"

    @property
    def data_dir(self) -> Path:
        return self.root / ".dohost" / "data"

    def sources(self) -> list[Path]:
        """Every file `dohost dev` watches (build outputs and dot-directories excluded)."""
        found: list[Path] = []
        for w in self.watch:
            if w.is_file():
                found.append(w)
            elif w.is_dir():
                found += [
                    p
                    for p in w.rglob("*")
                    if p.is_file() and not any(part.startswith(".") for part in p.parts)
                ]
        return sorted(found)


def load(root: Path) -> Project:
    """Read `root/dohost.toml`, or say in one line what is missing."""
    path = root / CONFIG
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise DohostError(
            Code.NOT_FOUND,
            f"no {CONFIG} in {root}: run this in a project (`dohost init NAME` makes one)",
        ) from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise DohostError(Code.INVALID_ARGUMENT, f"cannot read {path}: {e}") from None
    name = str(data.get("name", ""))
    lang = str(data.get("lang", ""))
    storage = str(data.get("storage", "kv"))
    check_name("class", name)
    if lang not in LANGS:
        raise DohostError(
            Code.INVALID_ARGUMENT, f"{path}: lang must be one of {', '.join(LANGS)}, not {lang!r}"
        )
    if storage not in ("kv", "sqlite"):
        raise DohostError(Code.INVALID_ARGUMENT, f"{path}: storage must be kv or sqlite")
    main = root / str(data.get("main", f"src/{name}.{_EXT[lang]}"))
    watch = tuple(root / str(w) for w in data.get("watch", ["src"]))
    return Project(root, name, lang, storage, main, watch)


def init(root: Path, name: str, lang: str) -> Project:
    """Write a new project: config, a counter-like object, a test script, .gitignore."""
    check_name("project", name)
    if lang not in LANGS:
        raise DohostError(Code.INVALID_ARGUMENT, f"--lang must be one of {', '.join(LANGS)}")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DohostError(
            Code.ALREADY_EXISTS,
            f"{root} already exists and is not an empty directory: pick another name",
        )
    ext = _EXT[lang]
    template = (resources.files("dohost.dev") / "templates" / f"object.{ext}").read_text()
    src = root / "src" / f"{name}.{ext}"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(template.replace("{{name}}", name))
    (root / CONFIG).write_text(
        f"# dohost project: `dohost dev` watches, builds and serves it; `dohost build`\n"
        f"# builds it once. (Made by `dohost init`.)\n"
        f'name = "{name}"        # the class name\n'
        f'lang = "{lang}"\n'
        f'storage = "kv"         # kv, or sqlite for SQL (sql_exec)\n'
        f'main = "src/{name}.{ext}"\n'
        f'watch = ["src"]\n'
    )
    (root / ".gitignore").write_text("build/\n.dohost/\nnode_modules/\n")
    test = root / "test.sh"
    test.write_text(_TEST_SCRIPT.replace("{{name}}", name))
    test.chmod(test.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    (root / "README.md").write_text(_README.replace("{{name}}", name).replace("{{lang}}", lang))
    return load(root)


_TEST_SCRIPT = """#!/bin/sh
# Builds {{name}} and checks its answers in a throw-away embedded host.
set -eu
cd "$(dirname "$0")"
dohost build .
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
run() { dohost run build/{{name}}.wasm --object test --data-dir "$data" "$@"; }
check() { if [ "$1" != "$2" ]; then echo "FAIL: expected $2, got $1" >&2; exit 1; fi; }
check "$(run)" 0
check "$(run -X POST --path /incr)" 1
check "$(run)" 1
echo "ok: {{name}} answers"
"""

_README = """# {{name}}

A durable object for [dohost](https://example.invalid/dohost), in {{lang}}.

    dohost dev            # build, serve on http://127.0.0.1:8787, rebuild on every save
    curl -X POST http://127.0.0.1:8787/demo/incr    # object "demo": 1
    curl http://127.0.0.1:8787/demo/                # 1
    ./test.sh             # build and check the answers
    dohost build          # build/{{name}}.wasm, to `dohost deploy {{name}} build/{{name}}.wasm`

The object's data stay in `.dohost/data` across rebuilds.
"""

"""The layering of host/dohost as ARCHITECTURE.md states it ("Layers"), checked on the
import graph: every `import` and `from ... import` of every module, at any depth
(function bodies and `if TYPE_CHECKING:` blocks included: a type is a dependency too).

    core  <-  storage  <-  runtime  <-  server  <-  dev/, cli*.py, __init__.py
                 ^                        |
                 +-----  replica  <-------+          client  ->  core

A package imports only the packages listed for it (never the CLI modules or the
package's __init__); besides, `core/` imports none of the
libraries that do I/O or keep time, and only `server/` and the CLI import trio. A new
package must be placed here before it can import anything of dohost.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "host" / "dohost"
TOP = "dohost"  # modules directly in dohost/ (the CLI, the package's __init__): anything
# package -> the dohost packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "storage": {"core"},
    "runtime": {"core", "storage"},
    "replica": {"core", "storage"},
    "server": {"core", "storage", "runtime", "replica"},
    "client": {"core"},
    # The developer's loop (dohost dev/init/build): beside the CLI, above everything.
    "dev": {"core", "storage", "runtime", "replica", "server", "client"},
}
# package -> libraries it must not import
FORBIDDEN: dict[str, set[str]] = {
    "core": {"trio", "wasmtime", "apsw", "socket", "httptools", "wsproto", "time", "threading"},
    "storage": {"trio", "wasmtime"},
    "runtime": {"trio", "apsw"},
    "replica": {"trio", "wasmtime"},
    "client": {"trio", "wasmtime", "apsw"},
}


def _package(root: Path, path: Path) -> str:
    rel = path.relative_to(root)
    return TOP if len(rel.parts) == 1 else rel.parts[0]


def _imports(root: Path, path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted module) of every import in the file; relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = ["dohost", *path.relative_to(root).parts[:-1]]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                yield node.lineno, ".".join([*base, node.module] if node.module else base)
            else:
                assert node.module is not None
                yield node.lineno, node.module


def violations(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        name = _package(root, path)
        if name != TOP and name not in ALLOWED:
            found.append(f"{path.relative_to(root.parent)}: package {name}/ has no place")
            continue
        banned = FORBIDDEN.get(name, set())
        for line, module in _imports(root, path):
            parts = module.split(".")
            where = f"{path.relative_to(root.parent)}:{line}"
            if parts[0] in banned:
                found.append(f"{where}: {name}/ imports {parts[0]}")
            if name == TOP or parts[0] != "dohost":
                continue
            target = parts[1] if len(parts) > 1 else "__init__"
            if target != name and target not in ALLOWED[name]:
                found.append(f"{where}: {name}/ imports {target} ({module})")
    return found


def test_no_module_imports_across_the_layers() -> None:
    assert violations(PACKAGE) == []


def test_the_check_fails_on_a_cross_layer_import(tmp_path: Path) -> None:
    """The check itself can fail: a storage module importing the runtime is caught, in
    a type-only import as well as a function body, and so are trio in core/ and a
    package nobody placed."""
    root = tmp_path / "dohost"
    for pkg in ("storage", "core", "extra"):
        (root / pkg).mkdir(parents=True)
    (root / "storage" / "bad.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from dohost.runtime.event import Event\n"
        "def f():\n"
        "    from ..server import host\n"
        "    import dohost.cli\n"
    )
    (root / "core" / "clock.py").write_text("import trio\n")
    (root / "extra" / "x.py").write_text("import dohost.core\n")
    assert violations(root) == [
        "dohost/core/clock.py:1: core/ imports trio",
        "dohost/extra/x.py: package extra/ has no place",
        "dohost/storage/bad.py:3: storage/ imports runtime (dohost.runtime.event)",
        "dohost/storage/bad.py:5: storage/ imports server (dohost.server)",
        "dohost/storage/bad.py:6: storage/ imports cli (dohost.cli)",
    ]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_every_placed_package_exists(package: str) -> None:
    assert list((PACKAGE / package).glob("*.py")), package

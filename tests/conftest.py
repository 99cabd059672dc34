"""Shared test fixtures: built guest modules and a real Host over a temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
BUILD = FIXTURES / "build"


@pytest.fixture(scope="session", autouse=True)
def built_guests() -> None:
    """Build samples and fixtures once per session (a no-op when they are up to date),
    so `pytest` works without `make build` first. DOHOST_SKIP_GUEST_BUILD=1 skips it
    (when several test runs share one checkout and one of them builds)."""
    if os.environ.get("DOHOST_SKIP_GUEST_BUILD") == "1":
        return
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_guests.py")], check=True, cwd=ROOT)


def guest_bytes(name: str) -> bytes:
    """A built module: `counter` (a sample) or a fixture such as `kvtest` or `noop`."""
    for path in (ROOT / "samples" / name / f"{name}.wasm", BUILD / f"{name}.wasm"):
        if path.exists():
            return path.read_bytes()
    raise FileNotFoundError(f"module {name!r} is not built: run `make build`")


@pytest.fixture
def wasm() -> Any:
    return guest_bytes


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[Any]:
    from dohost import Host

    async with Host(tmp_path / "data", durability="os", workers=2) as h:
        yield h

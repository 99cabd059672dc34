"""Fixtures of the storage tests: real SQLite files under tmp_path, real threads."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The package lives in host/ (src layout); make it importable without an install.
_HOST = str(Path(__file__).resolve().parents[2] / "host")
if _HOST not in sys.path:
    sys.path.insert(0, _HOST)

from storage_helpers import GatedFsync  # noqa: E402


@pytest.fixture
def gated_fsync() -> Iterator[GatedFsync]:
    g = GatedFsync()
    yield g
    g.release.set()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    counter = iter(range(1_000_000))

    def make(prefix: str) -> str:
        return f"{prefix}-{os.getpid()}-{id(request)}-{next(counter)}"

    return make

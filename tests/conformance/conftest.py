"""Fixtures of the SDK conformance suite (helpers in conformance_helpers.py)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conformance_helpers import LANGS, Guest, deploy

from dohost import Host


@pytest.fixture(params=LANGS)
def lang(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def guest(lang: str, tmp_path: Path) -> AsyncIterator[Guest]:
    async with Host(tmp_path / "data", durability="os") as host:
        yield await deploy(host, lang)

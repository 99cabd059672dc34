"""deploy/: the example config loads as `serve` takes it, the systemd unit verifies
(systemd-analyze) with its ExecStart pointing at a real dohost, and the container
recipe's command line is one `serve` accepts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from dohost import config_file
from dohost.cli_serve import serve

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_the_example_config_loads() -> None:
    with click.Context(serve) as ctx:
        loaded = config_file.load(DEPLOY / "dohost.toml", serve, ctx)
    assert loaded["data_dir"] == Path("/var/lib/dohost") and loaded["durability"] == "fsync"
    assert loaded["quotas"] == ["objects=1000000", "requests_per_s=1000"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (DEPLOY / "dohost.service").read_text()
    start = re.search(r"^ExecStart=(\S+) serve --config (\S+)$", unit, re.M)
    assert start is not None and start.group(2) == "/etc/dohost/dohost.toml"
    dohost = Path(sys.executable).with_name("dohost")
    local = unit.replace(start.group(1), str(dohost)).replace(
        start.group(2), str(DEPLOY / "dohost.toml")
    )
    path = tmp_path / "dohost.service"
    path.write_text(local)
    r = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    assert (r.returncode, r.stderr.strip()) == (0, ""), r.stderr


def test_the_container_command_is_a_serve_command_line() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    assert cmd[:2] == ["dohost", "serve"]
    args = [a if a != "/etc/dohost/dohost.toml" else str(DEPLOY / "dohost.toml") for a in cmd[2:]]
    ctx = serve.make_context("serve", args)
    assert ctx.params["host"] == "0.0.0.0" and ctx.params["data_dir"] == Path("/data")
    assert ctx.params["port"] == 8080  # from the config file, as EXPOSE says
    assert "EXPOSE 8080" in text and "COPY dist/dohost-*.whl" in text

"""The built wheel, installed in a fresh venv, gives a working `dohost run` and `dohost
serve` (run from outside the checkout, so nothing comes from the source tree).

To stay fast the wheel is installed with --no-deps and the fresh venv finds the
dependencies (wasmtime, trio, apsw, ...) through a .pth line naming this checkout's
venv's site-packages. That path is appended after the venv's own site-packages and is not
processed as a site dir, so the checkout's editable install of dohost is not active
there: `dohost` resolves to the wheel (asserted). The wheel's declared dependencies are
checked against pyproject.toml, so a real `pip install` would fetch the same ones."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import signal
import subprocess
import sys
import sysconfig
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
COUNTER = ROOT / "samples" / "counter" / "counter.wasm"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-w", str(out), "-q"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (found,) = out.glob("dohost-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    v = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(v)], check=True, timeout=120)
    purelib = Path(
        subprocess.check_output(
            [
                str(v / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            text=True,
        ).strip()
    )
    (purelib / "_checkout_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(v / "bin" / "python"), "install", "-q",
         "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    yield v


def printed_url(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """The URL `dohost serve` prints on its first stdout line (read on a thread, so the
    wait is bounded)."""
    line: list[bytes] = []
    t = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    t.start()
    t.join(timeout_s)
    m = re.search(rb"http://127\.0\.0\.1:\d+", line[0]) if line else None
    assert m is not None, "no URL printed"
    return m.group(0).decode()


def test_the_wheel_declares_what_pyproject_declares(wheel: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    requires = [
        line[len("Requires-Dist: ") :]
        for line in meta.splitlines()
        if line.startswith("Requires-Dist: ") and "extra ==" not in line
    ]
    assert sorted(requires) == sorted(d.split("#")[0].strip() for d in project["dependencies"])
    assert "License: Apache-2.0" in meta or "License-Expression: Apache-2.0" in meta
    assert any(".dist-info/" in n and n.endswith("LICENSE") for n in names), names
    assert "dohost/py.typed" in names and "dohost/server/openapi.py" in names
    assert "dohost = dohost.cli:main" in entry
    assert not any(n.startswith(("tests/", "bench/", "samples/")) for n in names)


def test_dohost_run_from_the_installed_wheel(venv: Path, tmp_path: Path) -> None:
    where = subprocess.check_output(
        [str(venv / "bin" / "python"), "-c", "import dohost; print(dohost.__file__)"],
        text=True,
        cwd=tmp_path,
    )
    assert where.startswith(str(venv)), where  # the wheel's copy, not the checkout's
    r = subprocess.run(
        [str(venv / "bin" / "dohost"), "run", str(COUNTER), "--object", "x", "-X", "POST",
         "--path", "/incr", "--data-dir", str(tmp_path / "d"), "--durability", "os"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert (r.returncode, r.stdout) == (0, "1"), r.stderr


def test_dohost_serve_from_the_installed_wheel(venv: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(venv / "bin" / "dohost"), "serve", "--port", "0", "--data", str(tmp_path / "s"),
         "--durability", "os"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    try:
        url = printed_url(proc, 60)
        token = (tmp_path / "s" / "admin.token").read_text().strip()
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.get("/healthz").json() == {"status": "ok"}
            assert c.get("/v1/openapi.json").json()["openapi"] == "3.1.0"
            r = c.post(
                "/v1/tenants", json={"name": "w"}, headers={"authorization": f"Bearer {token}"}
            )
            me = {"authorization": f"Bearer {r.json()['token']}"}
            assert (
                c.put("/v1/classes/counter", content=COUNTER.read_bytes(), headers=me).status_code
                == 201
            )
            assert c.post("/v1/classes/counter/objects/a/incr", headers=me).text == "1"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_the_container_recipe_runs_from_the_installed_wheel(
    wheel: Path, venv: Path, tmp_path: Path
) -> None:
    """What of deploy/Containerfile can be checked without a container engine (none on
    the test machines, so the image itself is never built here): every file it COPYs
    exists in the build context (the checkout with the wheel in dist/), and its CMD,
    HEALTHCHECK and STOPSIGNAL work with the wheel installed as its RUN installs it. The
    address is 127.0.0.1 and the port any free one here, instead of the image's 0.0.0.0
    and 8080 (tests listen on loopback only)."""
    text = (ROOT / "deploy" / "Containerfile").read_text()
    copies = re.findall(r"^COPY (\S+) (\S+)$", text, re.M)
    assert copies, "no COPY lines"
    for src, _ in copies:
        if src.startswith("dist/"):
            # `pip wheel . -w dist/`, as the recipe's header says: the name must match.
            assert fnmatch.fnmatch(f"dist/{wheel.name}", src), (src, wheel.name)
        else:
            assert (ROOT / src).is_file(), f"COPY {src}: no such file in the checkout"
    assert re.search(r"^RUN pip install --no-cache-dir /tmp/dohost-\*\.whl", text, re.M)
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    health = re.search(r"^HEALTHCHECK .*? CMD (.+)$", text, re.M).group(1)  # type: ignore[union-attr]
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, re.M)
    assert cmd[0] == "dohost"  # on the image's PATH, as the venv's bin here
    local = {"/etc/dohost/dohost.toml": str(ROOT / "deploy" / "dohost.toml"), "0.0.0.0": "127.0.0.1",
             "/data": str(tmp_path / "data")}  # fmt: skip
    args = [str(venv / "bin" / "dohost"), *(local.get(a, a) for a in cmd[1:]), "--port", "0"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        port = printed_url(proc, 120).rsplit(":", 1)[1]
        probe = shlex.split(health.replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
        assert probe[0] == "python"  # the image's python, which has the wheel installed
        r = subprocess.run([str(venv / "bin" / "python"), *probe[1:]], timeout=60)
        assert r.returncode == 0  # the health check passes
    finally:
        proc.send_signal(signal.SIGTERM)  # STOPSIGNAL
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert (tmp_path / "data" / "system.db").exists()  # the volume holds the data

"""`make run`: a local dohost with a dev tenant and every built sample deployed.

    .venv/bin/python tools/dev_server.py [--port 8080] [--data ./dohost-data]

Starts `dohost serve` on 127.0.0.1 (port 8080, or the next free one) over ./dohost-data,
creates the tenant `dev` (its token is kept in DATA/dev.token, mode 0600, and reused on
the next run), deploys every `samples/*/*.wasm` as the class named after its folder,
prints ready-to-paste `dohost call` and `curl` lines, and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEV_TENANT = "dev"
START_TIMEOUT_S = 60.0


def free_port(first: int, tries: int = 100) -> int:
    for port in range(first, first + tries):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit(f"dev_server: no free port in {first}-{first + tries - 1}")


def refuse_data_in_use(data: Path) -> None:
    """A second `make run` on a data set that a server already serves must not start
    another server (on the next port) over it: say who holds it, and stop. (Probing the
    lock, not reading the pid in its file: a stale file of a killed server is no reason
    to refuse. The server takes the lock itself a moment later.)"""
    from dohost.core.errors import DohostError
    from dohost.storage.dataset_lock import DataSetLock

    try:
        DataSetLock.acquire(data, "make run (checking the data set)").release()
    except DohostError as e:
        raise SystemExit(f"dev_server: error: {e}") from None


def start_server(data: Path, port: int, processes: int = 1) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dohost.cli",
            "serve",
            "--data",
            str(data),
            "--port",
            str(port),
            "--processes",
            str(processes),
        ],
        stdout=subprocess.PIPE,
        # Its own session: Ctrl-C reaches only this script, which then stops the server
        # with one SIGTERM (a second signal would cut its in-flight requests short).
        start_new_session=True,
    )
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(START_TIMEOUT_S)
    text = line[0].decode() if line else ""
    if "http://" not in text:
        proc.kill()
        raise SystemExit("dev_server: dohost serve did not start (see its errors above)")
    return proc, text.split()[-1]


def dev_token(api: httpx.Client, data: Path, admin: dict[str, str]) -> str:
    """The dev tenant's token: the saved one if it still works, else a new one."""
    path = data / "dev.token"
    if path.exists():
        token = path.read_text().strip()
        r = api.get("/v1/classes", headers={"authorization": f"Bearer {token}"})
        if r.status_code == 200:
            return token
    r = api.post("/v1/tenants", json={"name": DEV_TENANT}, headers=admin)
    if r.status_code == 409:  # it exists but its token was lost: issue a new one
        r = api.post(f"/v1/tenants/{DEV_TENANT}/token", headers=admin)
    r.raise_for_status()
    token = str(r.json()["token"])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


# Samples whose classes need the per-object SQLite backend (they use sql_exec).
SQLITE_CLASSES = {"booking"}


def deploy_samples(api: httpx.Client, auth: dict[str, str]) -> list[str]:
    deployed = []
    for wasm in sorted(ROOT.glob("samples/*/*.wasm")):
        # One class per module, named after the file: samples/pipeline/ holds two
        # (pipeline.wasm and run.wasm), which cooperate as the classes pipeline and run.
        cls = wasm.stem
        storage = "sqlite" if cls in SQLITE_CLASSES else "kv"
        r = api.put(f"/v1/classes/{cls}?storage={storage}", content=wasm.read_bytes(), headers=auth)
        if r.status_code >= 400:
            print(f"dev_server: {cls}: {r.json()['error']['message']}", file=sys.stderr)
            continue
        deployed.append(cls)
        print(f"  {cls:<12} version {r.json()['version']}  ({wasm.relative_to(ROOT)})")
    return deployed


def _stop_on_sigterm(_signum: int, _frame: object) -> None:
    """SIGTERM (a supervisor, `timeout`) stops the server too, as Ctrl-C does."""
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--data", type=Path, default=Path("dohost-data"))
    ap.add_argument("--processes", type=int, default=1, help="dohost serve --processes (default 1)")
    args = ap.parse_args()
    data = args.data.resolve()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    refuse_data_in_use(data)
    port = free_port(args.port)
    proc, url = start_server(data, port, args.processes)
    try:
        admin_token = os.environ.get("DOHOST_ADMIN_TOKEN") or (data / "admin.token").read_text()
        admin = {"authorization": f"Bearer {admin_token.strip()}"}
        with httpx.Client(base_url=url, timeout=60.0) as api:
            token = dev_token(api, data, admin)
            # Local load tests should meet the host's limits, not the tenant's rate limit.
            api.patch(
                f"/v1/tenants/{DEV_TENANT}",
                json={"quotas": {"requests_per_s": 1_000_000}},
                headers=admin,
            ).raise_for_status()
            print(f"\ndohost is serving {url} (data: {data}); tenant '{DEV_TENANT}' has:")
            deployed = deploy_samples(api, {"authorization": f"Bearer {token}"})
        dohost = shlex.quote(str(Path(sys.executable).with_name("dohost")))
        print(
            f"\nexport DOHOST_URL={url} DOHOST_TOKEN={token}\n"
            f"export DOHOST_ADMIN_TOKEN=$(cat {shlex.quote(str(data / 'admin.token'))})"
        )
        if "counter" in deployed:
            base = f"{url}/v1/classes/counter/objects/room-1"
            auth = f"-H 'Authorization: Bearer {token}'"
            print(
                f"{dohost} call counter room-1 /incr -X POST\n"
                f"{dohost} call counter room-1\n"
                f"{dohost} objects counter\n"
                f"{dohost} storage counter room-1\n"
                f"curl {auth} -X POST {base}/incr\n"
                f"curl {auth} {base}/"
            )
        if "chat-room" in deployed:
            # A browser sends no Authorization header: the page takes the token from its
            # URL (access_token) and passes it on to its WebSocket. A URL gets shared, so
            # it carries a scoped token: the chat-room class's object routes only, for a
            # week (docs/http-api.md, "Scoped tokens"), never the tenant's own token.
            r = api.post(
                "/v1/tokens",
                json={
                    "classes": ["chat-room"],
                    "objects_only": True,
                    "expires_in_s": 7 * 86400,
                    "label": "chat page link (make run)",
                },
                headers={"authorization": f"Bearer {token}"},
            )
            r.raise_for_status()
            print(
                "\nchat in a browser (open it twice; the link's token reaches chat rooms only):\n"
                f"  {url}/v1/classes/chat-room/objects/lobby/?access_token={r.json()['token']}"
            )
        print("\nCtrl-C stops the server.", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        print("\nstopping dohost serve ...", flush=True)
        proc.send_signal(signal.SIGTERM)
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())

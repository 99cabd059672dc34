"""`dohost dev`: one process that serves a project, rebuilds it on every save and
redeploys it, keeping the objects' data, and prints what happens.

- A local server over the project's `.dohost/data` (durability `os`: development) with
  the whole HTTP API for a `dev` tenant (its token in `.dohost/dev.token`, so `dohost
  call|storage|sql|tail` work), plus short object routes without a token:
  `http://127.0.0.1:8787/<object>/<path>` is `<path>` of object `<object>` of the class.
- A watcher polls the sources' sizes and mtimes (no platform watcher needed); a change
  builds (toolchains.py) on a thread, and a good build is deployed as the next version:
  the next request runs the new code on the same storage.
- Every request (method, path, object, status, duration, CPU) and every guest log line
  is printed as it happens (server/tail.py). A failed build or a refused module is one
  block, and the previous version keeps serving.
"""

from __future__ import annotations

import secrets
import signal
from collections.abc import Callable
from pathlib import Path

import trio

from dohost.core.errors import DohostError
from dohost.dev import toolchains
from dohost.dev.project import Project
from dohost.server.api import Api
from dohost.server.api_util import json_response
from dohost.server.host import Host
from dohost.server.http_server import serve_http
from dohost.server.http_types import HttpRequest, HttpResponse
from dohost.server.quotas import Quotas
from dohost.server.startup import listen_error_of
from dohost.server.state import ServerState
from dohost.server.tail import TailRecord

TENANT = "dev"
POLL_S = 0.25
API_PREFIXES = ("/v1/", "/healthz", "/metrics")

Say = Callable[[str], None]


def _signature(project: Project) -> tuple[tuple[str, int, int], ...]:
    sig = []
    for p in project.sources():
        try:
            st = p.stat()
        except OSError:
            continue
        sig.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(sig)


def _dev_token(state: ServerState, token_file: Path) -> str:
    """The dev tenant's token: kept in the project so the CLI can use it."""
    if state.tenancy.exists(TENANT) and token_file.exists():
        return token_file.read_text().strip()
    if state.tenancy.exists(TENANT):
        token = state.tenancy.rotate(TENANT)
    else:
        _, token = state.tenancy.create(TENANT)
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return token


class DevServer:
    def __init__(self, project: Project, host: Host, state: ServerState, token: str, say: Say):
        self.project = project
        self.host = host
        self.api = Api(state)
        self.token = token
        self.say = say
        self.version: int | None = None

    async def handle(self, req: HttpRequest) -> HttpResponse:
        """The API as is; any other path is `/<object>/<path>` of the project's class."""
        if req.path.startswith(API_PREFIXES):
            return await self.api.handle(req)
        obj, _, rest = req.path.lstrip("/").partition("/")
        if not obj:
            return json_response(
                404,
                {
                    "error": {
                        "code": "not_found",
                        "message": "address an object: /<object>/<path>, e.g. /demo/",
                    }
                },
            )
        req.path = f"/v1/classes/{self.project.name}/objects/{obj}/{rest}"
        req.headers = [(k, v) for k, v in req.headers if k != "authorization"]
        req.headers.append(("authorization", f"Bearer {self.token}"))
        return await self.api.handle(req)

    async def build_and_deploy(self) -> None:
        p = self.project
        self.say(f"building {p.main.relative_to(p.root)} ...")
        result = await trio.to_thread.run_sync(toolchains.build, p)
        if not result.ok:
            self.say(_block(f"build failed ({result.seconds:.1f} s)", result.failure_block()))
            if self.version is not None:
                self.say(f"still serving version {self.version}; fix the source and save")
            return
        try:
            wasm = p.wasm.read_bytes()
            info = await self.host.deploy(TENANT, p.name, wasm, p.storage)
        except DohostError as e:
            self.say(_block("the host refused the module", f"{e.code.code}: {e.message}"))
            return
        changed = info.version != self.version
        self.version = info.version
        what = "deployed" if changed else "unchanged:"
        self.say(
            f"built {p.wasm.name} ({len(wasm):,} B in {result.seconds:.1f} s); "
            f"{what} version {info.version}"
        )

    async def watch(self) -> None:
        seen = _signature(self.project)
        await self.build_and_deploy()
        while True:
            await trio.sleep(POLL_S)
            now = _signature(self.project)
            if now == seen:
                continue
            await trio.sleep(POLL_S)  # let an editor finish writing
            seen = _signature(self.project)
            await self.build_and_deploy()


def _block(title: str, text: str) -> str:
    bar = "-" * 72
    return f"{bar}\n✗ {title}\n{text.rstrip()}\n{bar}"


async def run(project: Project, host_addr: str, port: int, say: Say) -> None:
    """Serve, watch and print until SIGINT/SIGTERM."""
    project.data_dir.mkdir(parents=True, exist_ok=True)
    async with Host(project.data_dir, durability="os", shutdown_timeout=5.0) as host:
        state = await ServerState.attach(host, secrets.token_urlsafe(32), Quotas())
        token = _dev_token(state, project.root / ".dohost" / "dev.token")
        dev = DevServer(project, host, state, token, say)
        host.tail.add_listener(lambda r: _print_record(r, say))
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            try:
                bound = await nursery.start(
                    lambda task_status: serve_http(
                        dev.handle, host_addr, port, task_status=task_status, shutdown=shutdown
                    )
                )
            except BaseException as e:
                raise listen_error_of(e, host_addr, port) from None
            url = f"http://{bound[0]}:{bound[1]}"
            say(f"dohost dev: serving {project.name} ({project.lang}) on {url}")
            say(f"  objects: {url}/<object>/<path>   e.g. curl -X POST {url}/demo/incr")
            say(
                f"  the API: export DOHOST_URL={url} DOHOST_TOKEN=$(cat "
                f"{project.root / '.dohost' / 'dev.token'})   (dohost call|storage|sql|tail)"
            )
            watched = ", ".join(str(w.relative_to(project.root)) for w in project.watch)
            say(f"  data kept in {project.data_dir}; watching {watched}; Ctrl-C stops")
            nursery.start_soon(dev.watch)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
            say("stopping")
            shutdown.set()
            nursery.cancel_scope.cancel()


def _print_record(r: TailRecord, say: Say) -> None:
    say(r.line())

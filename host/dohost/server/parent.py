"""`dohost serve --processes N` (N > 1): the parent process that runs N nodes.

The parent serves nothing itself. It
1. creates the data directory, the admin token and `DATA/run/` (mode 0700), removes the
   directories of deleted tenants (before any node opens storage), creates the shared
   state (server/shared_state.py), and holds the data set's lock for as long as it runs;
2. reserves the port (a bound, not listening, SO_REUSEPORT socket: `--port 0` picks a
   free one and no other program takes it while nodes come and go);
3. starts the nodes (`python -m dohost.server.node_main`, each in its own session so a
   Ctrl-C reaches only the parent; a node stops when its stdin, a pipe from the parent,
   ends: when the parent dies, even by SIGKILL),
   waits until each has printed its listening line, then prints the same
   "dohost listening on URL" line a single-process server prints;
4. restarts a node that exits, after 0.1 s doubling to 5 s while it keeps dying within
   10 s of its start; the restarted node claims the same partitions (static placement)
   and serves them from the same data;
5. on SIGTERM or SIGINT asks every node what it still has running (`GET /_node/status`
   on its Unix socket) and prints the one-process server's line for the whole host
   (events in flight, WebSockets to close), then sends every node SIGTERM (they finish
   in-flight requests, bounded by `--grace`); on a second signal it says it stops now and
   sends SIGTERM again (they stop waiting), then exits once every node has. The nodes
   themselves print neither line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import trio

from dohost.core.partitions import DEFAULT_PARTITIONS
from dohost.replica.store import S3Options
from dohost.server.forward import Peers
from dohost.server.node import STATUS_PATH, NodeRole, ask_nodes, socket_path
from dohost.server.serve import (
    STOPPING_NOW,
    ServeConfig,
    _url,
    print_admin_line,
    waiting_line,
)
from dohost.server.shared_state import SharedState, shared_path
from dohost.server.startup import listen_error, prepare_data_dir
from dohost.server.tenancy import load_admin_token, remove_orphan_tenant_dirs
from dohost.storage.dataset_lock import DataSetLock
from dohost.storage.partition_count import partition_count
from dohost.storage.system_db import SystemDb

log = logging.getLogger("dohost.parent")

START_TIMEOUT_S = 120.0
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
STABLE_AFTER_S = 10.0
STATUS_TIMEOUT_S = 2.0  # for a node's answer to "what is still running" at shutdown


class NodeStartError(Exception):
    pass


# S3 credentials reach the nodes in their environment, never on their command line
# (which `ps` shows): config field -> variable (replica/store.py reads them).
_S3_SECRETS = {
    "access_key": "AWS_ACCESS_KEY_ID",
    "secret_key": "AWS_SECRET_ACCESS_KEY",
    "session_token": "AWS_SESSION_TOKEN",
}


def config_to_json(config: ServeConfig) -> str:
    d = asdict(config)
    d["data_dir"] = str(config.data_dir)
    d.pop("node", None)
    for field in _S3_SECRETS:
        d["replica_s3"].pop(field, None)
    return json.dumps(d)


def node_env(config: ServeConfig) -> dict[str, str]:
    """The nodes' environment: this one, with the S3 credentials given as flags."""
    env = dict(os.environ)
    for field, name in _S3_SECRETS.items():
        value = getattr(config.replica_s3, field)
        if value:
            env[name] = value
    return env


def config_from_json(text: str, node: NodeRole) -> ServeConfig:
    d: dict[str, Any] = json.loads(text)
    d["data_dir"] = Path(d["data_dir"])
    d["replica_s3"] = S3Options(**d["replica_s3"])
    return ServeConfig(**d, node=node)


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, not listening, SO_REUSEPORT socket holding the nodes' port. A port some
    program already listens on is refused first, by a bind without SO_REUSEPORT:
    otherwise another server of this user with SO_REUSEPORT would silently share it.
    (A port chosen by the kernel, `--port 0`, is never one shared that way.)"""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        if port != 0:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
    except OSError as e:
        raise listen_error(e, host, port) from None
    return sock


class Parent:
    def __init__(
        self,
        config: ServeConfig,
        processes: int,
        *,
        forward_timeout_s: float = 60.0,
        owner_wait_s: float = 10.0,
    ) -> None:
        self.config = config
        self.processes = processes
        self.forward_timeout_s = forward_timeout_s
        self.owner_wait_s = owner_wait_s
        self.run_dir = config.data_dir / "run"
        self.stopping = False
        self.procs: dict[int, trio.Process] = {}
        self.restarts = 0
        self.lock_fd: int | None = None
        self.partitions = DEFAULT_PARTITIONS  # the data set's, read at start

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> int:
        config = self.config
        prepare_data_dir(config.data_dir)
        # Held until every node has stopped; the nodes inherit it (pass_fds), so no
        # other program takes the data set while any of them lives.
        lock = DataSetLock.acquire(config.data_dir)
        try:
            return await self._run_locked(lock, task_status)
        finally:
            lock.release()

    async def _run_locked(self, lock: DataSetLock, task_status: Any) -> int:
        config = self.config
        self.lock_fd = lock.fileno()
        self.partitions = partition_count(config.data_dir)
        _, admin_source = load_admin_token(config.data_dir)
        self.run_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        system = SystemDb(config.data_dir)
        try:
            known = {row.name for row in system.tenants()}
        finally:
            system.close()
        for name in remove_orphan_tenant_dirs(config.data_dir, known):
            log.info("removed the data of deleted tenant %s", name)
        SharedState.create(shared_path(self.run_dir), self.processes).close()
        reserved = reserve_port(config.host, config.port)
        try:
            sockname = reserved.getsockname()
            port = int(sockname[1])
            self.node_config = config_to_json(ServeConfig(**{**asdict(config), "port": port}))
            self.node_env = node_env(config)
            ready = [trio.Event() for _ in range(self.processes)]
            failed: list[str] = []
            async with trio.open_nursery() as outer:
                outer.start_soon(self._watch_signals)
                async with trio.open_nursery() as nodes:
                    for i in range(self.processes):
                        nodes.start_soon(self._keep, i, ready[i], failed)
                    for event in ready:
                        await event.wait()
                    if not failed:
                        url = _url((str(sockname[0]), port))
                        print(f"dohost listening on {url}", flush=True)
                        print_admin_line(config, admin_source)
                    task_status.started()
                outer.cancel_scope.cancel()
            if failed:
                print(f"error: {failed[0]}", file=sys.stderr, flush=True)
                return 1
            print("dohost stopped", file=sys.stderr, flush=True)
            return 0
        finally:
            reserved.close()

    def _spawn_args(self, index: int) -> list[str]:
        role = NodeRole(
            index,
            self.processes,
            self.run_dir,
            self.partitions,
            self.forward_timeout_s,
            self.owner_wait_s,
            self.lock_fd,
        )
        return [sys.executable, "-m", "dohost.server.node_main", role.to_json(), self.node_config]

    async def _keep(self, index: int, ready: trio.Event, failed: list[str]) -> None:
        """Run node `index` until the parent stops; restart it whenever it exits."""
        backoff = FIRST_BACKOFF_S
        while not self.stopping:
            proc = await trio.lowlevel.open_process(
                self._spawn_args(index),
                stdin=subprocess.PIPE,  # its end of file tells the node we are gone
                stdout=subprocess.PIPE,
                start_new_session=True,
                pass_fds=() if self.lock_fd is None else (self.lock_fd,),
                env=self.node_env,
            )
            self.procs[index] = proc
            started = trio.current_time()
            assert proc.stdout is not None
            line = b""
            with trio.move_on_after(START_TIMEOUT_S):
                while not line.endswith(b"\n"):
                    chunk = await proc.stdout.receive_some(4096)
                    if not chunk:
                        break
                    line += chunk
            if b"listening on" in line:
                ready.set()
                async with trio.open_nursery() as n:
                    n.start_soon(_drain, proc.stdout)
                    await proc.wait()
            else:
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()
                if not ready.is_set() and not self.stopping:
                    # A node that cannot start the first time will not start the next:
                    # give its error back instead of restarting it forever.
                    failed.append(f"node {index} did not start (exit status {proc.returncode})")
                    self.stopping = True
                    self._signal_all(signal.SIGTERM)
                    ready.set()
                    return
            if proc.stdin is not None:
                await proc.stdin.aclose()
            if self.stopping:
                return
            log.warning(
                "node %d (pid %d) exited with status %s; restarting it in %.1f s",
                index,
                proc.pid,
                proc.returncode,
                backoff,
            )
            self.restarts += 1
            if trio.current_time() - started > STABLE_AFTER_S:
                backoff = FIRST_BACKOFF_S
            await trio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _signal_all(self, sig: int) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            n = 0
            async for _ in signals:
                n += 1
                self.stopping = True
                if n == 1:
                    print(await self._waiting_line(), file=sys.stderr, flush=True)
                    self._signal_all(signal.SIGTERM)
                elif n == 2:
                    print(STOPPING_NOW, file=sys.stderr, flush=True)
                    self._signal_all(signal.SIGTERM)
                else:
                    self._signal_all(signal.SIGKILL)

    async def _waiting_line(self) -> str:
        """What the whole host still waits for: every node's events in flight and open
        WebSockets (a node that does not answer within STATUS_TIMEOUT_S is named)."""
        nodes = list(range(self.processes))
        peers = Peers([socket_path(self.run_dir, i) for i in nodes], -1)
        try:
            answers = await ask_nodes(peers, nodes, STATUS_PATH, -1, STATUS_TIMEOUT_S)
        finally:
            peers.close()
        events = sockets = 0
        silent: list[str] = []
        for node, body in answers:
            try:
                status = json.loads(body or b"")
                events += int(status["events"])
                sockets += int(status["websockets"])
            except (ValueError, KeyError, TypeError):
                silent.append(str(node))
        unknown = ""
        if silent:
            unknown = f" (node{'s' if len(silent) > 1 else ''} {', '.join(silent)} not counted)"
        return waiting_line(events, sockets, self.config.grace_s, unknown)


async def _drain(stream: trio.abc.ReceiveStream) -> None:
    while await stream.receive_some(4096):
        pass

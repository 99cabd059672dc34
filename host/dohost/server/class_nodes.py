"""Deleting or renaming a class through the HTTP API, on one process or on every node of
`serve --processes N` (class_lifecycle.py does the work on each host).

With N nodes every node runs events of the class (its own objects), so every node takes
part. The node the request lands on (the coordinator):

1. quiesces the class on itself (`class_lifecycle.quiesced`: new events `unknown_class`,
   WebSockets closed, alarms held, running and queued events finished), then asks every
   other node to do the same and to hold it (`hold`); a node that cannot (down,
   restarting, a class it does not know) fails the operation before anything changed;
2. delete: every node deletes the class's objects of its own partitions, fenced by its
   claims (`wipe`); the coordinator then sweeps what is left (nothing, normally) and
   deletes the alarm index entries and the class rows (the commit point).
   rename: the coordinator commits the rename in system.db, moves the objects (kv rows,
   the sqlite directory, alarm index entries: class_lifecycle.move_objects) and the
   scoped tokens;
3. tells every node to let go (`release`). Each node then settles from system.db, the
   one truth (`class_lifecycle.settle`): the class still there means the operation
   failed before its commit point (the node serves it again), otherwise it was renamed
   (served under the new name, with its alarms) or deleted (its alarms dropped).

A held node also lets go by itself when the coordinator process is gone (its pid, polled)
or after `MAX_HOLD_S`, and settles the same way, so a coordinator that dies never leaves
the class held; a rename it committed but had not finished moving is finished by the
first node that settles it (the moves are idempotent).

Messages (`POST /_node/class`, JSON, only on the nodes' Unix sockets):

    {"step": "hold", "op", "tenant", "class", "to": new name or null, "pid"} -> 200 {}
    {"step": "wipe", "op"}                     -> 200 {"objects": n}
    {"step": "release", "op"}                  -> 200 {"outcome": restored|renamed|deleted}
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from dohost.core.errors import Code, DohostError
from dohost.core.names import check_name
from dohost.server import class_lifecycle
from dohost.server.class_registry import ClassRuntime
from dohost.server.node import CLASS_PATH

if TYPE_CHECKING:
    from dohost.server.state import ServerState

log = logging.getLogger("dohost.class_nodes")

MAX_HOLD_S = 600.0  # a held node lets go by itself after this (the coordinator hung)
PID_POLL_S = 0.5  # how often a held node checks that the coordinator still runs
RELEASE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ClassOp:
    id: str
    tenant: str
    old: str
    new: str | None  # a rename's new name; None: a delete
    pid: int  # the coordinator's process
    # Wall-clock ms after which the coordinator no longer waits for a node's hold: a node
    # that gets the hold later (it was stopped, or slow) refuses it.
    hold_by_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"op": self.id, "tenant": self.tenant, "class": self.old, "to": self.new,
                "pid": self.pid, "hold_by_ms": self.hold_by_ms}  # fmt: skip

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ClassOp:
        keys = ("op", "tenant", "class", "to", "pid", "hold_by_ms")
        op, tenant, old, new, pid, hold_by = (d.get(k) for k in keys)
        if not (
            isinstance(op, str)
            and isinstance(tenant, str)
            and isinstance(old, str)
            and (new is None or isinstance(new, str))
            and all(isinstance(x, int) and not isinstance(x, bool) for x in (pid, hold_by))
        ):
            raise DohostError(Code.BAD_REQUEST, "malformed class operation")
        assert isinstance(pid, int) and isinstance(hold_by, int)
        return cls(op, tenant, old, new, pid, hold_by)


def _new_op(state: ServerState, tenant: str, old: str, new: str | None) -> ClassOp:
    wait_s = 0.0 if state.node is None else state.node.role.forward_timeout_s
    hold_by = int(state.host.wall_ms() + wait_s * 1000)
    return ClassOp(uuid.uuid4().hex, tenant, old, new, os.getpid(), hold_by)


# ---------------------------------------------------------------- the coordinator


async def delete_class(state: ServerState, tenant: str, name: str) -> int:
    """Delete a class, its objects' storage and alarms on every node; returns how many
    objects were deleted."""
    host = state.host
    check_name("tenant", tenant)
    op = _new_op(state, tenant, name, None)
    async with class_lifecycle.quiesced(host, tenant, name) as holder:
        backend = holder[0].row.storage
        async with _held_everywhere(state, op) as peers:
            n = 0
            if peers:
                wiped = await _on_peers(state, peers, {"step": "wipe", "op": op.id})
                n += sum(int(w.get("objects", 0)) for w in wiped)
                n += await class_lifecycle.wipe_own_objects(host, tenant, name, backend)
            # What no node deleted as its own (with one process: every object).
            n += await trio.to_thread.run_sync(
                class_lifecycle.wipe_class, host.storage, tenant, name, backend
            )
            class_lifecycle.commit_delete(host, tenant, name, holder)
    state.usage.get(tenant).forget_class(name)
    state.changed()
    return n


async def rename_class(state: ServerState, tenant: str, old: str, new: str) -> ClassRuntime:
    """Rename a class on every node, keeping its objects, ids, alarms and scoped tokens."""
    host = state.host
    class_lifecycle.check_rename(host, tenant, old, new)
    op = _new_op(state, tenant, old, new)
    async with (
        class_lifecycle.quiesced(host, tenant, old, reserve=new) as holder,
        _held_everywhere(state, op),
    ):
        cls = await class_lifecycle.commit_rename(host, tenant, old, new, holder)
        state.tenancy.rename_class(tenant, old, new)
    state.usage.get(tenant).rename_class(old, new)
    state.changed()
    return cls


@contextlib.asynccontextmanager
async def _held_everywhere(state: ServerState, op: ClassOp) -> AsyncIterator[list[int]]:
    """Every other node holds the class for the block (yields their indexes; none with
    one process); at the end, however it ends, each is told to settle."""
    node = state.node
    peers = [] if node is None else node.others()
    if not peers:
        yield []
        return
    try:
        await _on_peers(state, peers, {"step": "hold", **op.to_json()})
        yield peers
    finally:
        # Every peer, also one whose hold failed (it may have taken effect): a release
        # of an operation a node does not hold is a no-op.
        with trio.CancelScope(shield=True), trio.move_on_after(RELEASE_TIMEOUT_S):
            try:
                await _on_peers(state, peers, {"step": "release", "op": op.id})
            except DohostError as e:
                log.warning("a node did not confirm the end of class operation: %s", e.message)


async def _on_peers(
    state: ServerState, peers: list[int], body: Mapping[str, object]
) -> list[dict[str, Any]]:
    """Send one step to every peer at once; raise the first failure once all answered."""
    assert state.node is not None
    node = state.node
    answers: list[dict[str, Any]] = []
    errors: list[DohostError] = []

    async def one(peer: int) -> None:
        try:
            answers.append(await node.ask(peer, CLASS_PATH, body))
        except DohostError as e:
            errors.append(e)

    async with trio.open_nursery() as nursery:
        for peer in peers:
            nursery.start_soon(one, peer)
    if errors:
        e = errors[0]
        raise DohostError(
            e.code,
            f"not every node could take part in changing the class ({e.message}); "
            "nothing was changed unless the answer says otherwise: retry",
        )
    return answers


# ---------------------------------------------------------------- the other nodes


class _Held:
    def __init__(self, op: ClassOp) -> None:
        self.op = op
        self.holder: list[ClassRuntime] = []
        self.release = trio.Event()
        self.done = trio.Event()
        self.outcome = "restored"


class ClassHolds:
    """This node's part in other nodes' class operations (the `/_node/class` route)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._ops: dict[str, _Held] = {}
        self._released: collections.deque[str] = collections.deque(maxlen=1024)
        self._nursery: trio.Nursery | None = None
        # Whether a process still runs (tests replace it).
        self.alive: Callable[[int], bool] = _pid_alive

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The task that holds classes for other nodes (until the server stops; a stop
        cancels the holds, and a cancelled hold restores its class)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def handle(self, body: Mapping[str, Any]) -> dict[str, object]:
        step = body.get("step")
        if step == "hold":
            op = ClassOp.from_json(body)
            if op.id in self._ops or op.id in self._released or self._nursery is None:
                raise DohostError(Code.BAD_REQUEST, f"class operation {op.id} was already seen")
            if self.state.host.wall_ms() > op.hold_by_ms:
                raise DohostError(
                    Code.OWNER_UNAVAILABLE,
                    "this node got the request to hold the class after the node changing "
                    "it stopped waiting",
                )
            await self._nursery.start(self._hold, op)
            return {}
        held = self._ops.get(str(body.get("op")))
        if step == "release":
            if held is None:
                # Perhaps before its hold (reordered): that hold is refused when it comes.
                self._released.append(str(body.get("op"))[:64])
                return {"outcome": "unknown"}
            held.release.set()
            await held.done.wait()
            return {"outcome": held.outcome}
        if step == "wipe":
            if held is None or not held.holder or held.op.new is not None:
                raise DohostError(Code.BAD_REQUEST, "no delete of that id is held here")
            op = held.op
            backend = held.holder[0].row.storage
            n = await class_lifecycle.wipe_own_objects(self.state.host, op.tenant, op.old, backend)
            return {"objects": n}
        raise DohostError(Code.BAD_REQUEST, f"unknown class operation step {str(step)[:40]!r}")

    async def _hold(self, op: ClassOp, *, task_status: trio.TaskStatus[None]) -> None:
        held = self._ops[op.id] = _Held(op)
        host = self.state.host
        started = False
        try:
            async with class_lifecycle.quiesced(host, op.tenant, op.old, reserve=op.new) as h:
                held.holder = h
                task_status.started()
                started = True
                await self._until_released(held)
                held.outcome = await class_lifecycle.settle(host, op.tenant, op.old, op.new, h)
            usage = self.state.usage.get(op.tenant)
            if held.outcome == "deleted":
                usage.forget_class(op.old)
            elif held.outcome == "renamed" and op.new is not None:
                usage.rename_class(op.old, op.new)
        except Exception:
            if not started:
                raise  # the hold failed: the coordinator gets the error
            log.exception("settling class operation %s on %s failed", op.id, op.old)
        finally:
            del self._ops[op.id]
            held.done.set()

    async def _until_released(self, held: _Held) -> None:
        with trio.move_on_after(MAX_HOLD_S):
            while self.alive(held.op.pid):
                with trio.move_on_after(PID_POLL_S):
                    await held.release.wait()
                    return
            log.warning("the node changing class %s ended before it said so", held.op.old)
            return
        log.warning("class %s was held for %g s: settling it", held.op.old, MAX_HOLD_S)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

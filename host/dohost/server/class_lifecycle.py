"""Class lifecycle beyond deploy: versions, rollback, deferred updates, delete, rename.

Deleting or renaming a class never leaves an object half-moved:

1. the class leaves the registry, so new events (requests, calls, WebSocket messages)
   fail with `unknown_class` at once; its WebSockets close (1001);
2. alarms of the class stop starting and the operation waits for running ones
   (`AlarmScheduler.hold_class`), then for every running and queued event of the class
   and its commit (`Supervisor.forget_class`): **an event in flight finishes on the old
   class; the operation waits for it**. Queued events then find no class
   (`unknown_class`) and touch nothing;
3. only then is storage changed, with no activation or open storage of the class left.

A rename commits in system.db (the class rows and a journal row, one transaction), then
moves the objects (kv registry rows in every shard, the sqlite class directory) and the
alarm index entries; each step is idempotent, and a crash between them is finished from
the journal at the next start (`finish_renames`) before anything is served (if moving
fails on a live host, the class serves under neither name until then). Ids survive a
rename: they are MACed with the class key, which the class keeps.

A delete wipes every object (each deletion durable), the class's alarm index entries,
then its rows; a crash half way leaves the class deployed with fewer objects, and the
delete can be run again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from dohost.core.errors import Code, DohostError
from dohost.core.names import check_name
from dohost.core.websocket import CLOSE_GOING_AWAY
from dohost.server.class_registry import ClassRuntime
from dohost.storage.alarm_index import AlarmIndex
from dohost.storage.manager import StorageManager
from dohost.storage.system_db import SystemDb

if TYPE_CHECKING:
    from dohost.server.host import Host

UPDATE_STRATEGIES = ("immediate", "deferred")
DEFAULT_MAX_DELAY_S = 600.0
MAX_MAX_DELAY_S = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: int
    sha256: str
    created_ms: int
    current: bool


def update_deadline(update: str | None, max_delay_s: float | None, now_ms: float) -> float | None:
    """`deferred_until_ms` of a deploy or rollback: None for an immediate update."""
    update = update or "immediate"
    if update not in UPDATE_STRATEGIES:
        raise DohostError(
            Code.INVALID_ARGUMENT, f"update must be one of {', '.join(UPDATE_STRATEGIES)}"
        )
    if update == "immediate":
        if max_delay_s is not None:
            raise DohostError(Code.INVALID_ARGUMENT, "max_delay_s goes with update=deferred")
        return None
    delay = DEFAULT_MAX_DELAY_S if max_delay_s is None else max_delay_s
    if not 0 <= delay <= MAX_MAX_DELAY_S:
        raise DohostError(
            Code.INVALID_ARGUMENT, f"max_delay_s must be from 0 to {MAX_MAX_DELAY_S:g} seconds"
        )
    return now_ms + delay * 1000.0


def versions(host: Host, tenant: str, name: str) -> list[VersionInfo]:
    cls = host.classes.get(tenant, name)
    return [
        VersionInfo(v, sha, created, v == cls.version)
        for v, sha, created in host.system.class_versions(tenant, name)
    ]


async def rollback(
    host: Host, tenant: str, name: str, version: int, deferred_until_ms: float | None
) -> ClassRuntime:
    """A new version whose module is that of `version` (history only grows)."""
    storage = host.classes.get(tenant, name).row.storage

    def redeploy() -> ClassRuntime:
        wasm = host.classes.module_of_version(tenant, name, version)
        return host.classes.deploy(tenant, name, wasm, storage, deferred_until_ms)

    return await host.pool.run(redeploy)


@contextlib.asynccontextmanager
async def quiesced(
    host: Host, tenant: str, name: str, reserve: str | None = None
) -> AsyncIterator[list[ClassRuntime]]:
    """Steps 1-2 of the module's docstring, on this host. The class is restored if the
    block ends (normally or not) without emptying the list it is given (the operation's
    commit point). `reserve`: a rename's new name, held unserved for the block."""
    cls = host.classes.remove(tenant, name)
    if reserve is not None:
        host.classes.reserve(tenant, reserve)
    holder = [cls]
    try:
        host.websockets.close_class(tenant, name, CLOSE_GOING_AWAY, "the class was changed")
        async with host.alarms.hold_class(tenant, name):
            await host.supervisor.forget_class(tenant, name)
            yield holder
    finally:
        if holder:
            host.classes.restore(cls)
        host.classes.retired(tenant, name)
        if reserve is not None:
            host.classes.unreserve(tenant, reserve)


def wipe_class(
    storage: StorageManager,
    tenant: str,
    name: str,
    backend: str,
    owns: Callable[[bytes], bool] | None = None,
) -> int:
    """Delete every object of a class (worker thread); returns how many. `owns`: only
    the objects it accepts, each deletion fenced by its partition's claim (a node of
    `serve --processes N` deletes its own); without it every object, unfenced (a class
    or tenant goes as a whole, whichever node owns its objects)."""
    n = 0
    after: bytes | None = None
    while True:
        page = storage.list_objects(tenant, name, backend, after=after, limit=1000)
        for o in page.objects:
            if owns is not None and not owns(o.object_id):
                continue
            storage.delete_object(tenant, name, o.object_id, backend, unfenced=owns is None)
            n += 1
        if page.next_after is None:
            return n
        after = page.next_after


async def wipe_own_objects(host: Host, tenant: str, name: str, backend: str) -> int:
    """Delete the class's objects of the partitions this host serves (inside `quiesced`)."""
    return await trio.to_thread.run_sync(wipe_class, host.storage, tenant, name, backend, host.owns)


def commit_delete(host: Host, tenant: str, name: str, holder: list[ClassRuntime]) -> None:
    """The end of a delete, once every object is gone: its alarms, then its rows."""
    host.alarms.drop_class(tenant, name)
    host.alarm_index.remove_tenant(tenant, name)
    host.system.delete_class(tenant, name)
    holder.clear()


async def delete_class(host: Host, tenant: str, name: str) -> int:
    """Delete a class with its objects' storage and alarms; returns the objects deleted."""
    check_name("tenant", tenant)
    async with quiesced(host, tenant, name) as holder:
        backend = holder[0].row.storage
        n = await trio.to_thread.run_sync(wipe_class, host.storage, tenant, name, backend)
        commit_delete(host, tenant, name, holder)
    return n


def move_objects(
    system: SystemDb, storage: StorageManager, index: AlarmIndex, tenant: str, old: str, new: str
) -> None:
    """The storage half of a rename (idempotent), then its journal row goes."""
    storage.rename_class(tenant, old, new)
    index.rename_class(tenant, old, new)
    system.finish_rename(tenant, old)


def finish_renames(system: SystemDb, storage: StorageManager, index: AlarmIndex) -> int:
    """At start, before alarms load and anything is served: finish interrupted renames."""
    pending = system.pending_renames()
    for tenant, old, new in pending:
        move_objects(system, storage, index, tenant, old, new)
    return len(pending)


def check_rename(host: Host, tenant: str, old: str, new: str) -> None:
    """A rename's bad input, refused before anything stops."""
    check_name("tenant", tenant)
    check_name("class", new)
    host.classes.get(tenant, old)
    if new == old:
        raise DohostError(Code.INVALID_ARGUMENT, f"the class is already named {old!r}")
    if host.system.get_class(tenant, new) is not None:
        raise DohostError(Code.ALREADY_EXISTS, f"a class named {new!r} already exists")


async def commit_rename(
    host: Host, tenant: str, old: str, new: str, holder: list[ClassRuntime]
) -> ClassRuntime:
    """Inside `quiesced(host, tenant, old, reserve=new)`: the commit point, then the
    storage moves and this host's alarms."""
    host.system.rename_class(tenant, old, new)  # the commit point (raises if taken)
    cls = holder.pop()
    await trio.to_thread.run_sync(
        move_objects, host.system, host.storage, host.alarm_index, tenant, old, new
    )
    host.alarms.rename_class(tenant, old, new)
    return host.classes.renamed(cls, new)


async def rename_class(host: Host, tenant: str, old: str, new: str) -> ClassRuntime:
    """Rename a class keeping its objects, ids, versions, alarms and scoped tokens."""
    check_rename(host, tenant, old, new)
    async with quiesced(host, tenant, old, reserve=new) as holder:
        return await commit_rename(host, tenant, old, new, holder)
    raise AssertionError("unreachable")  # (mypy: the context manager may swallow)


async def settle(
    host: Host, tenant: str, old: str, new: str | None, holder: list[ClassRuntime]
) -> str:
    """Inside `quiesced` on a node that took part in another node's delete or rename:
    apply what the system db says the operation did, whether its node said it ended or
    died. Returns "restored" (the class is still there: the operation failed before its
    commit point), "renamed" (a rename whose storage moves a dead node left unfinished
    are finished here: they are idempotent) or "deleted"."""
    if host.system.get_class(tenant, old) is not None:
        return "restored"
    if new is not None and host.system.get_class(tenant, new) is not None:
        if any(r[:2] == (tenant, old) for r in host.system.pending_renames()):
            await trio.to_thread.run_sync(
                move_objects, host.system, host.storage, host.alarm_index, tenant, old, new
            )
        host.alarms.rename_class(tenant, old, new)
        host.classes.renamed(holder.pop(), new)
        return "renamed"
    host.alarms.drop_class(tenant, old)
    holder.clear()
    return "deleted"

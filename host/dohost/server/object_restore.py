"""Restoring one object from the replica: `restore-object` and fork (Host.restore_object)
and a guest's `bookmark_restore` (applied by the supervisor before the object's next
event). docs/replication.md, "One object".

Both read the object's state at a time from the replica (replica/object_history.py)
and then replace the storage of the object being written, with its slot held and no
activation (so no event sees a mix), in **one transaction** of the object's own storage:
every row deleted, the restored rows put, the alarm set as it was then (its index entry
made durable first, like any event that sets an alarm). Being an ordinary commit, the
restore is fenced by the owner's claim and shipped to the replica like any write, so
the replica's history records it too.

Only kv-backed classes: sqlite objects are not in the replica yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dohost.core.bookmarks import make_bookmark, parse_bookmark
from dohost.core.errors import Code, DohostError
from dohost.core.replica_log import ObjectState
from dohost.storage.api import Backend, CommitTicket, ListOptions, ObjectStorage

# How long a restore waits for the changes already committed to reach the replica
# (asynchronous shipping) before it reads the object's history.
FLUSH_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class RestoredObject:
    """What a restore did (the HTTP API's answer)."""

    class_name: str
    object_id: str  # hex
    name: str | None
    source_id: str  # hex; the object itself unless a fork
    at_ms: int
    keys: int
    alarm: int | None

    def to_json(self) -> dict[str, object]:
        return {
            "class": self.class_name,
            "id": self.object_id,
            "name": self.name,
            "source": self.source_id,
            "at_ms": self.at_ms,
            "keys": self.keys,
            "alarm": self.alarm,
            "fork": self.source_id != self.object_id,
        }


def no_replica() -> DohostError:
    return DohostError(
        Code.NO_REPLICA,
        "this server has no replica store: restoring an object needs one "
        "(dohost serve --replica URL; docs/replication.md)",
    )


def check_backend(class_name: str, backend: str) -> None:
    if backend != Backend.KV:
        raise DohostError(
            Code.NOT_SUPPORTED,
            f"class {class_name} keeps its objects in sqlite, which is not replicated yet: "
            "only kv-backed objects can be restored one by one",
        )


def write_state(
    storage: ObjectStorage,
    state: ObjectState | None,
    *,
    require_empty: bool,
    index_alarm: Callable[[int], None] | None,
) -> CommitTicket:
    """(Worker thread; the object's slot held, no activation.) Replace the object's rows
    and alarm with `state` (None: empty) in one transaction; ALREADY_EXISTS if
    `require_empty` and the object holds anything."""
    storage.begin_event()
    try:
        if require_empty and (
            storage.list(ListOptions(limit=1)).entries or storage.get_alarm() is not None
        ):
            raise DohostError(
                Code.ALREADY_EXISTS,
                "the target object is not empty: a fork copies into a new or empty object "
                "only (delete it first, or pick another name)",
            )
        storage.delete_all()
        if state is not None:
            for key, value in state.rows.items():
                storage.put(key, value)
            storage.set_alarm(state.alarm)
            if state.alarm is not None and index_alarm is not None:
                index_alarm(state.alarm)
    except BaseException:
        storage.rollback_event()
        raise
    return storage.commit_event()


class SlotBookmarks:
    """The bookmark imports' host side for one activation (runtime/bookmark_imports.py):
    the class key signs, `request` records a restore for the supervisor to apply."""

    __slots__ = ("_class_key", "_object_id", "_request", "_wall_ms")

    def __init__(
        self,
        class_key: bytes,
        object_id: bytes,
        wall_ms: Callable[[], float],
        request: Callable[[int], None],
    ) -> None:
        self._class_key = class_key
        self._object_id = object_id
        self._wall_ms = wall_ms
        self._request = request

    def _check_past(self, at_ms: int) -> None:
        now = int(self._wall_ms())
        if at_ms > now:
            raise DohostError(
                Code.INVALID_ARGUMENT,
                f"bookmark time {at_ms} ms is in the future (now is {now} ms)",
            )

    def current(self) -> str:
        return make_bookmark(self._class_key, self._object_id, int(self._wall_ms()))

    def for_time(self, at_ms: int) -> str:
        self._check_past(at_ms)
        return make_bookmark(self._class_key, self._object_id, at_ms)

    def restore_next(self, bookmark: str) -> None:
        at_ms = parse_bookmark(self._class_key, self._object_id, bookmark)
        self._check_past(at_ms)
        self._request(at_ms)

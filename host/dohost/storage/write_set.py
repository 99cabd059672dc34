"""What one committed event hands to a kv shard's committer.

A `WriteSet` is the net effect of one event on one object: an optional "delete everything
first", then puts (value) and deletes (None), plus what the shard needs to keep the
object's registry row right. `WriterState` is shared by all write sets of one
`KvObjectStorage` instance: once a commit of that instance failed, the ones queued behind
it fail too, because they may build on the writes that were lost.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from dohost.core.errors import DohostError
from dohost.storage.api import CommitTicket


class _Unchanged(enum.Enum):
    UNCHANGED = enum.auto()


ALARM_UNCHANGED = _Unchanged.UNCHANGED


class WriterState:
    """The first commit failure of one ObjectStorage instance (None while healthy)."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: DohostError | None = None


@dataclass(slots=True, eq=False)
class WriteSet:
    object_id: bytes
    class_name: str
    name: str | None
    created_ms: int  # used only when this write set registers the object
    clear: bool  # delete every row of the object before applying `puts`
    puts: dict[bytes, bytes | None]  # None deletes the key
    bytes_after: int  # the object's sum of len(key)+len(value) once applied
    writer: WriterState
    # False when the registry row already holds this object with `bytes_after`: the
    # committer then skips it (one b-tree page less to write per event).
    update_registry: bool = True
    # The object's alarm once applied: a time, None (deleted), or ALARM_UNCHANGED.
    alarm: int | _Unchanged | None = ALARM_UNCHANGED
    drop: bool = False  # delete the object entirely, registry row included
    # The object's partition and the epoch of the claim it was written under: the
    # committer refuses it (FENCED) unless the shard's fence still holds that epoch.
    # -1: written without claims (no fencing).
    partition: int = -1
    epoch: int = 0
    ticket: CommitTicket = field(default_factory=CommitTicket)

    def payload_bytes(self) -> int:
        """Rough size, used to bound one batch's transaction."""
        return sum(len(k) + (len(v) if v is not None else 0) for k, v in self.puts.items())

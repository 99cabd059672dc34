"""Fencing: a node that no longer holds a partition's claim commits nothing.

Every claim of a partition gets a larger epoch (storage/ownership_local.py). The storage
keeps, next to the objects' rows, the largest epoch that has touched each partition:

- kv: each shard db has `fence(partition, epoch)`. A node writes its epochs there when
  it opens the shard (for every partition it holds) and when it claims partitions while
  the shard is open, always before it reads an object of them through that shard; a
  larger epoch already stored refuses the write (`FENCED`). Each commit batch checks,
  inside its write transaction, that fence[p] still is the epoch its write set was made
  under; a write set that fails the check fails alone, with `FENCED`.
- sqlite: each object db has a `_dohost_fence` row, written when the object is opened
  (before its first read) and checked inside the event's own transaction before COMMIT.

So once a new owner has opened the storage of a partition, an old owner's commits fail
atomically, and the new owner read nothing written after its fence. Before each batch
the committer also asks the claims whether they still stand (`Claims.valid`): a lock
broken before any new owner touched the data stops the old owner too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from dohost.core.errors import Code, DohostError
from dohost.core.partitions import partition_of

NO_PARTITION = -1  # a write set made without claims (storage used without fencing)
NO_FENCE = (NO_PARTITION, 0)  # (partition, epoch) of storage used without claims


class Claims(Protocol):
    """What the storage needs of an ownership backend (LocalOwnership is one)."""

    @property
    def count(self) -> int:
        """The data set's partition count."""
        ...

    def epoch_of(self, partition: int) -> int | None: ...

    def held(self) -> dict[int, int]: ...

    def valid(self) -> bool: ...


class Ownership(Claims, Protocol):
    """An ownership backend as the Host drives it: `local` (storage/ownership_local.py)
    or `etcd` (server/ownership_etcd.py). `claim` and `release` block (called off the
    loop); `lost()` says, once `valid()` is false, why, in words for a log line."""

    def claim(self, partitions: Iterable[int], wait: float = 0.0) -> dict[int, int]: ...

    def release(self, partitions: Iterable[int]) -> None: ...

    def lost(self) -> str: ...

    def close(self) -> None: ...


def fenced(partition: int, epoch: int, stored: int | None) -> DohostError:
    newer = f"epoch {stored}" if stored is not None else "no claim"
    return DohostError(
        Code.FENCED,
        f"partition {partition} has a newer owner ({newer}; this node claimed epoch "
        f"{epoch}): nothing of this event was stored",
    )


def claim_lost(partition: int, epoch: int) -> DohostError:
    return DohostError(
        Code.FENCED,
        f"this node no longer holds partition {partition} (epoch {epoch}: its lock was "
        "broken or released): nothing of this event was stored",
    )


def epoch_for(claims: Claims, object_id: bytes) -> tuple[int, int]:
    """(partition, epoch) an object's storage writes under; NOT_OWNER if not held."""
    p = partition_of(object_id, claims.count)
    epoch = claims.epoch_of(p)
    if epoch is None:
        raise DohostError(
            Code.NOT_OWNER, f"this node does not own partition {p} of object {object_id.hex()}"
        )
    return p, epoch

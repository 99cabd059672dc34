"""Partitions: the unit in which object ownership moves (DESIGN.md, "Beyond one process").

Objects are hashed by id into a fixed number of partitions, chosen when a data set is
created and never changed afterwards (a different count would move objects between
owners). The hash reads bytes 4..8 of the id, not 0..4: the kv backend picks an object's
shard from bytes 0..4, and keeping the two independent spreads each node's partitions
over every shard instead of tying a node to some shards.

Pure logic: the claim itself (a kernel lock, an etcd key) lives in storage/ and server/.
"""

from __future__ import annotations

from collections.abc import Iterable

from dohost.core.errors import Code, DohostError

DEFAULT_PARTITIONS = 4096
MAX_PARTITIONS = 1 << 16


def check_partition_count(count: int) -> int:
    if not 1 <= count <= MAX_PARTITIONS:
        raise DohostError(
            Code.INVALID_ARGUMENT,
            f"the partition count must be between 1 and {MAX_PARTITIONS}, not {count}",
        )
    return count


def partition_of(object_id: bytes, count: int) -> int:
    """The partition of an object id (32 bytes; at least 8 are read)."""
    return int.from_bytes(object_id[4:8], "big") % count


def static_owner(partition: int, nodes: int) -> int:
    """The node (0..nodes-1) that owns a partition when a fixed set of `nodes` processes
    shares one data set: round-robin, so every node gets an equal share of partitions
    and each node's share is spread evenly over the id space."""
    return partition % nodes


def progressions(partitions: Iterable[int]) -> list[tuple[int, int, int]]:
    """Distinct partitions, sorted, as arithmetic runs (first, last, step), so that a
    claim or a fence of many partitions is a few SQL statements, not one per partition:
    every partition of a data set is one run, and so is each node's share under static
    placement. [0, 1, 2, 3] -> [(0, 3, 1)]; [1, 3, 5, 9] -> [(1, 5, 2), (9, 9, 1)]."""
    ps = sorted(set(partitions))
    if len(ps) > 2 and ps == list(range(ps[0], ps[-1] + 1, ps[1] - ps[0])):
        return [(ps[0], ps[-1], ps[1] - ps[0])]  # the common case, at C speed
    out: list[tuple[int, int, int]] = []
    i = 0
    while i < len(ps):
        if i + 1 == len(ps):
            out.append((ps[i], ps[i], 1))
            break
        step = ps[i + 1] - ps[i]
        j = i + 1
        while j + 1 < len(ps) and ps[j + 1] - ps[j] == step:
            j += 1
        out.append((ps[i], ps[j], step))
        i = j + 1
    return out

"""Partitions: the unit in which object ownership moves (DESIGN.md, "Beyond one process").

Objects are hashed by id into a fixed number of partitions, chosen when a data set is
created and never changed afterwards (a different count would move objects between
owners). The hash reads bytes 4..8 of the id, not 0..4: the kv backend picks an object's
shard from bytes 0..4, and keeping the two independent spreads each node's partitions
over every shard instead of tying a node to some shards.

Pure logic: the claim itself (a kernel lock, an etcd key) lives in storage/ and server/.
"""

from __future__ import annotations

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

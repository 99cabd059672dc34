"""Where partitions live in a cluster: rendezvous (highest random weight) hashing.

Each partition goes to the live member with the highest `weight(member, partition)`.
When a member joins, it takes from every other member only the partitions it now wins
(about 1/n of them); when one leaves, only its partitions move, spread over the others.
No table is stored anywhere: every node computes the same answer from the same member
list (read from etcd), so placement needs no coordination beyond membership.

Location hints (DESIGN: "a node carries a label") are not placed yet: `owner_of` takes
every live member.

Pure logic: no clocks, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def weight(member: str, partition: int) -> int:
    """A deterministic pseudo-random weight of (member, partition)."""
    h = hashlib.blake2b(
        member.encode("utf-8") + b"\0" + partition.to_bytes(4, "big"), digest_size=8
    )
    return int.from_bytes(h.digest(), "big")


def owner_of(partition: int, members: Iterable[str]) -> str | None:
    """The member that should own `partition` (None when no member is live). Ties
    (64-bit weights: practically never) go to the smaller name, so every node agrees."""
    best: tuple[int, str] | None = None
    for m in members:
        w = (weight(m, partition), m)
        if best is None or w[0] > best[0] or (w[0] == best[0] and m < best[1]):
            best = w
    return None if best is None else best[1]


def assign(members: Iterable[str], partitions: int) -> dict[str, list[int]]:
    """member -> the partitions it should own (every member listed, even with none)."""
    ms = sorted(set(members))
    out: dict[str, list[int]] = {m: [] for m in ms}
    if not ms:
        return out
    for p in range(partitions):
        owner = owner_of(p, ms)
        assert owner is not None
        out[owner].append(p)
    return out

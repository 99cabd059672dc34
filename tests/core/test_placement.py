"""Rendezvous placement: every node computes the same owner; a join or a leave moves
only the partitions it must."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dohost.core.placement import assign, owner_of

NAMES = st.lists(
    st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), min_size=1, max_size=6, unique=True
)


def test_no_member_no_owner() -> None:
    assert owner_of(3, []) is None
    assert assign([], 8) == {}


@settings(max_examples=40, deadline=None)
@given(NAMES)
def test_owner_does_not_depend_on_member_order(members: list[str]) -> None:
    for p in range(64):
        assert owner_of(p, members) == owner_of(p, list(reversed(members)))


@settings(max_examples=40, deadline=None)
@given(NAMES, st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True))
def test_a_join_moves_only_partitions_to_the_new_member(members: list[str], new: str) -> None:
    if new in members:
        return
    before = {p: owner_of(p, members) for p in range(256)}
    after = {p: owner_of(p, [*members, new]) for p in range(256)}
    for p in range(256):
        assert after[p] in (before[p], new)


@settings(max_examples=40, deadline=None)
@given(NAMES)
def test_a_leave_moves_only_the_leavers_partitions(members: list[str]) -> None:
    gone, rest = members[0], members[1:]
    if not rest:
        return
    for p in range(256):
        before = owner_of(p, members)
        after = owner_of(p, rest)
        if before != gone:
            assert after == before


def test_shares_are_even_enough() -> None:
    shares = assign(["a", "b", "c"], 4096)
    assert sorted(shares) == ["a", "b", "c"]
    assert sum(len(v) for v in shares.values()) == 4096
    for v in shares.values():
        assert 1100 < len(v) < 1630  # 1365 each on average

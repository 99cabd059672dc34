"""core/partitions.py: the partition of an id, static placement, arithmetic runs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dohost.core.errors import Code, DohostError
from dohost.core.partitions import (
    check_partition_count,
    partition_of,
    progressions,
    static_owner,
)


def test_partition_reads_bytes_4_to_8() -> None:
    oid = bytes([9, 9, 9, 9, 0, 0, 1, 2]) + bytes(24)
    assert partition_of(oid, 4096) == 0x0102 % 4096
    assert partition_of(bytes([0xFF] * 4) + oid[4:], 4096) == partition_of(oid, 4096)
    assert [static_owner(p, 3) for p in range(6)] == [0, 1, 2, 0, 1, 2]


def test_partition_count_bounds() -> None:
    assert check_partition_count(1) == 1
    for bad in (0, -1, 65537):
        with pytest.raises(DohostError) as e:
            check_partition_count(bad)
        assert e.value.code is Code.INVALID_ARGUMENT


def test_progressions_examples() -> None:
    assert progressions([]) == []
    assert progressions([4]) == [(4, 4, 1)]
    assert progressions(range(4096)) == [(0, 4095, 1)]
    assert progressions(range(1, 4096, 2)) == [(1, 4095, 2)]  # a node's static share
    assert progressions([1, 3, 5, 9]) == [(1, 5, 2), (9, 9, 1)]


@given(st.sets(st.integers(0, 300)))
def test_progressions_cover_exactly_the_partitions(ps: set[int]) -> None:
    runs = progressions(ps)
    covered = [p for lo, hi, step in runs for p in range(lo, hi + 1, step)]
    assert covered == sorted(ps)

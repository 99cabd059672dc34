"""`DATA/PARTITIONS`: a data set's partition count, fixed when the data set is created.

A different count would move objects between partitions (and so between owners), so it
is written once, durably, at the first open, and only read afterwards. A data set made
before partitions existed has no file: it gets the default at its first open.
"""

from __future__ import annotations

import os

from dohost.core.errors import Code, DohostError
from dohost.core.partitions import DEFAULT_PARTITIONS, check_partition_count
from dohost.storage.fsutil import Fsync, sync_data, write_file_durably

PARTITIONS_FILE = "PARTITIONS"


def read_partition_count(data_dir: str | os.PathLike[str]) -> int | None:
    """The data set's count, or None if it has none yet."""
    path = os.path.join(os.fspath(data_dir), PARTITIONS_FILE)
    try:
        with open(path, "rb") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    try:
        return check_partition_count(int(text))
    except (ValueError, DohostError) as e:
        raise DohostError(
            Code.INTERNAL, f"{path} is damaged ({text[:40]!r}): {e}; it must hold the count"
        ) from e


def partition_count(
    data_dir: str | os.PathLike[str],
    default: int = DEFAULT_PARTITIONS,
    fsync: Fsync = sync_data,
) -> int:
    """The data set's count; written (as `default`) if the data set has none yet. The
    caller holds the data set lock, so no other program writes the file meanwhile."""
    n = read_partition_count(data_dir)
    if n is not None:
        return n
    check_partition_count(default)
    write_file_durably(
        os.path.join(os.fspath(data_dir), PARTITIONS_FILE), f"{default}\n".encode(), fsync
    )
    return default

"""Names of the objects in a replica store (DESIGN.md, "Replication").

Under the store's root (a directory, or an S3 bucket and prefix):

    FORMAT                                   the data set's replica header (format, partitions)
    p<partition>/e<epoch>/start              what the owner of that epoch restored first
    p<partition>/e<epoch>/s<seq>             a segment: committed changes, in seq order
    p<partition>/e<epoch>/snap-s<seq>-t<ms>  a snapshot: the partition as of (epoch, seq),
                                             taken at wall-clock ms (in the key, so restore and
                                             retention choose a snapshot without reading it)
    catalog/t<ms>-<writer>                   a copy of the system database (tenants, tokens,
                                             classes, versions) taken at wall-clock ms
    modules/<sha256>.wasm                    a module's bytes, named by their SHA-256

Numbers are zero-padded decimals (partition 5 digits, epoch and seq 20: any u64; ms 13), so a
listing in key order is in numeric order and a key says what it holds to a person reading
a bucket. Keys are plain ASCII from a small alphabet, the same on a file system and on S3,
and are checked before any store turns them into a path or a URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dohost.core.errors import Code, DohostError
from dohost.core.partitions import MAX_PARTITIONS

MAX_U64 = (1 << 64) - 1
FORMAT_KEY = "FORMAT"

# A key: '/'-separated parts of [A-Za-z0-9._-], none empty, "." or "..", not starting
# with "." (the file store keeps its temporary files under such names).
_PART = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}"
_KEY = re.compile(rf"{_PART}(?:/{_PART}){{0,15}}")
_PREFIX = re.compile(rf"(?:{_PART}/){{0,15}}[A-Za-z0-9._-]{{0,128}}")

_PARTITION_DIGITS = 5
_NUMBER_DIGITS = 20
_MS_DIGITS = 13
MAX_MS = 10**_MS_DIGITS - 1
_LOG_KEY = re.compile(r"p(\d{5})/e(\d{20})/(start|s(\d{20})|snap-s(\d{20})-t(\d{13}))")


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key) or len(key) > 1024:
        raise DohostError(
            Code.INVALID_ARGUMENT,
            f"{key!r} is not a replica key: '/'-separated parts of letters, digits, '.', "
            "'_' and '-', none empty or starting with '.'",
        )
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix: a key's leading part ("p00042/", "p00042/e000", "" for all)."""
    if not _PREFIX.fullmatch(prefix) or ".." in prefix.split("/") or len(prefix) > 1024:
        raise DohostError(Code.INVALID_ARGUMENT, f"{prefix!r} is not a replica key prefix")
    return prefix


def _check_number(what: str, n: int, top: int) -> None:
    if not 0 <= n <= top:
        raise DohostError(Code.INVALID_ARGUMENT, f"{what} {n} is out of range (0..{top})")


def partition_prefix(partition: int) -> str:
    _check_number("partition", partition, MAX_PARTITIONS - 1)
    return f"p{partition:0{_PARTITION_DIGITS}d}/"


def epoch_prefix(partition: int, epoch: int) -> str:
    _check_number("epoch", epoch, MAX_U64)
    return f"{partition_prefix(partition)}e{epoch:0{_NUMBER_DIGITS}d}/"


def segment_key(partition: int, epoch: int, seq: int) -> str:
    _check_number("seq", seq, MAX_U64)
    return f"{epoch_prefix(partition, epoch)}s{seq:0{_NUMBER_DIGITS}d}"


def snapshot_key(partition: int, epoch: int, seq: int, taken_ms: int) -> str:
    _check_number("seq", seq, MAX_U64)
    _check_number("snapshot time", taken_ms, MAX_MS)
    return (
        f"{epoch_prefix(partition, epoch)}snap-s{seq:0{_NUMBER_DIGITS}d}-t{taken_ms:0{_MS_DIGITS}d}"
    )


def start_key(partition: int, epoch: int) -> str:
    return f"{epoch_prefix(partition, epoch)}start"


def key_of(log_key: LogKey) -> str:
    """The key a parsed `LogKey` came from (parse_log_key's inverse)."""
    if log_key.kind == "start":
        return start_key(log_key.partition, log_key.epoch)
    if log_key.kind == "segment":
        return segment_key(log_key.partition, log_key.epoch, log_key.seq)
    return snapshot_key(log_key.partition, log_key.epoch, log_key.seq, log_key.taken_ms)


@dataclass(frozen=True, slots=True)
class LogKey:
    """What a key of a partition's log names."""

    kind: str  # "segment", "snapshot" or "start"
    partition: int
    epoch: int
    seq: int  # 0 for "start"
    taken_ms: int = 0  # snapshots only


def parse_log_key(key: str) -> LogKey | None:
    """The meaning of a partition log key; None for any other key (a store may hold
    other things, and a listing must not fail because of them)."""
    m = _LOG_KEY.fullmatch(key)
    if m is None:
        return None
    partition, epoch = int(m[1]), int(m[2])
    if partition >= MAX_PARTITIONS or epoch > MAX_U64:
        return None
    if m[3] == "start":
        return LogKey("start", partition, epoch, 0)
    if m[4] is not None:
        seq = int(m[4])
        return LogKey("segment", partition, epoch, seq) if seq <= MAX_U64 else None
    seq = int(m[5])
    return LogKey("snapshot", partition, epoch, seq, int(m[6])) if seq <= MAX_U64 else None


_CATALOG_KEY = re.compile(r"catalog/t(\d{13})-([A-Za-z0-9_-]{1,64})")
_MODULE_KEY = re.compile(r"modules/([0-9a-f]{64})\.wasm")
CATALOG_PREFIX = "catalog/"


def catalog_key(taken_ms: int, writer: str) -> str:
    """A catalog copy's key; `writer` (letters, digits, '_', '-') keeps two writers of one
    millisecond apart."""
    _check_number("catalog time", taken_ms, MAX_MS)
    key = f"{CATALOG_PREFIX}t{taken_ms:0{_MS_DIGITS}d}-{writer}"
    if not _CATALOG_KEY.fullmatch(key):
        raise DohostError(Code.INVALID_ARGUMENT, f"{writer!r} is not a catalog writer name")
    return key


def parse_catalog_key(key: str) -> int | None:
    """The time a catalog key names; None for any other key."""
    m = _CATALOG_KEY.fullmatch(key)
    return None if m is None else int(m[1])


def module_key(sha256: str) -> str:
    key = f"modules/{sha256}.wasm"
    if not _MODULE_KEY.fullmatch(key):
        raise DohostError(Code.INVALID_ARGUMENT, f"{sha256!r} is not a module's SHA-256")
    return key

"""The records of a partition's replica log: segments, start records, snapshots.

Every record is sealed the same way, so that a corrupted or truncated object is detected
and named before anything of it is used:

    magic (8 bytes: kind and format version) | body length (u64 BE) | CRC-32 of body (u32 BE) | body

The body is CBOR (core/cbor.py, strict). A body also repeats where it belongs (partition,
epoch, seq), checked against its key on decode, so an object copied or renamed to the
wrong key is refused too.

A **segment** holds the changes of one committed batch of a partition, logical per object
(DESIGN.md: one object can be restored or forked alone): for each object touched, its
identity (tenant, class, id, name, creation time), whether its rows were cleared first or
the object dropped, the keys put (a value) or deleted (None), and its alarm (set, deleted
or unchanged). Replaying segments in order with `apply_change` rebuilds the partition; it
does what `KvShard._apply_batch` does to the shard's tables.

A **start record** is written by each new owner before it serves: the last (epoch, seq)
it restored (None for a new partition). Restore follows these from the newest epoch back
(core/replica_chain.py). A **snapshot** is the whole partition as of (epoch, seq).

Pure logic: no I/O, no clock (times are arguments).
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from dohost.core import cbor
from dohost.core.errors import Code, DohostError
from dohost.core.replica_keys import MAX_U64

FORMAT_VERSION = 1
MAGIC_SEGMENT = b"DOHSEG01"
MAGIC_START = b"DOHSTA01"
MAGIC_SNAPSHOT = b"DOHSNP01"
MAGIC_FORMAT = b"DOHFMT01"
MAGIC_CATALOG = b"DOHCAT01"
_HEADER = struct.Struct(">8sQI")


def corrupt(where: str, problem: str) -> DohostError:
    return DohostError(
        Code.REPLICA_CORRUPT,
        f"replica object {where} is unusable: {problem}; restore stops here rather than "
        "apply a damaged log (restore from an earlier time, or repair the store)",
    )


def seal(magic: bytes, body: bytes) -> bytes:
    return _HEADER.pack(magic, len(body), zlib.crc32(body)) + body


def unseal(magic: bytes, data: bytes, where: str) -> bytes:
    """The body of a sealed record; REPLICA_CORRUPT naming `where` if anything is off."""
    if len(data) < _HEADER.size:
        raise corrupt(where, f"truncated: {len(data)} bytes, shorter than the header")
    found, length, crc = _HEADER.unpack_from(data)
    if found != magic:
        raise corrupt(where, f"not a {magic[:6].decode()} record (starts with {found!r})")
    body = data[_HEADER.size :]
    if len(body) != length:
        raise corrupt(
            where,
            f"truncated: {len(body)} of {length} body bytes"
            if len(body) < length
            else f"{len(body) - length} bytes past the end of the record",
        )
    if zlib.crc32(body) != crc:
        raise corrupt(where, "checksum mismatch (the bytes changed after they were written)")
    return body


def _decode_body(body: bytes, where: str) -> Any:
    try:
        return cbor.decode(body)
    except DohostError as e:
        raise corrupt(where, f"undecodable body ({e.message})") from None


class _Shape(Exception):
    """A body that decoded but has the wrong shape (raised inside the readers below)."""


def _int(v: Any, top: int = MAX_U64) -> int:
    if type(v) is not int or not 0 <= v <= top:
        raise _Shape(f"expected an integer 0..{top}, found {v!r}"[:120])
    return v


def _str(v: Any) -> str:
    if type(v) is not str:
        raise _Shape(f"expected text, found {type(v).__name__}")
    return v


def _bytes(v: Any) -> bytes:
    if type(v) is not bytes:
        raise _Shape(f"expected bytes, found {type(v).__name__}")
    return v


def _list(v: Any, n: int | None = None) -> list[Any]:
    if type(v) is not list or (n is not None and len(v) != n):
        raise _Shape(f"expected an array{f' of {n}' if n is not None else ''}")
    return v


def _opt(v: Any, read: Any) -> Any:
    return None if v is None else read(v)


class _Unchanged(enum.Enum):
    UNCHANGED = enum.auto()


ALARM_UNCHANGED = _Unchanged.UNCHANGED
Alarm = int | None | _Unchanged  # a time (ms), None (deleted), or unchanged


# ------------------------------------------------------------------------- changes


@dataclass(frozen=True, slots=True)
class ObjectChange:
    """What one committed batch did to one kv object."""

    tenant: str
    class_name: str
    object_id: bytes
    name: str | None
    created_ms: int
    puts: tuple[tuple[bytes, bytes | None], ...] = ()  # None deletes the key
    # Wall-clock time of the local commit: point-in-time restore applies the changes
    # committed at or before --at (one segment may hold several commits).
    committed_ms: int = 0
    clear: bool = False  # every row of the object deleted before `puts`
    drop: bool = False  # the object deleted entirely (rows, registry, alarm)
    alarm: Alarm = ALARM_UNCHANGED

    def encode(self) -> list[Any]:
        alarm = [] if self.alarm is ALARM_UNCHANGED else [self.alarm]
        flags = (1 if self.clear else 0) | (2 if self.drop else 0)
        return [
            self.tenant,
            self.class_name,
            self.object_id,
            self.name,
            self.created_ms,
            flags,
            [[k, v] for k, v in self.puts],
            alarm,
            self.committed_ms,
        ]

    @staticmethod
    def decode(v: Any) -> ObjectChange:
        tenant, class_name, oid, name, created, flags, puts, alarm, committed = _list(v, 9)
        flags = _int(flags, 3)
        alarm_list = _list(alarm)
        if len(alarm_list) > 1:
            raise _Shape("an alarm is [] or [time or null]")
        return ObjectChange(
            tenant=_str(tenant),
            class_name=_str(class_name),
            object_id=_bytes(oid),
            name=_opt(name, _str),
            created_ms=_int(created),
            puts=tuple(
                (_bytes(k), _opt(val, _bytes)) for k, val in (_list(p, 2) for p in _list(puts))
            ),
            clear=bool(flags & 1),
            drop=bool(flags & 2),
            alarm=_opt(alarm_list[0], _int) if alarm_list else ALARM_UNCHANGED,
            committed_ms=_int(committed),
        )


@dataclass(frozen=True, slots=True)
class Segment:
    partition: int
    epoch: int
    seq: int
    committed_ms: int  # the newest commit time of its changes
    changes: tuple[ObjectChange, ...]


def encode_segment(seg: Segment) -> bytes:
    body = cbor.encode(
        {
            "v": FORMAT_VERSION,
            "p": seg.partition,
            "e": seg.epoch,
            "s": seg.seq,
            "t": seg.committed_ms,
            "c": [c.encode() for c in seg.changes],
        }
    )
    return seal(MAGIC_SEGMENT, body)


def _check_place(got: tuple[int, ...], want: tuple[int, ...], where: str) -> None:
    if got != want:
        raise corrupt(where, f"it says it is partition/epoch/seq {got}, its key says {want}")


def _body_map(magic: bytes, data: bytes, where: str) -> dict[str, Any]:
    body = _decode_body(unseal(magic, data, where), where)
    if type(body) is not dict or body.get("v") != FORMAT_VERSION:
        raise corrupt(where, f"not format version {FORMAT_VERSION}")
    return body


def decode_segment(data: bytes, partition: int, epoch: int, seq: int, where: str) -> Segment:
    m = _body_map(MAGIC_SEGMENT, data, where)
    try:
        seg = Segment(
            partition=_int(m.get("p")),
            epoch=_int(m.get("e")),
            seq=_int(m.get("s")),
            committed_ms=_int(m.get("t")),
            changes=tuple(ObjectChange.decode(c) for c in _list(m.get("c"))),
        )
    except _Shape as e:
        raise corrupt(where, f"malformed segment ({e})") from None
    _check_place((seg.partition, seg.epoch, seg.seq), (partition, epoch, seq), where)
    return seg


# ----------------------------------------------------------------- start records


@dataclass(frozen=True, slots=True)
class StartRecord:
    partition: int
    epoch: int
    base: tuple[int, int] | None  # the last (epoch, seq) restored; None: a new partition
    written_ms: int


def encode_start(rec: StartRecord) -> bytes:
    body = cbor.encode(
        {
            "v": FORMAT_VERSION,
            "p": rec.partition,
            "e": rec.epoch,
            "b": None if rec.base is None else list(rec.base),
            "t": rec.written_ms,
        }
    )
    return seal(MAGIC_START, body)


def decode_start(data: bytes, partition: int, epoch: int, where: str) -> StartRecord:
    m = _body_map(MAGIC_START, data, where)
    try:
        base = m.get("b")
        if base is not None:
            be, bs = _list(base, 2)
            base = (_int(be), _int(bs))
        rec = StartRecord(_int(m.get("p")), _int(m.get("e")), base, _int(m.get("t")))
    except _Shape as e:
        raise corrupt(where, f"malformed start record ({e})") from None
    _check_place((rec.partition, rec.epoch), (partition, epoch), where)
    if rec.base is not None and rec.base[0] >= rec.epoch:
        raise corrupt(where, f"epoch {rec.epoch} claims to start after epoch {rec.base[0]}")
    return rec


# --------------------------------------------------------------------- snapshots


@dataclass(slots=True)
class ObjectState:
    """One kv object as restore rebuilds it."""

    class_name: str
    name: str | None
    created_ms: int
    rows: dict[bytes, bytes] = field(default_factory=dict)
    alarm: int | None = None


# (tenant, object id) -> state
PartitionState = dict[tuple[str, bytes], ObjectState]


def apply_change(state: PartitionState, c: ObjectChange) -> None:
    """Replay one change, as the kv shard's committer applied it."""
    ident = (c.tenant, c.object_id)
    if c.drop:
        state.pop(ident, None)
        return
    obj = state.get(ident)
    if obj is None:
        obj = state[ident] = ObjectState(c.class_name, c.name, c.created_ms)
    elif obj.name is None:
        obj.name = c.name  # a name learned late, as the registry row fills it in
    if c.clear:
        obj.rows.clear()
    if c.alarm is not ALARM_UNCHANGED:
        obj.alarm = c.alarm
    for k, v in c.puts:
        if v is None:
            obj.rows.pop(k, None)
        else:
            obj.rows[k] = v


@dataclass(frozen=True, slots=True)
class Snapshot:
    partition: int
    epoch: int
    seq: int  # the state after every chain segment up to (epoch, seq)
    taken_ms: int
    objects: PartitionState


def encode_snapshot(snap: Snapshot) -> bytes:
    objects = [
        [
            tenant,
            oid,
            o.class_name,
            o.name,
            o.created_ms,
            o.alarm,
            [[k, o.rows[k]] for k in sorted(o.rows)],
        ]
        for (tenant, oid), o in sorted(snap.objects.items())
    ]
    body = cbor.encode(
        {
            "v": FORMAT_VERSION,
            "p": snap.partition,
            "e": snap.epoch,
            "s": snap.seq,
            "t": snap.taken_ms,
            "o": objects,
        }
    )
    return seal(MAGIC_SNAPSHOT, body)


def decode_snapshot(data: bytes, partition: int, epoch: int, seq: int, where: str) -> Snapshot:
    m = _body_map(MAGIC_SNAPSHOT, data, where)
    try:
        objects: PartitionState = {}
        for item in _list(m.get("o")):
            tenant, oid, class_name, name, created, alarm, rows = _list(item, 7)
            objects[(_str(tenant), _bytes(oid))] = ObjectState(
                _str(class_name),
                _opt(name, _str),
                _int(created),
                {_bytes(k): _bytes(v) for k, v in (_list(r, 2) for r in _list(rows))},
                _opt(alarm, _int),
            )
        snap = Snapshot(
            _int(m.get("p")), _int(m.get("e")), _int(m.get("s")), _int(m.get("t")), objects
        )
    except _Shape as e:
        raise corrupt(where, f"malformed snapshot ({e})") from None
    _check_place((snap.partition, snap.epoch, snap.seq), (partition, epoch, seq), where)
    return snap


# ------------------------------------------------------------------------ FORMAT


def encode_format(partitions: int) -> bytes:
    return seal(MAGIC_FORMAT, cbor.encode({"v": FORMAT_VERSION, "partitions": partitions}))


def decode_format(data: bytes, where: str) -> int:
    """The data set's partition count, from its FORMAT record."""
    m = _body_map(MAGIC_FORMAT, data, where)
    try:
        return _int(m.get("partitions"), 1 << 16)
    except _Shape as e:
        raise corrupt(where, f"malformed FORMAT record ({e})") from None


# ----------------------------------------------------------------------- catalog


def encode_catalog(taken_ms: int, system_db: bytes) -> bytes:
    """A copy of the system database (an SQLite file image) as of `taken_ms`."""
    return seal(MAGIC_CATALOG, cbor.encode({"v": FORMAT_VERSION, "t": taken_ms, "db": system_db}))


def decode_catalog(data: bytes, where: str) -> tuple[int, bytes]:
    m = _body_map(MAGIC_CATALOG, data, where)
    try:
        return _int(m.get("t")), _bytes(m.get("db"))
    except _Shape as e:
        raise corrupt(where, f"malformed catalog ({e})") from None

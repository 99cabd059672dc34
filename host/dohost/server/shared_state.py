"""What the nodes of one `dohost serve --processes N` share in memory: one mmap'd file,
`DATA/run/shared.mmap`, created by the parent at each start.

- **generation** (one u64): bumped by a node after each change of the data set's
  configuration it made (tenants, tokens, quotas, deploys); every node compares it with
  the value it last loaded at the start of each request and reloads its caches from
  system.db when it moved. The check is one 8-byte read of shared memory.
- **request-rate buckets**, one slot per tenant (hashed), changed under a byte-range
  lock of that slot (`lockf`): the `requests_per_s` quota holds for the host, whichever
  node a request lands on.
- **usage**: one region per node, one slot per tenant: the committed bytes and the
  object count of the objects that node owns, and what its events in flight have
  reserved (bytes they may still commit, objects they may create). Each node writes only
  its own region and adds the others' numbers when it checks the storage and object
  quotas. A check and the reservation it grants happen under the tenant's host-wide
  lock (`tenant_lock`, a byte-range `lockf` in the lock region), as does every publish,
  so two nodes cannot both take the last room: the storage and object quotas hold
  exactly for the host as a whole. A restarted node clears its region and reloads it.

Slots are keyed by the first 8 bytes of BLAKE2b(tenant) (never 0: 0 marks a free slot),
found by linear probing; a tenant's rate slot index also names its byte in the lock
region. Each value is an aligned 8-byte field written with one store, so a reader sees
either the old or the new number (usage is also read and written under the tenant lock,
so its fields are seen together).

POSIX record locks belong to the process, not the thread: two threads of one node must
not hold the same tenant's lock at once (the caller serializes them, TenantUsage.lock),
and no two lock ranges overlap (an unlock would release the other). A deleted tenant's slots stay (a tenant
created again under that name reuses them); 4,096 tenants fit, and beyond that a tenant
gets no shared slot: its rate is then counted per node and its usage is the node's own
(logged once).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import mmap
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger("dohost.shared")

MAGIC = b"DOHSHM02"
HEADER = 64
SLOTS = 4096
_GEN = 8
_RATE = struct.Struct("<Qdd")  # key, tokens, stamp (monotonic clock: shared by processes)
RATE_SLOT = 32
_USAGE = struct.Struct("<Qqqqq")  # key, bytes, objects, reserved bytes, reserved objects
USAGE_SLOT = 40
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")


def shared_path(run_dir: Path) -> Path:
    return run_dir / "shared.mmap"


def _size(nodes: int) -> int:
    return HEADER + SLOTS * RATE_SLOT + nodes * SLOTS * USAGE_SLOT + SLOTS  # + lock region


class Usage(NamedTuple):
    """One node's published usage of one tenant (or the sum over nodes)."""

    bytes: int = 0
    objects: int = 0
    reserved_bytes: int = 0
    reserved_objects: int = 0


@functools.lru_cache(maxsize=65536)
def tenant_key(tenant: str) -> int:
    key = int.from_bytes(hashlib.blake2b(tenant.encode(), digest_size=8).digest(), "little")
    return key or 1


class SharedState:
    """One node's (or the parent's) view of `shared.mmap`."""

    def __init__(self, path: Path, node: int) -> None:
        self.path = path
        self.node = node
        self._fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(self._fd).st_size
            self._mm = mmap.mmap(self._fd, size)
        except BaseException:
            os.close(self._fd)
            raise
        if self._mm[:8] != MAGIC:
            raise ValueError(f"{path} is not a dohost shared-state file")
        self.nodes = struct.unpack_from("<I", self._mm, 16)[0]
        self._usage_base = HEADER + SLOTS * RATE_SLOT
        self._lock_base = self._usage_base + self.nodes * SLOTS * USAGE_SLOT
        self._rate_slots: dict[int, int] = {}
        self._usage_slots: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()  # this process's slot claims
        self._warned = False

    @classmethod
    def create(cls, path: Path, nodes: int) -> SharedState:
        """A fresh, zeroed file for `nodes` nodes (the parent, before any node starts)."""
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, _size(nodes))
            os.pwrite(fd, MAGIC + bytes(8) + struct.pack("<II", nodes, SLOTS), 0)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return cls(path, -1)

    def close(self) -> None:
        self._mm.close()
        os.close(self._fd)

    # ---------------------------------------------------------------- generation

    def generation(self) -> int:
        value: int = _U64.unpack_from(self._mm, _GEN)[0]
        return value

    def bump(self) -> int:
        """One more configuration change is visible in system.db: move the counter."""
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 8, _GEN)
        try:
            value = _U64.unpack_from(self._mm, _GEN)[0] + 1
            _U64.pack_into(self._mm, _GEN, value)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 8, _GEN)
        return int(value)

    # ---------------------------------------------------------------- request rate

    def _rate_slot(self, key: int) -> int | None:
        """The offset of the tenant's rate slot, claimed if needed (under its lock)."""
        known = self._rate_slots.get(key)
        if known is not None:
            return known
        mm, fd = self._mm, self._fd
        for i in range(SLOTS):
            off = HEADER + ((key + i) % SLOTS) * RATE_SLOT
            fcntl.lockf(fd, fcntl.LOCK_EX, RATE_SLOT, off)
            try:
                found = _U64.unpack_from(mm, off)[0]
                if found == 0:
                    _RATE.pack_into(mm, off, key, -1.0, 0.0)  # tokens < 0: not started
                    found = key
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, RATE_SLOT, off)
            if found == key:
                self._rate_slots[key] = off
                return off
        self._warn_full()
        return None

    def take_tokens(
        self, tenant: str, rate: float, capacity: int, now: float, want: int
    ) -> tuple[int, float | None]:
        """Take up to `want` tokens from the tenant's shared bucket: (tokens taken, None)
        when at least one was, (0, seconds until one is) when none is left, and (0, None)
        when the table is full (the caller counts locally)."""
        off = self._rate_slot(tenant_key(tenant))
        if off is None:
            return 0, None
        mm, fd = self._mm, self._fd
        fcntl.lockf(fd, fcntl.LOCK_EX, RATE_SLOT, off)
        try:
            key, tokens, stamp = _RATE.unpack_from(mm, off)
            if tokens < 0.0:
                tokens, stamp = float(capacity), now
            tokens = min(float(capacity), tokens + max(0.0, now - stamp) * rate)
            got = min(want, int(tokens))
            _RATE.pack_into(mm, off, key, tokens - got, now)
            if got:
                return got, None
            wait_s: float = (1.0 - tokens) / rate
            return 0, wait_s
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, RATE_SLOT, off)

    # ---------------------------------------------------------------- usage

    def _region(self, node: int) -> int:
        return self._usage_base + node * SLOTS * USAGE_SLOT

    def clear_usage(self) -> None:
        """Forget this node's published usage (at its start, before reloading it)."""
        base = self._region(self.node)
        self._mm[base : base + SLOTS * USAGE_SLOT] = bytes(SLOTS * USAGE_SLOT)

    def _usage_slot(self, node: int, key: int, claim: bool) -> int | None:
        """The offset of a tenant's slot in a node's region. Remembers where the probe
        ended, also when the slot is not there yet (the first free slot: where that
        node would claim it), so later lookups read one slot."""
        mm = self._mm
        known = self._usage_slots.get((node, key))
        if known is not None:
            found = _U64.unpack_from(mm, known)[0]
            if found == key:
                return known
            if found == 0 and not claim:
                return None
        base = self._region(node)
        with self._lock:
            for i in range(SLOTS):
                off = base + ((key + i) % SLOTS) * USAGE_SLOT
                found = _U64.unpack_from(mm, off)[0]
                if found == 0:
                    if not claim:
                        self._usage_slots[(node, key)] = off
                        return None
                    _USAGE.pack_into(mm, off, key, 0, 0, 0, 0)
                    found = key
                if found == key:
                    self._usage_slots[(node, key)] = off
                    return off
        if claim:
            self._warn_full()
        return None

    @contextmanager
    def tenant_lock(self, tenant: str) -> Iterator[None]:
        """The tenant's host-wide usage lock (one byte of the lock region). The caller
        makes sure no other thread of this process holds it meanwhile. A tenant beyond
        the table gets no lock (its usage is the node's own: see the module doc)."""
        off = self._rate_slot(tenant_key(tenant))
        if off is None:
            yield
            return
        byte = self._lock_base + (off - HEADER) // RATE_SLOT
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, byte)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, byte)

    def publish_usage(self, tenant: str, usage: Usage) -> None:
        """This node's usage of a tenant. Under `tenant_lock` when it grows what the
        node holds (committed + reserved); without it when it only shrinks it or turns
        a reservation into usage: the fields are written usage first, reservations
        last, and read in the opposite order (`others_usage`), so a reader that sees a
        reservation gone also sees the usage that replaced it (x86 and the other
        TSO machines keep stores, and loads, in program order)."""
        off = self._usage_slot(self.node, tenant_key(tenant), claim=True)
        if off is not None:
            mm = self._mm
            _I64.pack_into(mm, off + 8, usage.bytes)
            _I64.pack_into(mm, off + 16, usage.objects)
            _I64.pack_into(mm, off + 24, usage.reserved_bytes)
            _I64.pack_into(mm, off + 32, usage.reserved_objects)

    def others_usage(self, tenant: str) -> Usage:
        """The sum of what the other nodes published for a tenant (see `publish_usage`
        for the order of the reads)."""
        key = tenant_key(tenant)
        total = [0, 0, 0, 0]
        mm = self._mm
        for node in range(self.nodes):
            if node == self.node:
                continue
            off = self._usage_slot(node, key, claim=False)
            if off is not None:
                total[3] += _I64.unpack_from(mm, off + 32)[0]
                total[2] += _I64.unpack_from(mm, off + 24)[0]
                total[1] += _I64.unpack_from(mm, off + 16)[0]
                total[0] += _I64.unpack_from(mm, off + 8)[0]
        return Usage(*total)

    def _warn_full(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "the shared tenant table (%d slots) is full: rates and usage of further "
                "tenants are counted per node",
                SLOTS,
            )

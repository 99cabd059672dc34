"""Model-based test: random sequences of storage calls against a dict.

The model keeps the object's committed state and its current (event) state. Every read is
compared with the model as it runs, and after every step a full paginated listing (which
never fills the kv cache, so it does not hide cold-cache paths) must show the current state
exactly. Events are committed (sometimes without waiting, so that commits pile up in
flight), rolled back, or abandoned by ending the activation. A neighbour object in the same
shard commits random writes in between, and must never leak into the object. At the end the
manager is closed and reopened from disk: the object must hold exactly its committed state.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from storage_helpers import model_list, oid

from dohost.core.errors import Code, DohostError
from dohost.storage.api import Backend, CommitTicket, Durability, ListOptions
from dohost.storage.manager import AnyObjectStorage, StorageManager

CAPS = (4, 24)  # tiny list caps, so that `more` and pagination are exercised
QUOTA = 120
ALPHABET = b"a\x00\xff"
UNIVERSE = [bytes(t) for n in range(3) for t in itertools.product(ALPHABET, repeat=n)]
keys = st.sampled_from(UNIVERSE)
values = st.binary(max_size=6)
options = st.builds(
    ListOptions,
    prefix=st.sampled_from([b"", b"a", b"\xff", b"a\x00"]),
    start=st.none() | keys,
    end=st.none() | keys,
    reverse=st.booleans(),
    limit=st.sampled_from([0, 1, 2, 5]),
)


def size(d: dict[bytes, bytes]) -> int:
    return sum(len(k) + len(v) for k, v in d.items())


class StorageModel(RuleBasedStateMachine):
    backend = Backend.KV
    durability = Durability.OS

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="dohost-model-")
        self.manager = self._open_manager()
        self.id = oid(7, 1)
        self.neighbour_id = oid(7, 2)  # same first bytes: same shard
        self.obj: AnyObjectStorage = self._open(self.id)
        self.neighbour = self._open(self.neighbour_id)
        self.committed: dict[bytes, bytes] = {}
        self.current: dict[bytes, bytes] = {}
        self.neighbour_data: dict[bytes, bytes] = {}
        self.tickets: list[CommitTicket] = []

    def _open_manager(self) -> StorageManager:
        return StorageManager(
            self.dir,
            self.durability,
            shards_per_tenant=1,
            list_max_entries=CAPS[0],
            list_max_bytes=CAPS[1],
            object_quota_bytes=QUOTA,
        )

    def _open(self, object_id: bytes) -> AnyObjectStorage:
        o = self.manager.open_object("t", "c", object_id, None, self.backend)
        o.begin_event()
        return o

    def _write(self, entries: dict[bytes, bytes], call: object) -> None:
        after = {**self.current, **entries}
        if size(after) > QUOTA and size(after) > size(self.current):
            try:
                call()  # type: ignore[operator]
            except DohostError as e:
                assert e.code is Code.QUOTA_EXCEEDED
            else:
                raise AssertionError("quota not enforced")
        else:
            call()  # type: ignore[operator]
            self.current = after

    # ------------------------------------------------------------------ reads

    @rule(k=keys)
    def get(self, k: bytes) -> None:
        assert self.obj.get(k) == self.current.get(k)

    @rule(ks=st.lists(keys, max_size=5))
    def get_many(self, ks: list[bytes]) -> None:
        assert self.obj.get_many(ks) == {k: self.current[k] for k in ks if k in self.current}

    @rule(opts=options)
    def list_keys(self, opts: ListOptions) -> None:
        assert self.obj.list(opts) == model_list(self.current, opts, *CAPS)

    # ----------------------------------------------------------------- writes

    @rule(k=keys, v=values)
    def put(self, k: bytes, v: bytes) -> None:
        self._write({k: v}, lambda: self.obj.put(k, v))

    @rule(entries=st.dictionaries(keys, values, max_size=4))
    def put_many(self, entries: dict[bytes, bytes]) -> None:
        self._write(entries, lambda: self.obj.put_many(entries))

    @rule(k=keys)
    def delete(self, k: bytes) -> None:
        assert self.obj.delete(k) == (k in self.current)
        self.current.pop(k, None)

    @rule(ks=st.lists(keys, max_size=5))
    def delete_many(self, ks: list[bytes]) -> None:
        assert self.obj.delete_many(ks) == len(set(ks) & set(self.current))
        for k in ks:
            self.current.pop(k, None)

    @rule()
    def delete_all(self) -> None:
        self.obj.delete_all()
        self.current.clear()

    # ----------------------------------------------------------------- events

    @rule(wait=st.booleans(), end_activation=st.booleans())
    def commit(self, wait: bool, end_activation: bool) -> None:
        t = self.obj.commit_event()
        if wait:
            assert t.wait(10) is None
        else:
            self.tickets.append(t)
        self.committed = dict(self.current)
        if end_activation:  # a new activation may start while this commit is in flight
            self.obj.close()
            self.obj = self._open(self.id)
        else:
            self.obj.begin_event()

    @rule()
    def rollback(self) -> None:
        self.obj.rollback_event()
        self.current = dict(self.committed)
        self.obj.begin_event()

    @rule()
    def end_activation(self) -> None:
        """The activation ends in the middle of an event: its writes are dropped."""
        self.obj.close()
        self.current = dict(self.committed)
        self.obj = self._open(self.id)

    @rule(entries=st.dictionaries(keys, values, max_size=3), clear=st.booleans())
    def neighbour_commits(self, entries: dict[bytes, bytes], clear: bool) -> None:
        if clear:
            self.neighbour.delete_all()
            self.neighbour_data.clear()
        self.neighbour.put_many(entries)
        self.neighbour_data.update(entries)
        self.tickets.append(self.neighbour.commit_event())
        self.neighbour.begin_event()

    @precondition(lambda self: self.tickets)
    @rule()
    def flush(self) -> None:
        self.manager.flush(10)
        assert all(t.done and t.error is None for t in self.tickets)
        self.tickets.clear()

    # ------------------------------------------------------------- invariants

    @invariant()
    def listing_shows_the_current_state(self) -> None:
        seen: list[tuple[bytes, bytes]] = []
        opts = ListOptions()
        while True:
            page = self.obj.list(opts)
            seen += page.entries
            if not page.more:
                break
            opts = ListOptions(start=page.entries[-1][0] + b"\x00")
        assert seen == sorted(self.current.items())

    @invariant()
    def bytes_are_counted(self) -> None:
        assert self.obj.bytes_used == size(self.current)

    def teardown(self) -> None:
        try:
            self.manager.close()
            self.manager = self._open_manager()
            for object_id, data in ((self.id, self.committed), (self.neighbour_id, self.neighbour_data)):  # fmt: skip
                everything = ListOptions(limit=1000)
                entries = self.manager.object_entries("t", "c", object_id, self.backend, everything)
                assert entries == model_list(data, everything, *CAPS)
                o = self._open(object_id)
                for k in UNIVERSE:
                    assert o.get(k) == data.get(k)
                assert o.bytes_used == size(data)
                o.close()
            self.manager.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class SqliteStorageModel(StorageModel):
    backend = Backend.SQLITE


class DurableKvStorageModel(StorageModel):
    durability = Durability.FSYNC


_settings = settings(
    max_examples=80,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestKvModel = StorageModel.TestCase
TestKvModel.settings = _settings
TestSqliteModel = SqliteStorageModel.TestCase
TestSqliteModel.settings = settings(_settings, max_examples=40)
TestDurableKvModel = DurableKvStorageModel.TestCase
TestDurableKvModel.settings = settings(_settings, max_examples=15)

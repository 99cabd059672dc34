"""The catalog in the replica: the system database (tenants, their token hashes and
quotas, scoped tokens, classes, versions) and the modules it names, so that a restore
yields a data set that serves without copying anything by hand.

Shipping (`CatalogShipper`, one per data set: the node that owns partition 0): a thread
reads `PRAGMA data_version` of its own connection to `DATA/system.db` every
`poll_s`; when the database changed (this process or another one wrote it), it takes a
consistent copy (SQLite's backup API into memory), uploads every module the copy names
that the store does not hold yet (`modules/<sha256>.wasm`, create-only, content-
addressed), then the copy (`catalog/t<ms>-<writer>`, sealed with its checksum). A copy is
also shipped at start. Then it deletes the copies that no restore inside the retention
window needs (all but the newest taken at or before the window's start). Modules are
kept (small, and named by every later version that still uses them).

This is asynchronous: a change to tenants or classes reaches the store within about
`poll_s` plus an upload, not before its response. A failed upload is retried on the next
poll; `dohost_replica_catalog_failures_total` counts them.

Restore (`restore_catalog`): the newest copy taken at or before `--at` (or else the
oldest, for a time before the first copy), written as `DATA/system.db`, and every
module it names, checked against its SHA-256.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import apsw
from prometheus_client import CollectorRegistry, Counter

from dohost.core.errors import Code, DohostError
from dohost.core.replica_keys import (
    CATALOG_PREFIX,
    catalog_key,
    module_key,
    parse_catalog_key,
)
from dohost.core.replica_log import corrupt, decode_catalog, encode_catalog
from dohost.replica.store import ReplicaKeyExists, ReplicaStore

_log = logging.getLogger(__name__)

POLL_S = 0.5
_MODULES_SQL = "SELECT sha256 FROM class_versions UNION SELECT sha256 FROM classes"


def _modules_of(db: apsw.Connection) -> list[str]:
    try:
        return sorted(str(sha) for (sha,) in db.execute(_MODULES_SQL))
    except apsw.SQLError:
        return []  # a system database without classes yet


class CatalogShipper:
    def __init__(
        self,
        store: ReplicaStore,
        data_dir: Path,
        *,
        writer: str,
        wall_clock_ms: Callable[[], int],
        retention_ms: int,
        registry: CollectorRegistry | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        self.store = store
        self.data_dir = data_dir
        self._writer = writer
        self._clock = wall_clock_ms
        self._retention_ms = retention_ms
        self._poll_s = poll_s
        r = registry if registry is not None else CollectorRegistry()
        self.shipped = Counter(
            "dohost_replica_catalogs", "Copies of the system database shipped", registry=r
        )
        self.failures = Counter(
            "dohost_replica_catalog_failures",
            "Catalog or module uploads that failed (tried again at the next poll)",
            registry=r,
        )
        self._db = apsw.Connection(str(data_dir / "system.db"))
        self._db.setbusytimeout(5000)
        self._modules_in_store: set[str] | None = None
        self._shipped_version: int | None = None
        self._seq = 0
        self._cv = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(
            target=self._run, name="dohost-replica-catalog", daemon=True
        )
        self._thread.start()

    def _version(self) -> int:
        row = self._db.execute("PRAGMA data_version").fetchone()
        assert row is not None
        return int(row[0])

    def _run(self) -> None:
        while True:
            try:
                self.ship_if_changed()
            except DohostError as e:
                self.failures.inc()
                _log.warning("replica: shipping the catalog: %s (tried again)", e)
            except Exception:
                self.failures.inc()
                _log.exception("replica: shipping the catalog failed")
            with self._cv:
                if self._cv.wait_for(lambda: self._closing, self._poll_s):
                    return

    def ship_if_changed(self) -> bool:
        """Ship a copy if the system database changed since the last one shipped."""
        version = self._version()
        if version == self._shipped_version:
            return False
        mem = apsw.Connection(":memory:")
        try:
            with mem.backup("main", self._db, "main") as backup:
                backup.step()
            image = mem.serialize("main")
            modules = _modules_of(mem)
        finally:
            mem.close()
        self._ship_modules(modules)
        now = self._clock()
        self._seq += 1
        key = catalog_key(now, f"{self._writer}-{self._seq}")
        self.store.put_new(key, encode_catalog(now, image))
        self.shipped.inc()
        self._shipped_version = version
        self._trim(now)
        return True

    def _ship_modules(self, modules: list[str]) -> None:
        if self._modules_in_store is None:
            self._modules_in_store = {
                k[len("modules/") : -len(".wasm")] for k in self.store.list("modules/")
            }
        for sha in modules:
            if sha in self._modules_in_store:
                continue
            path = self.data_dir / "modules" / f"{sha}.wasm"
            try:
                wasm = path.read_bytes()
            except FileNotFoundError:
                continue  # a version whose module was removed: nothing to ship
            # Already there: another writer's, or our earlier try (same name, same bytes).
            with contextlib.suppress(ReplicaKeyExists):
                self.store.put_new(module_key(sha), wasm)
            self._modules_in_store.add(sha)

    def _trim(self, now_ms: int) -> None:
        copies = catalog_copies(self.store)
        before = [c for c in copies if c[0] <= now_ms - self._retention_ms]
        for _t, key in before[:-1]:  # the newest of them is the base of the window
            self.store.delete(key)

    def close(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._thread.join(timeout)
        try:
            self.ship_if_changed()  # the last changes
        except DohostError as e:
            _log.warning("replica: the last catalog changes were not shipped: %s", e)
        self._db.close()


def catalog_copies(store: ReplicaStore) -> list[tuple[int, str]]:
    """(time taken, key) of every catalog copy in the store, oldest first."""
    return sorted(
        (t, k) for k in store.list(CATALOG_PREFIX) if (t := parse_catalog_key(k)) is not None
    )


def restore_catalog(store: ReplicaStore, data_dir: Path, at_ms: int | None) -> int:
    """Write the catalog as of `at_ms` (or the newest) into `data_dir`; the modules
    restored. NOT_FOUND if the store holds no catalog."""
    copies = catalog_copies(store)
    if not copies:
        raise DohostError(Code.NOT_FOUND, f"{store.description} holds no catalog")
    usable = [c for c in copies if at_ms is None or c[0] <= at_ms]
    _t, key = usable[-1] if usable else copies[0]
    _taken, image = decode_catalog(store.get(key), key)
    tmp = data_dir / "system.db.restoring"
    tmp.write_bytes(image)
    db = apsw.Connection(str(tmp))
    try:
        modules = _modules_of(db)
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()
    os.replace(tmp, data_dir / "system.db")
    folder = data_dir / "modules"
    folder.mkdir(exist_ok=True)
    for sha in modules:
        mkey = module_key(sha)
        try:
            wasm = store.get(mkey)
        except DohostError as e:
            if e.code is Code.NOT_FOUND:
                raise corrupt(mkey, f"the catalog {key} names it, but it is missing") from None
            raise
        # compare_digest although a module's SHA-256 is no secret: the isolation suite
        # holds every digest comparison to it (tests/reliability/test_tenant_isolation.py).
        if not hmac.compare_digest(hashlib.sha256(wasm).hexdigest(), sha):
            raise corrupt(mkey, "its bytes do not match their SHA-256")
        (folder / f"{sha}.wasm").write_bytes(wasm)
    return len(modules)

"""Deployed classes: their rows in the system db and their compiled, linked modules.

A class's current version is what the next event of each of its objects runs (an
*immediate* update), or, for a *deferred* update, what each object runs from its next
activation, or from its first event after the update's deadline (`deferred_until_ms`:
until then a live activation keeps the version it was built with). Compiled
code comes from the on-disk module cache, so a restart deserializes instead of
recompiling; classes are linked lazily, on their first event.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

import wasmtime

from dohost.core.errors import Code, DohostError
from dohost.core.ids import ID_BYTES, ObjectId, id_from_name, id_from_string, new_class_key
from dohost.core.limits import EventLimits
from dohost.core.names import check_name
from dohost.runtime.activation import Activation, CompiledClass
from dohost.runtime.event import ObjectIdent
from dohost.runtime.module_loader import ModuleCache, validate_module
from dohost.storage.api import CommitTicket, ListOptions, ListResult
from dohost.storage.system_db import ClassRow, SystemDb

STORAGE_BACKENDS = ("kv", "sqlite")
ID_CACHE_SIZE = 65_536


@dataclass
class ClassRuntime:
    """One version of a class. The registry replaces it (a new object) on deploy and
    drops it with its tenant; `superseded` then says that holders must look it up again."""

    row: ClassRow
    compiled: CompiledClass | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Deferred update: live activations of older versions keep serving until this wall
    # time (ms). None: the update is immediate.
    deferred_until_ms: float | None = None
    superseded: bool = False

    @property
    def version(self) -> int:
        return self.row.version

    @property
    def class_key(self) -> bytes:
        return self.row.class_key

    # Ids are derived and MAC-checked with HMAC-SHA256 (~3 µs each): remember the results
    # for names and ids seen recently, so the hot path pays a dict lookup instead.
    _names: dict[str, ObjectId] = field(default_factory=dict)
    _verified: dict[bytes, ObjectId] = field(default_factory=dict)

    def id_for_name(self, name: str) -> ObjectId:
        oid = self._names.get(name)
        if oid is None:
            oid = id_from_name(self.class_key, name)
            if len(self._names) >= ID_CACHE_SIZE:
                self._names.clear()
            self._names[name] = oid
        return oid

    def verified_id(self, oid: ObjectId) -> ObjectId:
        """`oid` if it belongs to this class (its MAC checks out); raises INVALID_ID."""
        known = self._verified.get(oid.raw)
        if known is None:
            known = id_from_string(self.class_key, oid.hex)
            if len(self._verified) >= ID_CACHE_SIZE:
                self._verified.clear()
            self._verified[oid.raw] = known
        return known if oid.name is None else ObjectId(known.raw, oid.name)

    def id_from_string(self, text: str) -> ObjectId:
        """`core.ids.id_from_string` for this class, through the cache of verified ids."""
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = b""
        if len(raw) == ID_BYTES and raw.hex() == text:  # the canonical form only
            return self.verified_id(ObjectId(raw))
        return id_from_string(self.class_key, text)  # refused, with the reason


class _NoStorage:
    """Storage for the trial instantiation at deploy: nothing is reachable there."""

    def _refuse(self) -> DohostError:
        return DohostError(
            Code.NOT_SUPPORTED, "storage is not available while a module is being checked"
        )

    def begin_event(self) -> None:
        raise self._refuse()

    def get(self, key: bytes) -> bytes | None:
        raise self._refuse()

    def get_many(self, keys: list[bytes]) -> dict[bytes, bytes]:
        raise self._refuse()

    def put(self, key: bytes, value: bytes) -> None:
        raise self._refuse()

    def put_many(self, entries: dict[bytes, bytes]) -> None:
        raise self._refuse()

    def delete(self, key: bytes) -> bool:
        raise self._refuse()

    def delete_many(self, keys: list[bytes]) -> int:
        raise self._refuse()

    def list(self, opts: ListOptions) -> ListResult:
        raise self._refuse()

    def delete_all(self) -> None:
        raise self._refuse()

    def get_alarm(self) -> int | None:
        raise self._refuse()

    def set_alarm(self, due_ms: int | None) -> None:
        raise self._refuse()

    def rollback_event(self) -> None:
        pass

    def commit_event(self) -> CommitTicket:
        return CommitTicket.completed()

    def close(self) -> None:
        pass


class ClassRegistry:
    def __init__(
        self,
        system: SystemDb,
        engine: wasmtime.Engine,
        linker: wasmtime.Linker,
        modules: ModuleCache,
        limits: EventLimits,
        fast: bool,
        max_module_bytes: int,
    ) -> None:
        self._system = system
        self._engine = engine
        self._linker = linker
        self._modules = modules
        self._limits = limits
        self._fast = fast
        self.max_module_bytes = max_module_bytes
        self._classes: dict[tuple[str, str], ClassRuntime] = {
            (r.tenant, r.name): ClassRuntime(r) for r in system.classes()
        }
        self._retiring: dict[tuple[str, str], ClassRuntime] = {}
        # The new names of renames in progress: not served, not deployable, until the
        # rename ends (class_lifecycle.quiesced).
        self._reserved: set[tuple[str, str]] = set()

    def reload(self) -> None:
        """Take the classes' current versions from the system db (another node deployed
        or deleted some): a class whose version moved gets a new runtime (linked at its
        next event; its activations are replaced as after a deploy here). A class being
        deleted or renamed here, and a rename's new name, are left as they are: the
        operation settles them (the rows may already say what it has not finished)."""
        rows = {(r.tenant, r.name): r for r in self._system.classes()}
        busy = self._retiring.keys() | self._reserved
        for key in [k for k in self._classes if k not in rows and k not in busy]:
            del self._classes[key]
        for key, row in rows.items():
            if key in busy:
                continue
            known = self._classes.get(key)
            if known is None or known.row.version != row.version:
                self._classes[key] = ClassRuntime(row)

    def get(self, tenant: str, name: str) -> ClassRuntime:
        cls = self._classes.get((tenant, name))
        if cls is None:
            raise DohostError(Code.UNKNOWN_CLASS, f"no class named {name[:100]!r} is deployed")
        return cls

    def list(self, tenant: str) -> list[ClassRuntime]:
        return [c for (t, _), c in sorted(self._classes.items()) if t == tenant]

    def remove(self, tenant: str, name: str) -> ClassRuntime:
        """Take a class out of service: new events of it fail with `unknown_class`.
        Events already running still find its backend (`backend`) until `retired`."""
        if (tenant, name) in self._retiring:
            raise DohostError(
                Code.OVERLOADED,
                f"class {name!r} is already being deleted or renamed; retry once that ends",
            )
        cls = self.get(tenant, name)
        del self._classes[(tenant, name)]
        self._retiring[(tenant, name)] = cls
        cls.superseded = True
        return cls

    def restore(self, cls: ClassRuntime) -> None:
        """Put back a class `remove` took out (an operation on it failed)."""
        key = (cls.row.tenant, cls.row.name)
        self._retiring.pop(key, None)
        self._classes[key] = cls
        cls.superseded = False

    def retired(self, tenant: str, name: str) -> None:
        self._retiring.pop((tenant, name), None)

    def reserve(self, tenant: str, name: str) -> None:
        """Hold a rename's new name until `unreserve` (see `reload` and `deploy`)."""
        self._reserved.add((tenant, name))

    def unreserve(self, tenant: str, name: str) -> None:
        self._reserved.discard((tenant, name))

    def backend(self, tenant: str, name: str) -> str:
        """The storage backend of a class, also while it is being deleted or renamed (an
        event that was running when that began finishes on it)."""
        cls = self._classes.get((tenant, name)) or self._retiring.get((tenant, name))
        if cls is None:
            raise DohostError(Code.UNKNOWN_CLASS, f"no class named {name[:100]!r} is deployed")
        return cls.row.storage

    def renamed(self, cls: ClassRuntime, new: str) -> ClassRuntime:
        """Serve `cls` as class `new` (its rows were renamed in the system db): same key,
        versions and compiled code."""
        row = self._system.get_class(cls.row.tenant, new)
        assert row is not None
        moved = ClassRuntime(row, cls.compiled, deferred_until_ms=cls.deferred_until_ms)
        self._classes[(row.tenant, new)] = moved
        cls.superseded = True
        return moved

    def forget_tenant(self, tenant: str) -> None:
        for key in [k for k in self._classes if k[0] == tenant]:
            self._classes.pop(key).superseded = True

    def compiled(self, cls: ClassRuntime) -> CompiledClass:
        """The linked module of the class's current version (worker thread: may compile)."""
        c = cls.compiled
        if c is not None:
            return c
        with cls.lock:
            if cls.compiled is None:
                wasm = self._system.load_module(cls.row.sha256)
                module = self._modules.get(cls.row.sha256, wasm)
                info = validate_module(module, wasm, self._limits.memory_bytes)
                cls.compiled = CompiledClass(
                    info, module, self._linker.instantiate_pre(module), self._engine, self._fast
                )
            return cls.compiled

    def check_size(self, wasm: bytes) -> None:
        if len(wasm) > self.max_module_bytes:
            raise DohostError(
                Code.MODULE_TOO_LARGE,
                f"the module is {len(wasm)} bytes; the limit is {self.max_module_bytes}",
            )

    def check_module(self, wasm: bytes) -> CompiledClass:
        """Compile, validate against the ABI and instantiate once (worker thread).
        Raises DohostError naming the problem; never stores anything."""
        self.check_size(wasm)
        # Through the cache: deploying bytes this host compiled before costs a deserialize.
        module = self._modules.get(hashlib.sha256(wasm).hexdigest(), wasm)
        info = validate_module(module, wasm, self._limits.memory_bytes)
        try:
            pre = self._linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as e:
            raise DohostError(Code.INVALID_MODULE, f"the module cannot be linked: {e}") from None
        compiled = CompiledClass(info, module, pre, self._engine, self._fast)
        # A trial activation catches what only instantiation reveals (limits, a start
        # function or _initialize that traps or never returns) before anyone depends on it.
        try:
            Activation(compiled, ObjectIdent("-", "-", "0" * 64), _NoStorage(), self._limits)
        except DohostError as e:
            raise _deploy_refusal(e) from None
        return compiled

    def deploy(
        self,
        tenant: str,
        name: str,
        wasm: bytes,
        storage: str,
        deferred_until_ms: float | None = None,
    ) -> ClassRuntime:
        """Check and record a new version of a class (worker thread). `deferred_until_ms`:
        a deferred update (see the module's docstring)."""
        check_name("tenant", tenant)
        check_name("class", name)
        if storage not in STORAGE_BACKENDS:
            raise DohostError(
                Code.INVALID_ARGUMENT, f"storage must be one of {', '.join(STORAGE_BACKENDS)}"
            )
        if (tenant, name) in self._retiring or (tenant, name) in self._reserved:
            raise DohostError(
                Code.OVERLOADED,
                f"class {name!r} is being deleted or renamed; deploy again once that ends",
            )
        existing = self._classes.get((tenant, name))
        compiled = self.check_module(wasm)
        sha = compiled.info.sha256
        if existing is not None and existing.row.sha256 == sha and existing.row.storage == storage:
            return existing  # the same bytes again: not a new version
        self._system.save_module(sha, wasm)
        self._system.ensure_tenant(tenant)
        key = existing.class_key if existing else new_class_key()
        row = self._system.put_class_version(tenant, name, sha, storage, key)
        cls = ClassRuntime(row, compiled, deferred_until_ms=deferred_until_ms)
        self._classes[(tenant, name)] = cls
        if existing is not None:
            existing.superseded = True
        return cls

    def module_of_version(self, tenant: str, name: str, version: int) -> bytes:
        """The module bytes of a recorded version (worker thread); `unknown_version` when
        the class never had it or its bytes are gone."""
        self.get(tenant, name)  # an unknown class is unknown_class first
        shas = {v: sha for v, sha, _ in self._system.class_versions(tenant, name)}
        sha = shas.get(version)
        if sha is None:
            raise DohostError(
                Code.UNKNOWN_VERSION,
                f"class {name!r} has no version {version}; it has "
                f"{', '.join(map(str, sorted(shas))) or 'none'} (GET .../versions)",
            )
        try:
            return self._system.load_module(sha)
        except OSError:
            raise DohostError(
                Code.UNKNOWN_VERSION,
                f"the module of version {version} of class {name!r} is no longer stored",
            ) from None


# What wasmtime says when instantiation passes a store limit, and the limit's own code.
_LIMIT_TEXTS = (
    ("memory minimum size", Code.MEMORY_TOO_LARGE),
    ("memory count too high", Code.MODULE_LIMIT),
    ("table count too high", Code.MODULE_LIMIT),
    ("instance count too high", Code.MODULE_LIMIT),
    ("table minimum size", Code.TABLE_TOO_LARGE),
    ("table elements", Code.TABLE_TOO_LARGE),
)


def _deploy_refusal(e: DohostError) -> DohostError:
    """A trial instantiation that failed (not a trap or the CPU limit: the module's own
    doing) is a refused deploy, 400 with the limit's code, not a host failure (500)."""
    if e.code is not Code.OBJECT_ERROR or not e.message.startswith("instantiation failed"):
        return e
    text = e.message.lower()
    for needle, code in _LIMIT_TEXTS:
        if needle in text:
            return DohostError(code, f"the module passes a host limit: {e.message}")
    return DohostError(Code.INVALID_MODULE, f"the module cannot be instantiated: {e.message}")

"""Turning uploaded bytes into a runnable class: compile, validate against ABI v1, cache.

`validate_module` refuses what the host cannot serve with a message that names the
problem (not wasm, an unknown import, a missing export, memory above the cap, an ABI
version not served). `ModuleCache` compiles once per (sha256, wasmtime version, engine
settings) and keeps the machine code on disk, so a restart deserializes (~40 µs) instead
of recompiling (milliseconds to seconds). Only blobs this host produced are ever
deserialized: tenant bytes always go through `wasmtime.Module(...)` first.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from dohost.core.errors import Code, DohostError
from dohost.core.limits import WASM_PAGE
from dohost.core.wasm_shape import ShapeLimits
from dohost.runtime import abi_table
from dohost.runtime.abi_table import Sig
from dohost.runtime.compile_child import COMPILE_MEMORY_BYTES, COMPILE_TIMEOUT_S, compile_in_child
from dohost.runtime.engine import EngineSettings
from dohost.runtime.wasi import WASI_FUNCTIONS

WASM_MAGIC = b"\0asm"


@dataclass(frozen=True)
class ModuleInfo:
    """What the host learned about a module at validation."""

    sha256: str
    size: int
    has_init: bool
    has_alarm: bool
    has_initialize: bool
    initial_memory_bytes: int
    # The WebSocket event exports it has ("dohost_ws_message", ...): the host skips close
    # and error events a class does not handle, without waking the object.
    ws_exports: frozenset[str] = frozenset()


def _valtype_name(t: wasmtime.ValType) -> str:
    return str(t)


def _func_sig(ft: wasmtime.FuncType) -> Sig:
    return Sig(
        tuple(_valtype_name(p) for p in ft.params), tuple(_valtype_name(r) for r in ft.results)
    )


def compile_module(engine: wasmtime.Engine, wasm: bytes) -> wasmtime.Module:
    if not wasm.startswith(WASM_MAGIC):
        start = wasm[:4].decode("latin-1")
        what = "is empty" if not wasm else f"starts with {start!r}"
        raise DohostError(
            Code.INVALID_MODULE,
            f"not a WebAssembly module: the file {what}, where a module starts with "
            "the bytes \\0asm; upload the compiled .wasm, not its source",
        )
    try:
        return wasmtime.Module(engine, wasm)
    except wasmtime.WasmtimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid module"
        raise DohostError(Code.INVALID_MODULE, f"the module does not validate: {first}") from None


def validate_module(module: wasmtime.Module, wasm: bytes, memory_cap: int) -> ModuleInfo:
    """Check a compiled module against ABI v1; raise DohostError naming the first problem."""
    for imp in module.imports:
        mod, name, ty = imp.module, imp.name or "", imp.type
        where = f"{mod}.{name}"
        if not isinstance(ty, wasmtime.FuncType):
            raise DohostError(
                Code.UNKNOWN_IMPORT,
                f"import {where} is a {type(ty).__name__}; a guest may only import functions "
                f"from '{abi_table.IMPORT_MODULE}' and '{abi_table.WASI_MODULE}' (its memory must be its own)",
            )
        if mod == abi_table.IMPORT_MODULE:
            expected = abi_table.DOHOST_IMPORTS.get(name)
            if expected is None:
                hint = (
                    " (reserved for a later version of the ABI; not served yet)"
                    if name in abi_table.RESERVED_IMPORTS
                    else ""
                )
                raise DohostError(
                    Code.UNKNOWN_IMPORT,
                    f"unknown import {where}{hint}; see abi/README.md for the imports ABI v1 serves",
                )
        elif mod == abi_table.WASI_MODULE:
            expected = WASI_FUNCTIONS.get(name)
            if expected is None:
                raise DohostError(
                    Code.UNKNOWN_IMPORT, f"unknown import {where}: not a WASI preview 1 function"
                )
        else:
            raise DohostError(
                Code.UNKNOWN_IMPORT,
                f"unknown import {where}: imports must come from '{abi_table.IMPORT_MODULE}' "
                f"or '{abi_table.WASI_MODULE}'",
            )
        got = _func_sig(ty)
        if got != expected:
            raise DohostError(
                Code.UNKNOWN_IMPORT, f"import {where} has type {got}; ABI v1 declares {expected}"
            )

    exports = {e.name: e.type for e in module.exports}
    markers = sorted(n for n in exports if n.startswith(abi_table.ABI_MARKER_PREFIX))
    if f"{abi_table.ABI_MARKER_PREFIX}{abi_table.ABI_VERSION}" not in markers:
        found = ", ".join(markers) if markers else "no dohost_abi_v* export"
        raise DohostError(
            Code.ABI_VERSION,
            f"this host serves ABI v{abi_table.ABI_VERSION} (export dohost_abi_v1 to declare it); the module has {found}",
        )
    mem = exports.get("memory")
    if not isinstance(mem, wasmtime.MemoryType):
        raise DohostError(
            Code.MISSING_EXPORT, "missing export 'memory': the guest must export its linear memory"
        )
    initial = mem.limits.min * WASM_PAGE
    if initial > memory_cap:
        raise DohostError(
            Code.MEMORY_TOO_LARGE,
            f"initial memory is {mem.limits.min} pages ({initial} bytes); "
            f"the limit is {memory_cap // WASM_PAGE} pages ({memory_cap // (1 << 20)} MiB)",
        )
    for name, (expected, required) in abi_table.EXPORTS.items():
        ety = exports.get(name)
        if ety is None:
            if required:
                raise DohostError(Code.MISSING_EXPORT, f"missing export {name} {expected}")
            continue
        if not isinstance(ety, wasmtime.FuncType) or _func_sig(ety) != expected:
            raise DohostError(Code.INVALID_MODULE, f"export {name} must be a function {expected}")
    for name in exports:
        if (
            name.startswith("dohost_")
            and name not in abi_table.EXPORTS
            and name not in abi_table.RESERVED_EXPORTS
            and not name.startswith(abi_table.ABI_MARKER_PREFIX)
        ):
            raise DohostError(
                Code.UNKNOWN_EXPORT, f"unknown export {name}: ABI v1 defines no such export"
            )
    init_ty = exports.get(abi_table.INITIALIZE_EXPORT)
    if init_ty is not None and (
        not isinstance(init_ty, wasmtime.FuncType) or _func_sig(init_ty) != Sig((), ())
    ):
        raise DohostError(Code.INVALID_MODULE, "export _initialize must be a function () -> ()")
    return ModuleInfo(
        sha256=hashlib.sha256(wasm).hexdigest(),
        size=len(wasm),
        has_init="dohost_init" in exports,
        has_alarm="dohost_alarm" in exports,
        has_initialize=init_ty is not None,
        initial_memory_bytes=initial,
        ws_exports=frozenset(n for n in exports if n.startswith("dohost_ws_")),
    )


class ModuleCache:
    """Compiled modules on disk (and in memory), keyed by content and engine fingerprint."""

    def __init__(
        self,
        engine: wasmtime.Engine,
        directory: Path,
        fingerprint: str,
        settings: EngineSettings | None = None,
    ) -> None:
        """`settings` must be the ones `engine` was made with (the child compiler makes
        its engine from them)."""
        self._engine = engine
        self._dir = directory
        self._fingerprint = fingerprint
        self._settings = settings or EngineSettings()
        # Bound every compile (runtime/compile_child.py): seconds, address space, shape.
        self.compile_timeout_s = COMPILE_TIMEOUT_S
        self.compile_memory_bytes = COMPILE_MEMORY_BYTES
        self.shape_limits = ShapeLimits()
        self._lock = threading.Lock()
        self._loaded: dict[str, wasmtime.Module] = {}
        self.compiles = 0  # for tests and metrics: how often the cache missed
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        return self._dir / f"{sha256}-{self._fingerprint}.cwasm"

    def cached(self, sha256: str) -> bool:
        """Whether `sha256` needs no compile (loaded, or its code is on disk)."""
        with self._lock:
            if sha256 in self._loaded:
                return True
        return self._path(sha256).exists()

    def compile(self, sha256: str, wasm: bytes) -> None:
        """Compile `wasm` into the on-disk cache in a limited child process (blocks the
        calling thread for up to compile_timeout_s; not a worker's)."""
        compile_in_child(
            wasm,
            self._path(sha256),
            self._settings,
            self.compile_timeout_s,
            self.compile_memory_bytes,
            self.shape_limits,
        )
        self.compiles += 1

    def get(self, sha256: str, wasm: bytes | None) -> wasmtime.Module:
        """The compiled module for `sha256`; compiles `wasm` on a miss (wasm may be None
        when the caller knows the module is cached)."""
        with self._lock:
            mod = self._loaded.get(sha256)
        if mod is not None:
            return mod
        path = self._path(sha256)
        if path.exists():
            try:
                mod = wasmtime.Module.deserialize_file(self._engine, str(path))
            except wasmtime.WasmtimeError:
                path.unlink(missing_ok=True)  # stale or damaged: fall through and recompile
                mod = None
        if mod is None:
            if wasm is None:
                raise DohostError(
                    Code.INTERNAL, f"module {sha256[:12]} is neither cached nor available"
                )
            if not wasm.startswith(WASM_MAGIC):
                compile_module(self._engine, wasm)  # (raises invalid_module, naming it)
            self.compile(sha256, wasm)
            mod = wasmtime.Module.deserialize_file(self._engine, str(path))
        with self._lock:
            self._loaded[sha256] = mod
        return mod

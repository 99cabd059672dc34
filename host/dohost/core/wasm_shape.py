"""A cheap pre-parse of a module's sections: the counts that decide what compiling,
validating and instantiating it will cost, checked against the host's limits before any
of that work starts (abi/README.md, "Module limits").

Only section headers and vector counts are read, plus the local declarations of each
function body (a body declares its locals as (count, type) runs, so a few bytes can
declare millions). A count is compared with its limit as soon as it is read, so the work
here is bounded by the limits, not by the numbers a module claims. Anything malformed is
left for the real validator to name, unless the walk cannot go on (then `invalid_module`).
"""

from __future__ import annotations

from dataclasses import dataclass

from dohost.core.errors import Code, DohostError

WASM_PAGE = 65_536


@dataclass(frozen=True)
class ShapeLimits:
    """Most a deployed module may declare (abi/README.md, "Module limits")."""

    types: int = 10_000
    imports: int = 1_000
    functions: int = 100_000
    locals_per_function: int = 50_000
    local_runs: int = 1_000_000  # (count, type) runs over all bodies: the walk's own bound
    globals: int = 10_000
    tables: int = 4
    table_elements: int = 10_000  # a table's initial size (the store's cap on growth too)
    memories: int = 1
    memory_bytes: int = 128 * 1024 * 1024  # initial size
    exports: int = 1_000
    element_segments: int = 10_000
    data_segments: int = 10_000
    custom_sections: int = 100


@dataclass
class ModuleShape:
    """What the pre-parse counted (for tests and messages)."""

    types: int = 0
    imports: int = 0
    functions: int = 0
    max_locals: int = 0
    globals: int = 0
    tables: int = 0
    memories: int = 0
    exports: int = 0
    element_segments: int = 0
    data_segments: int = 0
    custom_sections: int = 0


class _Truncated(Exception):
    pass


class _Reader:
    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise _Truncated
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u32(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 35:  # longer than a u32's five bytes: the validator names it
                raise _Truncated

    def skip_leb(self) -> None:
        while self.byte() & 0x80:
            pass


def _too_many(what: str, n: int, limit: int) -> DohostError:
    return DohostError(
        Code.MODULE_LIMIT,
        f"the module declares {n} {what}; the limit is {limit} (abi/README.md, 'Module limits')",
    )


def _limits(r: _Reader) -> tuple[int, int]:
    """A limits entry: (flags, minimum). The maximum, if any, is skipped."""
    flags = r.byte()
    minimum = r.u32()
    if flags & 1:
        r.u32()
    return flags, minimum


def check_module_shape(wasm: bytes, limits: ShapeLimits | None = None) -> ModuleShape:
    """Walk the sections of `wasm` (which starts with the wasm magic) and raise
    DohostError naming the first count above its limit: `module_limit`, or
    `memory_too_large` / `table_too_large` / `not_supported` (a shared memory) for the
    limits those codes name. A module the walk cannot follow is `invalid_module`."""
    lim = limits or ShapeLimits()
    shape = ModuleShape()
    try:
        _walk(wasm, lim, shape)
    except _Truncated:
        raise DohostError(
            Code.INVALID_MODULE, "the module does not validate: a section runs past its end"
        ) from None
    return shape


def _walk(wasm: bytes, lim: ShapeLimits, shape: ModuleShape) -> None:
    if len(wasm) < 8 or wasm[4:8] != b"\x01\0\0\0":
        return  # not a core module of version 1: the validator names it
    r = _Reader(wasm, 8, len(wasm))
    local_runs = 0
    while r.pos < r.end:
        sid = r.byte()
        size = r.u32()
        start, end = r.pos, r.pos + size
        if end > len(wasm):
            raise _Truncated
        s = _Reader(wasm, start, end)
        if sid == 0:
            shape.custom_sections += 1
            if shape.custom_sections > lim.custom_sections:
                raise _too_many("custom sections", shape.custom_sections, lim.custom_sections)
        elif sid == 1:
            shape.types = _count(s, "types", lim.types)
        elif sid == 2:
            shape.imports = _count(s, "imports", lim.imports)
        elif sid == 3:
            shape.functions = _count(s, "functions", lim.functions)
        elif sid == 4:
            shape.tables = _count(s, "tables", lim.tables)
            for _ in range(shape.tables):
                s.byte()  # the element type
                _flags, minimum = _limits(s)
                if minimum > lim.table_elements:
                    raise DohostError(
                        Code.TABLE_TOO_LARGE,
                        f"a table's initial size is {minimum} elements; the limit is "
                        f"{lim.table_elements}",
                    )
        elif sid == 5:
            shape.memories = _count(s, "memories", lim.memories)
            for _ in range(shape.memories):
                flags, minimum = _limits(s)
                if flags & 2:
                    raise DohostError(
                        Code.NOT_SUPPORTED,
                        "the module declares a shared memory: threads are not served "
                        "(abi/README.md, 'Proposals served')",
                    )
                if minimum * WASM_PAGE > lim.memory_bytes:
                    raise DohostError(
                        Code.MEMORY_TOO_LARGE,
                        f"initial memory is {minimum} pages ({minimum * WASM_PAGE} bytes); "
                        f"the limit is {lim.memory_bytes // WASM_PAGE} pages "
                        f"({lim.memory_bytes // (1 << 20)} MiB)",
                    )
        elif sid == 6:
            shape.globals = _count(s, "globals", lim.globals)
        elif sid == 7:
            shape.exports = _count(s, "exports", lim.exports)
        elif sid == 9:
            shape.element_segments = _count(s, "element segments", lim.element_segments)
        elif sid == 10:
            bodies = _count(s, "function bodies", lim.functions)
            for _ in range(bodies):
                body_size = s.u32()
                body_end = s.pos + body_size
                if body_end > end:
                    raise _Truncated
                runs = s.u32()
                local_runs += runs
                if local_runs > lim.local_runs:
                    raise _too_many("runs of local declarations", local_runs, lim.local_runs)
                total = 0
                for _ in range(runs):
                    total += s.u32()
                    if total > lim.locals_per_function:
                        raise _too_many("locals in one function", total, lim.locals_per_function)
                    if s.byte() in (0x63, 0x64):  # (ref null? ht): a heap type follows
                        s.skip_leb()
                shape.max_locals = max(shape.max_locals, total)
                s.pos = body_end
        elif sid == 11:
            shape.data_segments = _count(s, "data segments", lim.data_segments)
        r.pos = end


def _count(r: _Reader, what: str, limit: int) -> int:
    n = r.u32()
    if n > limit:
        raise _too_many(what, n, limit)
    return n

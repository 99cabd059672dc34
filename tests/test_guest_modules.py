"""Static checks of the built guest modules against the ABI v1 tables in abi/README.md.

The import and export tables are parsed from the spec itself, so a change on either side
(the spec, the C SDK's import declarations, a fixture) fails here before it fails in the
host. Valid guests must have no problems; each deliberately broken fixture must have
exactly the problem its deploy test relies on.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import wasmtime

ROOT = Path(__file__).resolve().parent.parent
ABI_README = ROOT / "abi" / "README.md"
FIXTURES = ROOT / "tests" / "fixtures"
BUILD = FIXTURES / "build"
MAX_INITIAL_PAGES = 2048  # 128 MiB, the default class memory cap
WASI_MODULE = "wasi_snapshot_preview1"

# Guests that must satisfy the ABI completely (hostile behaviour is at run time only).
VALID_WAT = [
    "noop",
    "echo",
    "infinite_loop",
    "recursion",
    "trap_after_puts",
    "grow_past_cap",
    "bad_pointers",
    "oversized_key",
    "init_fails",
    "wasi_stdout",
    "wasi_proc_exit",
    "versioned_wait",
    # tests/reliability/
    "activation_probe",
    "cpu_burn",
    "mem_churn",
    # the hostile guests corpus, tests/fixtures/hostile/ (README.md there)
    "bad_cbor_response",
    "bad_pointers_more",
    "call_cycle",
    "huge_response",
    "loop_in_alarm",
    "loop_in_init",
    "loop_in_initialize",
    "loop_in_start",
    "memory_bomb",
    "storage_flood",
    # issue 15: limits per tenant (tests/reliability/test_hostile_tenants.py)
    "heavy_new_objects",
    "alarm_rearm_now",
    "log_flood",
    "cbor_bombs",
    "fd_write_iovecs",
    "ws_flood",
]
# Fixtures that satisfy the ABI but pass a host limit on the module's shape, or use a
# proposal the host does not serve (abi/README.md, "Module limits", "Proposals served"):
# refused at deploy with this code (tests/reliability/test_hostile_corpus.py).
SHAPE_WAT = {
    "two_memories": "module_limit",
    "many_tables": "module_limit",
    "big_table": "table_too_large",
    "shared_memory": "not_supported",
    "gc_heap": "invalid_module",
}
# Fixtures that must be refused at deploy, with the problem that refuses them.
# (wrong_signature: abi/README.md does not name the code; "import_signature" is ours.)
INVALID_WAT = {
    "huge_initial_memory": {"memory_too_large"},
    "no_marker": {"abi_version"},
    "abi_v2": {"abi_version"},
    "missing_fetch": {"missing_export"},
    "no_memory": {"missing_export"},
    "unknown_export": {"unknown_export"},
    "unknown_import": {"unknown_import"},
    "unknown_module_import": {"unknown_import"},
    "wrong_signature": {"import_signature"},
}
# C guests: output path and the exact exports the SDK must produce for them.
C_GUESTS = {
    "counter": (
        ROOT / "samples" / "counter" / "counter.wasm",
        {"memory", "dohost_abi_v1", "dohost_fetch"},
    ),
    "reminder": (
        ROOT / "samples" / "reminder" / "reminder.wasm",
        {"memory", "dohost_abi_v1", "dohost_fetch", "dohost_alarm"},
    ),
    "kvtest": (
        BUILD / "kvtest.wasm",
        {"memory", "dohost_abi_v1", "dohost_fetch", "dohost_init", "dohost_alarm"},
    ),
    "kvtest_wasi": (
        BUILD / "kvtest_wasi.wasm",
        {"memory", "dohost_abi_v1", "dohost_fetch", "dohost_init", "dohost_alarm", "_initialize"},
    ),
    "calltest": (
        BUILD / "calltest.wasm",
        {"memory", "dohost_abi_v1", "dohost_fetch", "dohost_alarm"},
    ),
    "wstest": (
        BUILD / "wstest.wasm",
        {
            "memory",
            "dohost_abi_v1",
            "dohost_fetch",
            "dohost_init",
            "dohost_ws_message",
            "dohost_ws_close",
            "dohost_ws_error",
        },
    ),
    "sqlbench": (
        BUILD / "sqlbench.wasm",
        {"memory", "dohost_abi_v1", "dohost_fetch", "dohost_init"},
    ),
}
COUNTER_MAX_BYTES = 16 * 1024
# The other SDKs' counters and WebSocket test guests: the dohost_* exports each SDK makes
# from what the guest declares. A module that does not use WebSockets exports none of
# dohost_ws_*: each SDK exports them only for the handlers a guest names (Zig: declares).
COUNTER_EXPORTS = {"dohost_abi_v1", "dohost_fetch"}
WS_EXPORTS = {"dohost_ws_message", "dohost_ws_close", "dohost_ws_error"}
WSTEST_EXPORTS = COUNTER_EXPORTS | {"dohost_init"} | WS_EXPORTS
SDK = ROOT / "guest-sdk"
SDK_GUESTS = {
    "counter_zig": (SDK / "zig/examples/counter/counter.wasm", COUNTER_EXPORTS),
    "counter_rust": (SDK / "rust/examples/counter/counter.wasm", COUNTER_EXPORTS),
    "counter_as": (SDK / "assemblyscript/examples/counter/counter.wasm", COUNTER_EXPORTS),
    "wstest_zig": (BUILD / "wstest_zig.wasm", WSTEST_EXPORTS),
    "wstest_rust": (BUILD / "wstest_rust.wasm", WSTEST_EXPORTS),
    "wstest_as": (BUILD / "wstest_as.wasm", WSTEST_EXPORTS),
}


# ---- The ABI tables, parsed from abi/README.md ----------------------------------------


@dataclass(frozen=True)
class Sig:
    params: tuple[str, ...]
    results: tuple[str, ...]


@dataclass(frozen=True)
class Abi:
    imports: dict[str, Sig]  # linked in v1
    exports: dict[str, Sig | None]  # None: "any function" (the marker)
    required_exports: set[str]
    reserved_exports: set[str]


def parse_sig(text: str) -> Sig:
    """`(key_ptr, key_len) -> i32`, `(request_len: i32) -> i32`, `() -> ()`."""
    m = re.fullmatch(r"\((.*)\)\s*->\s*(\S+)", text.strip())
    assert m, f"unparsable signature in abi/README.md: {text!r}"
    params = tuple(
        p.split(":", 1)[1].strip() if ":" in p else "i32"  # untyped parameters are i32
        for p in m[1].split(",")
        if p.strip()
    )
    results = () if m[2] == "()" else (m[2],)
    return Sig(params, results)


def table_rows(section: str, header: str | None = None) -> list[list[str]]:
    """Rows of the tables in `section` (only tables whose first header cell is `header`,
    when given)."""
    rows = []
    current = None
    for line in section.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if current is None:
            current = cells[0]  # the header row of a new table
            continue
        if header is not None and current != header:
            continue
        if len(cells) >= 2 and cells[0].startswith("`"):
            rows.append(cells)
    return rows


def parse_abi(text: str) -> Abi:
    exports_part = text.split("## 3.", 1)[1].split("## 4.", 1)[0]
    imports_part = text.split("## 5.", 1)[1].split("### Reserved", 1)[0]
    imports = {
        cells[0].strip("`"): parse_sig(cells[1].strip("`"))
        for cells in table_rows(imports_part, "import")
    }
    exports: dict[str, Sig | None] = {}
    required = set()
    for cells in table_rows(exports_part):
        name, kind = cells[0].strip("`"), cells[1]
        exports[name] = parse_sig(kind.strip("`")) if kind.startswith("`") else None
        if cells[2] == "yes":
            required.add(name)
    # Exports described with their imports in section 5 (WebSockets): optional.
    for cells in table_rows(imports_part, "export"):
        exports[cells[0].strip("`")] = parse_sig(cells[1].strip("`"))
    reserved_line = next(
        (ln for ln in exports_part.splitlines() if "Reserved export names" in ln), ""
    )
    reserved = set(re.findall(r"`(dohost_\w+)`", reserved_line))
    return Abi(imports, exports, required, reserved)


@pytest.fixture(scope="session")
def abi() -> Abi:
    return parse_abi(ABI_README.read_text())


def test_abi_tables_parse(abi: Abi) -> None:
    # Guards the parser: an empty or misread table would make every other check vacuous.
    assert len(abi.imports) >= 18
    assert abi.imports["kv_get"] == Sig(("i32",) * 4, ("i32",))
    assert abi.imports["now_ms"] == Sig((), ("i64",))
    assert abi.imports["log"] == Sig(("i32",) * 3, ("i32",))
    assert abi.imports["alarm_set"] == Sig(("i64",), ("i32",))  # a typed parameter
    assert abi.imports["alarm_get"] == Sig(("i32",), ("i32",))
    assert abi.imports["alarm_delete"] == Sig((), ("i32",))
    assert abi.imports["sql_exec"] == Sig(("i32",) * 6, ("i32",))
    assert abi.imports["call"] == Sig(("i32",) * 6, ("i32",))
    assert abi.imports["ws_send_tag"] == Sig(("i32",) * 5, ("i32",))
    assert abi.imports["ws_attachment_set"] == Sig(("i32",) * 3, ("i32",))
    assert abi.exports["dohost_fetch"] == Sig(("i32",), ("i32",))
    assert abi.exports["_initialize"] == Sig((), ())
    assert abi.exports["dohost_abi_v1"] is None
    assert abi.required_exports == {"memory", "dohost_abi_v1", "dohost_fetch"}
    assert abi.exports["dohost_ws_message"] == Sig(("i32",), ("i32",))
    assert abi.exports["dohost_ws_error"] == Sig(("i32",), ("i32",))


# ---- A reference check of one module ---------------------------------------------------


def func_sig(t: wasmtime.FuncType) -> Sig:
    return Sig(tuple(str(p) for p in t.params), tuple(str(r) for r in t.results))


def abi_problems(module: wasmtime.Module, abi: Abi) -> list[tuple[str, str]]:
    """(code, detail) for every way the module breaks ABI v1; [] when it is deployable."""
    problems: list[tuple[str, str]] = []
    for imp in module.imports:
        where = f"{imp.module}.{imp.name}"
        if imp.module == WASI_MODULE:
            continue  # any WASI preview 1 import links (unimplemented ones return ENOSYS)
        if imp.module != "dohost" or imp.name not in abi.imports:
            problems.append(("unknown_import", where))
        elif not isinstance(imp.type, wasmtime.FuncType):
            problems.append(("import_signature", f"{where} is not a function"))
        elif func_sig(imp.type) != abi.imports[imp.name]:
            problems.append(("import_signature", f"{where}: {func_sig(imp.type)}"))

    exports = {e.name: e.type for e in module.exports}
    markers = {n for n in exports if re.fullmatch(r"dohost_abi_v\d+", n)}
    if "dohost_abi_v1" not in markers:
        problems.append(("abi_version", f"markers: {sorted(markers)}"))
    for name in abi.required_exports - exports.keys() - {"dohost_abi_v1"}:
        problems.append(("missing_export", name))
    memory = exports.get("memory")
    if memory is not None and not isinstance(memory, wasmtime.MemoryType):
        problems.append(("missing_export", "memory is not a memory"))
    if isinstance(memory, wasmtime.MemoryType) and memory.limits.min > MAX_INITIAL_PAGES:
        problems.append(("memory_too_large", f"{memory.limits.min} pages"))
    known = abi.exports.keys() | abi.reserved_exports
    for name, t in exports.items():
        if name in markers:
            continue
        if name.startswith("dohost_") and name not in known:
            problems.append(("unknown_export", name))
        sig = abi.exports.get(name)
        if sig is not None and (not isinstance(t, wasmtime.FuncType) or func_sig(t) != sig):
            problems.append(("export_signature", name))
    return problems


# ---- Building ----------------------------------------------------------------------------


def load_build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_guests", ROOT / "tools/build_guests.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


HAVE_ZIG = importlib.util.find_spec("ziglang") is not None
needs_zig = pytest.mark.skipif(not HAVE_ZIG, reason="ziglang not installed (pip install ziglang)")


@pytest.fixture(scope="session")
def built() -> None:
    """Runs tools/build_guests.py once (it skips up-to-date outputs)."""
    script = load_build_script()
    names = [g.name for g in script.wat_fixtures()]
    if HAVE_ZIG:
        names += [g.name for g in script.GUESTS]
    assert script.main(names) == 0, "tools/build_guests.py failed (see its output above)"


@pytest.fixture(scope="session")
def engine() -> wasmtime.Engine:
    return wasmtime.Engine()


def load(engine: wasmtime.Engine, path: Path) -> wasmtime.Module:
    return wasmtime.Module(engine, path.read_bytes())


# ---- Tests ---------------------------------------------------------------------------------


def test_every_wat_fixture_is_classified() -> None:
    on_disk = {p.stem for p in [*FIXTURES.glob("*.wat"), *FIXTURES.glob("hostile/*.wat")]}
    assert on_disk == set(VALID_WAT) | INVALID_WAT.keys() | SHAPE_WAT.keys()


@pytest.mark.parametrize("name", sorted(SHAPE_WAT))
def test_shape_fixture_breaks_only_a_host_limit(
    built: None, engine: wasmtime.Engine, abi: Abi, name: str
) -> None:
    """ABI-wise deployable; refused by the shape pre-parse or the host's engine only."""
    from dohost.core.errors import DohostError
    from dohost.core.wasm_shape import check_module_shape
    from dohost.runtime.engine import EngineSettings, make_engine

    cfg = wasmtime.Config()
    cfg.wasm_threads = True  # (the default engine validates shared memories only so)
    data = (BUILD / f"{name}.wasm").read_bytes()
    assert abi_problems(wasmtime.Module(wasmtime.Engine(cfg), data), abi) == []
    try:
        check_module_shape(data)
        wasmtime.Module(make_engine(EngineSettings()), data)
    except DohostError as e:
        assert e.code.code == SHAPE_WAT[name], e
    except wasmtime.WasmtimeError:
        assert SHAPE_WAT[name] == "invalid_module"
    else:
        raise AssertionError(f"{name} passed the host's limits")


@pytest.mark.parametrize("name", VALID_WAT)
def test_valid_fixture(built: None, engine: wasmtime.Engine, abi: Abi, name: str) -> None:
    assert abi_problems(load(engine, BUILD / f"{name}.wasm"), abi) == []


@pytest.mark.parametrize("name", sorted(INVALID_WAT))
def test_invalid_fixture_has_exactly_its_defect(
    built: None, engine: wasmtime.Engine, abi: Abi, name: str
) -> None:
    problems = abi_problems(load(engine, BUILD / f"{name}.wasm"), abi)
    assert {code for code, _ in problems} == INVALID_WAT[name], problems


def test_not_wasm_is_not_a_module(engine: wasmtime.Engine) -> None:
    data = (FIXTURES / "not_wasm.bin").read_bytes()
    assert not data.startswith(b"\0asm")
    with pytest.raises(wasmtime.WasmtimeError):
        wasmtime.Module(engine, data)


@needs_zig
@pytest.mark.parametrize("name", sorted(C_GUESTS))
def test_c_guest(built: None, engine: wasmtime.Engine, abi: Abi, name: str) -> None:
    path, exports = C_GUESTS[name]
    module = load(engine, path)
    assert abi_problems(module, abi) == []
    # The SDK exports only what the guest asked for: dohost_init / dohost_alarm only
    # through DOHOST_EXPORT_INIT / DOHOST_EXPORT_ALARM.
    assert {e.name for e in module.exports} == exports
    # Freestanding guests import nothing but dohost: no libc or env symbol leaks in.
    allowed = {"dohost", WASI_MODULE} if name.endswith("_wasi") else {"dohost"}
    assert {i.module for i in module.imports} <= allowed


@needs_zig
def test_c_sdk_declares_the_whole_abi(built: None, engine: wasmtime.Engine, abi: Abi) -> None:
    # The C test guests together exercise every helper (kvtest the core, sqltest sql.h,
    # calltest call.h, wstest ws.h), so together they import every v1 import: with test_c_guest this
    # checks each SDK declaration against the spec's signature.
    names = set()
    for guest in ("kvtest", "sqltest", "calltest", "wstest"):
        names |= {i.name for i in load(engine, BUILD / f"{guest}.wasm").imports}
    assert names == set(abi.imports)


@needs_zig
@pytest.mark.parametrize("name", sorted(SDK_GUESTS))
def test_sdk_guest(built: None, engine: wasmtime.Engine, abi: Abi, name: str) -> None:
    path, exports = SDK_GUESTS[name]
    module = load(engine, path)
    assert abi_problems(module, abi) == []
    assert {e.name for e in module.exports if e.name.startswith("dohost_")} == exports
    assert {i.module for i in module.imports} == {"dohost"}
    if name.startswith("wstest"):
        # Every WebSocket import, each checked against the spec's signature above: the
        # SDK's raw declarations are right.
        ws = {i.name for i in module.imports if i.name.startswith("ws_")}
        assert ws == {n for n in abi.imports if n.startswith("ws_")}


@needs_zig
def test_counter_stays_small(built: None) -> None:
    size = (ROOT / "samples" / "counter" / "counter.wasm").stat().st_size
    assert size <= COUNTER_MAX_BYTES, f"counter.wasm is {size} bytes"

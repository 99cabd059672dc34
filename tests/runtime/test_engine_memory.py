"""The engine's memory settings: what one resident instance costs the process in memory
mappings (`vm.max_map_count` bounds a process's residents) and in address space."""

from __future__ import annotations

import sys

import pytest
import wasmtime

from dohost.runtime.engine import EngineSettings, make_engine

# Like a C guest: stack pages at the bottom, data segments above them, heap above that.
GUEST = """(module
  (memory (export "memory") 17)
  (data (i32.const 65536) "read-only data")
  (data (i32.const 70000) "initialised data")
  (func (export "touch")
    (i32.store (i32.const 16) (i32.const 1))           ;; the stack
    (i32.store (i32.const 65540) (i32.const 2))        ;; the data image
    (i32.store (i32.const 900000) (i32.const 3))))     ;; the heap
"""

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/maps")


def _mappings() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def _instantiate(engine: wasmtime.Engine, module: wasmtime.Module, n: int) -> list[object]:
    keep: list[object] = []
    for _ in range(n):
        store = wasmtime.Store(engine)
        store.set_epoch_deadline(1 << 30)
        store.set_limits(memory_size=128 << 20, memories=1)
        instance = wasmtime.Instance(store, module, [])
        touch = instance.exports(store)["touch"]
        assert isinstance(touch, wasmtime.Func)
        touch(store)
        keep.append((store, instance))
    return keep


def test_an_instance_costs_at_most_one_mapping() -> None:
    """~16,300 residents per process was the ceiling with four mappings each."""
    engine = make_engine(EngineSettings())
    module = wasmtime.Module(engine, GUEST)
    _instantiate(engine, module, 8)  # warm up: allocator arenas, code mappings
    before = _mappings()
    keep = _instantiate(engine, module, 400)
    per_instance = (_mappings() - before) / len(keep)
    assert per_instance <= 1.0, per_instance


GROWER = """(module
  (import "host" "check" (func $check (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "run") (param $pages i32) (result i32)
    (i32.store (i32.const 100) (i32.const 0x01020304))
    (drop (memory.grow (local.get $pages)))
    (call $check (i32.const 100))))
"""


@pytest.mark.parametrize("pages", [1, 64, 2047])
def test_fast_memory_follows_a_memory_that_moved(pages: int) -> None:
    """A grown memory may move (nothing is reserved beyond its size): the fast path must
    read and write it where it is now, not where it was when the host last looked."""
    from dohost.runtime import fastcall

    engine = make_engine(EngineSettings())
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 30)
    store.set_limits(memory_size=128 << 20, memories=1)
    seen: list[bytes | None] = []
    holder: dict[str, fastcall.FastMemory] = {}

    def check(ptr: int) -> int:
        mem = holder["mem"]
        seen.append(mem.read(ptr, 4))
        assert mem.write(ptr, b"\x0a\x0b\x0c\x0d")
        return 7

    ty = wasmtime.FuncType([wasmtime.ValType.i32()], [wasmtime.ValType.i32()])
    linker = wasmtime.Linker(engine)
    linker.define_func("host", "check", ty, check)
    instance = linker.instantiate(store, wasmtime.Module(engine, GROWER))
    memory = instance.exports(store)["memory"]
    run = instance.exports(store)["run"]
    assert isinstance(memory, wasmtime.Memory) and isinstance(run, wasmtime.Func)
    holder["mem"] = fastcall.FastMemory(store, memory)  # made before the growth
    before = memory.data_ptr(store)
    assert run(store, pages) == 7
    assert seen == [b"\x04\x03\x02\x01"]
    assert memory.read(store, 100, 104) == b"\x0a\x0b\x0c\x0d"
    assert memory.size(store) == 1 + pages
    if pages == 2047:  # 128 MiB: surely elsewhere now (the test means something)
        assert ctypes_address(memory.data_ptr(store)) != ctypes_address(before)


def ctypes_address(ptr: object) -> int:
    import ctypes

    return ctypes.cast(ptr, ctypes.c_void_p).value or 0  # type: ignore[arg-type]


def test_the_fingerprint_names_the_reservation() -> None:
    """Compiled code depends on the reservation (its bounds checks): the module cache
    must not serve code compiled for another one."""
    assert (
        EngineSettings().fingerprint() != EngineSettings(memory_reservation=1 << 30).fingerprint()
    )


def test_resident_ceiling_follows_max_map_count() -> None:
    from dohost.runtime.engine import MAPPINGS_PER_INSTANCE, MAPPINGS_RESERVED, resident_ceiling

    assert resident_ceiling(65_530) == (65_530 - MAPPINGS_RESERVED) // MAPPINGS_PER_INSTANCE
    assert resident_ceiling(65_530) > 32_768  # issue 19's target fits
    assert resident_ceiling(262_144) > 200_000
    assert resident_ceiling(10) == 1


def test_host_clamps_max_resident_to_the_ceiling(tmp_path: object) -> None:
    from dohost.runtime.engine import resident_ceiling
    from dohost.server.host import Host

    assert Host(tmp_path, max_resident=10**9).max_resident == resident_ceiling()  # type: ignore[arg-type]
    assert Host(tmp_path, max_resident=50).max_resident == 50  # type: ignore[arg-type]

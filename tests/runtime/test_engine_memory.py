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


def test_an_instance_costs_at_most_two_mappings() -> None:
    """~16,300 residents per process was the ceiling with four mappings each."""
    engine = make_engine(EngineSettings())
    module = wasmtime.Module(engine, GUEST)
    _instantiate(engine, module, 8)  # warm up: allocator arenas, code mappings
    before = _mappings()
    keep = _instantiate(engine, module, 400)
    per_instance = (_mappings() - before) / len(keep)
    assert per_instance <= 2.05, per_instance


def test_memory_grows_to_the_reservation_and_no_further() -> None:
    engine = make_engine(EngineSettings(memory_reservation=4 << 20))
    module = wasmtime.Module(engine, '(module (memory (export "memory") 1))')
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 30)
    memory = wasmtime.Instance(store, module, []).exports(store)["memory"]
    assert isinstance(memory, wasmtime.Memory)
    base = memory.data_ptr(store)
    assert memory.grow(store, 63) == 1  # 64 pages = the 4 MiB reserved
    assert ctypes_address(memory.data_ptr(store)) == ctypes_address(base)  # never moves
    with pytest.raises(wasmtime.WasmtimeError):
        memory.grow(store, 1)


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
    assert resident_ceiling(65_530) > 30_000  # the resident curve's 3·10^4 point fits
    assert resident_ceiling(262_144) > 100_000
    assert resident_ceiling(10) == 1


def test_host_clamps_max_resident_to_the_ceiling(tmp_path: object) -> None:
    from dohost.runtime.engine import resident_ceiling
    from dohost.server.host import Host

    assert Host(tmp_path, max_resident=10**9).max_resident == resident_ceiling()  # type: ignore[arg-type]
    assert Host(tmp_path, max_resident=50).max_resident == 50  # type: ignore[arg-type]

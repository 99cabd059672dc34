"""The one wasmtime engine of a host process, and the epoch ticker that bounds CPU time.

Every guest runs with epoch interruption: a daemon thread increments the engine's epoch
every `TICK_MS`, and each event arms its store's deadline as a number of ticks, so a guest
that loops forever traps with `TrapCode.INTERRUPT` within one tick of its budget. Python
signals cannot interrupt running wasm, hence a thread.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

import wasmtime

from dohost.runtime import fastcall

TICK_MS = 5

# The WebAssembly proposals this host serves (True) and refuses at validation (False);
# abi/README.md, "Proposals served", says the same. Off: every proposal whose memory the
# store's 128 MiB cap does not count (GC and exceptions allocate on wasmtime's GC heap,
# outside the linear memory the limiter meters), shared memories (threads), memories a
# guest cannot need (memory64, multi-memory, custom page sizes), and what is not final.
# Reference types stay on: LLVM emits them by default, and a guest cannot allocate
# an externref itself (only the host could create one, and it never does).
PROPOSALS: tuple[tuple[str, bool], ...] = (
    ("wasm_bulk_memory", True),
    ("wasm_multi_value", True),
    ("wasm_reference_types", True),
    ("wasm_simd", True),
    ("wasm_relaxed_simd", True),
    ("wasm_tail_call", True),
    ("wasm_gc", False),
    ("wasm_exceptions", False),
    ("wasm_function_references", False),
    ("wasm_threads", False),
    ("wasm_memory64", False),
    ("wasm_multi_memory", False),
    ("wasm_custom_page_sizes", False),
    ("wasm_stack_switching", False),
    ("wasm_wide_arithmetic", False),
    ("wasm_component_model", False),
)


@dataclass(frozen=True)
class EngineSettings:
    max_wasm_stack: int = 1 << 20  # 1 MiB of wasm stack; deep recursion traps with STACK_OVERFLOW
    opt_level: str = "speed"
    # Address space reserved per linear memory beyond its size: none (see make_engine).
    # The memory cap is the store's limit (EventLimits.memory_bytes), not this.
    memory_reservation: int = 0

    def fingerprint(self) -> str:
        """Identifies compiled code: part of the module cache key."""
        text = (
            f"wasmtime={fastcall._version()};epoch=1;may_move=1;stack={self.max_wasm_stack};"
            f"opt={self.opt_level};reserve={self.memory_reservation};cow=0;"
            f"features={','.join(f'{k}={int(v)}' for k, v in PROPOSALS)}"
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class EpochTicker:
    """Advances the engine's epoch every TICK_MS on a daemon thread."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._engine = engine
        self._stop = threading.Event()
        self._hurry = False
        self._thread = threading.Thread(target=self._run, name="dohost-epoch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0 if self._hurry else TICK_MS / 1000):
            self._engine.increment_epoch()

    def hurry(self) -> None:
        """Advance the epoch as fast as possible from now on: every running guest soon
        passes its deadline and traps (an immediate stop; new events trap at once too)."""
        self._hurry = True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)


def make_engine(settings: EngineSettings, threads: bool = True) -> wasmtime.Engine:
    """The engine for `settings`. `threads=False` compiles on the calling thread only
    (the compile child: one compile takes one core); the code is the same either way."""
    cfg = wasmtime.Config()
    cfg.parallel_compilation = threads
    cfg.epoch_interruption = True
    # Residents are bounded by memory mappings (vm.max_map_count, 65,530 by default):
    # wasmtime's default memory (a 4 GiB reservation, guard pages, a copy-on-write image
    # from a memfd) costs each instance 3-4 mappings, which capped a process at ~16,300
    # residents. A memory that reserves nothing beyond its size, has no guard region and
    # copies its data segments in at instantiation is one read-write anonymous mapping,
    # and the kernel merges neighbouring ones: instances cost ~0 mappings each (measured:
    # < 0.01; at most 1). The price: compiled code bounds-checks each access against the
    # memory's current size (no guard pages to catch it), and a growing memory may move
    # (it is reallocated and copied), so runtime/fastcall.py reads the base address at
    # every access instead of caching it.
    cfg.memory_may_move = True
    cfg.memory_reservation = settings.memory_reservation
    cfg.memory_guard_size = 0
    cfg.memory_reservation_for_growth = 0
    cfg.memory_init_cow = False
    cfg.max_wasm_stack = settings.max_wasm_stack
    cfg.cranelift_opt_level = settings.opt_level
    for name, on in PROPOSALS:
        setattr(cfg, name, on)
    return wasmtime.Engine(cfg)


# Memory mappings (vm.max_map_count) per live instance with the settings above, and a
# reserve for everything else of a process (libraries, thread stacks, Python's arenas,
# SQLite): residents beyond the ceiling would fail to instantiate with ENOMEM, so the
# host keeps fewer (Host clamps max_resident and evicts the least recently used).
MAPPINGS_PER_INSTANCE = 1  # the worst case: no neighbour to merge with
MAPPINGS_RESERVED = 2_048


def resident_ceiling(max_map_count: int | None = None) -> int:
    """How many instances this process can hold under `vm.max_map_count` (read from
    /proc when not given; no ceiling where there is no such file)."""
    if max_map_count is None:
        try:
            with open("/proc/sys/vm/max_map_count") as f:
                max_map_count = int(f.read())
        except (OSError, ValueError):
            return 1 << 30
    return max(1, (max_map_count - MAPPINGS_RESERVED) // MAPPINGS_PER_INSTANCE)


def deadline_ticks(cpu_ms: int) -> int:
    return max(1, -(-cpu_ms // TICK_MS))

"""Numeric limits of ABI v1 (abi/README.md). One place, so host, tests and docs agree."""

from __future__ import annotations

from dataclasses import dataclass

MAX_KEY_BYTES = 2048
MAX_ENTRY_BYTES = 2 * 1024 * 1024  # key + value
MAX_KEYS_PER_CALL = 128
LIST_MAX_ENTRIES = 10_000  # per kv_list call; `more` is set when reached
LIST_MAX_BYTES = 16 * 1024 * 1024
MAX_LOG_BYTES = 16 * 1024
MAX_RANDOM_BYTES = 65_536
WASM_PAGE = 65_536
# sql_exec (abi/README.md, "SQL"): the statement's text, its bound parameters, a string,
# blob or row it creates (SQLITE_LIMIT_LENGTH), and one result.
MAX_SQL_BYTES = 100_000
MAX_SQL_PARAMS = 100
MAX_SQL_VALUE_BYTES = MAX_ENTRY_BYTES
MAX_SQL_RESULT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class EventLimits:
    """Per-event limits; a class or tenant may override them."""

    cpu_ms: int = 30_000
    memory_bytes: int = 128 * 1024 * 1024
    table_elements: int = 10_000
    storage_ops: int = 1_000_000
    response_bytes: int = 32 * 1024 * 1024
    object_storage_bytes: int = 1024 * 1024 * 1024  # per-object quota

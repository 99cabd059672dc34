"""Error codes shared by the guest ABI, the HTTP API and the CLI.

Every failure the host reports carries one stable code (a short snake_case name) and a
message a user can act on. Codes that guests can see also have a fixed negative ABI status
(abi/README.md, section 6); the numbers never change once released.
"""

from __future__ import annotations

import enum


class Code(enum.Enum):
    """Stable error codes. Each value is (name, abi_status or None, http_status).

    The name is part of the value on purpose: several codes share a (status, http) pair,
    and equal values would make Enum alias them (CPU_LIMIT would *be* OBJECT_ERROR)."""

    # Codes a guest can see as an import status.
    INTERNAL = ("internal", -1, 500)
    BAD_POINTER = ("bad_pointer", -2, 500)
    NOT_FOUND = ("not_found", -3, 404)
    KEY_TOO_LARGE = ("key_too_large", -4, 400)
    VALUE_TOO_LARGE = ("value_too_large", -5, 413)
    TOO_MANY_KEYS = ("too_many_keys", -6, 400)
    QUOTA_EXCEEDED = ("quota_exceeded", -7, 429)
    BAD_ENCODING = ("bad_encoding", -8, 400)
    NOT_SUPPORTED = ("not_supported", -9, 400)
    NO_RESULT = ("no_result", -10, 500)
    INVALID_ARGUMENT = ("invalid_argument", -11, 400)
    STORAGE_ERROR = ("storage_error", -12, 500)
    BUFFER_TOO_SMALL = ("buffer_too_small", -13, 500)
    LIMIT_EXCEEDED = ("limit_exceeded", -14, 500)
    CALL_CYCLE = ("call_cycle", -15, 508)
    CALL_DEPTH = ("call_depth", -16, 508)
    CALL_FAILED = ("call_failed", -17, 502)
    SQL_ERROR = ("sql_error", -18, 400)
    SQL_REFUSED = ("sql_refused", -19, 403)

    # Codes only the host reports (deploys, events, HTTP).
    OBJECT_ERROR = ("object_error", None, 500)  # the guest trapped or returned a failure
    CPU_LIMIT = ("cpu_limit", None, 500)  # the event ran past its CPU deadline
    MEMORY_LIMIT = ("memory_limit", None, 500)
    INVALID_MODULE = ("invalid_module", None, 400)  # not wasm, or wasm that does not validate
    UNKNOWN_IMPORT = ("unknown_import", None, 400)
    UNKNOWN_EXPORT = ("unknown_export", None, 400)
    MISSING_EXPORT = ("missing_export", None, 400)
    ABI_VERSION = ("abi_version", None, 400)
    MEMORY_TOO_LARGE = ("memory_too_large", None, 400)
    MODULE_TOO_LARGE = ("module_too_large", None, 413)
    # A count of the module's shape above its limit (exports, functions, locals, ...).
    MODULE_LIMIT = ("module_limit", None, 400)
    TABLE_TOO_LARGE = ("table_too_large", None, 400)  # a table's initial size
    INVALID_NAME = ("invalid_name", None, 400)
    INVALID_ID = ("invalid_id", None, 404)
    UNKNOWN_CLASS = ("unknown_class", None, 404)
    UNKNOWN_TENANT = ("unknown_tenant", None, 404)
    UNKNOWN_VERSION = ("unknown_version", None, 404)  # a class version never recorded, or gone
    BAD_REQUEST = ("bad_request", None, 400)
    INVALID_CONFIG = ("invalid_config", None, 400)  # a config file's unknown key or bad value
    METHOD_NOT_ALLOWED = ("method_not_allowed", None, 405)
    ALREADY_EXISTS = ("already_exists", None, 409)
    UNAUTHORIZED = ("unauthorized", None, 401)
    FORBIDDEN = ("forbidden", None, 403)  # a scoped token used for what it may not do
    RATE_LIMITED = ("rate_limited", None, 429)
    SHUTTING_DOWN = ("shutting_down", None, 503)
    OVERLOADED = ("overloaded", None, 503)
    # Start-up and the operating system: the user's situation to fix (server/startup.py).
    ADDRESS_IN_USE = ("address_in_use", None, 500)
    CANNOT_LISTEN = ("cannot_listen", None, 500)
    DATA_DIR_UNUSABLE = ("data_dir_unusable", None, 500)
    OS_ERROR = ("os_error", None, 500)  # a file or device the command was given failed
    CANNOT_REACH = ("cannot_reach", None, 502)  # the CLI found no server at its URL
    # Ownership (DESIGN.md, "Beyond one process").
    DATA_IN_USE = ("data_in_use", None, 409)  # another program holds the data set's lock
    NOT_OWNER = ("not_owner", None, 503)  # this node does not own the object's partition
    OWNER_UNAVAILABLE = ("owner_unavailable", None, 503)  # the owner did not answer in time
    FENCED = ("fenced", None, 503)  # a newer claim of the partition exists: nothing committed
    # no etcd endpoint answered (cluster mode): membership and claims cannot be read or renewed
    CLUSTER_UNAVAILABLE = ("cluster_unavailable", None, 503)
    # Replication (DESIGN.md, "Replication").
    REPLICA_UNAVAILABLE = (
        "replica_unavailable",
        None,
        503,
    )  # the replica store failed or is unreachable
    REPLICA_CORRUPT = (
        "replica_corrupt",
        None,
        500,
    )  # a replica object fails its checksum, or the log has a gap
    # restore-object, fork or a guest's bookmark on a server without a replica store
    NO_REPLICA = ("no_replica", None, 409)

    @property
    def abi_status(self) -> int | None:
        status: int | None = self.value[1]
        return status

    @property
    def http_status(self) -> int:
        status: int = self.value[2]
        return status

    @property
    def code(self) -> str:
        """The stable string form: `key_too_large`."""
        name: str = self.value[0]
        return name


ABI_CODES: dict[int, Code] = {c.abi_status: c for c in Code if c.abi_status is not None}
# The reverse: the ABI status of each code guests can see (what an import returns).
ABI_STATUS: dict[Code, int] = {c: s for s, c in ABI_CODES.items()}


class DohostError(Exception):
    """An error with a stable code and a message meant for the user who caused it."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.code}: {self.message}"

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code.code, "message": self.message}}

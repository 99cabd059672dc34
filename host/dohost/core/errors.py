"""Error codes shared by the guest ABI, the HTTP API and the CLI.

Every failure the host reports carries one stable code (a short snake_case name) and a
message a user can act on. Codes that guests can see also have a fixed negative ABI status
(abi/README.md, section 6); the numbers never change once released.
"""

from __future__ import annotations

import enum


class Code(enum.Enum):
    """Stable error codes. The value is (abi_status or None, http_status)."""

    # Codes a guest can see as an import status.
    INTERNAL = (-1, 500)
    BAD_POINTER = (-2, 500)
    NOT_FOUND = (-3, 404)
    KEY_TOO_LARGE = (-4, 400)
    VALUE_TOO_LARGE = (-5, 413)
    TOO_MANY_KEYS = (-6, 400)
    QUOTA_EXCEEDED = (-7, 429)
    BAD_ENCODING = (-8, 400)
    NOT_SUPPORTED = (-9, 400)
    NO_RESULT = (-10, 500)
    INVALID_ARGUMENT = (-11, 400)
    STORAGE_ERROR = (-12, 500)
    BUFFER_TOO_SMALL = (-13, 500)
    LIMIT_EXCEEDED = (-14, 500)
    CALL_CYCLE = (-15, 508)
    CALL_DEPTH = (-16, 508)
    CALL_FAILED = (-17, 502)
    SQL_ERROR = (-18, 400)
    SQL_REFUSED = (-19, 403)

    # Codes only the host reports (deploys, events, HTTP).
    OBJECT_ERROR = (None, 500)  # the guest trapped or returned a failure
    CPU_LIMIT = (None, 500)  # the event ran past its CPU deadline
    MEMORY_LIMIT = (None, 500)
    INVALID_MODULE = (None, 400)  # not wasm, or wasm that does not validate
    UNKNOWN_IMPORT = (None, 400)
    UNKNOWN_EXPORT = (None, 400)
    MISSING_EXPORT = (None, 400)
    ABI_VERSION = (None, 400)
    MEMORY_TOO_LARGE = (None, 400)
    MODULE_TOO_LARGE = (None, 413)
    INVALID_NAME = (None, 400)
    INVALID_ID = (None, 404)
    UNKNOWN_CLASS = (None, 404)
    UNKNOWN_TENANT = (None, 404)
    BAD_REQUEST = (None, 400)
    UNAUTHORIZED = (None, 401)
    RATE_LIMITED = (None, 429)
    SHUTTING_DOWN = (None, 503)
    OVERLOADED = (None, 503)

    @property
    def abi_status(self) -> int | None:
        status: int | None = self.value[0]
        return status

    @property
    def http_status(self) -> int:
        status: int = self.value[1]
        return status

    @property
    def code(self) -> str:
        """The stable string form: `key_too_large`."""
        return self.name.lower()


ABI_CODES: dict[int, Code] = {c.abi_status: c for c in Code if c.abi_status is not None}


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

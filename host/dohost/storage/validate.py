"""Argument checks of the storage calls (abi/README.md section 5), shared by both backends.

Each raises a DohostError with the code the guest sees, never a Python error.
"""

from __future__ import annotations

from collections.abc import Collection

from dohost.core.errors import Code, DohostError
from dohost.core.limits import MAX_ENTRY_BYTES, MAX_KEY_BYTES, MAX_KEYS_PER_CALL


def key_too_large(key: bytes) -> DohostError:
    return DohostError(
        Code.KEY_TOO_LARGE,
        f"key of {len(key)} bytes is above the limit of {MAX_KEY_BYTES} bytes",
    )


def check_key(key: bytes) -> None:
    if len(key) > MAX_KEY_BYTES:
        raise key_too_large(key)


def check_entry(key: bytes, value: bytes) -> None:
    if len(key) > MAX_KEY_BYTES:
        raise key_too_large(key)
    if len(key) + len(value) > MAX_ENTRY_BYTES:
        raise DohostError(
            Code.VALUE_TOO_LARGE,
            f"key + value of {len(key) + len(value)} bytes is above the limit of "
            f"{MAX_ENTRY_BYTES} bytes",
        )


def check_count(items: Collection[object]) -> None:
    if len(items) > MAX_KEYS_PER_CALL:
        raise DohostError(
            Code.TOO_MANY_KEYS,
            f"{len(items)} keys in one call is above the limit of {MAX_KEYS_PER_CALL}; "
            "split the call",
        )


def quota_exceeded(used: int, delta: int, quota: int) -> DohostError:
    return DohostError(
        Code.QUOTA_EXCEEDED,
        f"this write needs {delta} more bytes but the object already stores {used} of its "
        f"{quota}-byte quota; delete data first",
    )

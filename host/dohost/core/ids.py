"""Object ids, after workerd's scheme (DESIGN.md, "Ids").

An id is 32 bytes shown as 64 lower-case hex characters. The first half identifies the
object (derived from its name, or random); the second half is a MAC of the first under
the class's secret key. `id_from_string` recomputes the MAC, so an id cannot be forged,
and an id of one class (or tenant) is refused by every other class, whose key differs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from dohost.core.errors import Code, DohostError

ID_BYTES = 32
ID_HEX_CHARS = 2 * ID_BYTES
CLASS_KEY_BYTES = 32
MAX_OBJECT_NAME_BYTES = 1024


@dataclass(frozen=True, slots=True)
class ObjectId:
    raw: bytes  # 32 bytes
    name: str | None = None  # set when the id was derived from a name

    @property
    def hex(self) -> str:
        return self.raw.hex()

    def __str__(self) -> str:
        return self.raw.hex()


def new_class_key() -> bytes:
    return secrets.token_bytes(CLASS_KEY_BYTES)


def _mac(class_key: bytes, data: bytes) -> bytes:
    return hmac.new(class_key, data, hashlib.sha256).digest()[:16]


def check_object_name(name: str) -> bytes:
    """Object names are any UTF-8 text up to 1 KiB; they never reach a file path."""
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise DohostError(Code.INVALID_NAME, "object names must be valid UTF-8") from None
    if len(raw) > MAX_OBJECT_NAME_BYTES:
        raise DohostError(
            Code.INVALID_NAME,
            f"object name is {len(raw)} bytes; the limit is {MAX_OBJECT_NAME_BYTES}",
        )
    return raw


def id_from_name(class_key: bytes, name: str) -> ObjectId:
    raw_name = check_object_name(name)
    first = _mac(class_key, b"name:" + raw_name)
    return ObjectId(first + _mac(class_key, first), name)


def new_unique_id(class_key: bytes) -> ObjectId:
    first = secrets.token_bytes(16)
    return ObjectId(first + _mac(class_key, first))


def id_from_string(class_key: bytes, text: str) -> ObjectId:
    """Parse a hex id and check that it belongs to this class; raise INVALID_ID if not."""
    if len(text) != ID_HEX_CHARS or not all(c in "0123456789abcdef" for c in text):
        raise DohostError(Code.INVALID_ID, "an object id is 64 lower-case hex characters")
    raw = bytes.fromhex(text)
    if not hmac.compare_digest(raw[16:], _mac(class_key, raw[:16])):
        raise DohostError(Code.INVALID_ID, "no such object id in this class")
    return ObjectId(raw)

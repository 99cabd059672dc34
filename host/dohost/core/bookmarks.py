"""Bookmarks: an opaque, tamper-evident name for a moment in one object's history.

In the style of Durable Objects' point-in-time recovery (`getCurrentBookmark`,
`getBookmarkForTime`, `onNextSessionRestoreBookmark`): a guest asks for a bookmark and
may later ask the host to restore its own storage to it (abi/README.md, "Bookmarks").

A bookmark names a **millisecond** of the object's history, the same thing
`dohost restore-object --at` names: restoring to it brings back every change of the
object committed at or before that millisecond. (Not a log position: the replica log's
(epoch, seq) of a commit is chosen by the uploader after the commit, so an event cannot
know it; the commit time is in every change.) Its text is

    b1-<ms as 16 hex digits>-<MAC as 32 hex digits>

so two bookmarks of one object compare in time order as strings. The MAC is HMAC-SHA256
under the class's secret key over the object id and the time: a guest cannot forge one,
nor use one of another object, class or tenant (each class has its own key).

Pure logic: no clock (the caller passes times), no I/O.
"""

from __future__ import annotations

import hashlib
import hmac

from dohost.core.errors import Code, DohostError

PREFIX = "b1-"
MAX_MS = (1 << 63) - 1
BOOKMARK_CHARS = len(PREFIX) + 16 + 1 + 32  # 52


def _mac(class_key: bytes, object_id: bytes, at_ms: int) -> str:
    data = b"bookmark:v1:" + object_id + at_ms.to_bytes(8, "big")
    return hmac.new(class_key, data, hashlib.sha256).digest()[:16].hex()


def make_bookmark(class_key: bytes, object_id: bytes, at_ms: int) -> str:
    """The bookmark of object `object_id` (raw id bytes) at `at_ms`."""
    if not 0 <= at_ms <= MAX_MS:
        raise DohostError(
            Code.INVALID_ARGUMENT,
            f"a bookmark time is milliseconds since the Unix epoch (>= 0), not {at_ms}",
        )
    return f"{PREFIX}{at_ms:016x}-{_mac(class_key, object_id, at_ms)}"


def parse_bookmark(class_key: bytes, object_id: bytes, text: str) -> int:
    """The time a bookmark of this object names; INVALID_ARGUMENT for anything else: a
    malformed text, a forged or damaged one, or another object's."""
    if len(text) != BOOKMARK_CHARS or not text.startswith(PREFIX) or text[19] != "-":
        raise DohostError(
            Code.INVALID_ARGUMENT,
            f"not a bookmark: a bookmark is {BOOKMARK_CHARS} characters "
            f"'{PREFIX}<16 hex>-<32 hex>', as the bookmark imports return it",
        )
    ms_hex, mac = text[3:19], text[20:]
    if not all(c in "0123456789abcdef" for c in ms_hex + mac):
        raise DohostError(Code.INVALID_ARGUMENT, "not a bookmark: lower-case hex expected")
    at_ms = int(ms_hex, 16)
    if at_ms > MAX_MS or not hmac.compare_digest(mac, _mac(class_key, object_id, at_ms)):
        raise DohostError(
            Code.INVALID_ARGUMENT,
            "not a bookmark of this object: it was altered, or made for another object",
        )
    return at_ms

"""What a scoped token may do: the rules, as pure data (docs/http-api.md, "Scoped tokens").

A tenant mints scoped tokens to hand out less than its own token: limited to some
classes, to object traffic only, to read-only methods, and until an expiry. Decided
(and documented) answers for a request outside the scope:

- a class the token does not cover answers **404 `unknown_class`**, exactly as a class
  that does not exist (as another tenant's does): the token reveals no class names;
- a route kind or method the token lacks answers **403 `forbidden`** (the class is one
  the token may see, so hiding it would hide nothing);
- an expired token is **401 `unauthorized`** ("token expired"); a revoked one is an
  unknown token (401).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dohost.core.errors import Code, DohostError
from dohost.core.names import check_name

READ_METHODS = frozenset({"GET", "HEAD"})
MAX_CLASSES = 64
MAX_LIFETIME_MS = 10 * 365 * 86_400_000  # ten years: a typo'd expiry is refused, not kept
SCOPE_KEYS = ("classes", "objects_only", "read_only", "expires_ms", "expires_in_s", "label")


def unknown_class(class_name: str) -> DohostError:
    """The same error (code and text) as for a class that is not deployed."""
    return DohostError(Code.UNKNOWN_CLASS, f"no class named {class_name[:100]!r} is deployed")


@dataclass(frozen=True, slots=True)
class Scope:
    """`classes` None means every class of the tenant (present and future)."""

    classes: frozenset[str] | None = None
    objects_only: bool = False
    read_only: bool = False
    expires_ms: int | None = None
    label: str = ""

    @classmethod
    def parse(cls, body: dict[str, Any], now_ms: int) -> Scope:
        """A scope from a mint request; every bad field is `invalid_argument` naming it."""
        extra = set(body) - set(SCOPE_KEYS)
        if extra:
            raise DohostError(
                Code.INVALID_ARGUMENT,
                f"unknown field {sorted(extra)[0]!r}; a token takes {', '.join(SCOPE_KEYS)}",
            )
        classes = body.get("classes")
        if classes is not None:
            if not isinstance(classes, list) or not classes or len(classes) > MAX_CLASSES:
                raise DohostError(
                    Code.INVALID_ARGUMENT,
                    f"classes must be a list of 1 to {MAX_CLASSES} class names (or absent: all)",
                )
            for c in classes:
                if not isinstance(c, str):
                    raise DohostError(Code.INVALID_ARGUMENT, "classes must hold class names")
                check_name("class", c)
        flags = {}
        for key in ("objects_only", "read_only"):
            v = body.get(key, False)
            if not isinstance(v, bool):
                raise DohostError(Code.INVALID_ARGUMENT, f"{key} must be true or false")
            flags[key] = v
        label = body.get("label", "")
        if not isinstance(label, str) or len(label) > 200:
            raise DohostError(Code.INVALID_ARGUMENT, "label must be text of at most 200 chars")
        return cls(
            frozenset(classes) if classes is not None else None,
            flags["objects_only"],
            flags["read_only"],
            _expiry(body, now_ms),
            label,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "classes": sorted(self.classes) if self.classes is not None else None,
            "objects_only": self.objects_only,
            "read_only": self.read_only,
            "expires_ms": self.expires_ms,
            "label": self.label,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Scope:
        classes = d.get("classes")
        return cls(
            frozenset(classes) if classes is not None else None,
            bool(d.get("objects_only")),
            bool(d.get("read_only")),
            d.get("expires_ms"),
            d.get("label") or "",
        )

    def renamed(self, old: str, new: str) -> Scope:
        """The scope after class `old` became `new` (a renamed class keeps its tokens)."""
        if self.classes is None or old not in self.classes:
            return self
        return Scope(
            (self.classes - {old}) | {new},
            self.objects_only,
            self.read_only,
            self.expires_ms,
            self.label,
        )

    def expired(self, now_ms: float) -> bool:
        return self.expires_ms is not None and now_ms >= self.expires_ms

    def sees_class(self, class_name: str) -> bool:
        return self.classes is None or class_name in self.classes

    def check(self, class_name: str | None, object_traffic: bool, method: str) -> None:
        """Raise if a request is outside the scope. `class_name` None: a route of no
        class (listing classes, managing tokens)."""
        if class_name is not None and not self.sees_class(class_name):
            raise unknown_class(class_name)
        if self.objects_only and not object_traffic:
            raise DohostError(
                Code.FORBIDDEN, "this token is limited to object requests (objects_only)"
            )
        if self.read_only and method not in READ_METHODS:
            raise DohostError(
                Code.FORBIDDEN, f"this token is read-only: {method[:16]} is not allowed"
            )


def _expiry(body: dict[str, Any], now_ms: int) -> int | None:
    at, after = body.get("expires_ms"), body.get("expires_in_s")
    if at is not None and after is not None:
        raise DohostError(Code.INVALID_ARGUMENT, "give expires_ms or expires_in_s, not both")
    if after is not None:
        if isinstance(after, bool) or not isinstance(after, int | float) or after <= 0:
            raise DohostError(Code.INVALID_ARGUMENT, "expires_in_s must be a positive number")
        at = now_ms + int(after * 1000)
    if at is None:
        return None
    if isinstance(at, bool) or not isinstance(at, int):
        raise DohostError(Code.INVALID_ARGUMENT, "expires_ms must be an integer (ms since 1970)")
    if at <= now_ms:
        raise DohostError(Code.INVALID_ARGUMENT, "expires_ms is in the past")
    if at - now_ms > MAX_LIFETIME_MS:
        raise DohostError(Code.INVALID_ARGUMENT, "the expiry is more than ten years away")
    return at

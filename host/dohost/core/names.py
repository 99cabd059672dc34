"""Names of tenants and classes. They become parts of file paths, so they are checked first."""

from __future__ import annotations

import re

from dohost.core.errors import Code, DohostError

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def check_name(kind: str, name: str) -> str:
    """Return `name` if it is a valid tenant or class name, else raise INVALID_NAME."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        shown = repr(name[:80]) if isinstance(name, str) else type(name).__name__
        raise DohostError(
            Code.INVALID_NAME,
            f"{kind} name {shown} is invalid: use 1-63 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit",
        )
    return name

"""ABI v1 as data: the imports the host serves and the exports it knows (abi/README.md).

Validation, the linker and the docs tests all read these tables, so a signature is
written down once.
"""

from __future__ import annotations

from dataclasses import dataclass

ABI_VERSION = 1
IMPORT_MODULE = "dohost"
WASI_MODULE = "wasi_snapshot_preview1"
ABI_MARKER_PREFIX = "dohost_abi_v"


@dataclass(frozen=True)
class Sig:
    params: tuple[str, ...]
    results: tuple[str, ...]

    def __str__(self) -> str:
        return f"({', '.join(self.params)}) -> ({', '.join(self.results)})"


I32 = "i32"
I64 = "i64"


def sig(params: str, results: str) -> Sig:
    """sig("iiii", "i") -> (i32 x4) -> (i32); 'I' is i64."""
    m = {"i": I32, "I": I64}
    return Sig(tuple(m[c] for c in params), tuple(m[c] for c in results))


# Imports from module "dohost" served in ABI v1: name -> signature.
DOHOST_IMPORTS: dict[str, Sig] = {
    "input_read": sig("ii", "i"),
    "response_set": sig("ii", "i"),
    "result_read": sig("ii", "i"),
    "last_error": sig("ii", "i"),
    "kv_get": sig("iiii", "i"),
    "kv_put": sig("iiii", "i"),
    "kv_delete": sig("ii", "i"),
    "kv_get_many": sig("iiii", "i"),
    "kv_put_many": sig("ii", "i"),
    "kv_delete_many": sig("ii", "i"),
    "kv_list": sig("iiii", "i"),
    "kv_delete_all": sig("", "i"),
    "log": sig("iii", "i"),
    "now_ms": sig("", "I"),
    "random_fill": sig("ii", "i"),
    "alarm_set": sig("I", "i"),
    "alarm_get": sig("i", "i"),
    "alarm_delete": sig("", "i"),
    "sql_exec": sig("iiiiii", "i"),
    "call": sig("iiiiii", "i"),
    "object_info": sig("ii", "i"),
    "ws_accept": sig("ii", "i"),
    "ws_send": sig("iiii", "i"),
    "ws_send_tag": sig("iiiii", "i"),
    "ws_close": sig("iiii", "i"),
    "ws_list": sig("iiii", "i"),
    "ws_attachment_set": sig("iii", "i"),
    "ws_attachment_get": sig("iii", "i"),
    "ws_auto_response": sig("iiii", "i"),
    "bookmark_current": sig("ii", "i"),
    "bookmark_for_time": sig("Iii", "i"),
    "bookmark_restore": sig("ii", "i"),
}

# Names reserved for later issues; importing them today is refused with a pointer to why.
RESERVED_IMPORTS: frozenset[str] = frozenset()

# Exports: name -> (signature, required).
EXPORTS: dict[str, tuple[Sig, bool]] = {
    "dohost_fetch": (sig("i", "i"), True),
    "dohost_init": (sig("", "i"), False),
    "dohost_alarm": (sig("i", "i"), False),
    "dohost_ws_message": (sig("i", "i"), False),
    "dohost_ws_close": (sig("i", "i"), False),
    "dohost_ws_error": (sig("i", "i"), False),
}
RESERVED_EXPORTS: frozenset[str] = frozenset()
INITIALIZE_EXPORT = "_initialize"

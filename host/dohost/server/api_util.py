"""Small pieces the HTTP API handlers share: JSON responses, errors, query parsing and
decoding of the names that arrive percent-encoded in paths."""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from typing import Any

from dohost.core.errors import Code, DohostError
from dohost.server.http_types import HttpResponse

JSON_TYPE = "application/json"
ERROR_HEADER = "x-dohost-error"  # set on every error the host (not a guest) produced


def json_response(
    status: int, data: Any, headers: list[tuple[str, str]] | None = None
) -> HttpResponse:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    return HttpResponse(status, [("content-type", JSON_TYPE), *(headers or [])], body)


def error_response(err: DohostError, status: int | None = None) -> HttpResponse:
    headers = [(ERROR_HEADER, err.code.code)]
    retry_after = getattr(err, "retry_after", None)
    if retry_after is not None:
        headers.append(("retry-after", str(retry_after)))
    allow = getattr(err, "allow", None)
    if allow is not None:
        headers.append(("allow", allow))
    return json_response(status or err.code.http_status, err.to_json(), headers)


class MethodNotAllowed(DohostError):
    def __init__(self, method: str, allow: str) -> None:
        super().__init__(
            Code.METHOD_NOT_ALLOWED, f"{method[:16]} is not allowed here; allowed: {allow}"
        )
        self.allow = allow


def not_found(path: str) -> DohostError:
    return DohostError(Code.NOT_FOUND, f"no route for {path[:200]!r}; see docs/http-api.md")


def decode_segment(segment: str, what: str) -> str:
    """A percent-encoded path segment as UTF-8 text. The server hands paths over as
    latin-1 (one char per byte), so raw UTF-8 bytes are recovered first."""
    try:
        raw = segment.encode("latin-1")
        if b"%" in raw:
            raw = urllib.parse.unquote_to_bytes(raw)
        return raw.decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise DohostError(Code.INVALID_NAME, f"the {what} must be valid UTF-8") from None


def query_params(query: str) -> dict[str, str]:
    try:
        pairs = urllib.parse.parse_qsl(
            query, keep_blank_values=True, strict_parsing=False, errors="strict"
        )
    except UnicodeDecodeError:
        raise DohostError(Code.BAD_REQUEST, "the query string is not valid UTF-8") from None
    return dict(pairs)


def int_param(params: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise DohostError(Code.INVALID_ARGUMENT, f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise DohostError(Code.INVALID_ARGUMENT, f"{name} must be from {lo} to {hi}")
    return value


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64url_param(params: dict[str, str], name: str) -> bytes | None:
    """A byte string passed as URL-safe base64 (padding optional)."""
    text = params.get(name)
    if text is None:
        return None
    try:
        padded = (text + "=" * (-len(text) % 4)).encode("ascii")
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise DohostError(Code.INVALID_ARGUMENT, f"{name} must be URL-safe base64") from None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def json_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DohostError(Code.BAD_REQUEST, f"the body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise DohostError(Code.BAD_REQUEST, "the body must be a JSON object")
    return data

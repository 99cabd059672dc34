"""What `Client` and `AsyncClient` share about httpx: how it is built, what a reply is."""

from __future__ import annotations

from typing import Any

import httpx

from dohost.client.calls import Reply
from dohost.client.model import TransportError

TIMEOUT_S, CONNECT_TIMEOUT_S = 60.0, 10.0


def http_options(url: str, token: str | None, timeout: float) -> dict[str, Any]:
    """What `httpx.Client` and `httpx.AsyncClient` are built with (shared by both)."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return {
        "base_url": url.rstrip("/"),
        "headers": headers,
        "timeout": httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_S)),
    }


def transport_error(url: str, e: httpx.HTTPError) -> TransportError:
    return TransportError(f"cannot reach {url.rstrip('/')}: {e or type(e).__name__}")


def reply_of(r: httpx.Response) -> Reply:
    return Reply(r.status_code, list(r.headers.multi_items()), r.content)

"""`dohost.client`: a typed Python client of the HTTP API v1 (docs/http-api.md).

    from dohost.client import Client
    with Client("http://127.0.0.1:8080", token) as c:
        c.deploy("counter", wasm)
        print(c.fetch("counter", "room-1", "/incr", method="POST").text)

`AsyncClient` has the same methods as coroutines (trio or asyncio). Errors the host
made raise `ApiError` (`.code` is the stable code); an unreachable host raises
`TransportError`; both are `ClientError`. An object's own status is returned in its
`FetchResponse`, never raised. The `dohost` CLI is built on this client.
"""

from dohost.client.aio import AsyncClient
from dohost.client.model import (
    ApiError,
    ClassInfo,
    ClientError,
    Deployed,
    FetchResponse,
    ObjectPage,
    ObjectRef,
    ObjectSummary,
    RestoreResult,
    StoragePage,
    Tenant,
    TokenInfo,
    TransportError,
    VersionInfo,
)
from dohost.client.sync import Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "ClassInfo",
    "Client",
    "ClientError",
    "Deployed",
    "FetchResponse",
    "ObjectPage",
    "ObjectRef",
    "ObjectSummary",
    "RestoreResult",
    "StoragePage",
    "Tenant",
    "TokenInfo",
    "TransportError",
    "VersionInfo",
]

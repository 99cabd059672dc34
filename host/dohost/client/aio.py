"""`AsyncClient`: the async client of HTTP API v1 (trio or asyncio, through httpx)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, TypeVar

import httpx

from dohost.client import calls
from dohost.client._http import TIMEOUT_S, http_options, reply_of, transport_error
from dohost.client.calls import Call
from dohost.client.model import (
    ClassInfo,
    Deployed,
    FetchResponse,
    ObjectPage,
    ObjectRef,
    ObjectSummary,
    RestoreResult,
    StoragePage,
    Tenant,
    TokenInfo,
    VersionInfo,
)

T = TypeVar("T")


class AsyncClient:
    """`AsyncClient(url, token)`; use as an async context manager (`async with`), or call `close()`. Host errors
    raise `ApiError` (with the stable code), unreachable hosts `TransportError`."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(**http_options(url, token, timeout))

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def send(self, call: Call[T]) -> T:
        """Send any `Call` (calls.py) and parse its answer."""
        try:
            r = await self._http.request(
                call.method, call.path, params=call.params, content=call.body, headers=call.headers
            )
        except httpx.HTTPError as e:
            raise transport_error(self.url, e) from e
        return call.result(reply_of(r))

    # -------------------------------------------------------------- open and admin

    async def health(self) -> bool:
        return await self.send(calls.health())

    async def metrics(self) -> str:
        return await self.send(calls.metrics())

    async def cluster_status(self) -> dict[str, Any]:
        return await self.send(calls.cluster_status())

    async def create_tenant(
        self, name: str, quotas: dict[str, Any] | None = None
    ) -> tuple[Tenant, str]:
        return await self.send(calls.create_tenant(name, quotas))

    async def list_tenants(self) -> list[Tenant]:
        return await self.send(calls.list_tenants())

    async def get_tenant(self, name: str) -> Tenant:
        return await self.send(calls.get_tenant(name))

    async def set_quotas(self, name: str, quotas: dict[str, Any]) -> Tenant:
        return await self.send(calls.set_quotas(name, quotas))

    async def delete_tenant(self, name: str) -> None:
        await self.send(calls.delete_tenant(name))

    async def rotate_tenant_token(self, name: str) -> str:
        return await self.send(calls.rotate_tenant_token(name))

    # -------------------------------------------------------------- scoped tokens

    async def mint_token(
        self,
        *,
        classes: list[str] | None = None,
        objects_only: bool = False,
        read_only: bool = False,
        expires_in_s: float | None = None,
        expires_ms: int | None = None,
        label: str = "",
    ) -> tuple[TokenInfo, str]:
        return await self.send(
            calls.mint_token(
                classes=classes,
                objects_only=objects_only,
                read_only=read_only,
                expires_in_s=expires_in_s,
                expires_ms=expires_ms,
                label=label,
            )
        )

    async def list_tokens(self) -> list[TokenInfo]:
        return await self.send(calls.list_tokens())

    async def rotate_token(self, token_id: str) -> tuple[TokenInfo, str]:
        return await self.send(calls.rotate_token(token_id))

    async def revoke_token(self, token_id: str) -> None:
        await self.send(calls.revoke_token(token_id))

    # -------------------------------------------------------------- classes

    async def deploy(
        self,
        class_name: str,
        wasm: bytes,
        storage: str = "kv",
        *,
        update: str = "immediate",
        max_delay_s: float | None = None,
    ) -> Deployed:
        return await self.send(
            calls.deploy(class_name, wasm, storage, update=update, max_delay_s=max_delay_s)
        )

    async def class_versions(self, class_name: str) -> list[VersionInfo]:
        return await self.send(calls.class_versions(class_name))

    async def rollback(
        self,
        class_name: str,
        version: int,
        *,
        update: str = "immediate",
        max_delay_s: float | None = None,
    ) -> ClassInfo:
        return await self.send(
            calls.rollback(class_name, version, update=update, max_delay_s=max_delay_s)
        )

    async def rename_class(self, class_name: str, new_name: str) -> ClassInfo:
        return await self.send(calls.rename_class(class_name, new_name))

    async def delete_class(self, class_name: str) -> int:
        return await self.send(calls.delete_class(class_name))

    async def list_classes(self) -> list[ClassInfo]:
        return await self.send(calls.list_classes())

    async def get_class(self, class_name: str) -> ClassInfo:
        return await self.send(calls.get_class(class_name))

    # -------------------------------------------------------------- objects

    async def list_objects(
        self, class_name: str, limit: int = 100, after: str | None = None
    ) -> ObjectPage:
        return await self.send(calls.list_objects(class_name, limit, after))

    async def iter_objects(
        self, class_name: str, page_size: int = 1000
    ) -> AsyncIterator[ObjectSummary]:
        after: str | None = None
        while True:
            page = await self.list_objects(class_name, page_size, after)
            for o in page.objects:
                yield o
            if page.next is None:
                return
            after = page.next

    async def new_id(self, class_name: str) -> str:
        return await self.send(calls.new_id(class_name))

    async def get_object(self, class_name: str, obj: str, by_id: bool = False) -> ObjectRef:
        return await self.send(calls.get_object(class_name, obj, by_id))

    async def delete_object(self, class_name: str, obj: str, by_id: bool = False) -> str:
        return await self.send(calls.delete_object(class_name, obj, by_id))

    async def restore_object(
        self,
        class_name: str,
        obj: str,
        at: int | str,
        *,
        to: str | None = None,
        by_id: bool = False,
    ) -> RestoreResult:
        """Restore `obj` to its state at `at` from the replica, or fork it into `to`."""
        return await self.send(calls.restore_object(class_name, obj, at, to=to, by_id=by_id))

    async def storage(
        self,
        class_name: str,
        obj: str,
        by_id: bool = False,
        *,
        limit: int = 100,
        cursor: str | None = None,
        prefix: bytes | None = None,
    ) -> StoragePage:
        return await self.send(
            calls.storage(class_name, obj, by_id, limit=limit, cursor=cursor, prefix=prefix)
        )

    async def iter_storage(
        self, class_name: str, obj: str, by_id: bool = False, *, prefix: bytes | None = None
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        cursor: str | None = None
        while True:
            page = await self.storage(
                class_name, obj, by_id, limit=1000, cursor=cursor, prefix=prefix
            )
            for e in page.entries:
                yield e
            if page.next is None:
                return
            cursor = page.next

    async def fetch(
        self,
        class_name: str,
        obj: str,
        path: str = "/",
        *,
        method: str | None = None,
        body: bytes | None = None,
        headers: list[tuple[str, str]] | None = None,
        by_id: bool = False,
    ) -> FetchResponse:
        return await self.send(
            calls.fetch(
                class_name, obj, path, method=method, body=body, headers=headers, by_id=by_id
            )
        )

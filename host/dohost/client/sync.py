"""`Client`: the blocking client of HTTP API v1 (one keep-alive connection pool)."""

from __future__ import annotations

from collections.abc import Iterator
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


class Client:
    """`Client(url, token)`; use as a context manager, or call `close()`. Host errors
    raise `ApiError` (with the stable code), unreachable hosts `TransportError`."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(**http_options(url, token, timeout))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def send(self, call: Call[T]) -> T:
        """Send any `Call` (calls.py) and parse its answer."""
        try:
            r = self._http.request(
                call.method, call.path, params=call.params, content=call.body, headers=call.headers
            )
        except httpx.HTTPError as e:
            raise transport_error(self.url, e) from e
        return call.result(reply_of(r))

    # -------------------------------------------------------------- open and admin

    def health(self) -> bool:
        return self.send(calls.health())

    def metrics(self) -> str:
        return self.send(calls.metrics())

    def cluster_status(self) -> dict[str, Any]:
        return self.send(calls.cluster_status())

    def create_tenant(self, name: str, quotas: dict[str, Any] | None = None) -> tuple[Tenant, str]:
        return self.send(calls.create_tenant(name, quotas))

    def list_tenants(self) -> list[Tenant]:
        return self.send(calls.list_tenants())

    def get_tenant(self, name: str) -> Tenant:
        return self.send(calls.get_tenant(name))

    def set_quotas(self, name: str, quotas: dict[str, Any]) -> Tenant:
        return self.send(calls.set_quotas(name, quotas))

    def delete_tenant(self, name: str) -> None:
        self.send(calls.delete_tenant(name))

    def rotate_tenant_token(self, name: str) -> str:
        return self.send(calls.rotate_tenant_token(name))

    # -------------------------------------------------------------- scoped tokens

    def mint_token(
        self,
        *,
        classes: list[str] | None = None,
        objects_only: bool = False,
        read_only: bool = False,
        expires_in_s: float | None = None,
        expires_ms: int | None = None,
        label: str = "",
    ) -> tuple[TokenInfo, str]:
        return self.send(
            calls.mint_token(
                classes=classes,
                objects_only=objects_only,
                read_only=read_only,
                expires_in_s=expires_in_s,
                expires_ms=expires_ms,
                label=label,
            )
        )

    def list_tokens(self) -> list[TokenInfo]:
        return self.send(calls.list_tokens())

    def rotate_token(self, token_id: str) -> tuple[TokenInfo, str]:
        return self.send(calls.rotate_token(token_id))

    def revoke_token(self, token_id: str) -> None:
        self.send(calls.revoke_token(token_id))

    # -------------------------------------------------------------- classes

    def deploy(
        self,
        class_name: str,
        wasm: bytes,
        storage: str = "kv",
        *,
        update: str = "immediate",
        max_delay_s: float | None = None,
    ) -> Deployed:
        return self.send(
            calls.deploy(class_name, wasm, storage, update=update, max_delay_s=max_delay_s)
        )

    def class_versions(self, class_name: str) -> list[VersionInfo]:
        return self.send(calls.class_versions(class_name))

    def rollback(
        self,
        class_name: str,
        version: int,
        *,
        update: str = "immediate",
        max_delay_s: float | None = None,
    ) -> ClassInfo:
        return self.send(
            calls.rollback(class_name, version, update=update, max_delay_s=max_delay_s)
        )

    def rename_class(self, class_name: str, new_name: str) -> ClassInfo:
        return self.send(calls.rename_class(class_name, new_name))

    def delete_class(self, class_name: str) -> int:
        return self.send(calls.delete_class(class_name))

    def list_classes(self) -> list[ClassInfo]:
        return self.send(calls.list_classes())

    def get_class(self, class_name: str) -> ClassInfo:
        return self.send(calls.get_class(class_name))

    # -------------------------------------------------------------- objects

    def list_objects(
        self, class_name: str, limit: int = 100, after: str | None = None
    ) -> ObjectPage:
        return self.send(calls.list_objects(class_name, limit, after))

    def iter_objects(self, class_name: str, page_size: int = 1000) -> Iterator[ObjectSummary]:
        after: str | None = None
        while True:
            page = self.list_objects(class_name, page_size, after)
            yield from page.objects
            if page.next is None:
                return
            after = page.next

    def new_id(self, class_name: str) -> str:
        return self.send(calls.new_id(class_name))

    def get_object(self, class_name: str, obj: str, by_id: bool = False) -> ObjectRef:
        return self.send(calls.get_object(class_name, obj, by_id))

    def delete_object(self, class_name: str, obj: str, by_id: bool = False) -> str:
        return self.send(calls.delete_object(class_name, obj, by_id))

    def restore_object(
        self,
        class_name: str,
        obj: str,
        at: int | str,
        *,
        to: str | None = None,
        by_id: bool = False,
    ) -> RestoreResult:
        """Restore `obj` to its state at `at` from the replica, or fork it into `to`."""
        return self.send(calls.restore_object(class_name, obj, at, to=to, by_id=by_id))

    def storage(
        self,
        class_name: str,
        obj: str,
        by_id: bool = False,
        *,
        limit: int = 100,
        cursor: str | None = None,
        prefix: bytes | None = None,
    ) -> StoragePage:
        return self.send(
            calls.storage(class_name, obj, by_id, limit=limit, cursor=cursor, prefix=prefix)
        )

    def iter_storage(
        self, class_name: str, obj: str, by_id: bool = False, *, prefix: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        cursor: str | None = None
        while True:
            page = self.storage(class_name, obj, by_id, limit=1000, cursor=cursor, prefix=prefix)
            yield from page.entries
            if page.next is None:
                return
            cursor = page.next

    def fetch(
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
        return self.send(
            calls.fetch(
                class_name, obj, path, method=method, body=body, headers=headers, by_id=by_id
            )
        )

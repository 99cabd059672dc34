"""The HTTP API in-process over a real Host, for the hostile guests corpus: tenants with
their own tokens and quotas, deploys and requests through `Api.handle` exactly as the
front door hands them over (no sockets), and a record of every event's outcome (alarm
runs have no HTTP response to read their error from)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dohost import Host
from dohost.runtime.event import EventOutcome
from dohost.server.api import Api
from dohost.server.http_types import HttpRequest, HttpResponse
from dohost.server.quotas import Quotas
from dohost.server.state import ServerState
from dohost.server.supervisor import SupervisorObserver

ADMIN_TOKEN = "reliability-admin-token-" + "x" * 16


def request(method: str, target: str, token: str, body: bytes = b"") -> HttpRequest:
    path, _, query = target.partition("?")
    headers = [("host", "test"), ("authorization", f"Bearer {token}")]
    return HttpRequest(method, path, query, headers, body, ("127.0.0.1", 1), "1.1")


def error_code(resp: HttpResponse) -> str:
    """The stable code of a host error response (body and header must agree)."""
    code: str = json.loads(resp.body)["error"]["code"]
    assert dict((k.lower(), v) for k, v in resp.headers).get("x-dohost-error") == code
    return code


def error_message(resp: HttpResponse) -> str:
    message: str = json.loads(resp.body)["error"]["message"]
    return message


@dataclass
class EventRecord:
    tenant: str
    class_name: str
    kind: str
    code: str | None  # the event's error code, None when it succeeded


@dataclass
class Recorder:
    """A SupervisorObserver that records each event and passes it on (to the metrics)."""

    inner: SupervisorObserver | None
    events: list[EventRecord] = field(default_factory=list)

    def event(
        self, tenant: str, class_name: str, kind: str, result: EventOutcome, seconds: float
    ) -> None:
        code = result.error.code.code if result.error is not None else None
        self.events.append(EventRecord(tenant, class_name, kind, code))
        if self.inner is not None:
            self.inner.event(tenant, class_name, kind, result, seconds)

    def dropped(self, tenant: str, class_name: str, reason: str) -> None:
        if self.inner is not None:
            self.inner.dropped(tenant, class_name, reason)


class Tenant:
    def __init__(self, api: Api, name: str, token: str) -> None:
        self.api, self.name, self.token = api, name, token

    async def __call__(self, method: str, target: str, body: bytes = b"") -> HttpResponse:
        return await self.api.handle(request(method, target, self.token, body))

    async def deploy(self, cls: str, wasm: bytes) -> HttpResponse:
        return await self("PUT", f"/v1/classes/{cls}", wasm)

    async def fetch(
        self, cls: str, obj: str, path: str = "/", method: str = "GET", body: bytes = b""
    ) -> HttpResponse:
        return await self(method, f"/v1/classes/{cls}/objects/{obj}{path}", body)


class ApiWorld:
    """A Host with the API over it, its admin, and a recorder of events."""

    def __init__(self, host: Host, api: Api, recorder: Recorder) -> None:
        self.host, self.api, self.recorder = host, api, recorder

    @classmethod
    async def attach(cls, host: Host, **quotas: Any) -> ApiWorld:
        state = await ServerState.attach(host, ADMIN_TOKEN, Quotas(**quotas))
        recorder = Recorder(host.supervisor.observer)
        host.supervisor.observer = recorder
        return cls(host, Api(state), recorder)

    async def tenant(self, name: str, quotas: dict[str, Any] | None = None) -> Tenant:
        body: dict[str, Any] = {"name": name}
        if quotas:
            body["quotas"] = quotas
        resp = await self.api.handle(
            request("POST", "/v1/tenants", ADMIN_TOKEN, json.dumps(body).encode())
        )
        assert resp.status == 201, resp.body
        return Tenant(self.api, name, json.loads(resp.body)["token"])

"""What one HTTP server holds beside its `Host`: tenants and tokens, quotas, usage and
metrics, wired to the host's supervisor hooks. Built by `dohost serve` (and tests)."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from dohost.server.host import Host
from dohost.server.metrics import Metrics
from dohost.server.quota_storage import UsageBook
from dohost.server.quotas import QuotaBook, Quotas
from dohost.server.tenancy import Tenancy


@dataclass
class ServerState:
    host: Host
    tenancy: Tenancy
    quotas: QuotaBook
    usage: UsageBook
    metrics: Metrics

    @classmethod
    async def attach(cls, host: Host, admin_token: str, defaults: Quotas) -> ServerState:
        """Wire tenancy, quotas and metrics to an entered `Host`. Loads every tenant's
        quota overrides and storage usage (one pass over the objects of each class)."""
        tenancy = Tenancy(host.system, admin_token, host.wall_ms)
        quotas = QuotaBook(defaults, host.limits)
        for row in tenancy.rows():
            quotas.set_overrides(row.name, row.quotas)

        def usage_limits(tenant: str) -> tuple[int, int]:
            q = quotas.get(tenant)
            return q.storage_bytes, q.objects

        usage = UsageBook(usage_limits)
        metrics = Metrics(host, usage)
        await trio.to_thread.run_sync(_load_usage, host, usage)
        sup = host.supervisor
        sup.limits_for = quotas.limits_for
        sup.wrap_storage = usage.wrap
        sup.observer = metrics
        host.websockets.tenant_limit = lambda tenant: quotas.get(tenant).ws_connections
        return cls(host, tenancy, quotas, usage, metrics)


def _load_usage(host: Host, usage: UsageBook) -> None:
    for row in host.system.classes():
        tenant_usage = usage.get(row.tenant)
        after: bytes | None = None
        while True:
            page = host.storage.list_objects(
                row.tenant, row.name, row.storage, after=after, limit=1000
            )
            for o in page.objects:
                tenant_usage.load(row.name, o.object_id, o.bytes)
            if page.next_after is None:
                break
            after = page.next_after

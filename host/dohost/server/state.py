"""What one HTTP server holds beside its `Host`: tenants and tokens, quotas, usage and
metrics, wired to the host's supervisor hooks. Built by `dohost serve` (and tests).

With `--processes N` each node also holds the shared state (server/shared_state.py):
after each configuration change it made (tenants, tokens, quotas, deploys) it bumps the
shared generation (`changed`), and at the start of each request it compares that
generation with the one it loaded (`sync`) and reloads tenants, quotas and classes from
system.db when it moved. Usage is the node's own objects' plus what the other nodes
publish, and the request rate is one shared bucket per tenant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from dohost.core.websocket import CLOSE_GOING_AWAY
from dohost.server.class_nodes import ClassHolds
from dohost.server.host import Host
from dohost.server.metrics import Metrics
from dohost.server.node import NodeContext
from dohost.server.quota_storage import UsageBook
from dohost.server.quotas import QuotaBook, Quotas
from dohost.server.shared_state import SharedState, shared_path
from dohost.server.tenancy import Tenancy
from dohost.storage.api import Backend


@dataclass
class ServerState:
    host: Host
    tenancy: Tenancy
    quotas: QuotaBook
    usage: UsageBook
    metrics: Metrics
    node: NodeContext | None = None
    shared: SharedState | None = None
    generation: int = 0
    _reloading: bool = field(default=False, repr=False)
    # This node's part in other nodes' class deletes and renames (`serve.py` runs it).
    class_holds: ClassHolds | None = None

    @classmethod
    async def attach(
        cls, host: Host, admin_token: str, defaults: Quotas, node: NodeContext | None = None
    ) -> ServerState:
        """Wire tenancy, quotas and metrics to an entered `Host`. Loads every tenant's
        quota overrides and storage usage (one pass over the objects of each class; a
        node counts only the objects it owns)."""
        shared: SharedState | None = None
        generation = 0
        if node is not None:
            shared = SharedState(shared_path(node.role.run_dir), node.index)
            shared.clear_usage()
            generation = shared.generation()
        tenancy = Tenancy(host.system, admin_token, host.wall_ms)
        quotas = QuotaBook(defaults, host.limits)
        for row in tenancy.rows():
            quotas.set_overrides(row.name, row.quotas)

        def usage_limits(tenant: str) -> tuple[int, int]:
            q = quotas.get(tenant)
            return q.storage_bytes, q.objects

        usage = UsageBook(usage_limits)
        usage.lookup = host.storage.kv_object_size
        if shared is not None:
            quotas.shared = shared
            usage.shared = shared
        metrics = Metrics(host, usage)
        await trio.to_thread.run_sync(_load_usage, host, usage, node)
        if shared is not None:
            for u in usage.tenants():
                u.publish()
        sup = host.supervisor
        sup.limits_for = quotas.limits_for
        sup.wrap_storage = usage.wrap
        sup.observer = metrics
        host.websockets.tenant_limit = lambda tenant: quotas.get(tenant).ws_connections
        state = cls(host, tenancy, quotas, usage, metrics, node, shared, generation)
        if node is not None:
            state.class_holds = ClassHolds(state)
        return state

    def close(self) -> None:
        if self.shared is not None:
            self.shared.close()

    # ---------------------------------------------------------------- many nodes

    def changed(self) -> None:
        """This node changed the configuration in system.db: tell the others."""
        if self.shared is not None:
            # Our own caches are current: skip the reload our own bump would cause.
            self.generation = self.shared.bump()

    def stale(self) -> bool:
        """Another node changed the configuration since this one loaded it (a read of
        one shared counter: the per-request cost)."""
        return self.shared is not None and self.shared.generation() != self.generation

    async def sync(self) -> None:
        """Reload tenants, tokens, quotas and classes from system.db (another node
        changed them); stop serving tenants deleted meanwhile."""
        assert self.shared is not None
        if self._reloading:
            return
        self._reloading = True
        try:
            generation = self.shared.generation()
            before = {r.name for r in self.tenancy.rows()}
            self.tenancy.reload()
            rows = {r.name: r for r in self.tenancy.rows()}
            for name, row in rows.items():
                if self.quotas.overrides(name) != row.quotas or name not in before:
                    self.quotas.set_overrides(name, row.quotas)
                    self.usage.update_limits(name)
            self.host.classes.reload()
            self.generation = generation
            for name in before - set(rows):
                self.quotas.forget(name)
                self.usage.forget(name)
                self.metrics.forget_tenant(name)
                self.host.classes.forget_tenant(name)
                self.host.websockets.close_tenant(name, CLOSE_GOING_AWAY, "the tenant was deleted")
                await self.host.supervisor.forget_tenant(name)
        finally:
            self._reloading = False


def _load_usage(host: Host, usage: UsageBook, node: NodeContext | None) -> None:
    owns = None if node is None else node.owns
    kv: dict[str, dict[str, tuple[int, int]]] = {}  # tenant -> class -> (objects, bytes)
    for row in host.system.classes():
        tenant_usage = usage.get(row.tenant)
        if row.storage == Backend.KV:
            # Two numbers per class, not one entry per object (quota_storage.py).
            if row.tenant not in kv:
                kv[row.tenant] = host.storage.kv_usage(row.tenant, owns)
            tenant_usage.load_class(row.name, *kv[row.tenant].get(row.name, (0, 0)))
            continue
        after: bytes | None = None
        while True:
            page = host.storage.list_objects(
                row.tenant, row.name, row.storage, after=after, limit=1000
            )
            for o in page.objects:
                if node is None or node.owns(o.object_id):
                    tenant_usage.load(row.name, o.object_id, o.bytes)
            if page.next_after is None:
                break
            after = page.next_after

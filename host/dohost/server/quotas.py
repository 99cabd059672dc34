"""Per-tenant quotas: their defaults, the admin's overrides, and the request rate limiter.

A tenant's effective quotas are the server's defaults (`Quotas`, set with
`dohost serve --quota KEY=VALUE` / `--cpu-ms`) overlaid with the overrides the admin
stored for it (`PATCH /v1/tenants/{name}`, kept as JSON in system.db). Storage bytes and
object counts are enforced by `quota_storage` (they need the tenant's usage); this module
holds the numbers, the per-tenant `EventLimits` (CPU ms per event) and the token buckets.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dohost.core.errors import Code, DohostError
from dohost.core.limits import EventLimits
from dohost.core.rate import TokenBucket

if TYPE_CHECKING:
    from dohost.server.shared_state import SharedState

GIB = 1024 * 1024 * 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class Quotas:
    """One tenant's limits. `burst` None means "one second's worth of requests"."""

    storage_bytes: int = 10 * GIB  # committed key+value bytes over all its objects
    objects: int = 1_000_000  # objects that have stored something
    requests_per_s: float = 1000.0  # sustained rate of authenticated requests
    burst: int | None = None  # requests allowed at once before the rate applies
    cpu_ms: int = 30_000  # CPU time per event
    module_bytes: int = 32 * MIB  # size of one deployed module
    ws_connections: int = 100_000  # open WebSocket connections over all its objects

    @property
    def effective_burst(self) -> int:
        if self.burst is not None:
            return self.burst
        return max(1, math.ceil(self.requests_per_s))

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["burst"] = self.effective_burst
        return out

    def merged(self, overrides: Mapping[str, Any]) -> Quotas:
        """These quotas with `overrides` applied; raises INVALID_ARGUMENT naming the
        first unknown key or bad value."""
        return dataclasses.replace(self, **check_overrides(overrides))


_INT_FIELDS = ("storage_bytes", "objects", "cpu_ms", "module_bytes", "ws_connections")


def check_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Validate quota overrides (JSON from an admin, or `--quota` values already parsed).
    A value of None removes the override (back to the default)."""
    if not isinstance(overrides, Mapping):
        raise DohostError(Code.INVALID_ARGUMENT, "quotas must be a JSON object")
    names = [f.name for f in dataclasses.fields(Quotas)]
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in names:
            raise DohostError(
                Code.INVALID_ARGUMENT,
                f"unknown quota {str(key)[:64]!r}; known: {', '.join(names)}",
            )
        if value is None:
            continue
        if key == "requests_per_s":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and math.isfinite(value) and value > 0
            what = "a number above 0"
        elif key == "burst":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            what = "an integer of at least 1"
        else:
            assert key in _INT_FIELDS
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            if key == "cpu_ms":
                ok = ok and value >= 1
            what = "an integer of at least 1" if key == "cpu_ms" else "an integer of at least 0"
        if not ok:
            raise DohostError(Code.INVALID_ARGUMENT, f"quota {key} must be {what}")
        out[key] = float(value) if key == "requests_per_s" else value
    return out


def parse_quota_option(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` from the command line, e.g. `objects=100` or `requests_per_s=2.5`."""
    key, sep, raw = text.partition("=")
    if not sep:
        raise DohostError(Code.INVALID_ARGUMENT, f"--quota {text!r}: use KEY=VALUE")
    key = key.strip()
    value: Any
    try:
        value = int(raw)
    except ValueError:
        try:
            value = float(raw)
        except ValueError:
            raise DohostError(
                Code.INVALID_ARGUMENT, f"--quota {text!r}: the value must be a number"
            ) from None
    check_overrides({key: value})
    return key, value


class QuotaBook:
    """Every tenant's effective quotas, event limits and rate limiter (loop thread)."""

    def __init__(self, defaults: Quotas, base_limits: EventLimits) -> None:
        self.defaults = defaults
        self._base_limits = base_limits
        self._overrides: dict[str, dict[str, Any]] = {}
        self._quotas: dict[str, Quotas] = {}
        self._limits: dict[str, EventLimits] = {}
        self._buckets: dict[str, TokenBucket] = {}
        # `--processes N`: one bucket per tenant shared by the nodes (server/state.py),
        # taken from a few tokens at a time (`lease_size`), so that a busy tenant does not
        # pay the shared bucket's lock on every request.
        self.shared: SharedState | None = None
        self._leased: dict[str, int] = {}

    def set_overrides(self, tenant: str, overrides: Mapping[str, Any]) -> Quotas:
        """Install a tenant's stored overrides (at start, and after the admin changes
        them). Returns the tenant's effective quotas."""
        clean = check_overrides(overrides)
        quotas = self.defaults.merged(clean)
        self._overrides[tenant] = clean
        self._quotas[tenant] = quotas
        # A new limits object makes the supervisor rebuild activations with it.
        self._limits[tenant] = dataclasses.replace(self._base_limits, cpu_ms=quotas.cpu_ms)
        self._buckets.pop(tenant, None)
        self._leased.pop(tenant, None)
        return quotas

    def overrides(self, tenant: str) -> dict[str, Any]:
        return dict(self._overrides.get(tenant, {}))

    def forget(self, tenant: str) -> None:
        self._overrides.pop(tenant, None)
        self._quotas.pop(tenant, None)
        self._limits.pop(tenant, None)
        self._buckets.pop(tenant, None)
        self._leased.pop(tenant, None)

    def get(self, tenant: str) -> Quotas:
        q = self._quotas.get(tenant)
        return q if q is not None else self.set_overrides(tenant, {})

    def limits_for(self, tenant: str, class_name: str) -> EventLimits:
        """Supervisor hook: the event limits of a tenant's objects."""
        lim = self._limits.get(tenant)
        if lim is None:
            self.set_overrides(tenant, {})
            lim = self._limits[tenant]
        return lim

    def check_rate(self, tenant: str, now: float) -> None:
        """Spend one request of the tenant's rate; raises RATE_LIMITED (with the wait
        in `retry_after`) when it has none left."""
        if self.shared is not None:
            leased = self._leased.get(tenant, 0)
            if leased > 0:
                self._leased[tenant] = leased - 1
                return
            q = self.get(tenant)
            got, wait_s = self.shared.take_tokens(
                tenant, q.requests_per_s, q.effective_burst, time.monotonic(), lease_size(q)
            )
            if got > 0:
                self._leased[tenant] = got - 1
                return
            if wait_s is not None:
                raise RateLimited(wait_s, q.requests_per_s)
        bucket = self._buckets.get(tenant)
        if bucket is None:
            q = self.get(tenant)
            bucket = self._buckets[tenant] = TokenBucket(q.requests_per_s, q.effective_burst, now)
        wait = bucket.take(now)
        if wait > 0.0:
            q = self.get(tenant)
            raise RateLimited(wait, q.requests_per_s)


def lease_size(q: Quotas) -> int:
    """Tokens a node takes from the shared bucket at once: 1 for a tenant whose rate is
    small (exact limits), up to 1/20 of its burst or 10 ms of its rate (what a node may
    hold unspent while another is refused)."""
    return max(1, int(min(q.effective_burst / 20, q.requests_per_s / 100, 64)))


class RateLimited(DohostError):
    """RATE_LIMITED with the seconds a client should wait (`Retry-After`)."""

    def __init__(self, wait_s: float, rate: float) -> None:
        super().__init__(
            Code.RATE_LIMITED,
            f"more than {rate:g} requests per second for this tenant; retry after "
            f"{math.ceil(wait_s)} s",
        )
        self.retry_after = max(1, math.ceil(wait_s))

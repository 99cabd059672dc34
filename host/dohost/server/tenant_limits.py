"""Limits per tenant on what per-object marks cannot stop (an attacker multiplies objects):

- **inline attempts**: an object whose inline attempt proves heavy goes to the workers
  (supervisor.py, the heavy mark), and so do the first events of its class's new
  objects for a while (the class mark), but a tenant may have many classes. So heavy
  proofs are also charged to the tenant: at `inline_heavy_burst` of them (refilled
  at `inline_heavy_per_s`), all the tenant's events skip the inline attempt for
  `HEAVY_FOR_S`, as one heavy object's do;
- **alarm deliveries** per second per tenant (server/alarms.py): a delivery over the
  rate is put back until a token is there, so handlers that re-arm for "now" on many
  objects cannot take more than their share of the loop and the workers;
- **log bytes** per second per tenant: lines past the rate are dropped and counted
  (`dohost_log_dropped_bytes`), so one object cannot write 100 MiB/s into the host's log.

The inline and alarm buckets run on the loop's (trio) clock; the log bucket is taken on
worker threads too, so it has a lock and reads `log_clock` (monotonic; injectable).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from dohost.core.rate import TokenBucket

# Each heavy inline attempt holds the loop for milliseconds: two, then the tenant goes to
# the workers (one more every 10 s after). A tenant with a heavy object loses little:
# its light objects' events pay a worker hand-off (~0.1 ms) for a while.
DEFAULT_INLINE_HEAVY_BURST = 2
DEFAULT_INLINE_HEAVY_PER_S = 0.1
DEFAULT_ALARMS_PER_S = 1000.0
DEFAULT_LOG_BYTES_PER_S = 1024 * 1024
DEFAULT_LOG_BURST_BYTES = 4 * 1024 * 1024
_MAX_TENANTS = 100_000  # buckets kept (forgotten all at once beyond: they only refill)


class TenantLimits:
    def __init__(
        self,
        *,
        inline_heavy_burst: int = DEFAULT_INLINE_HEAVY_BURST,
        inline_heavy_per_s: float = DEFAULT_INLINE_HEAVY_PER_S,
        alarms_per_s: float = DEFAULT_ALARMS_PER_S,
        log_bytes_per_s: int = DEFAULT_LOG_BYTES_PER_S,
        log_burst_bytes: int = DEFAULT_LOG_BURST_BYTES,
    ) -> None:
        self.inline_heavy_burst = inline_heavy_burst
        self.inline_heavy_per_s = inline_heavy_per_s
        self.alarms_per_s = alarms_per_s
        self.log_bytes_per_s = log_bytes_per_s
        self.log_burst_bytes = log_burst_bytes
        self.log_clock: Callable[[], float] = time.monotonic
        self._inline: dict[str, TokenBucket] = {}
        self._alarms: dict[str, TokenBucket] = {}
        self._logs: dict[str, TokenBucket] = {}
        self._log_lock = threading.Lock()
        # Counters (metrics): tenants' inline fallbacks, deferred alarms, dropped log bytes.
        self.tenant_heavy_marks: dict[str, int] = {}
        self.alarms_deferred: dict[str, int] = {}
        self.log_dropped_bytes: dict[str, int] = {}

    @staticmethod
    def _bucket(
        buckets: dict[str, TokenBucket], tenant: str, rate: float, burst: int, now: float
    ) -> TokenBucket:
        b = buckets.get(tenant)
        if b is None:
            if len(buckets) >= _MAX_TENANTS:
                buckets.clear()
            b = buckets[tenant] = TokenBucket(rate, burst, now)
        return b

    def inline_heavy(self, tenant: str, now: float) -> bool:
        """An inline attempt of `tenant` proved heavy (loop thread). True when the
        tenant is past its budget: its events should skip the inline attempt a while."""
        b = self._bucket(
            self._inline, tenant, self.inline_heavy_per_s, self.inline_heavy_burst, now
        )
        if b.take(now) == 0.0 and b.tokens >= 1.0:
            return False  # (the budget's last token marks the tenant at once)
        self.tenant_heavy_marks[tenant] = self.tenant_heavy_marks.get(tenant, 0) + 1
        return True

    def alarm_wait(self, tenant: str, now: float) -> float:
        """0.0 if an alarm of `tenant` may be delivered now (a token is spent), else the
        seconds until one may (loop thread)."""
        b = self._bucket(self._alarms, tenant, self.alarms_per_s, int(self.alarms_per_s), now)
        wait = b.take(now)
        if wait > 0.0:
            self.alarms_deferred[tenant] = self.alarms_deferred.get(tenant, 0) + 1
        return wait

    def log_allow(self, tenant: str, nbytes: int) -> bool:
        """Whether `nbytes` more of `tenant`'s log may be written (any thread), asked
        before the bytes are copied out of guest memory; a refused write is dropped
        whole and counted."""
        nbytes = max(1, nbytes)
        with self._log_lock:
            now = self.log_clock()
            b = self._bucket(self._logs, tenant, self.log_bytes_per_s, self.log_burst_bytes, now)
            if b.take_n(nbytes, now):
                return True
            self.log_dropped_bytes[tenant] = self.log_dropped_bytes.get(tenant, 0) + nbytes
            return False

    def log_dropped(self, tenant: str, nbytes: int) -> None:
        """Count `nbytes` of `tenant`'s log dropped for another reason (an event's line
        cap; runtime/event.py)."""
        with self._log_lock:
            self.log_dropped_bytes[tenant] = self.log_dropped_bytes.get(tenant, 0) + nbytes

    def log_refund(self, tenant: str, kept: int, dropped: int) -> None:
        """An inline attempt that was abandoned wrote none of its log: give back the
        `kept` bytes it was allowed and uncount the `dropped` ones (its rerun on a worker
        asks again), so a rerun costs the tenant nothing twice."""
        with self._log_lock:
            b = self._logs.get(tenant)
            if b is not None and kept > 0:
                b.tokens = min(b.capacity, b.tokens + kept)
            if dropped > 0:
                left = self.log_dropped_bytes.get(tenant, 0) - dropped
                self.log_dropped_bytes[tenant] = max(0, left)

"""Token buckets: a rate with a burst, on a clock the caller reads (pure logic)."""

from __future__ import annotations


class TokenBucket:
    """Requests per second with a burst: `take(now)` spends one token or says how long
    until one is available. Time comes from the caller (trio's clock), so tests can
    drive it."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: int, now: float) -> None:
        self.rate = rate
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self.stamp = now

    def take(self, now: float) -> float:
        """0.0 if the request may go ahead, else the seconds until it could."""
        tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate

    def take_n(self, n: int, now: float) -> bool:
        """Spend `n` tokens (bytes, say) if that many are there; else spend none."""
        tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= n:
            self.tokens = tokens - n
            return True
        self.tokens = tokens
        return False

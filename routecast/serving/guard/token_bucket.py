"""A token bucket: ``rate`` tokens per second, holding at most ``burst``.

Non-blocking: :meth:`take` either takes the tokens or says how long until they would be there,
which the server answers as a 429 with ``retry-after`` (a waiting request would still hold a
connection and memory; the client is better placed to wait).
"""

from __future__ import annotations

import time


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None, *, clock=time.monotonic):
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self.clock = clock
        self.tokens = self.burst
        self.updated = clock()

    def take(self, n: float = 1.0) -> float:
        """Take ``n`` tokens and return 0.0, or take none and return the seconds until ``n`` are there.
        A request larger than the burst is admitted when the bucket is full (it drains it below 0),
        so a large but allowed request is slowed, never refused forever."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= n or self.tokens >= self.burst:
            self.tokens -= n
            return 0.0
        return (min(n, self.burst) - self.tokens) / self.rate

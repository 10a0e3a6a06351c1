"""A token bucket: ``rate`` tokens per second, holding at most ``burst``.

Non-blocking: :meth:`take` either takes the tokens or says how long until they would be there,
which the server answers as a 429 with ``retry-after`` (a waiting request would still hold a
connection and memory; the client is better placed to wait).

:func:`refill_and_take` is the arithmetic alone, so the in-memory bucket and the SQLite store
(routecast.serving.store) apply the same rule to state they keep in different places; the Redis
store runs the same steps in a Lua script (routecast/serving/store/redis_store.py).
"""

from __future__ import annotations

import time


def default_burst(rate: float, burst: float | None) -> float:
    return float(burst if burst is not None else max(1.0, rate))


def refill_and_take(tokens: float, updated: float, now: float, rate: float, burst: float,
                    n: float) -> tuple[float, float]:
    """``(tokens left, wait)`` after asking for ``n`` tokens at ``now``: wait is 0.0 when they
    were taken, else the seconds until ``n`` are there (and nothing is taken).
    A request larger than the burst is admitted when the bucket is full (it drains it below 0),
    so a large but allowed request is slowed, never refused forever."""
    tokens = min(burst, tokens + max(0.0, now - updated) * rate)
    if tokens >= n or tokens >= burst:
        return tokens - n, 0.0
    return tokens, (min(n, burst) - tokens) / rate


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None, *, clock=time.monotonic):
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.burst = default_burst(rate, burst)
        self.clock = clock
        self.tokens = self.burst
        self.updated = clock()

    def take(self, n: float = 1.0) -> float:
        """Take ``n`` tokens and return 0.0, or take none and return the seconds until ``n`` are there."""
        now = self.clock()
        self.tokens, wait = refill_and_take(self.tokens, self.updated, now, self.rate, self.burst, n)
        self.updated = now
        return wait

"""The limits store of one process: token buckets and counters in dictionaries.

The default of a single-worker server. With several workers each would have its own limits
(a key limited to R requests/s could make N x R), so ``routecast serve --workers N`` uses a
shared store instead (routecast.serving.store.open_store).
"""

from __future__ import annotations

import time

from routecast.serving.guard.token_bucket import TokenBucket
from routecast.serving.store.base import LimitStore

#: counters added between two sweeps of expired ones (bounds memory without a timer)
_SWEEP_EVERY = 1024


class MemoryStore(LimitStore):
    location = "memory"

    def __init__(self, *, clock=time.monotonic):
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._counters: dict[str, list] = {}  # name -> [value, expires at or None]
        self._adds = 0

    def take(self, name: str, rate: float, burst: float, n: float) -> float:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = TokenBucket(rate, burst, clock=self.clock)
        return bucket.take(n)

    def add(self, name: str, amount: float, ttl_s: float | None) -> float:
        now = self.clock()
        self._adds += 1
        if self._adds % _SWEEP_EVERY == 0:
            self._counters = {k: v for k, v in self._counters.items() if v[1] is None or v[1] > now}
        entry = self._counters.get(name)
        if entry is None or (entry[1] is not None and entry[1] <= now):
            entry = self._counters[name] = [0.0, None if ttl_s is None else now + ttl_s]
        entry[0] += float(amount)
        return entry[0]

    def get(self, name: str) -> float:
        entry = self._counters.get(name)
        if entry is None or (entry[1] is not None and entry[1] <= self.clock()):
            return 0.0
        return entry[0]

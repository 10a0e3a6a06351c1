"""What a limits store does: the state of per-key rate limits and spend budgets, kept where
every server process that serves the same keys can reach it.

Two operations cover both limits, each atomic in the store (so two workers cannot both take the
last token or both miss each other's spend):

* :meth:`LimitStore.take` - a token bucket (routecast.serving.guard.token_bucket's rule):
  take ``n`` tokens or say how long until they are there;
* :meth:`LimitStore.add` / :meth:`LimitStore.get` - a number that grows (USD spent in a budget
  window) and disappears ``ttl_s`` after it was started.

Backends: :class:`~routecast.serving.store.memory.MemoryStore` (one process),
:class:`~routecast.serving.store.sqlite_store.SqliteStore` (the processes of one host, WAL),
:class:`~routecast.serving.store.redis_store.RedisStore` (several hosts).
"""

from __future__ import annotations

from routecast.errors import RoutecastError


class StoreUnavailable(RoutecastError):
    """The shared store did not answer (Redis down or unreachable). The server answers 503 and
    tries again on the next request, so it recovers by itself when the store is back."""


class LimitStore:
    """Interface of a limits store; every method may raise :class:`StoreUnavailable`."""

    #: where the state lives, without credentials (for logs and messages)
    location: str = "memory"

    def take(self, name: str, rate: float, burst: float, n: float) -> float:
        """Take ``n`` tokens from bucket ``name``: 0.0 when taken, else the seconds to wait."""
        raise NotImplementedError

    def add(self, name: str, amount: float, ttl_s: float | None) -> float:
        """Add ``amount`` to counter ``name`` (created at 0 with a lifetime of ``ttl_s``, None:
        forever) and return the new total."""
        raise NotImplementedError

    def get(self, name: str) -> float:
        """The counter's value (0.0 when it does not exist or has expired)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (the state stays where it is)."""

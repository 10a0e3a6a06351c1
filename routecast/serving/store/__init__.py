"""Where per-key rate limits and spend budgets live (see :mod:`routecast.serving.store.base`).

``store`` (``routecast serve --store``) is one of:

* ``memory`` - this process only (the default of a one-worker server);
* ``sqlite:///PATH`` - a SQLite file (WAL) that every worker of this host opens (the default of
  ``--workers N``: a file in the server's temporary folder);
* ``redis://HOST:PORT/DB`` (``rediss://`` for TLS) - Redis, shared by the servers of several hosts.
"""

from __future__ import annotations

from pathlib import Path

from routecast.errors import ConfigError
from routecast.serving.store.base import LimitStore, StoreUnavailable

__all__ = ["LimitStore", "StoreUnavailable", "open_store", "check_store_spec"]


def check_store_spec(spec: str, workers: int = 1) -> str:
    """``spec`` when it names a store these workers can share; a ConfigError otherwise."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"store must be 'memory', 'sqlite:///PATH' or 'redis://HOST:PORT/DB', got {spec!r}")
    if spec == "memory":
        if workers > 1:
            raise ConfigError(f"store 'memory' with workers={workers} would give every worker its own rate "
                              "limits and budgets; use sqlite:///PATH or redis://HOST:PORT/DB")
        return spec
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return spec
    if spec.startswith("sqlite://") and spec[len("sqlite://"):]:
        return spec
    raise ConfigError(f"store must be 'memory', 'sqlite:///PATH' or 'redis://HOST:PORT/DB', got {spec!r}")


def open_store(spec: "str | LimitStore | None", *, workers: int = 1) -> LimitStore:
    """The store ``spec`` names (None: memory), opened and, for Redis, reached once."""
    if isinstance(spec, LimitStore):
        return spec
    spec = check_store_spec("memory" if spec is None else spec, workers)
    if spec == "memory":
        from routecast.serving.store.memory import MemoryStore

        return MemoryStore()
    if spec.startswith("sqlite://"):
        from routecast.serving.store.sqlite_store import SqliteStore

        return SqliteStore(Path(spec[len("sqlite://"):]))
    from routecast.serving.store.redis_store import RedisStore

    return RedisStore(spec).check()

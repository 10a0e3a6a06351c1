"""The limits store of one host: a SQLite file in WAL mode that every worker process opens.

Each operation is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken before reading,
so two workers never both read the same token count); WAL lets readers go on meanwhile, and
``busy_timeout`` makes a worker wait its turn instead of failing. A transaction on this file
takes tens of microseconds, small next to a request. The clock is the wall clock, which every
process of the host shares.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from routecast.errors import ConfigError
from routecast.serving.guard.token_bucket import refill_and_take
from routecast.serving.store.base import LimitStore, StoreUnavailable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, tokens REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value REAL NOT NULL, expires REAL);
"""


class SqliteStore(LimitStore):
    def __init__(self, path: str | os.PathLike, *, clock=time.time, busy_timeout_s: float = 5.0):
        self.path = Path(path)
        self.location = f"sqlite:///{self.path}"
        self.clock = clock
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"store {self.location}: cannot open the limits database ({exc})") from None

    def _transaction(self, work):
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(self._conn)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                return result
            except sqlite3.OperationalError as exc:  # locked past busy_timeout, disk gone
                raise StoreUnavailable(f"store {self.location} did not answer ({exc})") from None

    def take(self, name: str, rate: float, burst: float, n: float) -> float:
        def work(conn):
            now = self.clock()
            row = conn.execute("SELECT tokens, updated FROM buckets WHERE name = ?", (name,)).fetchone()
            tokens, updated = row if row is not None else (burst, now)
            tokens, wait = refill_and_take(tokens, updated, now, rate, burst, n)
            conn.execute("INSERT INTO buckets (name, tokens, updated) VALUES (?, ?, ?) ON CONFLICT(name) "
                         "DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated", (name, tokens, now))
            return wait

        return self._transaction(work)

    def add(self, name: str, amount: float, ttl_s: float | None) -> float:
        def work(conn):
            now = self.clock()
            conn.execute("DELETE FROM counters WHERE expires IS NOT NULL AND expires <= ?", (now,))
            conn.execute("INSERT INTO counters (name, value, expires) VALUES (?, ?, ?) ON CONFLICT(name) "
                         "DO UPDATE SET value = value + excluded.value",
                         (name, float(amount), None if ttl_s is None else now + ttl_s))
            return conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]

        return self._transaction(work)

    def get(self, name: str) -> float:
        with self._lock:
            try:
                row = self._conn.execute("SELECT value FROM counters WHERE name = ? AND "
                                         "(expires IS NULL OR expires > ?)", (name, self.clock())).fetchone()
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"store {self.location} did not answer ({exc})") from None
        return 0.0 if row is None else float(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

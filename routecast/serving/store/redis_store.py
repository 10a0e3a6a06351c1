"""The limits store of several hosts: Redis (``redis://HOST:PORT/DB``, the ``redis`` client).

Both operations are Lua scripts, which Redis runs atomically: the token bucket reads, refills
and writes its hash in one step, on Redis's own clock (``TIME``), so hosts whose clocks differ a
little still share one rate; a spend counter is ``INCRBYFLOAT`` with an expiry set when it is
created. Bucket keys expire once they would be full again, so idle API keys cost no memory.

Failure: every call has a short socket timeout and no retries; a call that fails raises
:class:`~routecast.serving.store.base.StoreUnavailable` (the server answers 503). The calls run
on the worker's event loop (they take well under a millisecond on a LAN), so after a failure a
circuit breaker (routecast.serving.guard.breaker) answers StoreUnavailable at once for
``cooldown_s`` instead of letting every request wait out a timeout, then one call probes and
reconnects: a worker recovers by itself within ``cooldown_s`` of Redis coming back. :func:`RedisStore.check`
is the start-up probe (``routecast serve`` refuses to start when Redis does not answer).
"""

from __future__ import annotations

from routecast.errors import ConfigError
from routecast.serving.backends import redact_url
from routecast.serving.guard.breaker import CircuitBreaker
from routecast.serving.store.base import LimitStore, StoreUnavailable

#: every key this store writes starts with this
PREFIX = "routecast:"

_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or burst
local updated = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= n or tokens >= burst then
  tokens = tokens - n
else
  wait = (math.min(n, burst) - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'updated', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(((burst - tokens) / rate + 1) * 1000))
return string.format('%.17g', wait)
"""

_ADD = """
local value = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
local ttl_ms = tonumber(ARGV[2])
if ttl_ms > 0 and redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
end
return value
"""


class RedisStore(LimitStore):
    def __init__(self, url: str, *, timeout_s: float = 0.5, cooldown_s: float = 1.0):
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise ConfigError("store redis://... needs the redis client: pip install 'routecast[redis]'") from None
        self.location = redact_url(url)
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        try:
            self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                                retry=Retry(NoBackoff(), 0), decode_responses=True)
        except ValueError as exc:
            raise ConfigError(f"store {self.location}: not a Redis URL ({exc})") from None
        self._breaker = CircuitBreaker(failures=1, cooldown_s=cooldown_s)
        self._take = self._client.register_script(_TAKE)
        self._add = self._client.register_script(_ADD)

    def _call(self, work):
        if not self._breaker.allow():
            raise StoreUnavailable(f"store {self.location} did not answer (cooling down after a failure)")
        try:
            result = work()
        except self._errors as exc:
            self._breaker.record_failure()
            raise StoreUnavailable(f"store {self.location} did not answer ({type(exc).__name__})") from None
        except BaseException:
            self._breaker.release_probe()
            raise
        self._breaker.record_success()
        return result

    def check(self) -> "RedisStore":
        """Ping Redis once; a ConfigError naming the store when it does not answer."""
        try:
            self._client.ping()
        except self._errors as exc:
            raise ConfigError(f"store {self.location} is unreachable ({type(exc).__name__}: {exc}); start Redis "
                              "there or choose another store") from None
        return self

    def take(self, name: str, rate: float, burst: float, n: float) -> float:
        return float(self._call(lambda: self._take(keys=[PREFIX + name], args=[rate, burst, n])))

    def add(self, name: str, amount: float, ttl_s: float | None) -> float:
        ttl_ms = 0 if ttl_s is None else max(1, int(ttl_s * 1000))
        return float(self._call(lambda: self._add(keys=[PREFIX + name], args=[repr(float(amount)), ttl_ms])))

    def get(self, name: str) -> float:
        value = self._call(lambda: self._client.get(PREFIX + name))
        return 0.0 if value is None else float(value)

    def close(self) -> None:
        self._client.close()

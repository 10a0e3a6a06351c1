"""The limits stores on their own: one rule (the token bucket, expiring counters) in memory, in a
SQLite file two processes open, and in a real redis-server; and what the server does when the
shared store stops answering (503, OpenAI's error shape) or is wrong at start (one clear error)."""

from __future__ import annotations

import multiprocessing

import pytest

from routecast.errors import ConfigError
from routecast.serving.api_error import ApiError
from routecast.serving.guard.key_limits import KeyLimits
from routecast.serving.store import LimitStore, StoreUnavailable, check_store_spec, open_store
from routecast.serving.store.memory import MemoryStore
from routecast.serving.store.sqlite_store import SqliteStore
from tests.scale_server.processes import REDIS_MISSING, RedisServer

needs_redis = pytest.mark.skipif(REDIS_MISSING is not None, reason=str(REDIS_MISSING))


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self):
        return self.now


def _bucket_and_counter_rule(store: LimitStore, clock: Clock) -> None:
    assert [store.take("b", 2.0, 4.0, 1) for _ in range(4)] == [0.0] * 4
    assert store.take("b", 2.0, 4.0, 1) == pytest.approx(0.5)
    clock.now += 0.5
    assert store.take("b", 2.0, 4.0, 1) == 0.0
    assert store.add("c", 0.25, 10.0) == pytest.approx(0.25)
    assert store.add("c", 0.5, 10.0) == pytest.approx(0.75)
    assert store.get("c") == pytest.approx(0.75) and store.get("never") == 0.0
    clock.now += 10.5  # the counter's lifetime is over: it starts again from 0
    assert store.get("c") == 0.0
    assert store.add("c", 0.1, 10.0) == pytest.approx(0.1)


def test_memory_and_sqlite_stores_apply_the_same_rule(tmp_path):
    for make in (lambda c: MemoryStore(clock=c), lambda c: SqliteStore(tmp_path / "limits.sqlite", clock=c)):
        clock = Clock()
        _bucket_and_counter_rule(make(clock), clock)
        (tmp_path / "limits.sqlite").unlink(missing_ok=True)


def test_two_sqlite_stores_on_one_file_share_buckets_and_spend(tmp_path):
    clock = Clock()
    a, b = SqliteStore(tmp_path / "l.sqlite", clock=clock), SqliteStore(tmp_path / "l.sqlite", clock=clock)
    limits_a = KeyLimits(rps=1, budget_usd=0.01, budget_period_s=60, clock=clock, store=a)
    limits_b = KeyLimits(rps=1, budget_usd=0.01, budget_period_s=60, clock=clock, store=b)
    limits_a.admit_request("k")
    with pytest.raises(ApiError) as err:
        limits_b.admit_request("k")  # the token went through a; b sees the same bucket
    assert err.value.status == 429 and err.value.code == "rate_limit_requests"
    limits_a.charge("k", 0.012)
    assert limits_b.spent("k") == pytest.approx(0.012)
    with pytest.raises(ApiError) as err:
        limits_b.check_budget("k")
    assert err.value.code == "budget_exceeded" and 1 <= int(err.value.headers["retry-after"]) <= 60
    clock.now += 60  # the next aligned window
    limits_b.check_budget("k")


def _take_many(path: str, n: int, queue) -> None:
    store = SqliteStore(path)
    queue.put(sum(store.take("shared", 0.001, 100.0, 1) == 0.0 for _ in range(n)))


def test_two_processes_never_take_the_same_token(tmp_path):
    """100 tokens, no refill to speak of, 2 processes asking 80 times each: exactly 100 admitted."""
    path = str(tmp_path / "l.sqlite")
    SqliteStore(path)  # create the schema before the race
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_take_many, args=(path, 80, queue)) for _ in range(2)]
    for w in workers:
        w.start()
    admitted = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert sum(admitted) == 100 and all(a >= 20 for a in admitted)


def test_store_specs_are_checked():
    assert check_store_spec("memory") == "memory"
    assert check_store_spec("sqlite:///tmp/x.sqlite", workers=4) == "sqlite:///tmp/x.sqlite"
    with pytest.raises(ConfigError, match="every worker its own"):
        check_store_spec("memory", workers=2)
    for bad in ("", "postgres://x", "sqlite://", 3):
        with pytest.raises(ConfigError, match="store must be"):
            check_store_spec(bad)


def test_a_store_that_stops_answering_gives_503_and_loses_no_paid_answer():
    class DownStore(MemoryStore):
        location = "redis://127.0.0.1:1/0"

        def take(self, *args):
            raise StoreUnavailable("down")

        get = add = take

    limits = KeyLimits(rps=5, budget_usd=1.0, store=DownStore())
    with pytest.raises(ApiError) as err:
        limits.admit_request("k")
    assert err.value.status == 503 and err.value.code == "store_unavailable" and err.value.type == "server_error"
    assert err.value.headers["retry-after"] == "1"
    with pytest.raises(ApiError, match="not answering"):
        limits.check_budget("k")
    limits.charge("k", 0.5)  # after a backend answered: logged, not raised
    KeyLimits(store=DownStore()).admit_request("k")  # no limits configured: the store is never asked


@needs_redis
def test_unreachable_redis_at_start_is_one_clear_config_error():
    from tests._support.fake_backend import free_port

    port = free_port()
    with pytest.raises(ConfigError) as err:
        open_store(f"redis://:s3cret@127.0.0.1:{port}/0")
    message = str(err.value)
    assert f"redis://127.0.0.1:{port}/0 is unreachable" in message and "s3cret" not in message
    assert "\n" not in message


@needs_redis
def test_redis_store_rule_outage_and_recovery(tmp_path):
    from routecast.serving.store.redis_store import RedisStore

    with RedisServer(tmp_path) as redis_server:
        store = open_store(redis_server.url)
        assert isinstance(store, RedisStore)
        other = RedisStore(redis_server.url)  # another host's view of the same Redis
        assert [store.take("b", 2.0, 4.0, 1) for _ in range(4)] == [0.0] * 4
        assert other.take("b", 2.0, 4.0, 1) == pytest.approx(0.5, abs=0.05)  # shared bucket, Redis's clock
        assert store.add("c", 0.25, 60.0) == pytest.approx(0.25)
        assert other.add("c", 0.5, 60.0) == pytest.approx(0.75) and store.get("c") == pytest.approx(0.75)
        limits = KeyLimits(rps=100, store=store)
        redis_server.stop()
        with pytest.raises(ApiError) as err:
            limits.admit_request("k")
        assert err.value.status == 503 and err.value.code == "store_unavailable"
        with pytest.raises(ApiError, match="not answering"):  # the breaker answers without waiting
            limits.admit_request("k")
        redis_server.start()  # same port, empty (no persistence)
        assert _recovers(lambda: limits.admit_request("k"), within_s=10)  # a probe after the cooldown reconnects
        assert store.get("c") == 0.0


def _recovers(call, within_s: float) -> bool:
    import time

    deadline = time.monotonic() + within_s
    while True:
        try:
            call()
            return True
        except ApiError as exc:
            if exc.status != 503 or time.monotonic() > deadline:
                return False
            time.sleep(0.1)


@pytest.mark.parametrize("flags, message", [
    (["--store", "postgres://db/0"], "store must be 'memory', 'sqlite:///PATH' or 'redis://HOST:PORT/DB'"),
    (["--workers", "2", "--store", "memory"], "would give every worker its own rate limits"),
])
def test_serve_usage_errors_about_the_store_are_one_line_and_exit_2(ckpt, capsys, flags, message):
    from routecast.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["serve", str(ckpt), "--port", "1", *flags])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and message in err and len(err.splitlines()) == 1

"""Two replicas (one with 2 workers) behind no balancer, sharing a real redis-server started here:
one rate limit and one spend budget across both, 503 in OpenAI's shape while Redis is down and
recovery when it is back; and a Redis that does not answer at start stops ``serve`` with exit 2."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import httpx
import pytest

from tests._support.fake_backend import FakeBackend, free_port
from tests.scale_server.processes import CHAT, REDIS_MISSING, ROUTECAST, RedisServer, ServeProcess, hammer_route

RATE, SECONDS = 2.0, 4.0

pytestmark = pytest.mark.skipif(REDIS_MISSING is not None, reason=str(REDIS_MISSING))


def _statuses_on(urls: list[str]) -> tuple[list[int], float]:
    """Statuses of /v1/route hammered on every replica at once (2 client threads each), and the
    longest run's seconds."""
    runs: list[tuple[list[int], float]] = []
    threads = [threading.Thread(target=lambda u=u: runs.append(hammer_route(u, SECONDS, 2))) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECONDS + 90)
    return [s for statuses, _ in runs for s in statuses], max(elapsed for _, elapsed in runs)


def _first_success(url: str, within_s: float) -> httpx.Response:
    deadline = time.monotonic() + within_s
    while True:
        answer = httpx.post(url + "/v1/route", json={"prompt": "hello"}, timeout=20)
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def test_replicas_share_limits_and_budgets_through_redis_and_survive_an_outage(ckpt, tmp_path):
    with RedisServer(tmp_path) as redis_server, FakeBackend("B") as backend:
        backends = tmp_path / "backends.json"
        backends.write_text(json.dumps({"backends": {m: {"base_url": backend.base_url, "timeout": 5}
                                                     for m in ("small", "medium", "large")}}))
        args = ["--store", redis_server.url, "--rate-limit-rps", str(RATE), "--spend-budget-usd", "0.015",
                "--backends", str(backends), "--lam", "0"]
        with ServeProcess(ckpt, args, tmp_path / "a", workers=2) as a, ServeProcess(ckpt, args, tmp_path / "b") as b:
            statuses, elapsed = _statuses_on([a.url, b.url])
            admitted = statuses.count(200)
            allowed = RATE + RATE * elapsed  # a full bucket (burst = rate) plus the refill
            time.sleep(1.5)  # the bucket refills before the budget part
            chats = [httpx.post(url + "/v1/chat/completions", json=CHAT, timeout=20) for url in (a.url, a.url)]
            time.sleep(1.0)
            refused = httpx.post(b.url + "/v1/chat/completions", json=CHAT, timeout=20)
            redis_server.stop()
            down = httpx.post(b.url + "/v1/route", json={"prompt": "hello"}, timeout=20)
            redis_server.start()  # same port, empty: limits start afresh
            back = _first_success(b.url, within_s=15)  # each worker probes again after its 1 s cooldown
            back_a = _first_success(a.url, within_s=15)
    print(f"offered {len(statuses)} requests in {elapsed:.1f} s to 2 replicas (3 workers), admitted {admitted} "
          f"(one bucket: {allowed:.1f})")
    assert len(statuses) > 2.5 * allowed, "the clients could not offer enough load to tell shared limits apart"
    assert set(statuses) <= {200, 429} and 0.6 * allowed - 1 <= admitted <= 1.25 * allowed + 1, (admitted, allowed)
    assert [r.status_code for r in chats] == [200, 200]
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
    assert down.status_code == 503 and down.headers["retry-after"] == "1"
    error = down.json()["error"]
    assert error["code"] == "store_unavailable" and error["type"] == "server_error" and "message" in error
    assert back.status_code == 200 and back_a.status_code == 200


def test_serve_refuses_to_start_when_redis_does_not_answer(ckpt):
    port = free_port()
    result = subprocess.run([ROUTECAST, "serve", str(ckpt), "--port", str(free_port()), "--workers", "2",
                             "--store", f"redis://127.0.0.1:{port}/0", "--rate-limit-rps", "5"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"redis://127.0.0.1:{port}/0 is unreachable" in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout

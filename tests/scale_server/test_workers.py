"""``routecast serve --workers 2`` for real (uvicorn worker processes on one loopback port):
one rate limit across both workers, ``/metrics`` summed over them, every decision of both in the
one decision log, a spend budget shared by two replicas through one SQLite store, and the
decision log's WAL file appended by two processes at once."""

from __future__ import annotations

import json
import multiprocessing
import time

import httpx

from tests._support.fake_backend import FakeBackend
from tests.scale_server.processes import CHAT, ServeProcess, hammer_route, metric_total, worker_request_counts

RATE, SECONDS, THREADS = 2.0, 4.0, 4


def test_two_workers_share_one_rate_limit_sum_their_metrics_and_log_every_decision(ckpt, tmp_path):
    log_path = tmp_path / "decisions.sqlite"
    args = ["--rate-limit-rps", str(RATE), "--decision-log", str(log_path)]
    with ServeProcess(ckpt, args, tmp_path / "server", workers=2) as server:  # default store: a SQLite file
        statuses, elapsed = hammer_route(server.url, SECONDS, THREADS)
        admitted = statuses.count(200)
        allowed = RATE + RATE * elapsed  # a full bucket (burst = rate) plus the refill
        per_worker = worker_request_counts(tmp_path / "server", "/v1/route")
        logged_by = worker_request_counts(tmp_path / "server", "/v1/route", status="200")
        time.sleep(1.0)  # /metrics is rate limited like every keyed path: let the bucket refill
        scrape = httpx.get(server.url + "/metrics", timeout=10)
        assert scrape.status_code == 200, scrape.text
        page = scrape.text
    assert server.process.returncode == 0
    assert set(statuses) <= {200, 429}
    print(f"offered {len(statuses)} requests in {elapsed:.1f} s, admitted {admitted} (one bucket: {allowed:.1f}), "
          f"per worker {sorted(per_worker.values())}")
    assert len(statuses) > 2.5 * allowed, "the clients could not offer enough load to tell shared limits apart"
    assert 0.6 * allowed - 1 <= admitted <= 1.2 * allowed + 1, (admitted, allowed)  # not ~2x: one bucket
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), per_worker
    assert metric_total(page, "routecast_requests_total", endpoint="/v1/route") == len(statuses)
    assert sum(per_worker.values()) == len(statuses)
    assert metric_total(page, "routecast_requests_total", endpoint="/v1/route", status="429") == statuses.count(429)
    from routecast.data.decision_log import DecisionLog

    with DecisionLog(log_path) as log:
        records = list(log.records())
    assert len(logged_by) == 2 and all(n > 0 for n in logged_by.values()), logged_by  # both workers logged
    assert len(records) == admitted and len({r["request_id"] for r in records}) == admitted
    assert not list((tmp_path / "server").glob("routecast-serve-*")), "serve left its temporary folder behind"


def test_a_budget_spent_on_one_replica_is_refused_on_the_other(ckpt, tmp_path):
    store = f"sqlite:///{tmp_path / 'limits.sqlite'}"
    with FakeBackend("B") as backend:
        backends = tmp_path / "backends.json"
        backends.write_text(json.dumps({"backends": {m: {"base_url": backend.base_url, "timeout": 5}
                                                     for m in ("small", "medium", "large")}}))
        args = ["--store", store, "--spend-budget-usd", "0.015", "--backends", str(backends), "--lam", "0"]
        with ServeProcess(ckpt, args, tmp_path / "a", workers=2) as a, ServeProcess(ckpt, args, tmp_path / "b") as b:
            first = [httpx.post(a.url + "/v1/chat/completions", json=CHAT, timeout=20) for _ in range(2)]
            refused = httpx.post(b.url + "/v1/chat/completions", json=CHAT, timeout=20)
            again = httpx.post(a.url + "/v1/chat/completions", json=CHAT, timeout=20)
    assert [r.status_code for r in first] == [200, 200]  # 'large' costs 0.01: 0.02 > 0.015 after two
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
    assert again.status_code == 429 and backend.counts["large"] == 2


def _append(path: str, worker: int, n: int) -> None:
    from routecast.data.decision_log import DecisionLog

    with DecisionLog(path) as log:
        for i in range(n):
            log.append({"request_id": f"w{worker}-{i}", "text": f"prompt {i}", "models": ["a", "b"],
                        "ranking": ["a", "b"], "predicted": {"a": 0.5, "b": 0.4}, "chosen": "a"})


def test_two_processes_append_to_one_decision_log(tmp_path):
    path = str(tmp_path / "decisions.sqlite")
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_append, args=(path, w, 150)) for w in range(2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=120)
    assert [w.exitcode for w in writers] == [0, 0]
    from routecast.data.decision_log import DecisionLog

    with DecisionLog(path) as log:
        ids = {r["request_id"] for r in log.records()}
    assert ids == {f"w{w}-{i}" for w in range(2) for i in range(150)}

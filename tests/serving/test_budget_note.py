"""A budget past the cost at which the best quality is already reached routes like that smaller
budget, and the answer says why (issue 25, item 9): ``x-routecast-budget-note``."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from routecast.serving.app import create_app
from routecast.serving.runtime import Runtime
from tests._support.serving import MODELS, backends_for, fitted_knn, prompts_of, synthetic_log


@pytest.fixture(scope="module")
def client(backend):
    router = fitted_knn().calibrate(synthetic_log(n=80, seed=5))
    with TestClient(create_app(Runtime(router), backends=backends_for({m: backend for m in MODELS}))) as c:
        yield c


def _route(client, budget):
    r = client.post("/v1/route", json={"prompts": prompts_of("math", 3) + prompts_of("chat", 3), "budget": budget})
    assert r.status_code == 200, r.text
    return r


def test_budgets_past_the_best_point_say_why_they_route_the_same(client):
    # the calibration log: math prompts need 'large' (0.01 USD), chat prompts are right on any model,
    # so the best quality costs about half a 'large' call per prompt on average
    high, higher = _route(client, 0.008), _route(client, 0.05)
    assert [d["lam"] for d in high.json()["decisions"]] == [d["lam"] for d in higher.json()["decisions"]]
    for r, budget in ((high, 0.008), (higher, 0.05)):
        note = r.headers["x-routecast-budget-note"]
        assert note.startswith(f"budget {budget:g} USD/query is above ")
        spent = float(note.split(" is above ")[1].split(" ")[0])
        assert 0.004 < spent < 0.006
        assert "best quality (1.0000) is already reached on the calibration split" in note
    low = _route(client, 0.002)  # below the best point's cost: met as asked, nothing to explain
    assert "x-routecast-budget-note" not in low.headers
    assert "x-routecast-budget-note" not in client.post("/v1/route", json={"prompt": "hi", "lam": 1.0}).headers


def test_a_chat_with_such_a_budget_says_it_too(client):
    r = client.post("/v1/chat/completions", headers={"x-routecast-budget": "0.05"},
                    json={"model": "router", "messages": [{"role": "user", "content": prompts_of("math", 1)[0]}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-routecast-budget-note"].startswith("budget 0.05 USD/query is above ")

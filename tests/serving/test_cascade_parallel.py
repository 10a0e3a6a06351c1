"""The server sends the calls of a planned set in parallel (routecast.serving.cascade_chat).

A cascade with the ``sets`` look-ahead is trained on a pool where only agreement is informative
(tests._support.set_plan: A, B cheap and right 80 %, C strong); at the picked lam its plan is
"call A and B together, then C only if they disagree". The fake backend waits a
fixed delay per answer and records when each call ran, so overlap is observable.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from routecast.serving.app import create_app
from tests._support.fake_chat import FakeChat
from tests._support.serving import backends_for
from tests._support.set_plan import set_plan_cascade

DELAY = 0.4


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    cascade, test, lam = set_plan_cascade()
    sim = cascade.simulate(test, [lam])
    c = cascade.pool_.index("C")
    stop, escalate = (int(np.flatnonzero(((sim["called"][0] >> c) & 1) == v)[0]) for v in (0, 1))
    answers = {(test.prompts[i], m): test.responses[i, test.model_index(m)] for i in (stop, escalate)
               for m in cascade.pool_}
    facts = {name: {"prompt": test.prompts[i], "chosen": cascade.pool_[sim["chosen"][0, i]]}
             for name, i in (("stop", stop), ("escalate", escalate))}
    path = cascade.save(tmp_path_factory.mktemp("sets") / "ck")
    return path, cascade, {"lam": lam, "answers": answers, **facts}


@pytest.fixture
def fake(planned):
    _, _, facts = planned
    backend = FakeChat(lambda text, model: facts["answers"][(text, model)])
    backend.delay = DELAY
    yield backend
    backend.stop()


def _ask(client, facts, which, **extra):
    body = {"model": "router", "messages": [{"role": "user", "content": facts[which]["prompt"]}],
            "routecast": {"lam": facts["lam"]}, **extra}
    return client.post("/v1/chat/completions", json=body)


def test_the_planned_pair_is_called_in_parallel_paid_for_and_the_plan_picks_the_answer(planned, fake, tmp_path):
    from routecast.data.decision_log import DecisionLog

    path, cascade, facts = planned
    costs = dict(zip(cascade.pool_, cascade.costs_))
    db = tmp_path / "decisions.sqlite"
    app = create_app(path, backends=backends_for({m: fake.base_url for m in cascade.pool_}),
                     settings={"spend_budget_usd": 1000.0}, decision_log=db)
    with TestClient(app) as client:
        r = _ask(client, facts, "stop")
        assert r.status_code == 200, r.text
        assert sorted(fake.models_called()) == ["A", "B"]
        (_, s1, e1), (_, s2, e2) = fake.spans
        assert max(s1, s2) < min(e1, e2)  # both calls in flight at once
        usage = r.json()["usage"]
        assert usage["routecast_cost_usd"] == pytest.approx(costs["A"] + costs["B"])  # both paid for
        assert [c["model"] for c in usage["routecast_cascade"]["calls"]] == ["A", "B"]
        assert r.headers["x-routecast-model"] == facts["stop"]["chosen"]
        assert r.json()["choices"][0]["message"]["content"] == facts["answers"][(facts["stop"]["prompt"],
                                                                                 facts["stop"]["chosen"])]

        fake.calls.clear()
        fake.spans.clear()
        r = _ask(client, facts, "escalate", stream=True)
        assert r.status_code == 200, r.text
        assert [m for m, _, _ in fake.calls][2:] == ["C"] and sorted(fake.models_called()[:2]) == ["A", "B"]
        assert [s for _, s, _ in fake.calls] == [False, False, True]  # the known-last call streams
        spans = {m: (s, e) for m, s, e in fake.spans}
        assert max(spans["A"][0], spans["B"][0]) < min(spans["A"][1], spans["B"][1])
        assert r.headers["x-routecast-cascade-calls"].split(",")[2] == "C"
        assert r.headers["x-routecast-model"] == facts["escalate"]["chosen"] == "C"
        total = costs["A"] + costs["B"] + costs["C"]
        assert client.app.state.server.limits.spent("anonymous") == pytest.approx(costs["A"] + costs["B"] + total)
    with DecisionLog(db) as log:  # every call of both requests logged with its cost
        rows = sorted(log.records(), key=lambda r: r["realised_cost"])
    assert [sorted(c["model"] for c in r["extra"]["cascade"]["calls"]) for r in rows] == [["A", "B"], ["A", "B", "C"]]
    assert [r["realised_cost"] for r in rows] == pytest.approx([costs["A"] + costs["B"], total])


def test_a_failed_member_ends_the_cascade_with_the_answer_that_came(planned, fake):
    path, cascade, facts = planned
    fake.fail["B"] = 500
    app = create_app(path, backends=backends_for({m: fake.base_url for m in cascade.pool_}))
    with TestClient(app) as client:
        r = _ask(client, facts, "escalate")
        assert r.status_code == 200, r.text
        assert sorted(fake.models_called()) == ["A", "B"]
        assert r.headers["x-routecast-model"] == "A"
        assert r.headers["x-routecast-cascade-fallback"].startswith("best-so-far; B failed")
        assert r.json()["usage"]["routecast_cost_usd"] == pytest.approx(cascade.costs_[cascade.pool_.index("A")])


def test_the_route_endpoint_names_the_whole_first_planned_set(planned, fake):
    """/v1/route: ``model`` stays the first call (compatibility), ``first_models`` is the set the plan
    sends first in parallel - here A and B together, C only after they disagree; nothing is called."""
    path, cascade, facts = planned
    state = cascade.start(facts["stop"]["prompt"], lam=facts["lam"])
    planned_set = cascade.next_models(state)
    assert sorted(planned_set) == ["A", "B"]
    app = create_app(path, backends=backends_for({m: fake.base_url for m in cascade.pool_}))
    with TestClient(app) as client:
        r = client.post("/v1/route", json={"prompts": [facts["stop"]["prompt"], facts["escalate"]["prompt"]],
                                           "lam": facts["lam"]})
        assert r.status_code == 200, r.text
        for decision in r.json()["decisions"]:
            assert decision["first_models"] == planned_set and decision["model"] == planned_set[0]
            assert decision["ranking"][0] == decision["model"] and "C" not in decision["first_models"]
    assert fake.models_called() == []

"""Shadow routing (``serve --shadow CKPT``, routecast.serving.shadow): the candidate decides every
routed request beside the live checkpoint, never executed, logged with its propensities; off-policy
evaluation of the shadow from the served log agrees with the same comparison computed offline."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from routecast.core.checkpoint.files import manifest_sha256
from routecast.core.registry import make_router
from routecast.data.decision_log import DecisionLog
from routecast.data.outcome_log import OutcomeLog
from routecast.errors import ConfigError
from routecast.serving.app import create_app
from routecast.serving.loading import load_runtime
from routecast.serving.serve import prepare_server
from routecast.training.off_policy import evaluate_off_policy
from tests._support.serving import ENCODER, MODELS, backends_for, make_checkpoint, prompts_of, synthetic_log


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("shadow")
    live = make_checkpoint(root / "live")
    log = synthetic_log(seed=3)
    scores = log.scores.copy()
    scores[: len(scores) // 2] = [0.0, 1.0, 0.2]  # the candidate believes 'medium' answers math best
    other = OutcomeLog(prompt_ids=log.prompt_ids, prompts=log.prompts, models=log.models, scores=scores,
                       costs=log.costs, source="<candidate>")
    candidate = make_checkpoint(root / "candidate", make_router("knn", k=5, encoder=ENCODER).fit(other))
    return live, candidate


def test_the_shadow_decides_every_request_and_is_never_executed(pair, backend, tmp_path):
    live, candidate = pair
    log_path = tmp_path / "d.sqlite"
    app = create_app(live, backends=backends_for({"*": backend}), decision_log=log_path, log_text=True,
                     shadow=candidate)
    prompts = prompts_of("math", 20, seed=5) + prompts_of("chat", 20, seed=6)
    answered = {}
    with TestClient(app) as client:
        for i, text in enumerate(prompts):
            if i % 2:
                r = client.post("/v1/route", json={"prompt": text})
                answered[r.json()["request_id"]] = r.json()["decisions"][0]["model"]
            else:
                r = client.post("/v1/chat/completions", json={"model": "router",
                                                              "messages": [{"role": "user", "content": text}]})
                answered[r.headers["x-routecast-request-id"]] = r.headers["x-routecast-model"]
            assert r.status_code == 200
    offline = load_runtime(candidate)
    with DecisionLog(log_path) as log:
        rows = {r["request_id"]: r for r in log.records()}
    assert set(rows) == set(answered)
    differ = 0
    for rid, row in rows.items():
        shadow = row["extra"]["shadow"]
        expected = offline.route([row["text"]])[0]
        assert shadow["checkpoint"] == manifest_sha256(candidate)
        assert shadow["model"] == expected["model"] and shadow["propensities"] == {expected["model"]: 1.0}
        assert shadow["predicted"] == pytest.approx(expected["predicted_quality"])
        assert row["chosen"] == answered[rid] and row["extra"]["checkpoint"] == manifest_sha256(live)
        differ += shadow["model"] != row["chosen"]
    assert differ > 0  # the two checkpoints disagree somewhere: the comparison has something to measure


def test_off_policy_of_the_logged_shadow_agrees_with_offline(pair, backend, tmp_path):
    live, candidate = pair
    log_path = tmp_path / "d.sqlite"
    app = create_app(live, {"explore": 0.3}, backends=backends_for({"*": backend}), decision_log=log_path,
                     log_text=True, shadow=candidate)
    log = synthetic_log(n=80, seed=9)
    with TestClient(app) as client:
        for i, text in enumerate(log.prompts):
            r = client.post("/v1/chat/completions", json={"model": "router",
                                                          "messages": [{"role": "user", "content": text}]})
            model = r.headers["x-routecast-model"]
            score = float(log.scores[i, MODELS.index(model)])
            assert client.post("/v1/feedback", json={"request_id": r.headers["x-routecast-request-id"],
                                                     "score": score}).status_code == 200
    result = evaluate_off_policy(log_path, ["shadow", str(candidate)], n_boot=50)
    served, offline = result["candidates"]["shadow"], result["candidates"][str(candidate)]
    assert served["match_rate"] == offline["match_rate"] > 0
    for estimator in ("ips", "snips"):
        assert served["quality"][estimator] == pytest.approx(offline["quality"][estimator])
        assert served["cost"][estimator] == pytest.approx(offline["cost"][estimator])


def test_a_shadow_needs_a_decision_log(pair):
    live, candidate = pair
    with pytest.raises(ConfigError, match="decision"):
        create_app(live, shadow=candidate)
    with pytest.raises(ConfigError, match="--decision-log"):
        prepare_server(live, {"shadow": str(candidate)})

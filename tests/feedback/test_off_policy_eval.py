"""evaluate_off_policy on a decision log simulated from built-in data: the estimates bracket the
candidate's true quality, measured on the full matrix of the same prompts."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from routecast.data.decision_log import DecisionLog
from routecast.errors import DataError
from routecast.router.pipeline import fit_router, prepare
from routecast.core.policy import chosen, decide, explore
from routecast.training.off_policy import evaluate_off_policy, off_policy_markdown

ENCODER = "static"


def _uniform(request_id: str) -> float:
    return int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "little") / 2**64


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    prepared = prepare("llmrouter_9models", encoder=ENCODER, limit=2500, seed=1)
    logger, _ = fit_router("knn", {"k": 20}, prepared)
    test = prepared.test.complete()
    quality = logger.predict_quality(list(test.prompts))
    ids = [f"req-{i}" for i in range(test.n_prompts)]
    choice, propensity = explore(quality, logger.costs_, 200.0, epsilon=0.3,
                                 uniforms=np.array([_uniform(r) for r in ids]))
    path = tmp_path_factory.mktemp("log") / "decisions.sqlite"
    with DecisionLog(path, store_text=True) as log:
        for i, rid in enumerate(ids):
            c = int(choice[i])
            log.append({"request_id": rid, "text": test.prompts[i], "models": list(test.models),
                        "ranking": [test.models[c]], "predicted": dict(zip(test.models, quality[i].tolist())),
                        "chosen": test.models[c], "propensity": float(propensity[i]), "lam": 200.0,
                        "expected_cost": float(logger.costs_[c]), "realised_cost": float(test.costs[i, c])})
            log.add_feedback(rid, float(test.scores[i, c]))
    return prepared, test, path


def test_estimates_bracket_the_true_value(logged):
    prepared, test, path = logged
    candidate, _ = fit_router("linear", None, prepared)
    ckpt_dir = path.parent / "linear"
    from routecast.core.checkpoint import save_checkpoint

    save_checkpoint(candidate, ckpt_dir)
    result = evaluate_off_policy(path, [str(ckpt_dir)], lam=50.0, n_boot=300)
    est = result["candidates"][str(ckpt_dir)]
    q = candidate.predict_quality(list(test.prompts))
    target = decide(q, candidate.costs_, 50.0)
    true_quality = chosen(test.scores, target).mean()
    true_cost = chosen(test.costs, target).mean()
    assert result["n_requests"] == test.n_prompts
    for e in ("snips", "dr"):
        lo, hi = est["quality_ci"][e]
        assert lo <= true_quality <= hi, (e, lo, true_quality, hi)
    lo, hi = est["quality_ci"]["dr"]
    assert hi - lo < 0.4  # an interval that says something, not [0, 1]
    assert est["cost"]["dr"] == pytest.approx(true_cost, rel=0.25)
    text = off_policy_markdown(result)
    assert "| DR |" in text and f"{test.n_prompts} logged requests" in text


def test_a_log_without_feedback_is_refused(tmp_path):
    with DecisionLog(tmp_path / "d.sqlite", store_text=True) as log:
        log.append({"request_id": "r", "text": "t", "models": ["a", "b"], "ranking": ["a"],
                    "predicted": {"a": 0.1, "b": 0.2}, "chosen": "a", "propensity": 1.0})
    with pytest.raises(DataError, match="no decision in the log has feedback"):
        evaluate_off_policy(tmp_path / "d.sqlite", ["linear"], data="llmrouter_9models")

"""The shared decision rule and the budget / target translation of the Router base class."""

from __future__ import annotations

import numpy as np
import pytest

from routecast.data.outcome_log import OutcomeLog
from routecast.errors import RoutingError
from routecast.core.policy import decide, lam_grid
from routecast.core.registry import make_router


def _log(scores, costs, prompts=None):
    scores = np.asarray(scores, dtype=float)
    n, m = scores.shape
    prompts = prompts or [f"prompt {i}" for i in range(n)]
    return OutcomeLog([f"p{i}" for i in range(n)], prompts, [f"m{j}" for j in range(m)], scores,
                      np.broadcast_to(np.asarray(costs, dtype=float), (n, m)))


def test_decide_maximises_quality_minus_lam_cost():
    q = np.array([[0.5, 0.9], [0.8, 0.85]])
    c = np.array([1.0, 2.0])
    np.testing.assert_array_equal(decide(q, c, 0.0), [1, 1])
    # lam 0.1: utilities [0.4, 0.7] and [0.7, 0.65]
    np.testing.assert_array_equal(decide(q, c, 0.1), [1, 0])
    np.testing.assert_array_equal(decide(q, c, 1.0), [0, 0])


def test_decide_breaks_ties_towards_cheaper_model():
    q = np.array([[0.7, 0.7, 0.7]])
    np.testing.assert_array_equal(decide(q, np.array([3.0, 1.0, 2.0]), 0.0), [1])


def test_lam_grid_spans_best_to_cheapest():
    grid = lam_grid(np.array([0.001, 0.01]))
    q = np.array([[0.2, 1.0]])
    assert grid[0] == 0
    assert decide(q, np.array([0.001, 0.01]), grid[0])[0] == 1
    assert decide(q, np.array([0.001, 0.01]), grid[-1])[0] == 0
    assert np.all(np.diff(grid) > 0)


def test_budget_strong_share_and_target_on_batch():
    # best-single predicts the mean score per model for every prompt: m1 (0.9, $2) vs m0 (0.5, $1)
    log = _log([[0.5, 0.9]] * 10, [1.0, 2.0])
    router = make_router("best-single").fit(log)
    texts = list(log.prompts)
    assert set(router.route(texts, budget=2.0).chosen) == {"m1"}
    assert set(router.route(texts, budget=1.5).chosen) == {"m0"}  # all-or-nothing on equal predictions
    assert set(router.route(texts, strong_share=0.0).chosen) == {"m0"}
    assert set(router.route(texts, target_quality=0.9).chosen) == {"m1"}
    assert set(router.route(texts, target_quality=0.4).chosen) == {"m0"}
    with pytest.raises(RoutingError, match="unreachable"):
        router.route(texts, target_quality=0.95)
    with pytest.raises(RoutingError, match="at most one"):
        router.route(texts, lam=1.0, budget=1.0)


def test_calibrated_budget_uses_measured_outcomes():
    rng = np.random.default_rng(0)
    n = 200
    strong = np.ones(n)
    weak = (rng.random(n) < 0.5).astype(float)
    prompts = [("hard " if w == 0 else "easy ") + f"question {i}" for i, w in enumerate(weak)]
    log = _log(np.c_[weak, strong], [1.0, 10.0], prompts)
    router = make_router("oracle").fit(log)
    router.calibrate(log)
    exact = float(np.where(weak == 0, 10.0, 1.0).mean())  # hard prompts to the strong model
    res = router.route(list(log.prompts), budget=exact)
    realised = np.where(res.choice == 1, 10.0, 1.0).mean()
    assert realised == pytest.approx(exact)
    # just below that, the only policy left on the grid is all-weak
    assert set(router.route(list(log.prompts), budget=exact - 0.01).chosen) == {"m0"}
    assert log.scores[np.arange(n), res.choice].mean() == pytest.approx(1.0)
    with pytest.raises(RoutingError, match="below"):
        router.route(list(log.prompts), budget=0.5)


def test_model_without_cost_is_a_clear_error_unless_cost_is_irrelevant():
    log = _log([[0.5, 0.9]] * 4, [1.0, np.nan])
    router = make_router("best-single").fit(log)
    assert router.route(list(log.prompts)).chosen == ["m1"] * 4  # lam = 0 needs no cost
    with pytest.raises(RoutingError, match="no cost known for model"):
        router.route(list(log.prompts), lam=0.5)
    with pytest.raises(RoutingError, match="no cost known"):
        router.route(list(log.prompts), budget=1.0)


def test_one_model_and_empty_logs_are_refused():
    with pytest.raises(RoutingError, match="at least two candidate models"):
        make_router("best-single").fit(_log([[0.5]] * 3, [1.0]))
    empty = _log(np.zeros((0, 2)), [1.0, 2.0])
    with pytest.raises(RoutingError, match="empty"):
        make_router("best-single").fit(empty)


def test_negative_lam_refused():
    log = _log([[0.5, 0.9]] * 4, [1.0, 2.0])
    router = make_router("best-single").fit(log)
    with pytest.raises(RoutingError, match="lam"):
        router.route(list(log.prompts), lam=-1)

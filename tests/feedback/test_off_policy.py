"""Exploration propensities and off-policy estimates (IPS, SNIPS, DR) with coverage."""

from __future__ import annotations

import numpy as np
import pytest

from routecast.errors import RoutingError
from routecast.evaluation.off_policy import off_policy_estimates
from routecast.core.policy import decide, explore


def test_epsilon_greedy_propensities():
    quality = np.array([[0.9, 0.1, 0.2], [0.1, 0.8, 0.3]])
    costs = np.zeros(3)
    choice, p = explore(quality, costs, 0.0, epsilon=0.3, uniforms=np.array([0.1, 0.95]))
    assert choice.tolist() == [0, 2]  # 0.95 falls in the last model's exploration slice
    assert p == pytest.approx([0.7 + 0.1, 0.1])
    greedy, ones = explore(quality, costs, 0.0)
    assert greedy.tolist() == decide(quality, costs, 0.0).tolist() and ones.tolist() == [1.0, 1.0]


def test_softmax_propensities_sum_to_one():
    rng = np.random.default_rng(0)
    quality = rng.random((200, 4))
    draws = [explore(quality[:1], np.zeros(4), 0.0, temperature=0.1, uniforms=np.array([u]))
             for u in np.linspace(0, 0.999, 50)]
    probs = {int(c[0]): float(p[0]) for c, p in draws}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-9) or len(probs) < 4


def simulate(seed: int, n: int = 2000, epsilon: float = 0.2):
    rng = np.random.default_rng(seed)
    m = 3
    truth = rng.random((n, m)) * np.array([0.6, 0.8, 1.0])
    outcomes = (rng.random((n, m)) < truth).astype(float)  # Bernoulli scores
    costs = np.broadcast_to([1.0, 2.0, 4.0], (n, m))
    logging_q = truth + rng.normal(0, 0.3, (n, m))
    logged, p = explore(logging_q, costs, 0.05, epsilon=epsilon, uniforms=rng.random(n))
    rows = np.arange(n)
    target = decide(truth + rng.normal(0, 0.1, (n, m)), costs, 0.1)
    true_q = truth[rows, target].mean()
    true_c = costs[rows, target].mean()
    return target, logged, p, outcomes[rows, logged], costs[rows, logged], true_q, true_c, truth


def test_estimates_are_close_and_intervals_cover_over_seeds():
    covered = {"ips": 0, "snips": 0, "dr": 0}
    runs = 20
    for seed in range(runs):
        target, logged, p, score, cost, true_q, true_c, truth = simulate(seed)
        est = off_policy_estimates(target, logged, p, score, cost, reward_model=truth, n_boot=200, seed=seed)
        for e in covered:
            lo, hi = est.quality_ci[e]
            covered[e] += lo <= true_q <= hi
        assert est.cost["dr"] == pytest.approx(true_c, rel=1e-9)  # exact cost model: DR is exact for cost
    assert min(covered.values()) >= 0.85 * runs


def test_bad_propensities_are_refused():
    with pytest.raises(RoutingError, match="propensity of request #2 is 0.0"):
        off_policy_estimates(np.array([0, 1]), np.array([0, 1]), np.array([0.5, 0.0]),
                             np.array([1.0, 0.0]), np.array([1.0, 1.0]))

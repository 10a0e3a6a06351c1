"""Oracle upper bounds (routecast.cascade.bounds): hand-computed values on tiny logs."""

from __future__ import annotations

import numpy as np
import pytest

from routecast.cascade.bounds import cheapest_first_chains, oracle_cascade, oracle_router, perfect_verifier
from routecast.errors import RoutingError

# 4 prompts x 3 models (cheap, mid, dear); costs 1, 2, 10
SCORES = np.array([[1.0, 1.0, 1.0],
                   [0.0, 1.0, 1.0],
                   [0.0, 0.0, 1.0],
                   [1.0, 0.0, 0.0]])
COSTS = np.array([1.0, 2.0, 10.0])


def test_perfect_verifier_pays_until_an_answer_is_as_good_as_the_last_models():
    cost, quality = perfect_verifier(SCORES, COSTS, [0, 1, 2])
    # prompt 0: cheap accepted (1); 1: cheap 0 < 1, mid accepted (1 + 2); 2: all three (13);
    # 3: cheap's 1 >= dear's 0, accepted (1)
    np.testing.assert_allclose(cost, [[1.0, 3.0, 13.0, 1.0]])
    np.testing.assert_allclose(quality, [[1.0, 1.0, 1.0, 1.0]])
    cost2, quality2 = perfect_verifier(SCORES, COSTS, [0, 2])
    np.testing.assert_allclose(cost2, [[1.0, 11.0, 11.0, 1.0]])
    np.testing.assert_allclose(quality2, [[1.0, 1.0, 1.0, 1.0]])


def test_oracle_cascade_ends_at_the_best_seen_and_at_the_cheapest_call():
    cost, quality = oracle_cascade(SCORES, COSTS, [0, 1, 2], lams=[0.0, 1e6])
    # lam 0: the best answer seen at the fewest calls; lam huge: stop after the first call
    np.testing.assert_allclose(cost, [[1.0, 3.0, 13.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(quality, [[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]])
    # its default grid reaches the perfect-verifier point, and is never below it at that cost
    c, q = oracle_cascade(SCORES, COSTS, [0, 1, 2])
    assert q.mean(axis=1).max() == pytest.approx(1.0)
    assert c.mean(axis=1)[np.argmax(q.mean(axis=1))] == pytest.approx(4.5)


def test_oracle_router_pays_only_for_the_answer_it_returns():
    cost, quality = oracle_router(SCORES, COSTS, lams=[0.0, 1e6])
    np.testing.assert_allclose(cost, [[1.0, 2.0, 10.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(quality, [[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]])
    # at full quality it is cheaper than the cascade (3.5 < 4.5)
    assert cost[0].mean() == pytest.approx(3.5)


def test_chains_run_cheapest_first_and_end_at_the_target():
    chains = cheapest_first_chains([10.0, 1.0, 2.0], last=0, max_len=3)
    assert chains == [[1, 0], [2, 0], [1, 2, 0]]
    assert cheapest_first_chains([10.0, 1.0, 2.0], last=1) == []


def test_bounds_refuse_unlogged_cells_and_bad_chains():
    scores = SCORES.copy()
    scores[0, 0] = np.nan
    with pytest.raises(RoutingError, match="every score"):
        oracle_router(scores, COSTS)
    with pytest.raises(RoutingError, match="chain"):
        perfect_verifier(SCORES, COSTS, [0, 0])
    with pytest.raises(RoutingError, match="chain"):
        oracle_cascade(SCORES, COSTS, [3])

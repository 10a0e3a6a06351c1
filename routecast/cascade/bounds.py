"""Oracle upper bounds: how good can a router or a cascade over these models be at all?

A cascade target such as "the best model's quality at <= 50 % of its cost" can be out of reach
of *any* policy over the logged models, however good its evidence: if the cheap models are rarely
as good as the best one, every cascade must pay for the best model on most prompts. These bounds
read the logged (test) scores, so they are not policies anyone can deploy; they say whether a
target is reachable, and so whether a miss is the verifier's fault or the models'.

* :func:`oracle_router` - per prompt, the model maximising ``score - lam * cost`` on the *logged*
  scores. No router, and no cascade that returns one model's answer, beats it at equal cost (a
  cascade pays for every model it calls, the oracle router only for the one whose answer it returns).
* :func:`perfect_verifier` - a fixed chain, cheapest first, with a verifier that accepts an answer
  iff its logged score is >= that of the chain's last (best) model: one point, quality >= the last
  model's, at the cost of every model called until acceptance.
* :func:`oracle_cascade` - a fixed chain with a perfect stop rule: per prompt, the number of calls
  maximising ``best score seen - lam * cost so far``. Its curve is at or above every cascade over
  that chain, :func:`perfect_verifier` included (that point is one of its per-prompt choices).

Each returns ``(cost, quality)``, (k, n) arrays over the lam grid (k = 1 for the single point),
the shape the cascade benchmark bootstraps.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from routecast.errors import RoutingError
from routecast.core.policy import chosen, sweep


def _checked(scores, costs) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    c = np.broadcast_to(np.asarray(costs, dtype=np.float64), s.shape)
    if s.ndim != 2 or s.shape[1] == 0:
        raise RoutingError(f"scores must be (prompts, models), got shape {s.shape}")
    if not (np.isfinite(s).all() and np.isfinite(c).all()):
        raise RoutingError("oracle bounds need every score and cost logged (use log.complete())")
    return s, c


def _chain(chain: Sequence[int], m: int) -> list[int]:
    idx = [int(j) for j in chain]
    if len(idx) < 1 or len(set(idx)) != len(idx) or min(idx) < 0 or max(idx) >= m:
        raise RoutingError(f"a chain is distinct column indices in [0, {m}), got {list(chain)}")
    return idx


def oracle_router(scores, costs, lams=None) -> tuple[np.ndarray, np.ndarray]:
    """(k, n) cost and quality of the oracle router at every lam (default grid: the policy's)."""
    s, c = _checked(scores, costs)
    _, choices = sweep(s, c, lams)
    return chosen(c, choices), chosen(s, choices)


def oracle_cascade(scores, costs, chain: Sequence[int], lams=None) -> tuple[np.ndarray, np.ndarray]:
    """(k, n) cost and quality of the chain with a perfect stop rule at every lam."""
    s, c = _checked(scores, costs)
    idx = _chain(chain, s.shape[1])
    paid = np.cumsum(c[:, idx], axis=1)  # cost of stopping after the first t + 1 calls
    best_seen = np.maximum.accumulate(s[:, idx], axis=1)  # a perfect verifier returns the best seen
    _, stops = sweep(best_seen, paid, lams)
    return chosen(paid, stops), chosen(best_seen, stops)


def perfect_verifier(scores, costs, chain: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(1, n) cost and quality of the chain when an answer is accepted iff it is as good as the
    last model's (the last model's answer is taken when no earlier one is)."""
    s, c = _checked(scores, costs)
    idx = _chain(chain, s.shape[1])
    sub, paid = s[:, idx], np.cumsum(c[:, idx], axis=1)
    good = sub >= sub[:, -1:] - 1e-12
    stop = good.argmax(axis=1)  # the last column is always good
    rows = np.arange(s.shape[0])
    return paid[rows, stop][None, :], sub[rows, stop][None, :]


def cheapest_first_chains(mean_costs, last: int, max_len: int = 3) -> list[list[int]]:
    """Every chain of at most ``max_len`` models that ends at ``last`` and runs through cheaper
    models in increasing mean cost (the chains a cascade towards model ``last`` can use)."""
    from itertools import combinations

    mean_costs = np.asarray(mean_costs, dtype=np.float64)
    cheaper = [j for j in np.argsort(mean_costs, kind="stable") if j != last and mean_costs[j] <= mean_costs[last]]
    out = []
    for size in range(1, max_len):
        for combo in combinations(cheaper, size):
            out.append([int(j) for j in combo] + [int(last)])
    return out

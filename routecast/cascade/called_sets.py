"""Called sets of a cascade as bit masks: which pool models have answered a prompt.

Cascade routing (:mod:`routecast.cascade.cascade_router`), its planner
(:mod:`routecast.cascade.planner`), the empirical look-ahead (:mod:`routecast.cascade.lookahead`)
and the posterior calibration (:mod:`routecast.cascade.posterior_calibration`) all index states by
the set of models called so far; bit ``j`` of the mask is pool model ``j``. These functions are
the one definition of that encoding and of what a walk over it costs and returns.
"""

from __future__ import annotations

import itertools

import numpy as np


def members(mask: int, p: int) -> np.ndarray:
    """(p,) bool: which of the ``p`` pool models are in the called set ``mask``."""
    return ((int(mask) >> np.arange(p)) & 1).astype(bool)


def set_costs(sets: list[int], unit_costs: np.ndarray) -> np.ndarray:
    """(len(sets),) the cost of calling each set of models: the sum of its members' unit costs
    (a set's calls are sent together, so each member is paid once)."""
    p = len(unit_costs)
    return np.array([unit_costs[members(s, p)].sum() for s in sets])


def masks(p: int, max_calls: int, *, with_empty: bool) -> list[int]:
    """Bit masks of the model sets of size <= max_calls (by size, then lexicographic)."""
    out = [0] if with_empty else []
    for size in range(1, max_calls + 1):
        for combo in itertools.combinations(range(p), size):
            out.append(sum(1 << j for j in combo))
    return out


def spread(post: np.ndarray, all_masks: list[int], p: int, max_calls: int) -> np.ndarray:
    """(P, P) std, over train states, of the change in model ``l``'s posterior when ``j`` is
    called (``[j, l]``; the diagonal: a model's own answer; off it: ``l`` already called).
    ``post`` is (n, S, P): the posterior at every set of ``all_masks`` on every training prompt."""
    index = {m: s for s, m in enumerate(all_masks)}
    tau = np.zeros((p, p))
    for j in range(p):
        for l in range(p):
            diffs = [post[:, index[m | 1 << j], l] - post[:, index[m], l]
                     for m in all_masks if not (m >> j) & 1 and bin(m).count("1") < max_calls
                     and (l == j or (m >> l) & 1)]
            tau[j, l] = float(np.std(np.concatenate(diffs))) if diffs else 0.0
    return tau


def outcomes(called: np.ndarray, chosen_idx: np.ndarray, unit_costs: np.ndarray, scores: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """(k, n) realised cost (sum over the called models) and quality (score of the returned answer)."""
    p = unit_costs.shape[1]
    bits = (called[..., None] >> np.arange(p)) & 1  # (k, n, P)
    cost = (bits * unit_costs[None, :, :]).sum(axis=2)
    rows = np.arange(called.shape[1])
    return cost, scores[rows[None, :], chosen_idx]

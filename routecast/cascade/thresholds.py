"""Offline cascade simulation and the search for stop thresholds.

Given, per prompt, the deferral score at every non-final stage ``S (n, L-1)``, the cost of every
stage's model ``C (n, L)`` and the score of its answer ``Q (n, L)``, a threshold vector ``t``
stops each prompt at the first stage ``i`` with ``S[:, i] >= t[i]`` (the last stage otherwise).
The cascade pays for every model up to and including the stop stage and returns that stage's
answer. Everything here is vectorised over many threshold vectors at once, because threshold
search is nothing but evaluating that rule for many candidates on the validation split.

Candidates per stage are the distinct validation scores (or ``n_quantiles`` quantiles of them
when there are more), plus ``-inf`` (always stop) and ``+inf`` (never stop):

* one threshold (2 stages): all distinct scores - an exact search, each step escalates one
  more validation prompt, so a budget is met to within one prompt's escalation cost;
* a few thresholds: the full grid when it has at most ``max_grid`` points;
* more: coordinate search (each threshold in turn, others fixed; a few rounds), bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np

from routecast.core.policy import utility_ranking
from routecast.errors import RoutingError


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold vector and what it achieved on the split it was chosen on."""

    thresholds: np.ndarray
    cost: float
    quality: float


def stop_stages(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(k, n) stop stage of each prompt for each of k threshold vectors ``(k, L-1)``."""
    scores = np.asarray(scores, dtype=np.float64)
    thresholds = np.atleast_2d(np.asarray(thresholds, dtype=np.float64))
    n, stages = scores.shape
    if stages == 0:
        return np.zeros((len(thresholds), n), dtype=np.int64)
    stop = scores[None, :, :] >= thresholds[:, None, :]  # (k, n, L-1)
    # NaN scores never stop (comparison is False): the cascade escalates when unsure.
    first = np.where(stop.any(axis=2), stop.argmax(axis=2), stages)
    return first.astype(np.int64)


def simulate_stages(scores: np.ndarray, costs: np.ndarray, quality: np.ndarray,
                    thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k, n) per-prompt cost, quality and stop stage for k threshold vectors."""
    stops = stop_stages(scores, thresholds)
    cum_cost = np.cumsum(np.asarray(costs, dtype=np.float64), axis=1)
    rows = np.arange(stops.shape[1])[None, :]
    return cum_cost[rows, stops], np.asarray(quality, dtype=np.float64)[rows, stops], stops


def mean_outcomes(scores, costs, quality, thresholds, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(k,) mean cost and mean quality for k threshold vectors, in memory-bounded chunks."""
    thresholds = np.atleast_2d(np.asarray(thresholds, dtype=np.float64))
    mc, mq = [], []
    for start in range(0, len(thresholds), chunk):
        c, q, _ = simulate_stages(scores, costs, quality, thresholds[start:start + chunk])
        mc.append(c.mean(axis=1))
        mq.append(np.nanmean(q, axis=1) if np.isnan(q).any() else q.mean(axis=1))
    return np.concatenate(mc), np.concatenate(mq)


def stage_candidates(column: np.ndarray, n_quantiles: int | None) -> np.ndarray:
    """Candidate thresholds for one stage: distinct scores (or quantiles), -inf and +inf."""
    finite = np.asarray(column, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    values = np.unique(finite)
    if n_quantiles is not None and len(values) > n_quantiles + 1:
        values = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, n_quantiles + 1)))
    return np.concatenate([[-np.inf], values, [np.inf]])


class ThresholdSearch:
    """All candidate threshold vectors of a chain on one split, and the best one for a goal."""

    def __init__(self, scores: np.ndarray, costs: np.ndarray, quality: np.ndarray, *,
                 n_quantiles: int = 40, max_grid: int = 5000, rounds: int = 3):
        self.scores = np.asarray(scores, dtype=np.float64)
        self.costs = np.asarray(costs, dtype=np.float64)
        self.quality = np.asarray(quality, dtype=np.float64)
        self.n_quantiles = n_quantiles
        self.max_grid = max_grid
        self.rounds = rounds
        stages = self.scores.shape[1]
        exact = None if stages == 1 else n_quantiles
        self.grids = [stage_candidates(self.scores[:, i], exact) for i in range(stages)]
        size = math.prod(len(g) for g in self.grids) if stages else 1  # exact: np.prod overflows
        if stages == 0:
            self.candidates = np.zeros((1, 0))
        elif size <= max_grid:
            mesh = np.meshgrid(*self.grids, indexing="ij")
            self.candidates = np.stack([m.reshape(-1) for m in mesh], axis=1)
        else:
            self.candidates = self._coordinate_candidates()
        self.cand_cost, self.cand_quality = mean_outcomes(self.scores, self.costs, self.quality, self.candidates)

    # ------------------------------------------------------------- goals
    def for_budget(self, budget: float) -> ThresholdChoice:
        """Highest mean quality with mean cost <= budget (ties: the cheaper)."""
        if not np.isfinite(budget) or budget < 0:
            raise RoutingError(f"budget must be a finite number >= 0, got {budget}")
        ok = self.cand_cost <= budget * (1 + 1e-12) + 1e-18
        if not ok.any():
            raise RoutingError(
                f"budget ${budget:.6g}/query is below the cascade's cheapest operating point "
                f"${self.cand_cost.min():.6g}/query (the first stage's mean cost on the validation split)")
        return self._pick(ok, prefer="quality")

    def for_quality(self, target: float) -> ThresholdChoice:
        """Lowest mean cost with mean quality >= target (ties: the better)."""
        ok = self.cand_quality >= target - 1e-12
        if not ok.any():
            raise RoutingError(f"quality {target:.4f} is unreachable for this cascade: the best on the "
                               f"validation split is {self.cand_quality.max():.4f}")
        return self._pick(ok, prefer="cost")

    def best_quality(self) -> ThresholdChoice:
        return self._pick(np.ones(len(self.candidates), dtype=bool), prefer="quality")

    def frontier(self) -> list[ThresholdChoice]:
        """Pareto-optimal candidates (no other is cheaper and at least as good), by cost."""
        order = np.lexsort((-self.cand_quality, self.cand_cost))
        out, best = [], -np.inf
        for i in order:
            if self.cand_quality[i] > best + 1e-15:
                best = self.cand_quality[i]
                out.append(self._choice(i))
        return out

    def _pick(self, ok: np.ndarray, prefer: str) -> ThresholdChoice:
        idx = np.flatnonzero(ok)
        if prefer == "quality":
            key = np.lexsort((self.cand_cost[idx], -self.cand_quality[idx]))
        else:
            key = np.lexsort((-self.cand_quality[idx], self.cand_cost[idx]))
        return self._choice(idx[key[0]])

    def _choice(self, i: int) -> ThresholdChoice:
        return ThresholdChoice(self.candidates[i].copy(), float(self.cand_cost[i]), float(self.cand_quality[i]))

    # ------------------------------------------------- bounded search (4+ stages)
    def _coordinate_candidates(self) -> np.ndarray:
        """Threshold vectors visited by coordinate ascent of quality - lam * cost over a lam sweep.

        Bounded: ``rounds`` passes x stages x grid size evaluations per lam, 25 lams."""
        stages = len(self.grids)
        spread = float(np.nanmax(self.costs.sum(axis=1).mean()) or 1.0)
        lams = np.concatenate([[0.0], np.geomspace(1e-2, 1e3, 24) / spread])
        visited = [np.full(stages, np.inf), np.full(stages, -np.inf)]
        for lam in lams:
            current = np.full(stages, np.inf)
            for _ in range(self.rounds):
                for i in range(stages):
                    trial = np.repeat(current[None, :], len(self.grids[i]), axis=0)
                    trial[:, i] = self.grids[i]
                    c, q = mean_outcomes(self.scores, self.costs, self.quality, trial)
                    current = trial[int(utility_ranking(q, c, lam)[0])]
                visited.append(current.copy())
        return np.unique(np.stack(visited), axis=0)

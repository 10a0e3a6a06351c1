"""Off-policy evaluation: how would a new router do on traffic another policy routed?

A decision log holds, per request, the model the deployed (logging) policy chose, the
probability it gave that choice (the propensity, from exploration) and the outcome observed for
that one call (a feedback score, its cost). A candidate policy's value is estimated without
deploying it (Dudík et al., 2011, "Doubly robust policy evaluation and learning"):

* **IPS**: ``mean( 1[target = logged] / p * r )`` - unbiased when every propensity is right and
  positive wherever the target goes; high variance when propensities are small.
* **SNIPS** (self-normalised): ``sum(w r) / sum(w)`` with ``w = 1[target = logged] / p`` - a little
  biased, much lower variance.
* **DR** (doubly robust): ``mean( r_hat(x, target) + w * (r - r_hat(x, logged)) )`` with a reward
  model ``r_hat`` (e.g. the candidate router's own predicted qualities, or a model fitted on the
  log): unbiased if either the propensities or the reward model are right.

Each estimate comes with a 95 % percentile bootstrap interval over requests (the same draws for
every estimator and every candidate, so intervals are paired). The same estimators give the
candidate's expected cost, with the realised cost as the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from routecast.errors import RoutingError
from routecast.evaluation.metrics import bootstrap_cis

__all__ = ["OffPolicyEstimate", "off_policy_estimates", "ESTIMATORS", "pseudo_outcomes", "pseudo_outcome_interval"]

ESTIMATORS = ("ips", "snips", "dr")


@dataclass
class OffPolicyEstimate:
    """Estimated mean quality and cost of one target policy, per estimator, with intervals."""

    quality: dict[str, float]
    quality_ci: dict[str, tuple[float, float]]
    cost: dict[str, float]
    cost_ci: dict[str, tuple[float, float]]
    n_requests: int
    match_rate: float  # share of requests where the target agrees with the logged choice
    min_propensity: float

    def to_dict(self) -> dict[str, Any]:
        return {"quality": self.quality, "quality_ci": {k: list(v) for k, v in self.quality_ci.items()},
                "cost": self.cost, "cost_ci": {k: list(v) for k, v in self.cost_ci.items()},
                "n_requests": self.n_requests, "match_rate": self.match_rate,
                "min_propensity": self.min_propensity}


def pseudo_outcomes(outcome: np.ndarray, propensity: np.ndarray, model: np.ndarray) -> np.ndarray:
    """(n, m) doubly robust pseudo-outcome of every (request, model) cell.

    ``outcome`` (n, m) holds the observed outcome of each logged cell (NaN elsewhere),
    ``propensity`` (n, m) the probability that cell was logged, ``model`` (n, m) the outcome model
    ``r_hat``. A cell is ``r_hat + 1[logged] / p * (r - r_hat)``: its mean over the logging draw
    is the cell's true outcome when either ``p`` or ``r_hat`` is right, so the mean of the cells
    any policy picks estimates that policy's value (an ``r_hat`` of 0 gives IPS, a logged cell
    of probability 0 cannot occur, an unlogged one with ``p = 0`` keeps ``r_hat``: the direct
    method where positivity fails).
    """
    observed = ~np.isnan(outcome)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = (np.where(observed, outcome, 0.0) - model) / np.where(observed, propensity, 1.0)
    correction = np.where(observed, gap, 0.0)
    return model + correction


def pseudo_outcome_interval(values: np.ndarray, propensity: np.ndarray, variance: np.ndarray, *,
                            n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """``1 - alpha`` interval of the mean of per-request pseudo-outcomes ``values`` (n,): the
    percentile bootstrap over requests, widened to at least the normal interval of the logging
    draw's own variance.

    Why the floor: the bootstrap reads the spread of the corrections that were logged. A policy
    that routes to a rarely logged model (propensity 0.02) has a handful of logged cells there;
    when they happen to agree with the outcome model (7 of 7 correct) the bootstrap sees no
    spread and returns a near-zero width around a value the truth may be far from. The logging
    draw's variance of a DR term is ``(1 - p) / p * E[(r - r_hat)^2]``; with ``variance`` (n,) a
    conservative outcome variance of each chosen cell (see
    :func:`routecast.router.estimated_split.cell_variance`) it bounds what a few lucky cells
    hide. Requests whose cell has ``propensity`` 0 (positivity fails) add no floor: their error is
    the outcome model's, which no logged cell measures.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    n = values.size
    if n == 0:
        return float("nan"), float("nan")
    boot = bootstrap_cis(lambda idx: {"mean": values[idx].mean()}, n, n_boot=n_boot, seed=seed, alpha=alpha)["mean"]
    p = np.asarray(propensity, dtype=np.float64).reshape(-1)
    v = np.asarray(variance, dtype=np.float64).reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.where(p > 0, (1.0 - p) / np.where(p > 0, p, 1.0) * v, 0.0)
    from statistics import NormalDist

    half = NormalDist().inv_cdf(1 - alpha / 2) * float(np.sqrt(np.nansum(spread))) / n
    mean = float(values.mean())
    return min(boot[0], mean - half), max(boot[1], mean + half)


def _estimators(target_probs, logged, propensity, outcome, outcome_model):
    """Per-request terms of IPS and DR, and the SNIPS weights: all (n,) arrays."""
    n, m = target_probs.shape
    rows = np.arange(n)
    w = target_probs[rows, logged] / propensity
    observed = np.full((n, m), np.nan)
    observed[rows, logged] = outcome
    p = np.broadcast_to(propensity[:, None], (n, m))
    ips = (target_probs * pseudo_outcomes(observed, p, np.zeros((n, m)))).sum(axis=1)
    dr = (target_probs * pseudo_outcomes(observed, p, outcome_model)).sum(axis=1)
    return ips, w, dr


def off_policy_estimates(target: np.ndarray, logged: np.ndarray, propensity: np.ndarray,
                         score: np.ndarray, cost: np.ndarray, *, reward_model: np.ndarray | None = None,
                         cost_model: np.ndarray | None = None, n_models: int | None = None,
                         n_boot: int = 500, seed: int = 0) -> OffPolicyEstimate:
    """Estimate a target policy's mean quality and cost on logged traffic.

    ``target`` is (n,) model indices (a deterministic router) or (n, m) probabilities; ``logged``
    (n,) the logged choices, ``propensity`` (n,) their probabilities under the logging policy,
    ``score`` and ``cost`` (n,) the observed outcome of the logged call. ``reward_model`` and
    ``cost_model`` (n, m) are the DR models (without them DR uses the logged means per model).
    """
    logged = np.asarray(logged, dtype=np.int64).reshape(-1)
    n = logged.size
    if n == 0:
        raise RoutingError("off-policy evaluation needs at least one logged request")
    propensity = np.asarray(propensity, dtype=np.float64).reshape(-1)
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    cost = np.asarray(cost, dtype=np.float64).reshape(-1)
    if not (propensity.shape == score.shape == cost.shape == (n,)):
        raise RoutingError("logged, propensity, score and cost must all have one value per request")
    if not np.isfinite(propensity).all() or (propensity <= 0).any() or (propensity > 1).any():
        bad = int(np.flatnonzero(~(np.isfinite(propensity) & (propensity > 0) & (propensity <= 1)))[0])
        raise RoutingError(f"propensity of request #{bad + 1} is {float(propensity[bad])!r}; off-policy evaluation "
                           "needs the logging policy's probability (0, 1] of every logged choice")
    if not (np.isfinite(score).all() and np.isfinite(cost).all()):
        raise RoutingError("every logged request needs a finite score and cost (attach feedback first)")
    target = np.asarray(target)
    m = n_models or int(max(logged.max(), target.max() if target.ndim == 1 else target.shape[1] - 1) + 1)
    if target.ndim == 1:
        probs = np.zeros((n, m))
        probs[np.arange(n), target.astype(np.int64)] = 1.0
    else:
        probs = np.asarray(target, dtype=np.float64)
        if probs.shape != (n, m):
            raise RoutingError(f"target probabilities must be ({n}, {m}), got {probs.shape}")
    models_q = _model_means(logged, score, m) if reward_model is None else np.asarray(reward_model, dtype=np.float64)
    models_c = _model_means(logged, cost, m) if cost_model is None else np.asarray(cost_model, dtype=np.float64)
    models_q = np.broadcast_to(models_q, (n, m))
    models_c = np.broadcast_to(models_c, (n, m))

    q_ips, w, q_dr = _estimators(probs, logged, propensity, score, models_q)
    c_ips, _, c_dr = _estimators(probs, logged, propensity, cost, models_c)

    def stats(idx: np.ndarray) -> dict[str, float]:
        ws = w[idx].sum()
        return {"q.ips": q_ips[idx].mean(), "q.snips": (w[idx] * score[idx]).sum() / ws if ws > 0 else np.nan,
                "q.dr": q_dr[idx].mean(), "c.ips": c_ips[idx].mean(),
                "c.snips": (w[idx] * cost[idx]).sum() / ws if ws > 0 else np.nan, "c.dr": c_dr[idx].mean()}

    point = stats(np.arange(n))
    intervals = bootstrap_cis(stats, n, n_boot=n_boot, seed=seed)
    return OffPolicyEstimate(
        quality={e: float(point[f"q.{e}"]) for e in ESTIMATORS},
        quality_ci={e: intervals[f"q.{e}"] for e in ESTIMATORS},
        cost={e: float(point[f"c.{e}"]) for e in ESTIMATORS},
        cost_ci={e: intervals[f"c.{e}"] for e in ESTIMATORS},
        n_requests=n, match_rate=float(probs[np.arange(n), logged].mean()),
        min_propensity=float(propensity.min()))


def _model_means(logged: np.ndarray, outcome: np.ndarray, m: int) -> np.ndarray:
    """Mean logged outcome per model (the overall mean for a model never chosen)."""
    sums = np.bincount(logged, weights=outcome, minlength=m)[:m]
    counts = np.bincount(logged, minlength=m)[:m]
    return np.where(counts > 0, sums / np.maximum(counts, 1), outcome.mean())

"""Shared pieces of the prompt-group priors (``cluster-prior``, ``task-prior``, ``prior-residual``).

A prior routes by group: every prompt of a group (a k-means cluster, a benchmark) gets the same
predicted quality per model, the group's mean score shrunk towards the model's global mean. The
shrinkage is the empirical-Bayes posterior mean under a Beta prior with ``strength``
pseudo-observations at the global mean::

    q[g, j] = (sum of scores of model j in group g + strength * global[j]) / (n[g, j] + strength)

so a group with few logged outcomes says little and falls back to the global mean, and a large
group keeps its own mean. ``strength = 0`` is the raw group mean.

On a traffic log each (group, model) cell holds only the prompts that model served, a few where
a model is rarely chosen, so a fixed ``strength`` tuned on complete matrices shrinks too little
there. :func:`eb_strength` estimates each model's strength from the log itself (empirical Bayes:
the within-group variance of its scores over the between-group variance of its true group
means), and logged cells may carry inverse-propensity ``weights`` (a cell the logging policy
rarely chose stands for more prompts in the means; its count, not its weight, is the evidence).

Groups of unseen prompts are found by the nearest centroid (cosine similarity) of the prompt
embedding. These are plain numpy functions so each router file only states what its groups are.
"""

from __future__ import annotations

import numpy as np

from routecast.errors import ConfigError
from routecast.router.encoders.base import l2_normalise

__all__ = ["shrunk_group_means", "group_centroids", "nearest_group", "masked_brier", "model_means", "check_strength",
           "STRENGTH_GRID", "eb_strength", "sparse_strength"]

#: shrinkage strengths tried when a prior picks its own on an internal validation split
STRENGTH_GRID = (0.0, 2.0, 10.0, 50.0)


def check_strength(strength, *, router: str) -> float:
    """``strength`` as a float >= 0, else a ConfigError naming the parameter."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise ConfigError(f"{router}: shrinkage must be a number >= 0, got {strength!r}") from None
    if not np.isfinite(value) or value < 0:
        raise ConfigError(f"{router}: shrinkage must be a number >= 0, got {strength!r}")
    return value


def _group_sums(groups: np.ndarray, scores: np.ndarray, n_groups: int,
                weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(n_groups, m) sums of logged scores, of their squares and the logged counts, and the (m,)
    weighted mean of every logged cell.

    With ``weights`` the sums are ``count * weighted mean`` within each group: the weights decide
    the mean (a cell the logging policy rarely chose stands for more prompts), the count of
    logged cells how much that mean is trusted (an inverse-propensity weight is not information).
    """
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.int64)
    logged = ~np.isnan(scores)
    values = np.where(logged, scores, 0.0)
    m = scores.shape[1]
    sums, squares, counts = np.zeros((n_groups, m)), np.zeros((n_groups, m)), np.zeros((n_groups, m))
    np.add.at(counts, groups, logged.astype(np.float64))
    if weights is None:
        np.add.at(sums, groups, values)
        np.add.at(squares, groups, values ** 2)
        total = sums.sum(axis=0)
        size = counts.sum(axis=0)
    else:
        w = np.where(logged, np.nan_to_num(np.asarray(weights, dtype=np.float64), nan=0.0), 0.0)
        mass = np.zeros((n_groups, m))
        np.add.at(mass, groups, w)
        np.add.at(sums, groups, w * values)
        np.add.at(squares, groups, w * values ** 2)
        total, size = sums.sum(axis=0), mass.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where(mass > 0, counts / np.where(mass > 0, mass, 1.0), 0.0)
        sums, squares = sums * scale, squares * scale
    with np.errstate(invalid="ignore", divide="ignore"):
        overall = np.where(size > 0, total / np.where(size > 0, size, 1.0), 0.0)
    return sums, squares, counts, overall


def shrunk_group_means(groups: np.ndarray, scores: np.ndarray, n_groups: int, strength,
                       global_mean: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
    """(n_groups, m) per-group mean score per model, shrunk towards ``global_mean``.

    ``groups`` (n,) int in [0, n_groups); ``scores`` (n, m) with NaN for unlogged cells, which
    count neither in the sum nor in the group size. ``strength`` is one number or one per model
    (m,). ``global_mean`` defaults to the NaN-ignoring (weighted) column means of ``scores`` (0
    for a model with no logged score). ``weights`` (n, m), if given, weigh each logged cell (its
    inverse propensity): they set each mean, the logged counts its trust. Without weights every
    cell weighs 1.
    """
    sums, _, counts, overall = _group_sums(groups, scores, n_groups, weights)
    if global_mean is None and weights is None:  # exactly the unweighted column means (complete logs)
        logged = ~np.isnan(np.asarray(scores, dtype=np.float64))
        with np.errstate(invalid="ignore"):
            global_mean = np.where(logged.any(axis=0), np.nansum(scores, axis=0) / np.maximum(logged.sum(axis=0), 1),
                                   0.0)
    elif global_mean is None:
        global_mean = overall
    global_mean = np.asarray(global_mean, dtype=np.float64)
    strength = np.broadcast_to(np.asarray(strength, dtype=np.float64), global_mean.shape)[None, :]
    denom = counts + strength
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums + strength * global_mean[None, :]) / denom
    return np.where(denom > 0, means, global_mean[None, :])


#: the largest empirical-Bayes strength: no detectable spread between groups means "pool them all"
MAX_STRENGTH = 1e6


def eb_strength(groups: np.ndarray, scores: np.ndarray, n_groups: int,
                weights: np.ndarray | None = None) -> np.ndarray:
    """(m,) empirical-Bayes shrinkage strength per model: ``sigma2 / tau2``.

    ``sigma2`` is the pooled within-group variance of the model's logged scores, ``tau2`` the
    between-group variance of its true group means (the one-way random-effects moment estimator:
    the spread of the observed group means minus what sampling noise alone gives). Shrinking a
    group mean of ``n`` cells with this many pseudo-observations is the posterior mean under a
    normal prior of that spread, so a model whose groups barely differ is pooled and a model with
    clearly different groups keeps them. ``weights`` set the means, as in :func:`shrunk_group_means`.
    """
    sums, squares, counts, _ = _group_sums(groups, scores, n_groups, weights)
    out = np.full(sums.shape[1], MAX_STRENGTH)
    for j in range(sums.shape[1]):
        n = counts[:, j]
        used = n > 0
        if used.sum() < 2:
            continue
        n, s, q = n[used], sums[used, j], squares[used, j]
        means = s / n
        total = n.sum()
        grand = s.sum() / total
        within = q.sum() - (n * means ** 2).sum()
        dof = total - used.sum()
        if dof <= 0:
            continue
        sigma2 = max(within / dof, 1e-12)
        between = (n * (means - grand) ** 2).sum()
        scale = total - (n ** 2).sum() / total
        tau2 = (between - (used.sum() - 1) * sigma2) / scale if scale > 0 else 0.0
        if tau2 > 0:
            out[j] = min(sigma2 / tau2, MAX_STRENGTH)
    return out


def sparse_strength(strength: float, groups: np.ndarray, scores: np.ndarray, n_groups: int,
                    weights: np.ndarray | None, sparse: bool):
    """The shrinkage a prior uses: ``strength`` on a complete log (unchanged behaviour), and on a
    sparse one (a traffic log) at least the empirical-Bayes strength per model, since a (group,
    model) cell there holds a few logged prompts only (:func:`eb_strength`)."""
    if not sparse:
        return strength
    return np.maximum(strength, eb_strength(groups, scores, n_groups, weights))


def group_centroids(X: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups, dim) unit-length mean of the L2-normalised embeddings of each group's prompts
    (a group without prompts gets a zero row, which no prompt is ever nearest to)."""
    Xn = l2_normalise(X).astype(np.float64)
    sums = np.zeros((n_groups, Xn.shape[1]))
    np.add.at(sums, np.asarray(groups, dtype=np.int64), Xn)
    return l2_normalise(sums)


def nearest_group(X: np.ndarray, centroids: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(n,) index of the centroid with the highest cosine similarity to each embedding."""
    Xn = l2_normalise(X)
    C = np.asarray(centroids, dtype=np.float32)
    out = np.empty(len(Xn), dtype=np.int64)
    for start in range(0, len(Xn), chunk):
        out[start:start + chunk] = np.argmax(Xn[start:start + chunk] @ C.T, axis=1)
    return out


def model_means(log) -> np.ndarray:
    """(m,) each model's mean logged score of ``log`` (an OutcomeLog), each cell weighted by its
    inverse logging propensity on a traffic log (:meth:`OutcomeLog.propensity_weights`: a model
    the logging policy sent mostly easy prompts does not look better for it); the plain column
    means on a complete log; 0 for a model with no logged score."""
    weights = log.propensity_weights()
    means = log.mean_scores() if weights is None else \
        shrunk_group_means(np.zeros(log.n_prompts, dtype=np.int64), log.scores, 1, 0.0, weights=weights)[0]
    return np.nan_to_num(means, nan=0.0)


def masked_brier(predicted: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean squared error of predicted quality over the logged cells (a proper score for 0/1
    and fractional outcomes alike): what the priors minimise when they pick k or a blend.

    ``weights`` (n, m): each logged cell's inverse-propensity weight on a traffic log
    (:meth:`OutcomeLog.propensity_weights`), so the choice is scored on the whole prompt
    distribution, not on the prompts the logging policy sent each model; None (a complete log) or
    all ones give the plain mean."""
    scores = np.asarray(scores, dtype=np.float64)
    logged = ~np.isnan(scores)
    if not logged.any():
        return float("nan")
    diff = np.where(logged, np.asarray(predicted, dtype=np.float64) - np.where(logged, scores, 0.0), 0.0)
    if weights is None:
        return float((diff ** 2).sum() / logged.sum())
    w = np.where(logged, np.nan_to_num(np.asarray(weights, dtype=np.float64), nan=0.0), 0.0)
    return float((w * diff ** 2).sum() / w.sum()) if w.sum() > 0 else float("nan")

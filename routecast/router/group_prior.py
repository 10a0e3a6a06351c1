"""Shared pieces of the prompt-group priors (``cluster-prior``, ``task-prior``, ``prior-residual``).

A prior routes by group: every prompt of a group (a k-means cluster, a benchmark) gets the same
predicted quality per model, the group's mean score shrunk towards the model's global mean. The
shrinkage is the empirical-Bayes posterior mean under a Beta prior with ``strength``
pseudo-observations at the global mean::

    q[g, j] = (sum of scores of model j in group g + strength * global[j]) / (n[g, j] + strength)

so a group with few logged outcomes says little and falls back to the global mean, and a large
group keeps its own mean. ``strength = 0`` is the raw group mean.

Groups of unseen prompts are found by the nearest centroid (cosine similarity) of the prompt
embedding. These are plain numpy functions so each router file only states what its groups are.
"""

from __future__ import annotations

import numpy as np

from routecast.errors import ConfigError
from routecast.router.encoders.base import l2_normalise

__all__ = ["shrunk_group_means", "group_centroids", "nearest_group", "masked_brier", "check_strength",
           "STRENGTH_GRID"]

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


def shrunk_group_means(groups: np.ndarray, scores: np.ndarray, n_groups: int, strength: float,
                       global_mean: np.ndarray | None = None) -> np.ndarray:
    """(n_groups, m) per-group mean score per model, shrunk towards ``global_mean``.

    ``groups`` (n,) int in [0, n_groups); ``scores`` (n, m) with NaN for unlogged cells, which
    count neither in the sum nor in the group size. ``global_mean`` defaults to the NaN-ignoring
    column means of ``scores`` (0 for a model with no logged score).
    """
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.int64)
    logged = ~np.isnan(scores)
    if global_mean is None:
        with np.errstate(invalid="ignore"):
            global_mean = np.where(logged.any(axis=0), np.nansum(scores, axis=0) / np.maximum(logged.sum(axis=0), 1),
                                   0.0)
    global_mean = np.asarray(global_mean, dtype=np.float64)
    m = scores.shape[1]
    sums = np.zeros((n_groups, m))
    counts = np.zeros((n_groups, m))
    np.add.at(sums, groups, np.where(logged, scores, 0.0))
    np.add.at(counts, groups, logged.astype(np.float64))
    denom = counts + strength
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums + strength * global_mean[None, :]) / denom
    return np.where(denom > 0, means, global_mean[None, :])


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


def masked_brier(predicted: np.ndarray, scores: np.ndarray) -> float:
    """Mean squared error of predicted quality over the logged cells (a proper score for 0/1
    and fractional outcomes alike): what the priors minimise when they pick k or a blend."""
    scores = np.asarray(scores, dtype=np.float64)
    logged = ~np.isnan(scores)
    if not logged.any():
        return float("nan")
    diff = np.where(logged, np.asarray(predicted, dtype=np.float64) - np.where(logged, scores, 0.0), 0.0)
    return float((diff ** 2).sum() / logged.sum())

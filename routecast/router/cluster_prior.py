"""``cluster-prior``: k-means on the training prompts' embeddings, then each cluster's mean score
per model, shrunk towards the global mean, is every member prompt's predicted quality.

It is the honest baseline a learned router has to beat: it knows which *kind* of prompt it sees
(the cluster, close to the benchmark it came from) and nothing about the prompt itself. On the
shared logs it ties or beats knn, linear and mlp (issue 13), so a leaderboard without it flatters
every learned router.

``k="auto"`` picks k (and ``shrinkage="auto"`` the strength) from a small grid by the masked
Brier score on a seeded internal validation share of the *training* log (on a traffic log each
logged cell weighted by its inverse propensity, as the table is), then refits on the whole
training log; the test split is never seen. Shrinkage is the empirical-Bayes posterior mean of
:mod:`routecast.router.group_prior`; with ``k=1`` the prediction is each model's global mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routecast.errors import ConfigError
from routecast.router.base import Router
from routecast.router.encoders.base import l2_normalise
from routecast.router.encoders.default import DEFAULT_ENCODER
from routecast.router.group_prior import (STRENGTH_GRID, check_strength, masked_brier, nearest_group,
                                          shrunk_group_means, sparse_strength)
from routecast.router.inner_split import split_validation
from routecast.core.registry import register_router
from routecast.router.search_space import Categorical, Float
from routecast.core.tags import PolicyTags

#: numbers of clusters tried by ``k="auto"``
K_GRID = (1, 5, 10, 20, 40, 80)


def fit_clusters(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(k', dim) unit-length k-means centroids of the L2-normalised embeddings (k' = min(k, n)).

    Clustering unit vectors makes the Euclidean k-means objective the cosine one that
    :func:`~routecast.router.group_prior.nearest_group` assigns by.
    """
    from sklearn.cluster import KMeans

    Xn = l2_normalise(X).astype(np.float64)
    k = int(min(max(1, k), len(Xn)))
    if k == 1:
        return l2_normalise(Xn.mean(axis=0, keepdims=True))
    km = KMeans(n_clusters=k, n_init=1, max_iter=100, random_state=int(seed)).fit(Xn)
    return l2_normalise(km.cluster_centers_)


def cluster_table(X: np.ndarray, scores: np.ndarray, centroids: np.ndarray, strength: float,
                  weights: np.ndarray | None = None, sparse: bool = False) -> np.ndarray:
    """(k, m) shrunk mean score per (cluster, model) of the prompts nearest each centroid; on a
    ``sparse`` (traffic) log with inverse-propensity ``weights`` per logged cell and at least the
    empirical-Bayes strength (:func:`~routecast.router.group_prior.sparse_strength`)."""
    groups = nearest_group(X, centroids)
    strength = sparse_strength(strength, groups, scores, len(centroids), weights, sparse)
    return shrunk_group_means(groups, scores, len(centroids), strength, weights=weights)


@register_router("cluster-prior")
class ClusterPriorRouter(Router):
    """Per-cluster shrunk mean score per model; prompts route by their nearest k-means centroid."""

    family = "a2"
    uses_embeddings = True
    tags = PolicyTags(quick_params={"k": 5, "shrinkage": 2.0})
    search_space = {"k": Categorical(list(K_GRID[1:])), "shrinkage": Float(0.0, 100.0)}

    def __init__(self, k: Any = "auto", shrinkage: Any = "auto", val_fraction: float = 0.2,
                 encoder: str = DEFAULT_ENCODER, seed: int = 0):
        self.k = k
        self.shrinkage = shrinkage
        self.val_fraction = val_fraction
        self.encoder = encoder
        self.seed = seed

    def _candidates(self) -> tuple[list[int], list[float]]:
        if self.k == "auto":
            ks = list(K_GRID)
        elif isinstance(self.k, (int, np.integer)) and not isinstance(self.k, bool) and self.k >= 1:
            ks = [int(self.k)]
        else:
            raise ConfigError(f"cluster-prior: k must be 'auto' or an integer >= 1, got {self.k!r}")
        strengths = (list(STRENGTH_GRID) if self.shrinkage == "auto"
                     else [check_strength(self.shrinkage, router="cluster-prior")])
        return ks, strengths

    def _fit(self, log, X):
        ks, strengths = self._candidates()
        scores = log.scores
        weights, sparse = log.propensity_weights(), log.is_sparse()
        self.selection_: dict[str, float] = {}
        k, strength = ks[0], strengths[0]
        if len(ks) * len(strengths) > 1:
            inner, held = split_validation(log.n_prompts, float(self.val_fraction), int(self.seed))
            if len(held) == 0:
                raise ConfigError(f"cluster-prior: {log.n_prompts} training prompts leave no internal "
                                  f"validation share (val_fraction={self.val_fraction}); give k and shrinkage")
            best = np.inf
            for kk in ks:
                centroids = fit_clusters(X[inner], kk, self.seed)
                held_groups = nearest_group(X[held], centroids)
                for s in strengths:
                    table = cluster_table(X[inner], scores[inner], centroids, s,
                                          None if weights is None else weights[inner], sparse)
                    brier = masked_brier(table[held_groups], scores[held], None if weights is None else weights[held])
                    self.selection_[f"k={kk},shrinkage={s:g}"] = brier
                    if brier < best - 1e-12:
                        best, k, strength = brier, kk, s
        self.centroids_ = fit_clusters(X, k, self.seed).astype(np.float32)
        self.table_ = cluster_table(X, scores, self.centroids_, strength, weights, sparse)
        self.k_ = int(len(self.centroids_))
        self.shrinkage_ = float(strength)

    def cluster_of(self, X: np.ndarray) -> np.ndarray:
        """(n,) cluster index of each embedding (nearest centroid by cosine similarity)."""
        self._check_fitted()
        return nearest_group(X, self.centroids_)

    def _predict_quality(self, X, texts):
        return self.table_[nearest_group(X, self.centroids_)]

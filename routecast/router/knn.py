"""k-nearest-neighbour router (RouterBench's KNN): a model's expected quality on a prompt is its
mean score on the k most similar training prompts (cosine similarity of embeddings).

No training beyond storing the embeddings, so it is the reference every learned router must
beat. Prediction is a matrix product in chunks, so a batch of prompts costs one BLAS call per
chunk rather than a Python loop.
"""

from __future__ import annotations

import numpy as np

from routecast.router.base import Router
from routecast.router.encoders.base import l2_normalise
from routecast.router.registry import register_router
from routecast.router.search_space import Categorical, Int
from routecast.router.encoders.default import DEFAULT_ENCODER

_CHUNK = 2048


@register_router("knn")
class KnnRouter(Router):
    search_space = {"k": Int(3, 200, log=True), "weighting": Categorical(["uniform", "similarity"])}
    #: NaN in the stored score matrix means "not logged"; checkpoint loading allows it there only
    nan_ok_arrays = frozenset({"train_scores_"})

    def __init__(self, k: int = 20, weighting: str = "uniform", encoder: str = DEFAULT_ENCODER):
        self.k = k
        self.weighting = weighting
        self.encoder = encoder

    def _fit(self, log, X):
        if self.weighting not in ("uniform", "similarity"):
            from routecast.errors import ConfigError

            raise ConfigError(f"knn: weighting must be 'uniform' or 'similarity', got {self.weighting!r}")
        self.train_embeddings_ = l2_normalise(X)
        self.train_scores_ = log.scores.astype(np.float32)
        self.prior_ = np.nan_to_num(log.mean_scores(), nan=0.0)

    def _predict_quality(self, X, texts):
        X = l2_normalise(X)
        k = int(min(max(1, self.k), len(self.train_embeddings_)))
        out = np.empty((len(X), self.train_scores_.shape[1]))
        for start in range(0, len(X), _CHUNK):
            sims = X[start:start + _CHUNK] @ self.train_embeddings_.T
            if k < sims.shape[1]:
                top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            else:
                top = np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
            neighbour_scores = self.train_scores_[top]  # (b, k, m)
            if self.weighting == "similarity":
                w = np.clip(np.take_along_axis(sims, top, axis=1), 1e-6, None)[:, :, None]
            else:
                w = np.ones(top.shape + (1,), dtype=np.float32)
            logged = ~np.isnan(neighbour_scores)
            num = np.where(logged, neighbour_scores * w, 0.0).sum(axis=1)
            den = np.where(logged, w, 0.0).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = num / den
            out[start:start + _CHUNK] = np.where(den > 0, mean, self.prior_)
        return out

"""A minimal learned quality predictor for ex-ante deferral when no router is supplied.

Ex-ante deferral needs *some* router's ``predict_quality``. The project's real routers (knn, mlp,
...) live in ``routecast.router``; this ridge regression per model on prompt embeddings is the
dependency-free fallback the cascade uses when asked for a router name that is not available,
so a cascade never fails only because another area is not installed. It is deliberately not
registered in the router registry: it is an implementation detail of cascades, not a product.
"""

from __future__ import annotations

import numpy as np

from routecast.router.encoders.default import DEFAULT_ENCODER

from routecast.router.base import Router


class RidgeQualityRouter(Router):
    """One ridge regression per model: prompt embedding -> logged score."""

    family = "a1"
    uses_embeddings = True

    def __init__(self, encoder: str = DEFAULT_ENCODER, alpha: float = 1.0):
        self.encoder = encoder
        self.alpha = alpha

    def _fit(self, log, X) -> None:
        from sklearn.linear_model import Ridge

        coefs, intercepts = [], []
        for j in range(log.n_models):
            logged = ~np.isnan(log.scores[:, j])
            if logged.sum() < 2:
                coefs.append(np.zeros(X.shape[1]))
                intercepts.append(float(np.nan_to_num(np.nanmean(log.scores[:, j]), nan=0.0))
                                  if logged.any() else 0.0)
                continue
            model = Ridge(alpha=self.alpha).fit(X[logged], log.scores[logged, j])
            coefs.append(model.coef_)
            intercepts.append(float(model.intercept_))
        self.coef_ = np.asarray(coefs, dtype=np.float64)
        self.intercept_ = np.asarray(intercepts, dtype=np.float64)

    def _predict_quality(self, X, texts) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_

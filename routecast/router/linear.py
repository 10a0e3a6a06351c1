"""Linear router: one ridge regression per model from the prompt embedding to its score.

Each model is fitted only on the prompts where it was logged (NaN cells are skipped, not
imputed). On a sparse log (a traffic log, or a bandit log from the decision log with a
``propensity`` column) each logged cell is weighted by its inverse propensity, logged or estimated
(:meth:`OutcomeLog.propensity_weights`). Coefficients are stored as plain arrays, so prediction is one matrix product and the
checkpoint needs no scikit-learn objects.
"""

from __future__ import annotations

import numpy as np

from routecast.router.base import Router
from routecast.core.registry import register_router
from routecast.router.search_space import Float
from routecast.router.encoders.default import DEFAULT_ENCODER


@register_router("linear")
class LinearRouter(Router):
    search_space = {"alpha": Float(1e-2, 1e3, log=True)}

    def __init__(self, alpha: float = 10.0, encoder: str = DEFAULT_ENCODER):
        self.alpha = alpha
        self.encoder = encoder

    def _fit(self, log, X):
        from sklearn.linear_model import Ridge

        X = np.asarray(X, dtype=np.float64)
        weights = log.propensity_weights()
        m = log.n_models
        coef = np.zeros((m, X.shape[1]))
        intercept = np.zeros(m)
        for j in range(m):
            logged = ~np.isnan(log.scores[:, j])
            if logged.sum() == 0:
                continue
            if logged.sum() < 2:
                intercept[j] = float(log.scores[logged, j].mean())
                continue
            model = Ridge(alpha=float(self.alpha)).fit(X[logged], log.scores[logged, j],
                                                       sample_weight=None if weights is None else weights[logged, j])
            coef[j], intercept[j] = model.coef_, model.intercept_
        self.coef_ = coef
        self.intercept_ = intercept

    def _predict_quality(self, X, texts):
        return np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_

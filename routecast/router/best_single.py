"""The best-single-model baseline: every prompt goes to the model with the best mean score.

Its 'predicted quality' is each model's mean training score, the same for every prompt, so the
shared decision rule sweeps it along the single models' cost-quality points as lam grows: the
curve every learned router has to beat. On a traffic log the mean weighs each logged cell by its
inverse logging propensity (:meth:`OutcomeLog.propensity_weights`): a model the logging policy sent
mostly easy prompts is not the best for that.
"""

from __future__ import annotations

import numpy as np

from routecast.router.base import Router
from routecast.core.registry import register_router
from routecast.router.group_prior import model_means


@register_router("best-single")
class BestSingleRouter(Router):
    """Every prompt's predicted quality is each model's mean training score (no hyperparameters)."""

    family = "a2"
    uses_embeddings = False

    def _fit(self, log, X):
        self.mean_scores_ = model_means(log)

    def _predict_quality(self, X, texts):
        n = len(texts) if texts is not None else len(X)
        return np.tile(self.mean_scores_, (n, 1))

"""The cheapest-model baseline: every prompt goes to the model with the lowest mean cost."""

from __future__ import annotations

import numpy as np

from routecast.errors import RoutingError
from routecast.router.base import Router
from routecast.core.registry import register_router


@register_router("cheapest")
class CheapestRouter(Router):
    """Predicts quality 1 for the model with the lowest mean training cost, 0 for the others.

    No hyperparameters, so no ``__init__``: the estimator contract reads an empty signature."""

    family = "a2"
    uses_embeddings = False

    def _fit(self, log, X):
        if np.isnan(self.costs_).all():
            raise RoutingError(f"'cheapest' needs costs; {log.source} logs none (give a price table)")
        self.cheapest_ = int(np.nanargmin(self.costs_))

    def _predict_quality(self, X, texts):
        n = len(texts) if texts is not None else len(X)
        quality = np.zeros((n, len(self.models_)))
        quality[:, self.cheapest_] = 1.0
        return quality

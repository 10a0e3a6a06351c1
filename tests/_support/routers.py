"""Router test doubles: unregistered, prompt-text routers whose predictions a test knows exactly."""

from __future__ import annotations

import numpy as np

from routecast.router.base import Router


class LookupRouter(Router):
    """Predicts the logged score of the very prompt (an oracle), from texts; unlogged cells as 0.

    Only prompts of the log it was fitted on can be routed (a KeyError otherwise)."""

    name = "lookup"
    uses_embeddings = False

    def __init__(self):
        pass

    def _fit(self, log, X):
        self.table_ = {p: np.nan_to_num(s) for p, s in zip(log.prompts, log.scores)}

    def _predict_quality(self, X, texts):
        return np.stack([self.table_[t] for t in texts])

"""The oracle: looks up the logged scores of the very prompt being routed.

An evaluation upper bound only (it cheats by reading the answer key), so it is never exported
or served. It is fitted on the log it will be evaluated on.
"""

from __future__ import annotations

import hashlib

import numpy as np

from routecast.errors import RoutingError
from routecast.router.base import Router
from routecast.core.registry import register_router
from routecast.core.tags import PolicyTags


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@register_router("oracle")
class OracleRouter(Router):
    family = "a2"
    uses_embeddings = False
    evaluation_only = True
    tags = PolicyTags(requires_texts=True)  # looks prompts up by their text

    def __init__(self):
        pass

    def _fit(self, log, X):
        self.scores_ = np.nan_to_num(log.scores, nan=0.0)
        self.keys_ = [_key(str(t)) for t in log.prompts]

    def _predict_quality(self, X, texts):
        if texts is None:
            raise RoutingError("the oracle routes by prompt text, not embeddings")
        index = {k: i for i, k in enumerate(self.keys_)}
        rows = []
        for t in texts:
            i = index.get(_key(str(t)))
            if i is None:
                raise RoutingError("the oracle can only route prompts of the log it was fitted on")
            rows.append(i)
        return self.scores_[np.asarray(rows, dtype=int)]

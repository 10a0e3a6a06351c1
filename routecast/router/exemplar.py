"""Exemplar router (semantic-router style): example prompts per model, route by similarity.

No outcome training: the user says which prompts each model should take
(``exemplars={"gpt-4": ["prove that ...", ...], "mixtral": [...]}``) and a prompt goes to the
model whose nearest exemplar is most similar. Without user exemplars, ``fit`` picks up to
``n_auto`` prompts per model from the log on which that model alone scored best: a weak,
documented use of outcomes so the baseline can run on any log.

On a traffic log (one model per request, :meth:`OutcomeLog.is_traffic`) no prompt shows which
model alone scored best, so a logged cell is an exemplar of its model when its score beats every
other model's mean; each model's mean (its quality where it has no exemplar) weighs the logged
cells by inverse logging propensity (:meth:`OutcomeLog.propensity_weights`), and the exemplars are
drawn with those weights, so both describe the whole prompt distribution rather than the prompts
the logging policy sent the model. A complete log has no weights: nothing changes there.

Predicted 'quality' is the similarity to the nearest exemplar mapped to [0, 1], a ranking signal
rather than a calibrated quality, so budgets on this router are met on the batch.
"""

from __future__ import annotations

import numpy as np

from routecast.errors import ConfigError
from routecast.router.base import Router
from routecast.router.encoders.base import l2_normalise
from routecast.router.group_prior import model_means
from routecast.core.registry import register_router
from routecast.router.search_space import Int
from routecast.core.tags import PolicyTags
from routecast.router.encoders.default import DEFAULT_ENCODER


@register_router("exemplar")
class ExemplarRouter(Router):
    family = "a2"
    search_space = {"n_auto": Int(5, 200, log=True)}
    tags = PolicyTags(quick_params={"n_auto": 5})

    def __init__(self, exemplars: dict[str, list[str]] | None = None, n_auto: int = 50,
                 encoder: str = DEFAULT_ENCODER, seed: int = 0):
        self.exemplars = exemplars
        self.n_auto = n_auto
        self.encoder = encoder
        self.seed = seed

    def _fit(self, log, X):
        texts, owners = [], []
        weights = log.propensity_weights()
        prior = model_means(log)
        if self.exemplars:
            unknown = sorted(set(self.exemplars) - set(log.models))
            if unknown:
                raise ConfigError(f"exemplar router: exemplars name model(s) not in the log: {unknown}")
            for name, examples in self.exemplars.items():
                for text in examples:
                    texts.append(str(text))
                    owners.append(log.models.index(name))
            from routecast.router.embedding_cache import embed

            E = embed(self.get_encoder(), texts)
        else:
            rng = np.random.default_rng(self.seed)
            scores = np.nan_to_num(log.scores, nan=-1.0)
            if log.is_traffic():  # beats every other model's mean: the only "best" one cell can show
                others = np.array([np.delete(prior, j).max(initial=-np.inf) for j in range(log.n_models)])
                unique_best = (scores > others[None, :]) & ~np.isnan(log.scores)
            else:
                best = scores.max(axis=1, keepdims=True)
                unique_best = (scores == best) & ((scores == best).sum(axis=1, keepdims=True) == 1)
            rows = []
            for j in range(log.n_models):
                candidates = np.flatnonzero(unique_best[:, j])
                if len(candidates) > self.n_auto:
                    w = None if weights is None else weights[candidates, j]
                    p = None if w is None or np.ptp(w) == 0 else w / w.sum()  # equal weights: the plain draw
                    candidates = np.sort(rng.choice(candidates, self.n_auto, replace=False, p=p))
                rows.extend(candidates.tolist())
                owners.extend([j] * len(candidates))
            E = np.asarray(X)[np.asarray(rows, dtype=int)] if rows else np.zeros((0, X.shape[1]), np.float32)
        self.exemplar_embeddings_ = l2_normalise(E) if len(E) else np.asarray(E, dtype=np.float32)
        self.exemplar_owner_ = np.asarray(owners, dtype=np.int64)
        self.prior_ = prior

    def _predict_quality(self, X, texts):
        n, m = len(X), len(self.models_)
        quality = np.tile(0.5 * self.prior_, (n, 1))  # models without exemplars: below any match
        if len(self.exemplar_owner_) == 0:
            return quality
        sims = l2_normalise(X) @ self.exemplar_embeddings_.T
        for j in range(m):
            cols = self.exemplar_owner_ == j
            if cols.any():
                quality[:, j] = (1.0 + sims[:, cols].max(axis=1)) / 2.0
        return quality

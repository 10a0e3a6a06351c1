"""The random baseline: every prompt goes to a model drawn uniformly at random (the default,
RouterBench's random router); with ``ratio`` a share ``ratio`` goes to the strong model (the
best-quality one, :func:`routecast.core.policy.strong_weak`) and the rest uniformly to the others
(RouteLLM's random router).

The default spreads calls over all models because that is the baseline a learned router over
all of them must beat; ``ratio`` is the two-model form. Randomness is a hash of the prompt text
and the seed, so the same prompt always gets the same draw (routing is reproducible and batch
order does not matter). Sweeping lam moves calls towards cheaper models; evaluation sweeps
``ratio`` as well to draw the random-mixing line."""

from __future__ import annotations

import hashlib

import numpy as np

from routecast.router.base import Router
from routecast.core.registry import register_router
from routecast.router.search_space import Float


def _uniforms(items, seed: int, n_models: int) -> np.ndarray:
    out = np.empty((len(items), n_models))
    for i, item in enumerate(items):
        data = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else np.asarray(item).tobytes()
        digest = hashlib.blake2b(data, digest_size=8, key=str(seed).encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "little"))
        out[i] = rng.random(n_models)
    return out


@register_router("random")
class RandomRouter(Router):
    family = "a2"
    uses_embeddings = False
    search_space = {"ratio": Float(0.0, 1.0)}

    def __init__(self, ratio: float | None = None, seed: int = 0):
        #: share of prompts sent to the strong model; None (default): every model equally likely
        self.ratio = ratio
        self.seed = seed

    def _fit(self, log, X):
        if self.ratio is not None and not 0.0 <= float(self.ratio) <= 1.0:
            from routecast.errors import ConfigError

            raise ConfigError(f"random router: ratio must be in [0, 1], got {self.ratio}")
        # the strong model of the kernel (best quality on the training split)
        self.strong_ = self.strong_weak().strong

    def _predict_quality(self, X, texts):
        items = texts if texts is not None else list(np.asarray(X))
        u = _uniforms(items, self.seed, len(self.models_))
        if self.ratio is None:
            return u
        quality = 0.5 * u
        to_strong = u[:, self.strong_] < float(self.ratio)
        quality[:, self.strong_] = np.where(to_strong, 1.0, 0.0)
        return quality

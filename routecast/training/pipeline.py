"""From a data source to fitted routers: load, split, embed (once, cached), fit.

Every command that trains (train, evaluate, tune, calibrate, the leaderboard benchmark) goes
through :func:`prepare` so that the same data, split and encoder settings always give the same
prompts in the same splits, and embeddings are computed once per split and reused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from routecast.data.outcome_log import OutcomeLog

from routecast.router.encoders.default import DEFAULT_ENCODER  # noqa: E402 - re-exported


@dataclass
class Prepared:
    """A loaded log, its three splits and lazily computed (cached) embeddings per split."""

    log: OutcomeLog
    train: OutcomeLog
    val: OutcomeLog
    test: OutcomeLog
    encoder: str
    settings: dict[str, Any]
    _embeddings: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _encoder_obj: Any = field(default=None, repr=False)

    def split(self, name: str) -> OutcomeLog:
        if name not in ("train", "val", "test", "all"):
            raise ValueError(f"unknown split {name!r}")
        return self.log if name == "all" else getattr(self, name)

    def get_encoder(self):
        if self._encoder_obj is None:
            from routecast.router.encoders import get_encoder

            self._encoder_obj = get_encoder(self.encoder)
        return self._encoder_obj

    def embeddings(self, name: str) -> np.ndarray:
        """Embeddings of a split's prompts (disk-cached across runs, memoised in this object)."""
        if name not in self._embeddings:
            from routecast.router.embedding_cache import embed

            self._embeddings[name] = embed(self.get_encoder(), list(self.split(name).prompts))
        return self._embeddings[name]


def prepare(data: str, *, encoder: str = DEFAULT_ENCODER, val: float = 0.1, test: float = 0.2,
            seed: int = 0, use_logged_split: bool = False, limit: int | None = None,
            models: list[str] | None = None) -> Prepared:
    """Load ``data`` (a built-in name or a path) and split it by prompt.

    ``limit`` keeps a seeded random subset of prompts (for quick runs); ``models`` keeps only
    those candidate models.
    """
    from routecast.data import load_log, split_log

    log = load_log(data)
    if models:
        log = log.select_models(models)
    if limit is not None and limit < log.n_prompts:
        rng = np.random.default_rng(seed)
        log = log.subset(np.sort(rng.choice(log.n_prompts, size=limit, replace=False)))
    splits = split_log(log, val=val, test=test, seed=seed, use_logged_split=use_logged_split)
    settings = {"data": data, "encoder": encoder, "val": val, "test": test, "seed": seed,
                "use_logged_split": use_logged_split, "limit": limit, "models": models}
    return Prepared(log=log, train=splits.train, val=splits.val, test=splits.test, encoder=encoder,
                    settings=settings)


def router_params(name: str, params: dict[str, Any] | None, prepared: Prepared) -> dict[str, Any]:
    """Fill in the encoder of the prepared data for routers that take one (unless given)."""
    from routecast.router.registry import get_router_class

    params = dict(params or {})
    if "encoder" in get_router_class(name).param_names() and "encoder" not in params:
        params["encoder"] = prepared.encoder
    return params


def fit_router(name: str, params: dict[str, Any] | None, prepared: Prepared, *, on: str = "train"):
    """Build router ``name`` and fit it on split ``on``; returns (router, seconds spent fitting).

    Evaluation-only routers (the oracle) are fitted on the whole log: they look answers up.
    Embeddings come from the prepared cache when the router uses the prepared encoder.
    """
    from routecast.router.registry import make_router

    params = router_params(name, params, prepared)
    router = make_router(name, **params)
    split = "all" if router.evaluation_only else on
    log = prepared.split(split)
    X = None
    if router.uses_embeddings and params.get("encoder") == prepared.encoder:
        X = prepared.embeddings(split)
    start = time.perf_counter()
    router.fit(log, X)
    return router, time.perf_counter() - start


def split_embeddings(router, prepared: Prepared, split: str) -> np.ndarray | None:
    """Embeddings to pass to ``router`` for a split, or None when it embeds by itself."""
    if router.uses_embeddings and getattr(router, "encoder", None) == prepared.encoder:
        return prepared.embeddings(split)
    return None

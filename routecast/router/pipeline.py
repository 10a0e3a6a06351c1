"""From a data source to fitted routers: load, split, embed (once, cached), fit.

Every command that trains (train, evaluate, tune, calibrate, the leaderboard benchmark) goes
through :func:`prepare` so that the same data, split and encoder settings always give the same
prompts in the same splits, and embeddings are computed once per split and reused.

The data may be an outcome log or a pairwise preference log (``Prepared.pairwise``); for pairs
the splits are :class:`~routecast.data.PairwiseLog` s carrying the price table, embeddings have
one row per pair, and :func:`fit_router` fits them through ``Router.fit`` (routers that learn
from pairs only: :mod:`routecast.router.from_pairs`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routecast.data.outcome_log import OutcomeLog
from routecast.errors import ConfigError

from routecast.router.encoders.default import DEFAULT_ENCODER  # noqa: E402 - re-exported


@dataclass
class Prepared:
    """A loaded log, its three splits and lazily computed (cached) embeddings per split.

    ``log`` and the splits are OutcomeLogs or, for preference data, PairwiseLogs (``pairwise``).
    ``logged`` holds the val/test splits of a traffic log as logged (sparse), before they were
    replaced by their estimates (what a policy's interval is computed from).
    """

    log: OutcomeLog
    train: OutcomeLog
    val: OutcomeLog
    test: OutcomeLog
    encoder: str
    settings: dict[str, Any]
    logged: dict[str, OutcomeLog] = field(default_factory=dict, repr=False)
    _embeddings: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _encoder_obj: Any = field(default=None, repr=False)

    @property
    def pairwise(self) -> bool:
        """True when the data is a pairwise preference log (judged pairs, no scores)."""
        from routecast.data.preferences import PairwiseLog

        return isinstance(self.log, PairwiseLog)

    def require_outcomes(self, what: str) -> None:
        """Refuse a pairwise log for work that needs a score per (prompt, model), e.g. tuning or cascades."""
        if self.pairwise:
            from routecast.errors import DataError

            raise DataError(f"{what} needs an outcome log (prompt, model, score); this is a pairwise "
                            "preference log (prompt, model_a, model_b, winner): train or evaluate mf / "
                            "sw-ranking on it instead", path=self.log.source)

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
            models: list[str] | None = None, columns: str | dict | None = None,
            prices: str | dict | None = None, duplicates: str = "mean", estimator: str = "dr") -> Prepared:
    """Load ``data`` (a built-in name or a path) and split it by prompt.

    ``limit`` keeps a seeded random subset of prompts (for quick runs); ``models`` keeps only
    those candidate models. ``columns`` (a column mapping, ``--map``) and ``prices`` (a price
    table, ``--price-table``: a path, a dict or a PriceTable) are passed to
    :func:`routecast.data.load_data`, which returns an outcome log or a pairwise log as the file
    holds; a pairwise log keeps the price table (costs of ``fit_preferences``). For pairs,
    ``models`` keeps the pairs between two of them and ``limit`` counts distinct prompts.
    ``duplicates`` (``--duplicates``) says how repeated (prompt, model) rows merge. ``estimator``
    (``--estimator``: dr, dm, ips, snips) is how val/test of a traffic log are estimated
    (:func:`routecast.router.estimated_split.estimated_split`).
    """
    from routecast.data import load_data, split_log
    from routecast.data.preferences import PairwiseLog
    from routecast.router.estimated_split import check_estimator

    check_estimator(estimator)  # refused before any loading, whatever shape the log has
    if isinstance(prices, Path):
        prices = str(prices)
    log = load_data(data, columns=columns, prices=prices, duplicates=duplicates)
    if isinstance(log, PairwiseLog):
        log = _select_pairs(log, models=models, limit=limit, seed=seed)
    else:
        if models:
            log = log.select_models(models)
        if limit is not None and limit < log.n_prompts:
            rng = np.random.default_rng(seed)
            log = log.subset(np.sort(rng.choice(log.n_prompts, size=limit, replace=False)))
        require_two_models(log)
    splits = split_log(log, val=val, test=test, seed=seed, use_logged_split=use_logged_split)
    estimates, logged = {}, {}
    if not isinstance(log, PairwiseLog):  # a traffic log: val and test are estimated from their logged cells
        from routecast.router.estimated_split import estimated_split

        for name in ("val", "test"):
            if getattr(splits, name).is_sparse():
                logged[name] = getattr(splits, name)
                filled, estimates[name] = estimated_split(logged[name], splits.train, estimator=estimator)
                splits = splits._replace(**{name: filled})
    requested = encoder
    if not isinstance(log, PairwiseLog) and encoder.partition(":")[0].strip().lower() == "trained-static":
        # trained on this train split only (never val/test), then an ordinary static:/folder spec
        from routecast.router.encoders.trained_static import resolve_trained_static

        encoder = resolve_trained_static(encoder, splits.train, seed=seed)
    settings = {"data": data, "encoder": encoder, "val": val, "test": test, "seed": seed,
                "use_logged_split": use_logged_split, "limit": limit, "models": models}
    if requested != encoder:
        settings["encoder_requested"] = requested
    if estimates:
        settings["estimated_splits"] = estimates
    settings.update({k: v if isinstance(v, (str, dict)) else str(v)
                     for k, v in (("columns", columns), ("prices", prices)) if v is not None})
    if duplicates != "mean":
        settings["duplicates"] = duplicates
    if estimator != "dr":
        settings["estimator"] = estimator
    return Prepared(log=log, train=splits.train, val=splits.val, test=splits.test, encoder=encoder,
                    settings=settings, logged=logged)


def require_two_models(log: OutcomeLog) -> None:
    """Refuse, in one line saying what would fix it, a log on which no routing can be learned:
    fewer than two models with a logged score."""
    from routecast.errors import DataError

    scored = [name for j, name in enumerate(log.models) if (~np.isnan(log.scores[:, j])).any()]
    if len(scored) >= 2:
        return
    have = f"only {scored[0]!r} has a logged score" if scored else "no model has a logged score"
    raise DataError(f"routing needs scored answers from at least two models, and {have}: add a second model's "
                    "answers to some prompts (routecast collect), then score them (routecast score)", path=log.source)


def _select_pairs(log, *, models: list[str] | None, limit: int | None, seed: int):
    """The pairs between two of ``models``, then a seeded subset of ``limit`` distinct prompts."""
    from routecast.data.names import model_name
    from routecast.errors import DataError

    if models:
        wanted = [model_name(m) for m in models]
        unknown = [m for m in wanted if m not in log.models]
        if unknown:
            raise DataError(f"model(s) {', '.join(unknown)} not in the pairwise log; it has {', '.join(log.models)}",
                            path=log.source)
        log = log.subset(np.flatnonzero(np.isin(log.model_a, wanted) & np.isin(log.model_b, wanted)))
    if limit is not None and limit < log.n_prompts:
        ids, _ = log.unique_prompts()
        rng = np.random.default_rng(seed)
        keep = ids[np.sort(rng.choice(len(ids), size=limit, replace=False))]
        log = log.subset(np.flatnonzero(np.isin(log.prompt_ids, keep)))
    return log


def router_params(name: str, params: dict[str, Any] | None, prepared: Prepared) -> dict[str, Any]:
    """Fill in the encoder of the prepared data for routers that take one (unless given)."""
    from routecast.core.registry import get_router_class

    params = dict(params or {})
    if "encoder" in get_router_class(name).param_names() and "encoder" not in params:
        params["encoder"] = prepared.encoder
    return params


def fit_router(name: str, params: dict[str, Any] | None, prepared: Prepared, *, on: str = "train",
               trainer_options: dict[str, Any] | None = None):
    """Build router ``name`` and fit it on split ``on``; returns (router, seconds spent fitting).

    ``trainer_options`` (where a Lightning router trains: see :mod:`routecast.router.distributed`,
    which checks them with ``distribution_params``) are set on the router before ``fit``.

    Evaluation-only routers (the oracle) are fitted on the whole log: they look answers up.
    Embeddings come from the prepared cache when the router uses the prepared encoder. On a
    pairwise log, ``Router.fit`` fits from the pairs (costs from the log's price table) or
    raises a RoutingError naming the routers that can.
    """
    from routecast.core.registry import make_router

    params = router_params(name, params, prepared)
    router = make_router(name, **params)
    if trainer_options:
        router.set_trainer_options(**trainer_options)
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


def train_static_to_folder(data: str, out: str | os.PathLike, *, params: dict[str, Any] | None = None,
                           val: float = 0.1, test: float = 0.2, seed: int = 0, use_logged_split: bool = False,
                           limit: int | None = None, columns=None, prices=None, duplicates: str = "mean",
                           estimator: str = "dr",
                           distribution: dict[str, Any] | None = None) -> tuple[Any, Any, Path | None]:
    """Split ``data`` exactly as ``routecast train`` does with the same options, train the table on
    the train split only, and (rank 0 only) write the encoder folder to ``out``.

    ``distribution`` (accelerator, devices, num_nodes, strategy) is where it trains, given to ``fit``.
    Returns (fitted trainer, the prepared splits, the folder or None on a rank that writes nothing).
    """
    from routecast.router.distributed import is_rank_zero
    from routecast.router.encoders.trained_static import StaticEncoderTrainer, split_fingerprint

    params = dict(params or {})
    params.setdefault("seed", seed)
    options = {key: value for key, value in (distribution or {}).items() if value is not None}
    try:
        trainer = StaticEncoderTrainer(**params)
    except TypeError as exc:
        raise ConfigError(f"unknown trained-static parameter: {exc}") from None
    trainer._check()
    trainer.base_encoder()  # refuse a bad base before loading any data
    prepared = prepare(data, encoder=trainer.base, val=val, test=test, seed=seed,
                       use_logged_split=use_logged_split, limit=limit, columns=columns, prices=prices,
                       duplicates=duplicates, estimator=estimator)
    prepared.require_outcomes("training a static encoder")
    trainer.set_trainer_options(**options).fit(prepared.train)
    if not is_rank_zero():
        return trainer, prepared, None
    split = {k: prepared.settings[k] for k in ("data", "val", "test", "seed", "use_logged_split", "limit")}
    encoder = trainer.save(out, extra={"split": split, "train_fingerprint": split_fingerprint(prepared.train)})
    return trainer, prepared, Path(encoder.spec.split(":", 1)[1].split(",")[0])

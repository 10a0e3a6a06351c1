"""Fit several routers on one prepared dataset and compare them on its test split.

This is the core loop behind ``routecast evaluate``, ``routecast train``, ``make demo`` and the
leaderboard benchmark: logs -> encoder -> per-model quality predictor -> decision rule swept
over lam -> cost-quality curves on held-out prompts -> AIQ / APGR / CPT with bootstrap intervals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from routecast.router.pipeline import Prepared, fit_router, split_embeddings


@dataclass
class RouterRun:
    """One fitted router with what it cost to fit and to route."""

    name: str
    router: Any
    train_seconds: float
    route_us_per_query: float
    curve: Any


@dataclass
class Experiment:
    prepared: Prepared
    runs: dict[str, RouterRun] = field(default_factory=dict)
    result: Any = None
    embed_seconds: float = 0.0


def parse_router_list(text: str) -> list[str]:
    """``"knn,mlp, best-single"`` -> names, validated against the registry."""
    from routecast.errors import ConfigError
    from routecast.router.registry import router_names

    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError("no router given (routers, e.g. knn,mlp,best-single)")
    known = set(router_names())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown router(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return names


def run_experiment(prepared: Prepared, routers: list[str], *,
                   params: Mapping[str, Mapping[str, Any]] | None = None, n_boot: int = 200,
                   seed: int = 0, extra_curves: Mapping[str, Any] | None = None,
                   progress: bool = True, calibrate: bool = True,
                   cost_range: tuple[float, float] | None = None, strong: str | None = None,
                   weak: str | None = None) -> Experiment:
    """Fit each router on the train split (calibrating on validation), sweep it on the test split
    and evaluate all curves together with the single models.

    ``cost_range``, ``strong`` and ``weak`` are passed to
    :func:`routecast.router.evaluation.evaluate.evaluate` (AIQ range; APGR's pair)."""
    from routecast.router.evaluation.evaluate import evaluate, single_model_curves, sweep_router

    params = dict(params or {})
    experiment = Experiment(prepared)
    needs_embeddings = any(_uses_prepared_encoder(name, params.get(name), prepared) for name in routers)
    if needs_embeddings:
        start = time.perf_counter()
        for split in ("train", "val", "test"):
            prepared.embeddings(split)
        experiment.embed_seconds = time.perf_counter() - start

    curves: dict[str, Any] = {}
    with _progress(progress, len(routers)) as step:
        for name in routers:
            step(f"fitting {name}")
            router, seconds = fit_router(name, params.get(name), prepared)
            if calibrate and not router.evaluation_only and prepared.val.n_prompts:
                _try_calibrate(router, prepared)
            test_X = split_embeddings(router, prepared, "test")
            start = time.perf_counter()
            router.route(list(prepared.test.prompts), embeddings=test_X)
            route_us = (time.perf_counter() - start) / max(prepared.test.n_prompts, 1) * 1e6
            curve = sweep_router(router, prepared.test, embeddings=test_X, label=name,
                                 meta={"train_seconds": round(seconds, 3),
                                       "route_us_per_query": round(route_us, 2)})
            curves[name] = curve
            experiment.runs[name] = RouterRun(name, router, seconds, route_us, curve)
    curves.update(extra_curves or {})
    curves.update(single_model_curves(prepared.test))
    experiment.result = evaluate(curves, prepared.test, n_boot=n_boot, seed=seed, cost_range=cost_range,
                                 strong=strong, weak=weak,
                                 metadata={"data": prepared.settings, "encoder": prepared.encoder,
                                           "embed_seconds": round(experiment.embed_seconds, 2),
                                           "n_train": prepared.train.n_prompts,
                                           "n_val": prepared.val.n_prompts,
                                           "n_test": prepared.test.n_prompts})
    return experiment


CASCADE_KINDS = ("ex-ante", "ex-post", "agreement")


def cascade_curves(prepared: Prepared, kinds: list[str], *, router: str = "knn",
                   ensembles: bool = True) -> dict[str, Any]:
    """Cascades (c2) and post-hoc ensembles (c1) as curves on the same test prompts as the routers.

    Each cascade is ordered by mean cost, learns its deferral scorer on train and its thresholds
    on validation; ex-post and agreement deferral and majority vote / best-of-n need responses
    and are skipped (with the reason recorded) on logs without them. Costs must be in the same
    unit as the routers' (USD when the log has costs; otherwise the cascade is skipped).
    """
    from routecast.cascade.cascade import Cascade
    from routecast.cascade.ensembles import best_of_n, majority_vote, oracle_ensemble
    from routecast.errors import ConfigError, RoutecastError
    from routecast.router.evaluation.curves import realised_costs

    unknown = [k for k in kinds if k not in CASCADE_KINDS]
    if unknown:
        raise ConfigError(f"unknown cascade deferral {unknown}; choose from {', '.join(CASCADE_KINDS)}")
    train, val, test = (prepared.train.complete(), prepared.val.complete(), prepared.test.complete())
    _, _, unit = realised_costs(test)
    if np.isnan(prepared.log.costs).all():
        # no USD anywhere: price every split on the relative scale the routers' curves use,
        # derived once from the whole log so the three splits agree
        scale = realised_costs(prepared.log.complete())[0][0]
        train, val, test = (s.with_costs(np.broadcast_to(scale, s.costs.shape).copy()) for s in (train, val, test))
    curves: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    has_responses = test.responses is not None and all(isinstance(r, str) for r in test.responses.reshape(-1))
    pool = _efficient_models(train)
    for kind in kinds:
        label = f"cascade ({kind})"
        try:
            if len(pool) > 2:
                from routecast.cascade.cascade import search_chains

                cascade = search_chains(train, val, max_len=3, models=pool, deferral=kind, router=router,
                                        encoder=prepared.encoder).best
            else:
                cascade = Cascade(chain=pool, deferral=kind, router=router, encoder=prepared.encoder)
                cascade.fit(train, val)
            curves[label] = cascade.curve(test).to_curve(label, test, cost_unit=unit)
        except RoutecastError as exc:
            skipped[label] = str(exc)
    if ensembles:
        curves["oracle-ensemble"] = oracle_ensemble(test).to_curve(test, cost_unit=unit)
        if has_responses:
            curves["majority-vote"] = majority_vote(test).to_curve(test, cost_unit=unit)
            scorer = None
            try:
                from routecast.cascade.answer_scorer import AnswerScorer

                scorer = AnswerScorer(encoder=prepared.encoder).fit(train)
                curves["best-of-n"] = best_of_n(test, scorer).to_curve(test, cost_unit=unit)
            except RoutecastError as exc:
                skipped["best-of-n"] = str(exc)
        else:
            skipped["majority-vote / best-of-n"] = "the log has no response for every model"
    for curve in curves.values():
        curve.meta = {**(curve.meta or {}), "skipped": skipped} if skipped else curve.meta
    return curves


def _efficient_models(log, max_models: int = 6) -> list[str]:
    """Models on the cost-quality frontier of the training split (no other model is both
    cheaper and better): the only sensible cascade stages. At most ``max_models``, keeping the
    best, so chain search stays bounded on logs with dozens of models."""
    cost, quality = log.mean_costs(), log.mean_scores()
    order = sorted(range(log.n_models), key=lambda j: (cost[j], -quality[j]))
    frontier, best = [], -np.inf
    for j in order:
        if quality[j] > best:
            frontier.append(j)
            best = quality[j]
    frontier = frontier[-max_models:]
    return [log.models[j] for j in frontier]


def _uses_prepared_encoder(name, params, prepared) -> bool:
    from routecast.router.registry import get_router_class

    cls = get_router_class(name)
    return cls.uses_embeddings and (params or {}).get("encoder", prepared.encoder) == prepared.encoder


def _try_calibrate(router, prepared: Prepared) -> None:
    """Calibrate on validation when costs are known; routers without costs route by lam only."""
    from routecast.errors import RoutingError

    try:
        router.calibrate(prepared.val, embeddings=split_embeddings(router, prepared, "val"))
    except RoutingError:
        pass


class _progress:
    """A rich progress bar over routers (silent when not interactive or disabled)."""

    def __init__(self, enabled: bool, total: int):
        self.enabled = enabled
        self.total = total

    def __enter__(self):
        if not self.enabled:
            return lambda description: None
        from rich.progress import Progress

        self._bar = Progress(transient=True)
        self._bar.__enter__()
        self._task = self._bar.add_task("routers", total=self.total)
        self._started = False

        def step(description: str) -> None:
            if self._started:
                self._bar.advance(self._task)
            self._started = True
            self._bar.update(self._task, description=description)

        return step

    def __exit__(self, *exc):
        if self.enabled:
            self._bar.__exit__(*exc)
        return False

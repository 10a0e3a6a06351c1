"""Fit several routers on one prepared dataset and compare them on its test split.

This is the core loop behind ``routecast evaluate``, ``routecast train``, ``make demo`` and the
leaderboard benchmark: logs -> encoder -> per-model quality predictor -> decision rule swept
over lam -> cost-quality curves on held-out prompts -> AIQ / APGR / CPT with bootstrap intervals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

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
    #: policies that could not run on this data -> the reason (never silently dropped)
    skipped: dict[str, str] = field(default_factory=dict)


def parse_router_list(text: str, skip: str | None = None) -> list[str]:
    """``"knn,mlp, best-single"`` -> names, validated against the registry. ``"all"`` is every
    registered router except those in ``skip`` (comma-separated)."""
    from routecast.errors import ConfigError
    from routecast.core.registry import router_names

    names = [part.strip() for part in text.split(",") if part.strip()]
    skipped = [part.strip() for part in (skip or "").split(",") if part.strip()]
    unknown_skip = sorted(set(skipped) - set(router_names()))
    if unknown_skip:
        raise ConfigError(f"cannot skip unknown router(s) {', '.join(unknown_skip)}")
    if names == ["all"]:
        names = [n for n in router_names() if n not in skipped]
    else:
        names = [n for n in names if n not in skipped]
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
                   weak: str | None = None, skip_failures: bool = False,
                   skipped: Mapping[str, str] | None = None, baselines: Sequence[str] = (),
                   trainer_options: Mapping[str, Mapping[str, Any]] | None = None) -> Experiment:
    """Fit each router on the train split (calibrating on validation), sweep it on the test split
    and evaluate all curves together with the single models.

    ``cost_range``, ``strong`` and ``weak`` are passed to
    :func:`routecast.evaluation.evaluate.evaluate` (AIQ range; APGR's pair). With
    ``skip_failures`` a router that cannot run on this data (e.g. ``task-prior`` on a log without a
    benchmark column) is listed in ``Experiment.skipped`` with its error instead of stopping the
    run; ``skipped`` adds reasons found earlier (cascade kinds the log cannot run).
    ``trainer_options`` (router name -> where it trains) go to :func:`fit_router`.
    ``baselines`` (e.g. the priors, :data:`~routecast.evaluation.priors.PRIOR_ROUTERS`) are fitted
    after ``routers`` (those already in ``routers`` once); one that cannot run on this data is
    always listed in ``skipped``, never an error: ``train`` shows them beside its one router.

    The priors (``cluster-prior``, ``task-prior``) are also scored on the validation split, and
    ``task-prior`` adds its logged-task form (``task-prior (logged task)``, the dataset oracle):
    the better prior, which every learned router's ``gain_over_prior`` is measured against, is
    the one with the best validation AIQ (:mod:`routecast.evaluation.priors`)."""
    from routecast.evaluation.evaluate import evaluate, single_model_curves, sweep_router
    from routecast.evaluation.priors import PRIOR_ROUTERS, score_prior
    from routecast.progress import Progress

    params = dict(params or {})
    from routecast.errors import RoutecastError

    experiment = Experiment(prepared, skipped=dict(skipped or {}))
    optional = [name for name in baselines if name not in routers]
    routers = list(routers) + optional
    needs_embeddings = any(_uses_prepared_encoder(name, params.get(name), prepared) for name in routers)
    if needs_embeddings:
        start = time.perf_counter()
        for split in ("train", "val", "test"):
            prepared.embeddings(split)
        experiment.embed_seconds = time.perf_counter() - start

    curves: dict[str, Any] = {}
    prior_val_aiq: dict[str, float] = {}
    with Progress("evaluate", total=len(routers) + 1, enabled=progress) as report:
        for name in routers:
            report.step(f"fitting {name}")
            try:
                router, seconds = fit_router(name, params.get(name), prepared,
                                             trainer_options=(trainer_options or {}).get(name))
            except RoutecastError as exc:
                if not skip_failures and name not in optional:
                    raise
                experiment.skipped[name] = str(exc)
                continue
            if router.evaluation_only and "test" in prepared.settings.get("estimated_splits", {}):
                experiment.skipped[name] = ("it looks each prompt's answers up, and on a traffic log most are not "
                                            "logged: its quality there is unknown")
                continue
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
            if name in PRIOR_ROUTERS:  # two cheap lookup tables: their validation AIQ picks the better one
                extra, val_aiq = score_prior(name, router, prepared.val, prepared.test, test_embeddings=test_X,
                                             val_embeddings=split_embeddings(router, prepared, "val")
                                             if prepared.val.n_prompts else None)
                curves.update(extra)
                prior_val_aiq.update(val_aiq)
        curves.update(extra_curves or {})
        curves.update(single_model_curves(prepared.test))
        report.step(f"scoring {len(curves)} curves ({n_boot} bootstrap resamples)")
        experiment.result = evaluate(curves, prepared.test, n_boot=n_boot, seed=seed, cost_range=cost_range,
                                     strong=strong, weak=weak, prior_val_aiq=prior_val_aiq,
                                     metadata={"data": prepared.settings, "encoder": prepared.encoder,
                                               "embed_seconds": round(experiment.embed_seconds, 2),
                                               "n_train": prepared.train.n_prompts,
                                               "n_val": prepared.val.n_prompts,
                                               "n_test": prepared.test.n_prompts,
                                               **({"skipped": experiment.skipped} if experiment.skipped else {})})
        note_estimates(experiment.result, prepared.settings.get("estimated_splits", {}))
        if "test" in prepared.logged:
            estimated_intervals(experiment.result, prepared)
    return experiment


def estimated_intervals(result, prepared: Prepared) -> None:
    """On a traffic log's estimated test split, every policy's intervals from the one helper
    ``calibrate`` uses (:func:`routecast.router.estimated_split.policy_intervals`, same estimator,
    resamples and seed), so the report and ``calibrate`` give the same interval for a point.

    Why: the plain bootstrap over the filled cells is too narrow where a policy leans on a rarely
    logged model. Each point's quality interval goes to the policy's ``meta["quality_ci"]`` (k, 2);
    the AIQ interval is widened to at least the AIQ of the curve through the points' lower (upper)
    ends, a conservative bound (AIQ grows with every point's quality). The paired gain over the
    prior keeps its bootstrap: both policies share the same corrections, which cancel in it."""
    from routecast.evaluation import metrics
    from routecast.evaluation.evaluate import CURVE
    from routecast.router.estimated_split import policy_intervals

    split, estimator = prepared.logged["test"], prepared.settings["estimated_splits"]["test"]["estimator"]
    c_min, c_max = result.cost_range
    for label, score in result.routers.items():
        curve = result.curves[label]
        choices = curve.choices
        if choices is None and curve.family == "single" and label in result.models:
            choices = np.full((1, split.n_prompts), result.models.index(label))
        if choices is None or choices.shape[1] != split.n_prompts:
            continue
        _, intervals = policy_intervals(split, prepared.train, choices, estimator=estimator,
                                        seed=int(prepared.settings.get("seed", 0)))
        score.meta["quality_ci"] = intervals.tolist()
        if score.status == CURVE:
            low = metrics.aiq(curve.cost, intervals[:, 0], c_min, c_max)
            high = metrics.aiq(curve.cost, intervals[:, 1], c_min, c_max)
            score.aiq_ci = (min(score.aiq_ci[0], low), max(score.aiq_ci[1], high))


def note_estimates(result, estimates: dict) -> None:
    """Say in the result's notes how a traffic log's splits were estimated (not measured), and
    drop the oracle quality of an estimated test split (the best of estimated cells is not a
    ceiling any router reaches)."""
    for split, info in estimates.items():
        by = f"per {info['grouped_by']}" if info["grouped_by"] else "over the split"
        text = (f"{split} split estimated, not measured: too few prompts have every model's score "
                f"({info['complete_rows']} of {info['prompts']}), so each curve is the {info['estimator'].upper()} "
                f"estimate from {info['logged_cells']:,} logged cells with propensities {info['propensities']}"
                f"{'' if info['propensities'] == 'logged' else ' ' + by}; intervals are bootstrap over prompts widened "
                f"to the logging draw's variance, as calibrate's")
        fails = info["positivity_fails"]
        if fails:
            shown = ", ".join(f"{f['model']}" + (f" on {f['group']}" if f["group"] else "") for f in fails[:8])
            text += (f"; positivity fails (never logged, estimated by the outcome model alone): {shown}"
                     + (f" and {len(fails) - 8} more" if len(fails) > 8 else ""))
        result.notes.insert(0, text)
        if split == "test":
            result.oracle_quality = float("nan")


def _uses_prepared_encoder(name, params, prepared) -> bool:
    from routecast.core.registry import get_router_class

    cls = get_router_class(name)
    return cls.uses_embeddings and (params or {}).get("encoder", prepared.encoder) == prepared.encoder


def _try_calibrate(router, prepared: Prepared) -> None:
    """Calibrate on validation when costs are known; routers without costs route by lam only."""
    from routecast.errors import RoutingError

    try:
        router.calibrate(prepared.val, embeddings=split_embeddings(router, prepared, "val"))
    except RoutingError:
        pass

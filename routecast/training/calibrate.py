"""Calibrate a trained router so a budget means what it says on real outcomes.

A router turns a budget ($/query), a strong-model share or a quality target into a
willingness-to-pay ``lam``. Uncalibrated, it can only do that on its own predictions for the
batch being routed, which are optimistic. :func:`calibrate_run` measures, on the run's
validation split (never seen in training), the realised cost, quality and strong share at every
``lam`` (:meth:`Router.calibrate`), stores that curve in the checkpoint so ``route(budget=...)``
uses it from then on, and checks on the untouched test split what the chosen ``lam`` really gives
there: requested vs achieved, so the user sees how well the promise transfers.

The splits are rebuilt with :func:`routecast.router.pipeline.prepare` from the settings saved
in ``RUN_DIR/run.json``, so they are the same prompts the run was trained and tested on.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from routecast.errors import CheckpointError, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from routecast.training.tracking import Tracker

CALIBRATION_FILE = "calibration.json"
ROUTER_DIR = "router"
RUN_FILE = "run.json"


def read_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``RUN_DIR/run.json`` as written by ``routecast train --out RUN_DIR``."""
    path = Path(run_dir) / RUN_FILE
    if not Path(run_dir).is_dir():
        raise ConfigError(f"run folder {run_dir} does not exist (a run folder is what training writes)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"file {path}: missing; {run_dir} is not a routecast train output folder") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"file {path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict) or not data.get("data"):
        raise ConfigError(f"file {path}, key 'data': missing; cannot rebuild the run's splits")
    return data


def prepare_kwargs(run: dict[str, Any]) -> dict[str, Any]:
    """Arguments of :func:`prepare` that reproduce the run's data and splits.

    Accepts the settings at the top level of run.json, under ``"split"`` or under
    ``"settings"`` (the lead's ``Prepared.settings``); later sources win.
    """
    from routecast.router.pipeline import prepare

    accepted = set(inspect.signature(prepare).parameters)
    merged: dict[str, Any] = {}
    for source in (run, run.get("settings"), run.get("split")):
        if isinstance(source, dict):
            merged.update({k: v for k, v in source.items()
                           if k in accepted and (v is None or isinstance(v, (str, int, float, bool, list)))})
    if not merged.get("data"):
        raise ConfigError("run.json names no data source")
    return merged


def default_point_name(request: dict[str, Any], spend: str = "mean") -> str:
    """``budget-0.0002``, ``share-0.3``, ``quality-0.6`` or ``match-MODEL`` for a request; a budget
    met by the upper end of the spend's interval is ``budget-0.0002-upper``."""
    if "match_model" in request:
        return "match-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in str(request["match_model"]))[:50]
    prefix = {"budget": "budget", "strong_share": "share", "target_quality": "quality"}
    key = next(k for k in prefix if k in request)
    return f"{prefix[key]}-{float(request[key]):.6g}" + ("-upper" if key == "budget" and spend != "mean" else "")


def holds_calibration(router, val, spend: str) -> bool:
    """Whether ``router`` already holds the curve :meth:`Router.calibrate` measures on ``val``
    with this ``spend``: ``routecast train`` calibrates on the same validation split before it
    saves the checkpoint, so ``calibrate`` reads that curve instead of measuring it again. The
    curve must count the router's strong model and as many prompts as ``val`` has complete rows."""
    stored = getattr(router, "calibration_", None)
    return (isinstance(stored, dict) and stored.get("kind") != "pairwise"
            and stored.get("spend", "mean") == spend and stored.get("strong") == router.strong_weak().strong
            and stored.get("n_prompts") == int(val.complete_rows().sum()))


def calibrate_run(run_dir: str | os.PathLike, *, budget: float | None = None,
                  strong_share: float | None = None, target_quality: float | None = None,
                  match_model: str | None = None, name: str | None = None, make_default: bool = True,
                  conservative: bool = False, tracker: "Tracker | None" = None,
                  save: bool = True) -> dict[str, Any]:
    """Calibrate ``RUN_DIR/router`` on the run's validation split and check it on the test split.

    Give exactly one request: ``budget`` (USD per query), ``strong_share`` (share of calls to the
    strong model: the best-quality one, :func:`routecast.core.policy.strong_weak`), ``target_quality`` (mean quality to reach at the lowest cost) or
    ``match_model`` (reach that model's validation quality at the lowest cost). Raises
    :class:`RoutingError` when the request cannot be met on the calibration split (e.g. a budget
    below the cheapest routing cost). Re-saves the checkpoint with its calibration curve (atomic
    folder swap) and writes ``RUN_DIR/calibration.json``; returns what it wrote.

    The result is also stored as a named operating point in the checkpoint (``name``, by default
    ``budget-0.0002`` / ``share-0.3`` / ``quality-0.6`` / ``match-MODEL``) with its lam and the
    values measured on validation and test; with ``make_default`` it becomes the point ``route``,
    ``serve``, ``routecast.load().route()`` and the Python router use when a request names none.
    ``result["config_line"]`` is the line to paste into a server config.

    The validation curve is the one ``routecast train`` stored when it matches
    (:func:`holds_calibration`), else :meth:`Router.calibrate` measures it here.

    ``conservative``: a budget is met by the upper end of a bootstrap interval of the validation
    spend (``spend = "upper"``, :func:`routecast.evaluation.measure.upper_spend`) rather than by its
    mean, so it also holds on unseen prompts; ``result["spend"]`` says which was used.
    """
    from routecast.core.checkpoint import load_checkpoint, read_config, save_checkpoint
    from routecast.core.curve import SPEND_MEAN, SPEND_UPPER
    from routecast.evaluation.measure import sweep_router
    from routecast.router.pipeline import prepare, split_embeddings

    given = {k: v for k, v in (("budget", budget), ("strong_share", strong_share),
                               ("target_quality", target_quality), ("match_model", match_model))
             if v is not None}
    if len(given) != 1:
        raise ConfigError("give exactly one of budget, strong_share, target_quality, match_model"
                          + (f" (got {', '.join(given)})" if given else ""))
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    ckpt = run_dir / ROUTER_DIR
    if not ckpt.is_dir():
        raise CheckpointError(f"{ckpt}: no router checkpoint in this run folder")
    router = load_checkpoint(ckpt)
    prepared = prepare(**prepare_kwargs(run))
    val, test = prepared.val, prepared.test
    # a pairwise run (judged pairs, costs from its price table) is measured on win rates:
    # routecast.evaluation.pairwise; its logs have no select_models/scores
    if not prepared.pairwise and tuple(val.models) != tuple(router.models_):
        val, test = val.select_models(router.models_), test.select_models(router.models_)

    request = dict(given)
    if match_model is not None:
        if match_model not in router.models_:
            raise ConfigError(f"match_model {match_model!r} is not one of the router's models: "
                              f"{', '.join(router.models_)}")
        if prepared.pairwise:
            from routecast.evaluation.pairwise import judged_prompts

            col = judged_prompts(val, router.models_).scores()[:, list(router.models_).index(match_model)]
        else:
            col = val.scores[:, list(router.models_).index(match_model)]
        target_quality = float(np.nanmean(col))
        request["target_quality"] = target_quality

    spend = SPEND_UPPER if conservative else SPEND_MEAN
    if conservative and "budget" not in request:
        raise ConfigError("--conservative applies to a budget (the spend's upper end); give --budget")
    reuse = not prepared.pairwise and holds_calibration(router, val, spend)
    if not reuse:
        router.calibrate(val, embeddings=split_embeddings(router, prepared, "val"), spend=spend)
    curve = router.operating_curve()
    knob = next(k for k in ("budget", "strong_share", "target_quality") if k in request)
    point = curve.index_for(**{knob: request[knob]})
    lam = float(curve.lams[point])
    on_cal = curve.point(point)

    # the same lam on the untouched test split, measured by the same function (complete rows only)
    X_test = split_embeddings(router, prepared, "test")
    if prepared.pairwise:
        from routecast.evaluation.pairwise import measure_at

        on_cal["judged"] = int(router.calibration_["judged"][point])
        on_test = measure_at(router, test, lam, X_test, strong=curve.strong)
    else:
        test_curve = sweep_router(router, test, embeddings=X_test, lams=[lam], strong=curve.strong,
                                  diagnostics=False)
        on_test = test_curve.point(0)
        if "test" in prepared.logged:  # a traffic log: the estimate's interval from the logged cells
            from routecast.router.estimated_split import policy_interval

            estimator = prepared.settings["estimated_splits"]["test"]["estimator"]
            _, interval = policy_interval(prepared.logged["test"], prepared.train, test_curve.choices[0],
                                          estimator=estimator, seed=int(prepared.settings.get("seed", 0)))
            on_test["quality_ci"] = [float(interval[0]), float(interval[1])]

    achieved_key = {"budget": "cost", "strong_share": "strong_share", "target_quality": "quality"}[knob]
    point_name = name or default_point_name(request, spend)
    point = {"lam": lam, "request": dict(request), "val": on_cal, "test": on_test}
    router.add_operating_point(point_name, point, make_default=make_default)
    result = {
        "operating_point": {"name": point_name, "default": make_default, **point},
        "config_line": f"default_operating_point: {point_name}   # lam={lam:.6g}; {achieved_key} "
                       f"{on_cal[achieved_key]:.6g} on val, {on_test[achieved_key]:.6g} on test",
        "request": request,
        "spend": spend,
        "curve": "stored by train" if reuse else "measured",
        "lam": lam,
        "strong_model": router.models_[curve.strong],
        "notes": list(router.strong_weak().notes),
        "calibration_split": {"name": "val", **on_cal},
        "test_split": {"name": "test", **on_test},
        "requested": float(request[knob]),
        "achieved": {"calibration": on_cal[achieved_key], "test": on_test[achieved_key]},
        "metric": achieved_key,
        "checkpoint": str(ckpt),
    }
    for split, info in prepared.settings.get("estimated_splits", {}).items():  # a traffic log: estimated
        result["notes"].append(f"{split} quality is the {info['estimator'].upper()} estimate from "
                               f"{info['logged_cells']:,} logged cells (propensities {info['propensities']}); "
                               "costs are the known ones"
                               + (f"; 95% interval [{on_test['quality_ci'][0]:.4f}, {on_test['quality_ci'][1]:.4f}]"
                                  if split == "test" and "quality_ci" in on_test else ""))
    if prepared.pairwise:
        result["notes"].append(
            f"pairwise log: quality = win rate of the chosen model in the judged pairs that involve it "
            f"(judged on {on_cal['judged']} of {on_cal['n_prompts']} val and {on_test['judged']} of "
            f"{on_test['n_prompts']} test prompts); cost from the price table")
    if save:
        from routecast.atomic import write_json

        save_checkpoint(router, ckpt, extra=read_config(ckpt).get("extra") or {})
        write_json(run_dir / CALIBRATION_FILE, result)
    if tracker is not None:
        tracker.log_params({"run_dir": str(run_dir), **{f"request.{k}": v for k, v in request.items()}})
        # achieved values and the sweep under distinct names: the sweep is a step series, the
        # achieved values are single numbers that search_runs shows
        tracker.log_metrics({"achieved.lam": lam, "achieved.val": on_cal, "achieved.test": on_test})
        tracker.log_curve({"sweep.cost": curve.cost.tolist(), "sweep.quality": curve.quality.tolist(),
                           "sweep.strong_share": curve.strong_share.tolist(), "sweep.lam": curve.lams.tolist()})
        if save:
            tracker.log_artifact(run_dir / CALIBRATION_FILE)
    return result


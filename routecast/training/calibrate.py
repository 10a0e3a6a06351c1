"""Calibrate a trained router so a budget means what it says on real outcomes.

A router turns a budget ($/query), a strong-model share or a quality target into a
willingness-to-pay ``lam``. Uncalibrated, it can only do that on its own predictions for the
batch being routed, which are optimistic. :func:`calibrate_run` measures, on the run's
validation split (never seen in training), the realised cost, quality and strong share at every
``lam`` (:meth:`Router.calibrate`), stores that curve in the checkpoint so ``route(budget=...)``
uses it from then on, and checks on the untouched test split what the chosen ``lam`` really gives
there: requested vs achieved, so the user sees how well the promise transfers.

The splits are rebuilt with :func:`routecast.training.pipeline.prepare` from the settings saved
in ``RUN_DIR/run.json``, so they are the same prompts the run was trained and tested on.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from routecast.errors import CheckpointError, ConfigError, RoutingError

if TYPE_CHECKING:  # pragma: no cover
    from routecast.training.tracking import Tracker

CALIBRATION_FILE = "calibration.json"
ROUTER_DIR = "router"
RUN_FILE = "run.json"


def read_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``RUN_DIR/run.json`` as written by ``routecast train --out RUN_DIR``."""
    path = Path(run_dir) / RUN_FILE
    if not Path(run_dir).is_dir():
        raise ConfigError(f"run folder {run_dir} does not exist (make one with routecast train --out DIR)")
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
    from routecast.training.pipeline import prepare

    accepted = set(inspect.signature(prepare).parameters)
    merged: dict[str, Any] = {}
    for source in (run, run.get("settings"), run.get("split")):
        if isinstance(source, dict):
            merged.update({k: v for k, v in source.items()
                           if k in accepted and (v is None or isinstance(v, (str, int, float, bool, list)))})
    if not merged.get("data"):
        raise ConfigError("run.json names no data source")
    return merged


def _strong_index(costs: np.ndarray) -> int:
    return int(np.nanargmax(costs))


def _point(log, choice: np.ndarray, unit_costs: np.ndarray, strong: int) -> dict[str, Any]:
    """Realised mean cost, quality and strong share of ``choice`` on ``log``."""
    rows = np.arange(log.n_prompts)
    scores = log.scores[rows, choice]
    scored = ~np.isnan(scores)
    return {"cost": float(unit_costs[rows, choice].mean()),
            "quality": float(scores[scored].mean()) if scored.any() else float("nan"),
            "strong_share": float((choice == strong).mean()),
            "n_prompts": int(log.n_prompts), "n_unscored": int((~scored).sum())}


def calibrate_run(run_dir: str | os.PathLike, *, budget: float | None = None,
                  strong_share: float | None = None, target_quality: float | None = None,
                  match_model: str | None = None, tracker: "Tracker | None" = None,
                  save: bool = True) -> dict[str, Any]:
    """Calibrate ``RUN_DIR/router`` on the run's validation split and check it on the test split.

    Give exactly one request: ``budget`` (USD per query), ``strong_share`` (share of calls to the
    most expensive model), ``target_quality`` (mean quality to reach at the lowest cost) or
    ``match_model`` (reach that model's validation quality at the lowest cost). Raises
    :class:`RoutingError` when the request cannot be met on the calibration split (e.g. a budget
    below the cheapest routing cost). Re-saves the checkpoint with its calibration curve (atomic
    folder swap) and writes ``RUN_DIR/calibration.json``; returns what it wrote.
    """
    from routecast.router.checkpoint import load_checkpoint, read_config, save_checkpoint
    from routecast.training.curves import realised_costs
    from routecast.training.pipeline import prepare, split_embeddings

    given = {k: v for k, v in (("budget", budget), ("strong_share", strong_share),
                               ("target_quality", target_quality), ("match_model", match_model))
             if v is not None}
    if len(given) != 1:
        raise ConfigError("give exactly one of --budget, --strong-share, --target-quality, --match-model"
                          + (f" (got {', '.join(given)})" if given else ""))
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    ckpt = run_dir / ROUTER_DIR
    if not ckpt.is_dir():
        raise CheckpointError(f"{ckpt}: no router checkpoint in this run folder")
    router = load_checkpoint(ckpt)
    prepared = prepare(**prepare_kwargs(run))
    val, test = prepared.val, prepared.test
    if tuple(val.models) != tuple(router.models_):
        val, test = val.select_models(router.models_), test.select_models(router.models_)

    request = dict(given)
    if match_model is not None:
        if match_model not in router.models_:
            raise ConfigError(f"--match-model {match_model!r} is not one of the router's models: "
                              f"{', '.join(router.models_)}")
        col = val.scores[:, list(router.models_).index(match_model)]
        target_quality = float(np.nanmean(col))
        request["target_quality"] = target_quality

    X_val = split_embeddings(router, prepared, "val")
    router.calibrate(val, embeddings=X_val)
    q_val = router.predict_quality(list(val.prompts), embeddings=X_val)
    decision = router.route_from_quality(q_val, budget=budget, strong_share=strong_share,
                                         target_quality=target_quality)
    lam = decision.lam

    cal = router.calibration_
    i = int(np.argmin(np.abs(np.asarray(cal["lam"]) - lam)))
    on_cal = {"cost": cal["cost"][i], "quality": cal["quality"][i], "strong_share": cal["strong_share"][i],
              "n_prompts": cal["n_prompts"]}

    from routecast.router.base import decide

    strong = _strong_index(router.costs_)
    X_test = split_embeddings(router, prepared, "test")
    q_test = router.predict_quality(list(test.prompts), embeddings=X_test)
    unit_costs, _, _ = realised_costs(test, router.costs_)
    on_test = _point(test, decide(q_test, router.costs_, lam), unit_costs, strong)

    key = next(iter(k for k in ("budget", "strong_share", "target_quality") if k in request))
    achieved_key = {"budget": "cost", "strong_share": "strong_share", "target_quality": "quality"}[key]
    result = {
        "request": request,
        "lam": lam,
        "strong_model": router.models_[strong],
        "calibration_split": {"name": "val", **on_cal},
        "test_split": {"name": "test", **on_test},
        "requested": float(request[key]),
        "achieved": {"calibration": on_cal[achieved_key], "test": on_test[achieved_key]},
        "metric": achieved_key,
        "checkpoint": str(ckpt),
    }
    if save:
        from routecast.atomic import write_json
        from routecast.training.tune import finite_json

        extra = dict(read_config(ckpt).get("extra") or {})
        extra["calibration_request"] = {**request, "lam": lam}
        save_checkpoint(router, ckpt, extra=extra)
        write_json(run_dir / CALIBRATION_FILE, finite_json(result))
    if tracker is not None:
        tracker.log_params({"run_dir": str(run_dir), **{f"request.{k}": v for k, v in request.items()}})
        tracker.log_metrics({"lam": lam, "calibration": on_cal, "test": on_test})
        tracker.log_curve({"calibration.cost": cal["cost"], "calibration.quality": cal["quality"],
                           "calibration.strong_share": cal["strong_share"], "calibration.lam": cal["lam"]})
        if save:
            tracker.log_artifact(run_dir / CALIBRATION_FILE)
    return result


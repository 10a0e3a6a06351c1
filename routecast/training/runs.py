"""What ``routecast evaluate / train / demo / tune / calibrate`` do, as library functions.

Each command of :mod:`routecast.training.commands` parses its options and calls one function
here; this module does the work in a fixed order: check inputs and the tracking server (cheap, so
a typo or an unreachable server fails before an hour of training), load -> split -> embed
(:func:`routecast.router.pipeline.prepare`), fit and evaluate, write the run folder, log it to
MLflow. Errors name parameters (``router``, ``config``), never CLI flags.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from routecast.errors import ConfigError
from routecast.evaluation.priors import PRIOR_ROUTERS
from routecast.router.encoders.default import DEFAULT_ENCODER

DEMO_DATA = "llmrouter_9models"
DEMO_ROUTERS = ("knn", "linear", "mlp", "mf", "best-single", "cheapest", "random", "oracle")
#: the demo's cascades: ex-ante needs no responses (about a second on the built-in data);
#: agreement runs where the log has responses and is listed as not run with the reason otherwise
DEMO_CASCADES = ("ex-ante", "agreement")


@dataclass
class RunOutput:
    """An experiment and where its files went (``report`` is OUT/report.md).

    On a pairwise log ``experiment`` is None and ``pairwise`` holds the win-rate evaluation
    (:class:`routecast.evaluation.pairwise.PairwiseEvaluation`).
    """

    experiment: Any  # routecast.training.experiment.Experiment
    out: Path
    report: Path
    pairwise: Any = None
    #: the trained router's strong model (best single model of the training split), the one
    #: ``calibrate --strong-share`` and every strong share of this router count
    strong_model: str | None = None

    @property
    def result(self):
        return self.experiment.result


def parse_cost_range(text: Optional[str]) -> Optional[tuple[float, float]]:
    """``"0.0001,0.002"`` -> (0.0001, 0.002); None stays None (the split's single-model range)."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"cost_range expects LOW,HIGH (two numbers), got {text!r}") from None
    if not low < high:
        raise ConfigError(f"cost_range needs LOW < HIGH, got {text!r}")
    return low, high


def _check_tracking(enabled: bool, tracking_uri: Optional[str]) -> None:
    if enabled:
        from routecast.training.tracking import check_tracking

        check_tracking(tracking_uri)


def run_name(kind: str, data: Any, router: Any) -> str:
    """An MLflow run name that says the command, the data and the router: ``train llmrouter_9models mlp``
    (a data path is named by its file or folder name)."""
    data_name = str(data)
    if any(sep in data_name for sep in ("/", "\\")) or Path(data_name).suffix:
        data_name = Path(data_name).name or data_name
    return " ".join(str(p) for p in (kind, data_name, router) if p not in (None, ""))


def _track(kind: str, *, enabled: bool, tracking_uri: Optional[str], params: Mapping[str, Any], out: Path,
           started: float, experiment=None) -> None:
    """Log a finished run to MLflow, its duration counted from ``started`` (``time.time()``).

    With an ``experiment`` (an outcome-log evaluation): headline metrics of its policy (train's
    router, else the best learned one), the router's hyperparameters as params and the
    per-policy tables as artifacts (:func:`~routecast.training.tracking.track_evaluation`);
    a pairwise run logs its metrics.json as it is."""
    from routecast.training.tracking import track_evaluation, track_run

    name = run_name(kind, params.get("data"), params.get("router", params.get("routers")))
    if experiment is None or not enabled:
        track_run(kind, params=dict(params), metrics_path=out / "metrics.json", artifacts_dir=out,
                  enabled=enabled, tracking_uri=tracking_uri, run_name=name, start_time=started)
        return
    policy = params.get("router")
    fitted = experiment.runs.get(policy) if policy is not None else None
    hyperparameters = fitted.router.get_params() if fitted is not None else None
    track_evaluation(kind, metrics_path=out / "metrics.json", params=params, hyperparameters=hyperparameters,
                     policy=policy, artifacts_dir=out, start_time=started, tracking_uri=tracking_uri,
                     enabled=enabled, run_name=name)


def prepared_settings(prepared) -> dict[str, Any]:
    """The split settings of a run as MLflow params: seed, val, test, limit, use_logged_split
    (the seed is a setting to filter runs by, never a metric)."""
    return {k: prepared.settings[k] for k in ("seed", "val", "test", "limit", "use_logged_split")
            if k in prepared.settings}


def _data_settings(columns, prices, duplicates: str = "mean") -> dict[str, Any]:
    """The column mapping, price table and merge of repeated rows of a run as run.json stores them
    (a price-table path is made absolute so ``calibrate`` finds it from any folder)."""
    out: dict[str, Any] = {"duplicates": duplicates} if duplicates != "mean" else {}
    if columns is not None:
        out["columns"] = columns
    if prices is not None:
        out["prices"] = str(Path(prices).resolve()) if isinstance(prices, (str, os.PathLike)) else prices
    return out


def _run_data(data: str) -> str:
    """The data source as run.json stores it: a built-in name as is, a file as an absolute path
    (``calibrate RUN_DIR`` rebuilds the splits from it, perhaps from another folder)."""
    from routecast.data.builtin import is_builtin

    return data if is_builtin(data) or not Path(data).exists() else str(Path(data).resolve())


def _pairwise_run(prepared, names: Sequence[str], *, params: Mapping[str, Mapping[str, Any]],
                  reference: Optional[str], n_boot: int, seed: int,
                  trainer_options: Optional[Mapping[str, Any]] = None):
    """Fit each router on the train pairs, calibrate it on the validation pairs when the price
    table gives every model a cost, and measure win rates against ``reference`` on the test pairs.
    Returns (PairwiseEvaluation, {name: (router, train seconds)})."""
    from routecast.errors import RoutingError
    from routecast.evaluation.pairwise import default_reference, evaluate_pairwise
    from routecast.router.from_pairs import check_learns_from_pairs
    from routecast.router.pipeline import fit_router, split_embeddings
    from routecast.core.registry import get_router_class

    for name in names:  # before any embedding or fitting
        check_learns_from_pairs(get_router_class(name), prepared.log.source)
    fitted = {}
    for name in names:
        router, seconds = fit_router(name, params.get(name), prepared, trainer_options=trainer_options)
        try:
            router.calibrate(prepared.val, embeddings=split_embeddings(router, prepared, "val"))
        except RoutingError:
            pass  # no price table: the router routes by lam only, as on outcome logs
        fitted[name] = (router, seconds)
    embeddings = None
    if fitted:
        first = next(iter(fitted.values()))[0]
        embeddings = split_embeddings(first, prepared, "test")
        if any(split_embeddings(r, prepared, "test") is not embeddings for r, _ in fitted.values()):
            embeddings = None  # routers embedding differently embed by themselves
    evaluation = evaluate_pairwise({n: r for n, (r, _) in fitted.items()}, prepared.test,
                                   reference=reference or default_reference(prepared.log),
                                   embeddings=embeddings, n_boot=n_boot, seed=seed,
                                   metadata={"data": prepared.settings, "encoder": prepared.encoder,
                                             "n_train_pairs": len(prepared.train), "n_val_pairs": len(prepared.val),
                                             "train_seconds": {n: round(t, 3) for n, (_, t) in fitted.items()}})
    return evaluation, fitted


def _write_report(experiment, out: Path, *, title: str) -> Path:
    from routecast.evaluation.report import write_report

    return write_report(experiment.result, out, title=title)


def evaluate_to_folder(data: str, routers: str, *, out: str | os.PathLike, encoder: str = DEFAULT_ENCODER,
                       val: float = 0.1, test: float = 0.2, seed: int = 0, use_logged_split: bool = False,
                       limit: Optional[int] = None, n_boot: int = 200, cascades: Sequence[str] = (),
                       ensembles: bool = False, cost_range: Optional[tuple[float, float]] = None,
                       strong: Optional[str] = None, weak: Optional[str] = None,
                       track: bool = True, tracking_uri: Optional[str] = None, columns=None, prices=None,
                       duplicates: str = "mean", estimator: str = "dr",
                       reference: Optional[str] = None, skip: Optional[str] = None) -> RunOutput:
    """Fit several routers (comma-separated ``routers``, or ``"all"`` minus ``skip``; plus
    ``cascades`` - kinds or ``"all"`` - and ``ensembles``) on train and compare them on test;
    writes metrics.json, report.md and plots into ``out``. Policies the data cannot run are listed
    in ``experiment.skipped`` with the reason.

    ``columns`` (a column mapping) and ``prices`` (a price table) go to :func:`prepare`. On a
    pairwise log the routers are compared by win rate against ``reference`` (default: the model
    with most wins) with bootstrap intervals, per lam point (see
    :mod:`routecast.evaluation.pairwise`); cascades and ensembles need outcomes."""
    from routecast.router.pipeline import prepare
    from routecast.cascade.kinds import ENSEMBLE_KINDS, parse_kinds
    from routecast.cascade.suite import cascade_curves
    from routecast.training.experiment import parse_router_list, run_experiment

    started = time.time()
    names = parse_router_list(routers, skip)
    _check_tracking(track, tracking_uri)
    out = Path(out)
    prepared = prepare(data, encoder=encoder, val=val, test=test, seed=seed,
                       use_logged_split=use_logged_split, limit=limit, columns=columns, prices=prices,
                       duplicates=duplicates, estimator=estimator)
    if prepared.pairwise:
        from routecast.evaluation.pairwise import write_pairwise_report

        if cascades or ensembles:
            prepared.require_outcomes("comparing cascades or ensembles")
        evaluation, _ = _pairwise_run(prepared, names, params={}, reference=reference, n_boot=n_boot, seed=seed)
        report = write_pairwise_report(evaluation, out, title=f"routecast evaluate: {data} (pairwise)")
        _track("evaluate", enabled=track, tracking_uri=tracking_uri,
               params={"data": data, "routers": routers, "encoder": encoder, "seed": seed,
                       "reference": evaluation.reference}, out=out, started=started)
        return RunOutput(None, out, report, pairwise=evaluation)
    kinds = parse_kinds(list(cascades))
    if ensembles:
        kinds += [k for k in ENSEMBLE_KINDS if k not in kinds]
    extra, skipped = cascade_curves(prepared, kinds) if kinds else ({}, {})
    experiment = run_experiment(prepared, names, n_boot=n_boot, seed=seed, extra_curves=extra,
                                cost_range=cost_range, strong=strong, weak=weak,
                                skip_failures=routers.strip() == "all", skipped=skipped)
    report = _write_report(experiment, out, title=f"routecast evaluate: {data}")
    _track("evaluate", enabled=track, tracking_uri=tracking_uri,
           params={"data": data, "routers": routers, "encoder": encoder, **prepared_settings(prepared)},
           out=out, started=started, experiment=experiment)
    return RunOutput(experiment, out, report)


def resolve_router(router: Optional[str], config: Optional[str | os.PathLike],
                   params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The router name and hyperparameters from ``router``, a ``config`` file and ``params``
    (``params`` win over the config file), checked against the router before any work."""
    from routecast.core.registry import check_router_params

    merged: dict[str, Any] = {}
    if config is not None:
        from routecast.training.tune import load_router_config

        name_from_config, merged = load_router_config(config)
        if router is not None and router != name_from_config:
            raise ConfigError(f"router {router!r} contradicts config file {config} (router {name_from_config!r})")
        router = name_from_config
    if router is None:
        raise ConfigError("no router: give a router name or a config file")
    merged.update(params)
    check_router_params(router, merged)
    return router, merged


def train_to_folder(data: str, *, out: str | os.PathLike, router: Optional[str] = None,
                    config: Optional[str | os.PathLike] = None, params: Optional[Mapping[str, Any]] = None,
                    encoder: str = DEFAULT_ENCODER, val: float = 0.1, test: float = 0.2, seed: int = 0,
                    use_logged_split: bool = False, limit: Optional[int] = None,
                    cost_range: Optional[tuple[float, float]] = None, strong: Optional[str] = None,
                    weak: Optional[str] = None, track: bool = True,
                    tracking_uri: Optional[str] = None, columns=None, prices=None,
                       duplicates: str = "mean", estimator: str = "dr",
                    reference: Optional[str] = None,
                    distribution: Optional[Mapping[str, Any]] = None) -> RunOutput:
    """Train one router, calibrate it on validation, evaluate it on test and write a run folder:
    router/ checkpoint, run.json, metrics.json, report.md, plots (``routecast export`` reads it).

    ``columns`` and ``prices`` go to :func:`prepare` and into run.json (``calibrate`` rebuilds the
    splits from it). A pairwise log trains a router that learns from pairs and reports its win
    rate against ``reference`` (see :func:`evaluate_to_folder`).

    ``distribution`` (accelerator, devices, num_nodes, strategy) trains a Lightning router with
    DDP (:mod:`routecast.router.distributed`). Only global rank 0 writes the folder and the MLflow
    run: a rank > 0 (Lightning's ``ddp`` re-runs this command once per extra rank, and on every
    node) trains its shard and returns with ``report`` None, having written nothing."""
    from routecast.atomic import write_json
    from routecast.core.checkpoint import save_checkpoint
    from routecast.router.distributed import distribution_params, is_rank_zero
    from routecast.router.pipeline import prepare, router_params
    from routecast.training.experiment import run_experiment

    started = time.time()
    router, params = resolve_router(router, config, params or {})
    options = distribution_params(router, distribution)  # where it trains: set on the router, not a hyperparameter
    writer = is_rank_zero()
    _check_tracking(track and writer, tracking_uri)
    out = Path(out)
    prepared = prepare(data, encoder=encoder, val=val, test=test, seed=seed,
                       use_logged_split=use_logged_split, limit=limit, columns=columns, prices=prices,
                       duplicates=duplicates, estimator=estimator)
    split = {k: prepared.settings[k] for k in ("val", "test", "seed", "use_logged_split", "limit", "models")}
    split.update(_data_settings(columns, prices, duplicates))
    split.update({k: prepared.settings[k] for k in ("estimator",) if k in prepared.settings})
    if prepared.pairwise:
        from routecast.evaluation.pairwise import write_pairwise_report

        evaluation, fitted = _pairwise_run(prepared, [router], params={router: params}, reference=reference,
                                           n_boot=200, seed=seed, trainer_options=options)
        fitted_router, seconds = fitted[router]
        strong_model = fitted_router.models_[fitted_router.strong_weak().strong]
        if not writer:
            return RunOutput(None, out, None, pairwise=evaluation)
        out.mkdir(parents=True, exist_ok=True)
        save_checkpoint(fitted_router, out / "router")
        report = write_pairwise_report(evaluation, out, title=f"routecast train: {router} on {data} (pairwise)")
        write_json(out / "run.json", {
            "data": _run_data(data), "router": router, "params": router_params(router, params, prepared),
            "encoder": encoder, "kind": "pairwise", "reference": evaluation.reference, "split": split,
            "trainer_options": options, "strong_model": strong_model, "train_seconds": round(seconds, 3)})
        _track("train", enabled=track, tracking_uri=tracking_uri,
               params={"data": data, "router": router, "encoder": encoder, "seed": seed, **params, **options}, out=out,
               started=started)
        return RunOutput(None, out, report, pairwise=evaluation, strong_model=strong_model)
    experiment = run_experiment(prepared, [router], params={router: params}, seed=seed,
                                cost_range=cost_range, strong=strong, weak=weak, baselines=PRIOR_ROUTERS,
                                trainer_options={router: options})
    run = experiment.runs[router]
    strong_model = run.router.models_[run.router.strong_weak().strong]
    if not writer:
        return RunOutput(experiment, out, None)
    out.mkdir(parents=True, exist_ok=True)
    if not run.router.evaluation_only:
        save_checkpoint(run.router, out / "router")
    report = _write_report(experiment, out, title=f"routecast train: {router} on {data}")
    write_json(out / "run.json", {
        "data": _run_data(data), "router": router, "params": router_params(router, params, prepared),
        "encoder": encoder, "split": split, "trainer_options": options, "strong_model": strong_model,
        "train_seconds": round(run.train_seconds, 3),
        "route_us_per_query": round(run.route_us_per_query, 2),
    })
    _track("train", enabled=track, tracking_uri=tracking_uri,
           params={"data": data, "router": router, "encoder": encoder, **prepared_settings(prepared), **options},
           out=out, started=started, experiment=experiment)
    return RunOutput(experiment, out, report, strong_model=strong_model)


def demo_to_folder(out: str | os.PathLike, *, encoder: str = DEFAULT_ENCODER, track: bool = False,
                   tracking_uri: Optional[str] = None) -> RunOutput:
    """The main job on the built-in data: train :data:`DEMO_ROUTERS` on :data:`DEMO_DATA` and compare
    them with the priors (the lookup tables a learned router has to beat) and :data:`DEMO_CASCADES`
    (a kind the log cannot run, e.g. without responses, is listed in ``experiment.skipped``)."""
    from routecast.cascade.suite import cascade_curves
    from routecast.router.pipeline import prepare
    from routecast.training.experiment import run_experiment

    started = time.time()
    _check_tracking(track, tracking_uri)
    out = Path(out)
    prepared = prepare(DEMO_DATA, encoder=encoder)  # seeded split: the logged one shares 114 questions
    cascades, skipped = cascade_curves(prepared, list(DEMO_CASCADES))
    experiment = run_experiment(prepared, list(DEMO_ROUTERS), baselines=PRIOR_ROUTERS, extra_curves=cascades,
                                skipped=skipped)
    report = _write_report(experiment, out, title=f"routecast demo: {DEMO_DATA}")
    _track("demo", enabled=track, tracking_uri=tracking_uri,
           params={"data": DEMO_DATA, "encoder": encoder, **prepared_settings(prepared)}, out=out, started=started,
           experiment=experiment)
    return RunOutput(experiment, out, report)


def tune_to_folder(data: str, router: str, *, out: Optional[str | os.PathLike] = None, trials: int = 20,
                   objective: str = "aiq", budget: Optional[float] = None, target: Optional[float] = None,
                   storage: Optional[str] = None, study: Optional[str] = None, encoder: str = DEFAULT_ENCODER,
                   seed: int = 0, val: float = 0.1, test: float = 0.2, limit: Optional[int] = None,
                   use_logged_split: bool = False, timeout: Optional[float] = None, params: Optional[Mapping[str, Any]] = None,
                   track: bool = True, tracking_uri: Optional[str] = None, columns=None, prices=None,
                       duplicates: str = "mean", estimator: str = "dr",
                   distribution: Optional[Mapping[str, Any]] = None):
    """Tune ``router`` with optuna on the validation split; writes OUT/best_config.json (for
    ``train``'s ``config``) and OUT/tune.json. Returns (TuneResult, path of best_config.json).

    ``out`` defaults to runs/tune-ROUTER and ``storage`` to sqlite:///OUT/optuna.db (resumable);
    ``params`` are fixed hyperparameters the search does not touch; ``columns`` and ``prices``
    go to :func:`prepare`. Tuning needs an outcome log (its objectives are cost-quality curves).
    ``distribution`` trains every trial with DDP; with several processes it must use strategy
    ``ddp_spawn`` (each trial starts its own Trainer; ``ddp`` would re-run the whole command per
    trial), and trials are then not pruned (the pruning callback holds the study, which cannot
    travel to spawned ranks).
    """
    from routecast.atomic import write_json
    from routecast.jsonable import to_jsonable
    from routecast.router.pipeline import prepare
    from routecast.core.registry import check_router_params
    from routecast.training.tracking import Tracker
    from routecast.training.tune import objective_direction, save_router_config, tune

    from routecast.router.distributed import TRAINER_DEFAULTS, distribution_params, world_size

    objective_direction(objective)  # fail on a typo before any work
    distributed = distribution_params(router, distribution)
    options = {**TRAINER_DEFAULTS, **distributed}
    if world_size(options) > 1 and options["strategy"] != "ddp_spawn":
        raise ConfigError(f"tuning with devices={options['devices']}, num_nodes={options['num_nodes']} needs "
                          f"strategy 'ddp_spawn' (each trial starts its own Trainer), got {options['strategy']!r}")
    fixed = dict(params or {})
    check_router_params(router, fixed)
    out = Path(out) if out is not None else Path("runs") / f"tune-{router}"
    default_storage = storage is None
    if default_storage:
        storage = f"sqlite:///{(out / 'optuna.db').resolve()}"
    from routecast.training.tune import default_study_name

    study_key = f"{study or default_study_name(router, objective, budget, target)}@{storage}"
    with Tracker(tracking_uri, run_name=run_name("tune", data, router), enabled=track, resume_tag="routecast.study",
                 tags={"routecast.kind": "tune", "routecast.study": study_key}) as tracker:  # probes the URI first
        if default_storage:
            out.mkdir(parents=True, exist_ok=True)
        prepared = prepare(data, encoder=encoder, val=val, test=test, seed=seed, limit=limit,
                           use_logged_split=use_logged_split, columns=columns, prices=prices,
                       duplicates=duplicates, estimator=estimator)
        prepared.require_outcomes("tuning")
        result = tune(prepared, router, n_trials=trials, objective=objective, budget=budget, target=target,
                      storage=storage, study_name=study, seed=seed, tracker=tracker if tracker.enabled else None,
                      timeout=timeout, fixed_params=fixed, prune=not distributed, trainer_options=distributed)
        config_path = save_router_config(out / "best_config.json", result)
        write_json(out / "tune.json", to_jsonable(result.to_dict()))
        if tracker.enabled:
            tracker.log_artifact(config_path)
            tracker.log_artifact(out / "tune.json")
    return result, config_path


def calibrate_tracked(run_dir: str | os.PathLike, *, budget: Optional[float] = None,
                      strong_share: Optional[float] = None, target_quality: Optional[float] = None,
                      match_model: Optional[str] = None, conservative: bool = False, track: bool = True,
                      tracking_uri: Optional[str] = None) -> dict[str, Any]:
    """:func:`routecast.training.calibrate.calibrate_run`, logged to MLflow as a ``calibrate`` run."""
    from routecast.training.calibrate import calibrate_run
    from routecast.training.tracking import Tracker

    run_dir = Path(run_dir)
    with Tracker(tracking_uri, run_name=f"calibrate-{run_dir.name}", enabled=track,
                 tags={"routecast.kind": "calibrate"}) as tracker:
        return calibrate_run(run_dir, budget=budget, strong_share=strong_share, target_quality=target_quality,
                             match_model=match_model, conservative=conservative,
                             tracker=tracker if tracker.enabled else None)

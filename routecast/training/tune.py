"""Hyperparameter tuning: an optuna study over any router's declared ``search_space``.

WHY it looks like this:

* **No per-router code.** Each router class declares its tunable hyperparameters
  (``search_space``: name -> :mod:`routecast.router.search_space` range); a trial asks each range
  for a value. Routers trained with Lightning (those offering ``fit_with_callbacks``) get a
  pruning callback on their internal ``val_loss`` so hopeless trials stop after a few epochs.
* **The test split is never read.** Every trial fits on the train split and is scored on the
  validation split. :func:`tune` only ever sees a :class:`TuningView` of the prepared data, which
  refuses (``TestSplitAccessError``) any access to the test split or the whole log, so a
  leak is an exception rather than a silently optimistic number.
* **Same numbers as evaluation.** A trial's value comes from the evaluation module's sweep
  (:func:`routecast.evaluation.evaluate.sweep_router`) and metrics (AIQ, quality at a budget,
  cost to reach a quality), on a cost range fixed by the single models on the validation split
  so trials are comparable.
* **Resumable.** With ``storage`` (e.g. ``sqlite:///tune.db``) the study is created with
  ``load_if_exists=True``. ``n_trials`` is the TOTAL number of finished trials the study should
  hold: re-running the same command after a crash runs only the missing trials, and after a
  complete run it runs none. The TPE sampler is seeded with ``seed + finished trials`` so a
  resumed study does not replay the random start-up suggestions it already tried.
* **The defaults are trial 0** (when they lie inside the space), so the best configuration is
  never worse on validation than what ``routecast train`` uses without a config.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from routecast.errors import ConfigError, RoutecastError
from routecast.jsonable import to_jsonable

if TYPE_CHECKING:  # pragma: no cover
    from routecast.router.pipeline import Prepared
    from routecast.training.tracking import Tracker

OBJECTIVES = ("aiq", "quality@budget", "cost@quality")
#: keys allowed at the top level of a router config file
CONFIG_KEYS = ("router", "params", "tuning")


class TestSplitAccessError(RoutecastError, AssertionError):
    """Tuning code touched the test split (a bug: tuning must be blind to it)."""

    __test__ = False  # not a pytest test class


class TuningView:
    """The train and validation splits of a :class:`Prepared`, and nothing else.

    Exposes what :func:`routecast.router.pipeline.fit_router` and the validation sweep need
    (``train``, ``val``, ``split``, ``embeddings``, ``encoder``, ``settings``, ``get_encoder``);
    ``test``, ``log`` (which contains the test prompts) and ``split("test"|"all")`` raise
    :class:`TestSplitAccessError`.
    """

    _allowed = ("train", "val")

    def __init__(self, prepared: "Prepared"):
        self._prepared = prepared
        self.train = prepared.train
        self.val = prepared.val
        self.encoder = prepared.encoder
        self.settings = dict(prepared.settings)

    def _refuse(self, what: str):
        raise TestSplitAccessError(f"tuning tried to read {what}; it may only use the train and "
                                   "validation splits")

    @property
    def test(self):
        self._refuse("the test split")

    @property
    def log(self):
        self._refuse("the whole log (which contains the test split)")

    def split(self, name: str):
        if name not in self._allowed:
            self._refuse(f"split {name!r}")
        return getattr(self, name)

    def embeddings(self, name: str) -> np.ndarray:
        if name not in self._allowed:
            self._refuse(f"the embeddings of split {name!r}")
        return self._prepared.embeddings(name)

    def get_encoder(self):
        return self._prepared.get_encoder()


@dataclass
class TuneResult:
    """Outcome of :func:`tune` (values measured on the validation split)."""

    router: str
    objective: str
    direction: str  # "maximize" | "minimize"
    best_params: dict[str, Any]
    best_value: float
    n_trials_run: int  # trials run by this call
    n_trials_total: int  # finished trials in the study (this call and earlier ones)
    study_name: str
    storage: str | None
    default_value: float | None = None  # value of the router's default configuration, if tried
    seconds: float = 0.0
    trials: list[dict[str, Any]] = field(default_factory=list)
    budget: float | None = None
    target: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        """The best configuration as ``routecast train --config`` reads it."""
        return {"router": self.router, "params": dict(self.best_params),
                "tuning": {"objective": self.objective, "value": self.best_value,
                           "default_value": self.default_value, "budget": self.budget,
                           "target": self.target, "study": self.study_name,
                           "n_trials": self.n_trials_total, "measured_on": "validation split",
                           "data": self.settings}}

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("router", "objective", "direction", "best_params",
                                             "best_value", "n_trials_run", "n_trials_total",
                                             "study_name", "storage", "default_value", "seconds",
                                             "budget", "target", "settings", "trials")}
        return to_jsonable(out)


# --------------------------------------------------------------------------- config files
def save_router_config(path: str | os.PathLike, result: TuneResult) -> Path:
    """Write the best configuration (``{"router", "params", "tuning"}``) atomically."""
    from routecast.atomic import write_json

    write_json(path, to_jsonable(result.config()))
    return Path(path)


def load_router_config(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """Read a router config file (``{"router": name, "params": {...}}``) -> (name, params).

    Refuses, with a :class:`ConfigError` naming the file and the key: unreadable JSON, a missing
    or unknown router, params that are not an object, unknown hyperparameters, unknown top-level
    keys. The ``tuning`` block (written by ``routecast tune``) is informational and ignored.
    """
    from routecast.core.registry import get_router_class, router_names

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"file {path}: cannot read router config ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"file {path}, line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"file {path}: a router config must be a JSON object "
                          '{"router": NAME, "params": {...}}')
    unknown_top = sorted(set(data) - set(CONFIG_KEYS))
    if unknown_top:
        raise ConfigError(f"file {path}, key {unknown_top[0]!r}: unknown key; "
                          f"a router config has {', '.join(CONFIG_KEYS)}")
    name = data.get("router")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"file {path}, key 'router': missing or not a string (known routers: "
                          f"{', '.join(router_names())})")
    try:
        cls = get_router_class(name)
    except ConfigError as exc:
        raise ConfigError(f"file {path}, key 'router': {exc}") from None
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise ConfigError(f"file {path}, key 'params': must be an object of hyperparameters")
    known = cls.param_names()
    for key in params:
        if key not in known:
            raise ConfigError(f"file {path}, key 'params.{key}': router {name!r} has no "
                              f"hyperparameter {key!r}; it takes: {', '.join(known) or '(none)'}")
    return name, dict(params)


# --------------------------------------------------------------------------- objective
def objective_direction(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    return "minimize" if objective == "cost@quality" else "maximize"


def measure(router, view: TuningView, objective: str, *, budget: float | None = None,
            target: float | None = None, cost_range: tuple[float, float] | None = None) -> tuple[float, dict]:
    """Score a fitted router on the validation split; returns (objective value, details)."""
    from routecast.evaluation import metrics
    from routecast.evaluation.evaluate import single_model_cost_range, sweep_router
    from routecast.router.pipeline import split_embeddings

    X = split_embeddings(router, view, "val")
    curve = sweep_router(router, view.val, embeddings=X, label=router.name)
    c_min, c_max = cost_range or single_model_cost_range(view.val, router.costs_)
    details = {"aiq": metrics.aiq(curve.cost, curve.quality, c_min, c_max),
               "max_quality": float(np.nanmax(curve.quality)), "min_cost": float(np.nanmin(curve.cost))}
    if objective == "aiq":
        value = details["aiq"]
    elif objective == "quality@budget":
        value = metrics.quality_at_cost(curve.cost, curve.quality, float(budget))
        details["quality_at_budget"] = value
        if not math.isfinite(value):  # budget below this router's cheapest point
            value = 0.0
    else:
        value = metrics.cost_at_quality(curve.cost, curve.quality, float(target))
        details["cost_at_quality"] = value
        details["reached_target"] = math.isfinite(value)
        if not math.isfinite(value):  # worse than any configuration that reaches the target
            value = 2.0 * c_max + (float(target) - details["max_quality"])
    return float(value), details


def _default_params(cls, space: dict[str, Any]) -> dict[str, Any] | None:
    """The class defaults of the tuned hyperparameters, if all lie inside their ranges."""
    import inspect

    from routecast.router.search_space import Categorical, Float, Int

    sig = inspect.signature(cls.__init__)
    out = {}
    for name, rng in space.items():
        param = sig.parameters.get(name)
        if param is None or param.default is inspect.Parameter.empty:
            return None
        value = param.default
        if isinstance(rng, Categorical):
            if value not in list(rng.choices):
                return None
        elif isinstance(rng, (Int, Float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not rng.low <= value <= rng.high:
                return None
            if isinstance(rng, Int) and int(value) != value:
                return None
        out[name] = value
    return out


def default_study_name(router: str, objective: str, budget: float | None, target: float | None) -> str:
    suffix = {"aiq": "aiq", "quality@budget": f"quality-at-{budget:g}" if budget is not None else "quality",
              "cost@quality": f"cost-at-{target:g}" if target is not None else "cost"}[objective]
    return f"routecast-{router}-{suffix}"


_DONE_STATES = ("COMPLETE", "PRUNED", "FAIL")


def tune(prepared: "Prepared", router: str, *, n_trials: int, objective: str = "aiq",
         budget: float | None = None, target: float | None = None, storage: str | None = None,
         study_name: str | None = None, seed: int = 0, tracker: "Tracker | None" = None,
         timeout: float | None = None, fixed_params: dict[str, Any] | None = None,
         prune: bool = True, show_progress: bool | None = None,
         trainer_options: dict[str, Any] | None = None) -> TuneResult:
    """Tune ``router``'s hyperparameters on the validation split of ``prepared``.

    ``n_trials`` is the total number of finished trials the study should hold (see the module
    docstring; resuming runs only the missing ones). ``fixed_params`` are passed to every trial
    unchanged (e.g. ``{"max_epochs": 30}``); ``trainer_options`` say where every trial trains
    (:mod:`routecast.router.distributed`). ``tracker`` (an entered :class:`Tracker`) gets the
    study as its run and one nested run per trial. Returns the best configuration and value.
    Progress (:class:`routecast.progress.Progress`): a bar on a terminal, else a line with the
    trial counter and the best value so far every few seconds; ``show_progress=False`` silences it.
    """
    import optuna

    from routecast.core.registry import get_router_class
    from routecast.router.pipeline import fit_router, router_params

    direction = objective_direction(objective)
    if objective == "quality@budget" and budget is None:
        raise ConfigError("objective quality@budget needs budget (USD per query)")
    if objective == "cost@quality" and target is None:
        raise ConfigError("objective cost@quality needs target (mean quality to reach)")
    if n_trials < 1:
        raise ConfigError(f"n_trials must be >= 1, got {n_trials}")
    cls = get_router_class(router)
    if cls.evaluation_only:
        raise ConfigError(f"router {router!r} is evaluation-only (it reads the answers) and cannot be tuned")
    space = dict(cls.search_space)
    if not space:
        raise ConfigError(f"router {router!r} declares no search_space: nothing to tune")
    fixed = dict(fixed_params or {})
    unknown = sorted(set(fixed) - set(cls.param_names()))
    if unknown:
        raise ConfigError(f"router {router!r} has no hyperparameter {', '.join(map(repr, unknown))}")
    overlap = sorted(set(fixed) & set(space))
    if overlap:
        raise ConfigError(f"hyperparameter(s) {', '.join(overlap)} are tuned; do not also fix them")

    view = prepared if isinstance(prepared, TuningView) else TuningView(prepared)
    from routecast.evaluation.evaluate import single_model_cost_range

    cost_range = single_model_cost_range(view.val)
    if objective == "quality@budget" and budget < cost_range[0] - 1e-15:
        raise ConfigError(f"budget ${budget:.6g}/query is below the cheapest model's cost "
                          f"${cost_range[0]:.6g}/query on the validation split")
    study_name = study_name or default_study_name(router, objective, budget, target)
    attrs = {"routecast.router": router, "routecast.objective": objective,
             "routecast.budget": budget, "routecast.target": target, "routecast.fixed": fixed,
             "routecast.data": {k: v for k, v in view.settings.items()}}

    try:
        with _quiet_optuna():
            existing = optuna.load_study(study_name=study_name, storage=storage) if storage else None
    except KeyError:
        existing = None
    except Exception as exc:  # unreadable storage URL, not a database...
        raise ConfigError(f"optuna storage {storage}: {type(exc).__name__}: {exc}") from None
    n_done = 0
    if existing is not None:
        _check_same_study(existing, attrs, direction, storage, study_name)
        n_done = sum(t.state.name in _DONE_STATES for t in existing.trials)
    sampler = optuna.samplers.TPESampler(seed=seed + n_done)
    pruner = loss_median_pruner(n_startup_trials=3, n_warmup_steps=3) if prune else optuna.pruners.NopPruner()
    try:
        with _quiet_optuna():
            study = optuna.create_study(study_name=study_name, storage=storage, direction=direction,
                                        sampler=sampler, pruner=pruner, load_if_exists=True)
    except Exception as exc:
        raise ConfigError(f"optuna storage {storage}: {type(exc).__name__}: {exc}") from None
    if existing is None:
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        defaults = _default_params(cls, space)
        if defaults is not None:
            study.enqueue_trial(defaults, user_attrs={"routecast.default": True})

    uses_callbacks = prune and hasattr(cls, "fit_with_callbacks")

    def run_trial(trial: "optuna.Trial") -> float:
        params = {name: rng.suggest(trial, name) for name, rng in space.items()}
        report.step(f"trial {trial.number}{_best_so_far(trial.study)}")
        child = tracker.child(f"trial-{trial.number}", tags={"routecast.kind": "tune-trial"}) \
            if tracker is not None else None
        pruned = None
        with (child if child is not None else contextlib.nullcontext()) as ctx:
            if child is not None:
                ctx.log_params({**params, **fixed, "trial": trial.number})
            start = time.perf_counter()
            try:
                if uses_callbacks:
                    from routecast.core.registry import make_router
                    from routecast.router.lightning_module import OptunaPruningCallback
                    from routecast.router.pipeline import split_embeddings

                    model = make_router(router, **router_params(router, {**fixed, **params}, view))
                    if trainer_options:
                        model.set_trainer_options(**trainer_options)
                    model.fit_with_callbacks(view.train, split_embeddings(model, view, "train"),
                                             [OptunaPruningCallback(trial, monitor="val_loss")])
                else:
                    model, _ = fit_router(router, {**fixed, **params}, view, on="train",
                                          trainer_options=trainer_options)
            except optuna.TrialPruned as exc:
                pruned = exc
            fit_seconds = time.perf_counter() - start
            if pruned is not None:
                if child is not None:
                    ctx.set_tags({"routecast.pruned": "true"})
                    ctx.log_metrics({"fit_seconds": fit_seconds})
            else:
                value, details = measure(model, view, objective, budget=budget, target=target,
                                         cost_range=cost_range)
                trial.set_user_attr("fit_seconds", fit_seconds)
                for key, item in details.items():
                    trial.set_user_attr(key, item if not isinstance(item, float) or math.isfinite(item) else None)
                if child is not None:
                    ctx.log_metrics({"value": value, "fit_seconds": fit_seconds, **details})
        if pruned is not None:
            raise pruned
        return value

    remaining = max(0, n_trials - n_done)
    start = time.perf_counter()
    if remaining:
        from routecast.progress import Progress

        # a bar on a terminal, a line every few seconds in a CI log (with the trial counter)
        with _quiet_optuna(), Progress(f"tune {router}", total=remaining,
                                       enabled=show_progress is not False) as report:
            study.optimize(run_trial, n_trials=remaining, timeout=timeout, catch=(), gc_after_trial=False)
    seconds = time.perf_counter() - start
    trials = [t for t in study.trials if t.state.name in _DONE_STATES]
    completed = [t for t in trials if t.state.name == "COMPLETE"]
    if not completed:
        raise RoutecastError(f"study {study_name!r}: no trial completed (all pruned or failed)")
    best = study.best_trial
    default_value = next((t.value for t in completed if t.user_attrs.get("routecast.default")), None)
    result = TuneResult(
        router=router, objective=objective, direction=direction,
        best_params={**fixed, **best.params}, best_value=float(best.value),
        n_trials_run=len(trials) - n_done, n_trials_total=len(trials), study_name=study_name,
        storage=storage, default_value=default_value, seconds=seconds,
        # optuna stores a pruned trial's last intermediate value (a loss) as its value: not an objective
        trials=[{"number": t.number, "state": t.state.name,
                 "value": t.value if t.state.name == "COMPLETE" else None, "params": t.params,
                 "default": bool(t.user_attrs.get("routecast.default")),
                 "fit_seconds": t.user_attrs.get("fit_seconds"),
                 "n_reports": len(t.intermediate_values)} for t in trials],
        budget=budget, target=target, settings=dict(view.settings))
    if tracker is not None:
        tracker.log_params({"router": router, "objective": objective, "budget": budget, "target": target,
                            "study": study_name, "n_trials": result.n_trials_total, **view.settings,
                            **{f"fixed.{k}": v for k, v in fixed.items()}})
        tracker.log_params({f"best.{k}": v for k, v in result.best_params.items()})
        tracker.log_metrics({"best_value": result.best_value, "tune_seconds": seconds,
                             **({"default_value": default_value} if default_value is not None else {})})
        tracker.log_curve({"trial_value": [t["value"] if t["value"] is not None else float("nan")
                                            for t in result.trials]})
    return result


def _best_so_far(study) -> str:
    """``", best 0.6123 (trial 4)"`` once a trial has completed, else ``""``."""
    try:
        best = study.best_trial
    except ValueError:  # no completed trial yet
        return ""
    return f", best {best.value:.4g} (trial {best.number})"


def loss_median_pruner(**kwargs):
    """A median pruner for intermediate LOSSES, whatever the study's direction.

    Lightning routers report their validation loss per epoch (lower is better) while the study
    maximises AIQ; optuna's MedianPruner reads "better" from the study's direction and would
    prune the best trials. This one judges intermediate values as a minimisation, always.
    """
    import optuna

    class _AsMinimize:
        def __init__(self, study):
            self._study = study

        @property
        def direction(self):
            return optuna.study.StudyDirection.MINIMIZE

        def __getattr__(self, name):
            return getattr(self._study, name)

    class LossMedianPruner(optuna.pruners.BasePruner):
        def __init__(self):
            self._inner = optuna.pruners.MedianPruner(**kwargs)

        def prune(self, study, trial) -> bool:
            return self._inner.prune(_AsMinimize(study), trial)

    return LossMedianPruner()


def _check_same_study(study, attrs: dict[str, Any], direction: str, storage: str, name: str) -> None:
    """Refuse to resume a study created for another router, objective, budget or data."""
    stored = study.user_attrs
    if study.direction.name.lower() != direction:
        raise ConfigError(f"study {name!r} in {storage} was created to {study.direction.name.lower()}; "
                          f"objective {attrs['routecast.objective']!r} needs {direction}. Use another study name")
    for key, value in attrs.items():
        if key in stored and stored[key] != value:
            raise ConfigError(f"study {name!r} in {storage} was created with {key.split('.', 1)[1]}="
                              f"{stored[key]!r}, not {value!r}; use another study name to start afresh")


@contextlib.contextmanager
def _quiet_optuna():
    """optuna logs every trial at INFO; the CLI prints its own table. Restores the level after."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)

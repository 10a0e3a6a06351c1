"""The cascade: ask a cheap model first, escalate only when its answer is likely not good enough.

A :class:`Cascade` is an ordered chain of models plus, for every stage but the last, a deferral
score (:mod:`routecast.cascade.deferral`) and a threshold: at stage ``i`` it stops when
``score_i >= threshold_i`` and escalates otherwise. It pays for every model it called and returns
the answer of the stage where it stopped - so on a logged prompt its cost is the sum of the
logged costs up to the stop stage and its quality is the logged score of that stage's model.

``fit(train, val)`` learns the deferral scorer on ``train`` and measures, on ``val``, the cost and
quality of every candidate threshold vector (:mod:`routecast.cascade.thresholds`); the operating
point is then picked by budget, quality target or "match model X" without refitting. Keeping
threshold choice on a split the scorer never saw is what makes the promised budget hold on new
traffic (FrugalGPT, Chen et al. 2023).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from routecast.router.encoders.default import DEFAULT_ENCODER

from routecast.cascade.deferral import Deferral, make_deferral
from routecast.cascade.thresholds import ThresholdChoice, ThresholdSearch, simulate_stages
from routecast.core.estimator import Estimator
from routecast.core.registry import register_cascade
from routecast.core.tags import PolicyTags
from routecast.errors import ConfigError, RoutingError

if TYPE_CHECKING:  # pragma: no cover
    from routecast.data.outcome_log import OutcomeLog


@dataclass
class CascadeOutcome:
    """What one live cascade run did."""

    answer: str
    model: str
    models_called: list[str]
    deferral_scores: list[float]

    @property
    def stop_stage(self) -> int:
        return len(self.models_called) - 1


@dataclass
class CascadeCurve:
    """Per-prompt cost and quality of the cascade at k operating points (thresholds picked on val)."""

    costs: np.ndarray  # (k, n)
    quality: np.ndarray  # (k, n)
    labels: list[str]
    thresholds: np.ndarray  # (k, L-1)
    stop_stages: np.ndarray = field(repr=False, default=None)  # (k, n)
    chain: tuple[str, ...] = ()

    def mean_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(k,) mean cost and (k,) mean quality."""
        return self.costs.mean(axis=1), np.nanmean(self.quality, axis=1)

    def to_curve(self, label: str, log: "OutcomeLog | None" = None, *, family: str = "cascade",
                 cost_unit: str | None = None):
        """The evaluation package's ``Curve`` (``routecast.evaluation.curves.Curve.from_points``).

        With ``log`` (the log the curve was simulated on, all its models), the curve also carries
        per-model call shares (share of prompts that *called* each model - they sum to more than
        1 when prompts escalate) and, for two-model logs, the strong-model call share that
        RouteLLM's APGR/CPT need.
        """
        from routecast.core.curve import USD, Curve
        from routecast.core.policy import strong_weak

        kwargs: dict[str, Any] = {"label": label, "family": family, "cost_unit": cost_unit or USD}
        if log is not None:
            m = log.n_models
            shares = np.zeros((len(self.labels), m))
            for stage, name in enumerate(self.chain):
                shares[:, log.model_index(name)] = (self.stop_stages >= stage).mean(axis=1)
            kwargs.update(models=log.models, call_shares=shares)
            if m == 2:
                strong = strong_weak(log.mean_costs(), log.mean_scores()).strong
                kwargs["strong_share"] = shares[:, strong]
        return Curve.from_points(self.costs, self.quality, self.labels, **kwargs)


@register_cascade("cascade")
class Cascade(Estimator):
    """An ordered chain of models with learned deferral and stop thresholds.

    Parameters
    ----------
    chain: model names, cheapest first. ``None``: every model of the training log, by mean cost.
    deferral: ``"ex-ante"`` (router-predicted quality gap), ``"ex-post"`` (answer scorer),
        ``"agreement"`` (final-answer agreement from stage 2), or a :class:`Deferral` instance
        (an instance that is already fitted is used as is, which lets chain search share one).
    router: router (name or instance) behind ex-ante deferral.
    encoder: encoder spec for the ex-ante router and the ex-post answer scorer.
    n_quantiles, max_grid: bounds of the threshold search (see ``routecast.cascade.thresholds``).
    """

    fitted_attribute = "search_"
    fit_hint = "fit(train_log, val_log)"
    tags = PolicyTags(quick_params={"router": "linear", "n_quantiles": 10})

    def __init__(self, chain: Sequence[str] | None = None, deferral: "str | Deferral" = "ex-ante",
                 router: Any = "knn", encoder: str = DEFAULT_ENCODER, n_quantiles: int = 40,
                 max_grid: int = 5000):
        self.chain = chain
        self.deferral = deferral
        self.router = router
        self.encoder = encoder
        self.n_quantiles = n_quantiles
        self.max_grid = max_grid

    def _describe(self) -> str:
        return "the cascade"

    def __repr__(self) -> str:
        chain = getattr(self, "chain_", self.chain)
        kind = self.deferral if isinstance(self.deferral, str) else type(self.deferral).__name__
        return f"Cascade(chain={chain!r}, deferral={kind!r})"

    # ------------------------------------------------------------------ fit
    def fit(self, train_log: "OutcomeLog", val_log: "OutcomeLog", *, budget: float | None = None,
            target_quality: float | None = None, match: str | None = None) -> "Cascade":
        """Learn the deferral scorer on ``train_log`` and the thresholds' effects on ``val_log``.

        The operating point is the best validation quality (ties: the cheaper), unless one of
        ``budget``, ``target_quality`` or ``match`` (a model name) is given.
        Prompts where a chain model has no logged score are left out of both splits.
        """
        chain = resolve_chain(train_log, self.chain)
        _require_costs(train_log, chain)
        _require_costs(val_log, chain)
        train = _nonempty(train_log.select_models(chain).complete(), "training")
        val = _nonempty(val_log.select_models(chain).complete(), "validation")
        deferral = make_deferral(self.deferral, router=self.router, encoder=self.encoder)
        if not hasattr(deferral, "models_"):
            deferral.fit(train)
        self.chain_ = tuple(chain)
        self.deferral_ = deferral
        self.val_models_quality_ = {m: float(np.mean(val.scores[:, j])) for j, m in enumerate(chain)}
        self.search_ = self._search(val)
        given = [k for k, v in (("budget", budget), ("target_quality", target_quality), ("match", match))
                 if v is not None]
        if len(given) > 1:
            raise ConfigError(f"give at most one of budget, target_quality, match (got {given})")
        if budget is not None:
            choice = self.thresholds_for_budget(budget)
        elif target_quality is not None:
            choice = self.thresholds_for_quality(target_quality)
        elif match is not None:
            choice = self.match_model(match)
        else:
            choice = self.search_.best_quality()
        self.set_thresholds(choice.thresholds)
        return self

    def _search(self, val: "OutcomeLog", signals: np.ndarray | None = None) -> ThresholdSearch:
        if signals is None:
            signals = self.deferral_.signals(val)
        scores = self.deferral_.stage_scores(signals, range(len(self.chain_)))
        return ThresholdSearch(scores, val.costs, val.scores, n_quantiles=self.n_quantiles,
                               max_grid=self.max_grid)

    # ----------------------------------------------------- operating points
    def thresholds_for_budget(self, budget: float) -> ThresholdChoice:
        """Thresholds with the best validation quality at mean cost <= ``budget`` $/query."""
        self._check_fitted()
        return self.search_.for_budget(budget)

    def thresholds_for_quality(self, target: float) -> ThresholdChoice:
        """Thresholds with the lowest validation cost at mean quality >= ``target``."""
        self._check_fitted()
        return self.search_.for_quality(target)

    def match_model(self, name: str) -> ThresholdChoice:
        """Thresholds reaching model ``name``'s validation quality at the lowest cost.

        ``name`` must be a chain model (its quality on the validation split is known exactly).
        """
        self._check_fitted()
        if name not in self.val_models_quality_:
            raise ConfigError(f"cannot match model {name!r}: it is not in the cascade's chain "
                              f"{list(self.chain_)}")
        return self.search_.for_quality(self.val_models_quality_[name])

    def set_thresholds(self, thresholds: Sequence[float]) -> "Cascade":
        self._check_fitted()
        t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        if len(t) != len(self.chain_) - 1:
            raise ConfigError(f"a {len(self.chain_)}-stage cascade needs {len(self.chain_) - 1} "
                              f"threshold(s), got {len(t)}")
        self.thresholds_ = t
        return self

    # ------------------------------------------------------------ offline
    def stage_scores(self, log: "OutcomeLog") -> np.ndarray:
        """(n, L-1) deferral score at every non-final stage for the prompts of ``log``."""
        self._check_fitted()
        sub = log.select_models(self.chain_)
        return self.deferral_.stage_scores(self.deferral_.signals(sub), range(len(self.chain_)))

    def simulate(self, log: "OutcomeLog", thresholds: Sequence[float] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Replay the cascade on a logged split: per-prompt cost, quality and stop stage (0-based).

        Cost = sum of the logged costs of every model called; quality = logged score of the model
        whose answer is returned (NaN where that score was not logged).
        """
        self._check_fitted()
        t = self.thresholds_ if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        sub = log.select_models(self.chain_)
        _require_costs(sub, self.chain_)
        cost, quality, stop = simulate_stages(self.stage_scores(sub), sub.costs, sub.scores, t)
        return cost[0], quality[0], stop[0]

    def curve(self, log: "OutcomeLog", max_points: int = 101) -> CascadeCurve:
        """Sweep the validation-Pareto thresholds over ``log``: (k, n) cost and quality arrays."""
        self._check_fitted()
        frontier = self.search_.frontier()
        if len(frontier) > max_points:
            keep = np.unique(np.linspace(0, len(frontier) - 1, max_points).round().astype(int))
            frontier = [frontier[i] for i in keep]
        thresholds = np.stack([c.thresholds for c in frontier])
        sub = log.select_models(self.chain_)
        _require_costs(sub, self.chain_)
        cost, quality, stop = simulate_stages(self.stage_scores(sub), sub.costs, sub.scores, thresholds)
        labels = [f"cascade t={_fmt(c.thresholds)} (val ${c.cost:.3g}, q {c.quality:.3f})" for c in frontier]
        return CascadeCurve(cost, quality, labels, thresholds, stop, self.chain_)

    # ------------------------------------------------------------- online
    def run(self, prompt: str, call_model: Callable[[str, str], str]) -> CascadeOutcome:
        """Answer one live prompt: call models in chain order until a stage's score clears its
        threshold (the last stage always answers). ``call_model(model, prompt) -> response``."""
        self._check_fitted()
        responses: list[str] = []
        scores: list[float] = []
        cache: dict[str, Any] = {}
        last = len(self.chain_) - 1
        for i, model in enumerate(self.chain_):
            response = call_model(model, prompt)
            if not isinstance(response, str):
                raise RoutingError(f"call_model returned {type(response).__name__} for model {model!r}; "
                                   "expected the response text")
            responses.append(response)
            if i == last:
                break
            score = self.deferral_.online_score(prompt, self.chain_, responses, cache)
            scores.append(score)
            if score >= self.thresholds_[i]:
                break
        return CascadeOutcome(answer=responses[-1], model=self.chain_[len(responses) - 1],
                              models_called=list(self.chain_[:len(responses)]), deferral_scores=scores)



# ---------------------------------------------------------------- chain search
@dataclass
class ChainSearch:
    """Result of :func:`search_chains`: the best fitted cascade and one row per chain tried."""

    best: Cascade
    table: list[dict[str, Any]]


def search_chains(train_log: "OutcomeLog", val_log: "OutcomeLog", *, max_len: int = 3, min_len: int = 2,
                  models: Sequence[str] | None = None, deferral: "str | Deferral" = "ex-ante",
                  budget: float | None = None, metric: str | None = None, max_chains: int = 1000,
                  **cascade_params) -> ChainSearch:
    """FrugalGPT-style search over chains of bounded length, judged on the validation split.

    Chains are the cost-ordered subsets of ``models`` (default: all) with ``min_len``..``max_len``
    members (at most ``max_chains``, cheapest-first enumeration). The deferral scorer is fitted
    once on all candidates and shared by every chain. Each chain's learned-threshold curve on
    ``val_log`` is scored by ``metric``:

    * ``"quality_at_budget"`` (default when ``budget`` is given): best quality at mean cost <= budget;
    * ``"aiq"`` (default otherwise): RouterBench AIQ (``routecast.evaluation.metrics.aiq``) of the
      chain's validation operating points over the range from the cheapest to the dearest single
      model's mean validation cost (0 below the chain's cheapest point, so chains that cannot run
      cheaply are penalised, as in evaluation).
    """
    metric = metric or ("quality_at_budget" if budget is not None else "aiq")
    if metric not in ("aiq", "quality_at_budget"):
        raise ConfigError(f"unknown chain metric {metric!r}; use 'aiq' or 'quality_at_budget'")
    if metric == "quality_at_budget" and budget is None:
        raise ConfigError("metric 'quality_at_budget' needs a budget")
    models = list(train_log.models if models is None else models)
    _check_models(train_log, models)
    _require_costs(train_log, models)
    _require_costs(val_log, models)
    order = sorted(models, key=lambda m: (train_log.mean_costs()[train_log.model_index(m)], m))
    train = _nonempty(train_log.select_models(order).complete(), "training")
    val = _nonempty(val_log.select_models(order).complete(), "validation")
    shared = make_deferral(deferral, router=cascade_params.get("router", "knn"),
                           encoder=cascade_params.get("encoder", DEFAULT_ENCODER))
    if not hasattr(shared, "models_"):
        shared.fit(train)
    signals = shared.signals(val)
    single_cost = val.costs.mean(axis=0)
    single_quality = val.scores.mean(axis=0)
    grid = np.linspace(single_cost.min(), single_cost.max(), 201)
    floor = float(single_quality[int(np.argmin(single_cost))])

    chains = [c for k in range(min_len, max_len + 1) for c in itertools.combinations(range(len(order)), k)]
    chains = chains[:max_chains]
    if not chains:
        raise ConfigError(f"no chain of length {min_len}..{max_len} from {len(order)} model(s)")
    table: list[dict[str, Any]] = []
    best_value, best_chain = -np.inf, None
    from routecast.progress import Progress

    with Progress("cascade chains", total=len(chains), unit="chains", enabled=len(chains) >= 50) as bar:
        for idx in chains:
            cascade = Cascade(chain=[order[i] for i in idx], deferral=shared, **cascade_params)
            cascade.chain_ = tuple(order[i] for i in idx)
            cascade.deferral_ = shared
            sub_signals = signals[:, _signal_columns(shared, signals, idx, len(order))]
            search = cascade._search(val.select_models(cascade.chain_), sub_signals)
            if metric == "aiq":
                value = _aiq(search, grid, floor)
            else:
                ok = search.cand_cost <= budget * (1 + 1e-12)
                value = float(search.cand_quality[ok].max()) if ok.any() else -np.inf
            table.append({"chain": list(cascade.chain_), metric: value,
                          "best_quality": float(search.cand_quality.max()),
                          "min_cost": float(search.cand_cost.min())})
            if value > best_value + 1e-12:
                best_value, best_chain = value, cascade.chain_
            bar.advance()
    if best_chain is None:
        raise RoutingError(f"no chain reaches a mean cost <= ${budget:.6g}/query on the validation split")
    best = Cascade(chain=list(best_chain), deferral=shared, **cascade_params)
    best.fit(train_log, val_log, budget=budget)
    table.sort(key=lambda row: -row[metric])
    return ChainSearch(best=best, table=table)


def _signal_columns(deferral: Deferral, signals: np.ndarray, idx: Sequence[int], m: int) -> list[int]:
    """Signal columns of chain members; agreement with a first-stage scorer keeps both halves."""
    idx = list(idx)
    if signals.shape[1] == 2 * m:
        return idx + [m + i for i in idx]
    return idx


def _aiq(search: ThresholdSearch, grid: np.ndarray, floor: float) -> float:
    """AIQ of the chain's validation points over the single models' cost range: the evaluation
    package's definition (concave hull, 0 below the chain's cheapest point) when available."""
    try:
        from routecast.evaluation.metrics import aiq
    except ImportError:  # evaluation package not installed: step-curve mean over the grid
        return _step_aiq(search, grid, floor)
    return float(aiq(search.cand_cost, search.cand_quality, float(grid[0]), float(grid[-1])))


def _step_aiq(search: ThresholdSearch, grid: np.ndarray, floor: float) -> float:
    order = np.argsort(search.cand_cost)
    costs = search.cand_cost[order]
    best_so_far = np.maximum.accumulate(search.cand_quality[order])
    pos = np.searchsorted(costs, grid, side="right") - 1
    values = np.where(pos >= 0, best_so_far[np.maximum(pos, 0)], floor)
    return float(values.mean())


# --------------------------------------------------------------- validation
def resolve_chain(log: "OutcomeLog", chain: Sequence[str] | None) -> list[str]:
    """The chain to use: as given (checked), or every model of ``log`` by mean cost ascending."""
    if chain is None:
        _require_costs(log, log.models)
        means = log.mean_costs()
        chain = [log.models[j] for j in np.lexsort((np.arange(log.n_models), means))]
    chain = [str(m) for m in chain]
    _check_models(log, chain)
    if len(chain) < 2:
        raise ConfigError(f"a cascade needs at least two models, got {chain}")
    return chain


def _check_models(log: "OutcomeLog", names: Sequence[str]) -> None:
    missing = [m for m in names if m not in log.models]
    if missing:
        raise ConfigError(f"cascade chain names model(s) {', '.join(map(repr, missing))} that are not in the "
                          f"log {log.source}; models there: {', '.join(log.models)}")
    dupes = sorted({m for m in names if list(names).count(m) > 1})
    if dupes:
        raise ConfigError(f"cascade chain lists model(s) {', '.join(dupes)} more than once")


def _require_costs(log: "OutcomeLog", names: Sequence[str]) -> None:
    for name in names:
        col = log.costs[:, log.model_index(name)]
        logged = ~np.isnan(log.scores[:, log.model_index(name)])
        bad = np.isnan(col) & logged
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise RoutingError(
                f"model {name!r} has no cost on {int(bad.sum())} of {len(col)} prompts of {log.source} "
                f"(first: prompt_id {log.prompt_ids[first]!r}); a cascade needs a cost per call - give a "
                "price table (prices=... of load_log, or OutcomeLog.with_costs)")
        if (col[~np.isnan(col)] < 0).any():
            raise RoutingError(f"model {name!r} has negative costs in {log.source}")


def _nonempty(log: "OutcomeLog", what: str) -> "OutcomeLog":
    """``log`` (already restricted by :meth:`OutcomeLog.complete`), refused when no prompt is left."""
    if log.n_prompts == 0:
        raise RoutingError(f"no prompt of the {what} split has a logged score for every chain model "
                           f"({', '.join(log.models)})")
    return log


def _fmt(t: np.ndarray) -> str:
    return "[" + ", ".join(f"{x:.3g}" for x in np.asarray(t)) + "]"

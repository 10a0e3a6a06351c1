"""Evaluation of routers (and cascades) on a held-out log: the numbers every comparison uses.

``routecast evaluate``, the leaderboard benchmark, cascade comparisons and tuning all go
through the same two steps, so a number means the same thing everywhere:

1. :func:`~routecast.evaluation.measure.sweep_router` predicts quality once per test prompt, then applies the shared decision
   rule (:func:`routecast.core.policy.decide`) at every willingness-to-pay value of
   :func:`routecast.core.policy.lam_grid`, recording per prompt which model was chosen and what
   that call really cost and scored in the log (a :class:`~routecast.core.curve.Curve`).
2. :func:`evaluate` puts all curves on one declared cost range and computes RouterBench's AIQ
   (with a paired bootstrap interval over prompts), the cost to match the best single model, and
   for strong/weak pairs RouteLLM's APGR and CPT.

The cost range is fixed before any policy is looked at: by default the cheapest and the most
expensive single model's mean cost on the evaluated split, or ``cost_range=(low, high)`` to pin
it across runs. A policy's AIQ therefore never depends on which other policies are compared.
A policy whose whole curve costs more than the range (an ensemble that calls every model) is
reported with its cost and quality as "outside the range", and a policy with a single operating
point (a single model, a router that always picks the same model) as a "point"; neither gets an
AIQ rank.

Missing scores and costs follow the kernel's one rule (:mod:`routecast.core.policy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from routecast.errors import RoutingError
from routecast.jsonable import finite_or_none
from routecast.jsonable import to_jsonable
from routecast.core.curve import Curve
from routecast.core.policy import strong_weak
from routecast.data.best_model import best_model
from routecast.evaluation import metrics
from routecast.evaluation.curves import realised_costs
from routecast.evaluation.measure import complete_log, sweep_router
from routecast.evaluation.prior_labels import PRIOR_LABELS, PRIOR_ROUTERS, prior_choice

__all__ = ["Curve", "sweep_router", "single_model_curves", "evaluate", "single_model_cost_range",
           "EvaluationResult", "RouterScore", "aiq_difference", "PRIOR_ROUTERS"]


def single_model_curves(test_log, *, costs: np.ndarray | None = None) -> dict[str, Curve]:
    """Each model alone as a one-point curve on the complete rows of ``test_log``."""
    log, mask = complete_log(test_log)
    unit_costs, n_imputed, unit = realised_costs(log, costs)
    out = {}
    m = log.n_models
    strong = strong_weak(unit_costs.mean(axis=0), log.scores.mean(axis=0)).strong
    for j, name in enumerate(log.models):
        share = np.zeros((1, m))
        share[0, j] = 1.0
        out[name] = Curve.from_points(unit_costs[:, j][None], log.scores[:, j][None], [name], label=name,
                                      models=log.models, family="single", prompt_index=np.flatnonzero(mask),
                                      strong_share=[float(j == strong)], call_shares=share, cost_unit=unit,
                                      meta={"n_cost_imputed": n_imputed})
    return out


# ------------------------------------------------------------------- results
#: how a policy sits against the declared cost range
CURVE, POINT, OUTSIDE = "curve", "point", "outside the range"


@dataclass
class RouterScore:
    """Summary numbers of one curve (see :func:`evaluate` for the definitions).

    ``status`` is ``"curve"`` (ranked by AIQ), ``"point"`` (one operating point: reported by cost
    and quality, no AIQ) or ``"outside the range"`` (every point costs more than the range's upper
    end: no AIQ). ``gain_over_prior`` is AIQ minus the AIQ of ``prior``, the prior with the best
    validation AIQ (routecast.evaluation.priors), with a paired interval.
    """

    label: str
    family: str
    status: str
    aiq: float
    aiq_ci: tuple[float, float]
    aiq_gain: float
    max_quality: float
    min_cost: float
    cost_to_match_best: float
    cost_ratio_to_best: float
    quality_at_best_cost: float
    apgr: float | None
    cpt50: float | None
    cpt80: float | None
    call_shares: dict[str, float]
    n_points: int
    n_cost_imputed: int
    gain_over_prior: float | None = None
    gain_over_prior_ci: tuple[float, float] | None = None
    prior: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "label": self.label, "family": self.family, "status": self.status, "aiq": finite_or_none(self.aiq),
            "aiq_ci": [finite_or_none(self.aiq_ci[0]), finite_or_none(self.aiq_ci[1])], "aiq_gain": finite_or_none(self.aiq_gain),
            "max_quality": finite_or_none(self.max_quality), "min_cost": finite_or_none(self.min_cost),
            "cost_to_match_best": finite_or_none(self.cost_to_match_best),
            "cost_ratio_to_best": finite_or_none(self.cost_ratio_to_best),
            "quality_at_best_cost": finite_or_none(self.quality_at_best_cost),
            "apgr": None if self.apgr is None else finite_or_none(self.apgr),
            "cpt50": None if self.cpt50 is None else finite_or_none(self.cpt50),
            "cpt80": None if self.cpt80 is None else finite_or_none(self.cpt80),
            "call_shares": {k: finite_or_none(v) for k, v in self.call_shares.items()},
            "n_points": self.n_points, "n_cost_imputed": self.n_cost_imputed,
            "prior": self.prior, "gain_over_prior": finite_or_none(self.gain_over_prior),
            "gain_over_prior_ci": None if self.gain_over_prior_ci is None
            else [finite_or_none(self.gain_over_prior_ci[0]), finite_or_none(self.gain_over_prior_ci[1])],
            "meta": to_jsonable(self.meta, fallback_repr=True),
        }
        return out


@dataclass
class EvaluationResult:
    """Everything :func:`evaluate` measured; ``to_dict`` is what metrics.json holds."""

    models: tuple[str, ...]
    single_models: dict[str, dict[str, float]]
    best_single_model: str
    strong_model: str | None
    weak_model: str | None
    cost_range: tuple[float, float]
    cost_range_source: str
    cost_unit: str
    zero_router_aiq: float
    oracle_quality: float
    n_prompts: int
    n_dropped: int
    n_boot: int
    seed: int
    routers: dict[str, RouterScore]
    curves: dict[str, Curve]
    notes: list[str] = field(default_factory=list)
    per_benchmark: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    #: which prior the gains are over and why: {"prior", "by": "validation AIQ", "validation_aiq"}
    prior_choice: dict[str, Any] = field(default_factory=dict)

    def leaderboard(self) -> list[dict[str, Any]]:
        """Policies ranked by AIQ (status "curve"), best first."""
        rows = [score.to_dict() for score in self.routers.values() if score.status == CURVE]
        return sorted(rows, key=lambda r: (r["aiq"] is None, -(r["aiq"] or 0.0), r["label"]))

    def unranked(self) -> list[dict[str, Any]]:
        """Points and policies outside the cost range, by cost: reported, never ranked."""
        rows = [score.to_dict() for score in self.routers.values() if score.status != CURVE]
        return sorted(rows, key=lambda r: (r["min_cost"] is None, r["min_cost"] or 0.0, r["label"]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "single_models": {k: {kk: finite_or_none(vv) for kk, vv in v.items()} for k, v in self.single_models.items()},
            "best_single_model": self.best_single_model,
            "strong_model": self.strong_model, "weak_model": self.weak_model,
            "cost_range": [finite_or_none(self.cost_range[0]), finite_or_none(self.cost_range[1])],
            "cost_range_source": self.cost_range_source,
            "cost_unit": self.cost_unit,
            "zero_router_aiq": finite_or_none(self.zero_router_aiq),
            "oracle_quality": finite_or_none(self.oracle_quality),
            "n_prompts": self.n_prompts, "n_dropped": self.n_dropped,
            "n_boot": self.n_boot, "seed": self.seed,
            "leaderboard": self.leaderboard(),
            "unranked": self.unranked(),
            "notes": list(self.notes),
            "per_benchmark": to_jsonable(self.per_benchmark),
            "prior_choice": to_jsonable(self.prior_choice),
            "curves": {label: {"family": c.family, "points": c.points(),
                               "hull": _hull_dict(c)} for label, c in self.curves.items()},
            "metadata": to_jsonable(self.metadata, fallback_repr=True),
        }


def _hull_dict(curve: Curve) -> dict[str, list]:
    hc, hq = metrics.upper_hull(curve.cost, curve.quality)
    return {"cost": [float(x) for x in hc], "quality": [float(x) for x in hq]}


# ------------------------------------------------------------------ evaluate
def _align(curve: Curve, mask: np.ndarray, n_total: int) -> Curve:
    """Restrict a curve to the complete rows of the test log (columns in test-log order)."""
    keep = np.flatnonzero(mask)
    if curve.prompt_index is not None:
        index = np.asarray(curve.prompt_index)
        if np.array_equal(index, keep):
            return curve
        pos = {int(p): i for i, p in enumerate(index)}
        if all(int(p) in pos for p in keep):
            return curve.restrict(np.array([pos[int(p)] for p in keep]))
        raise RoutingError(f"curve {curve.label!r} does not cover every complete prompt of the test log")
    if curve.n_prompts == n_total:
        return curve if mask.all() else curve.restrict(keep)
    if curve.n_prompts == keep.size:
        return curve
    raise RoutingError(f"curve {curve.label!r} has {curve.n_prompts} prompts; the test log has "
                       f"{n_total} ({keep.size} complete)")


def single_model_cost_range(log, costs: np.ndarray | None = None) -> tuple[float, float]:
    """The default AIQ cost range: [cheapest, dearest] single model's mean cost on ``log``'s
    complete rows (the prompts every curve is measured on)."""
    complete, _ = complete_log(log)
    unit_costs, _, _ = realised_costs(complete, costs)
    means = unit_costs.mean(axis=0)
    return float(means.min()), float(means.max())


def _check_range(cost_range) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in cost_range)
    except (TypeError, ValueError):
        raise RoutingError(f"cost_range must be two numbers (low, high), got {cost_range!r}") from None
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high < low:
        raise RoutingError(f"cost_range must satisfy 0 <= low <= high, both finite; got ({low}, {high})")
    return low, high


def _status(curve: Curve, c_max: float) -> str:
    hc, _ = metrics.upper_hull(curve.cost, curve.quality)
    if hc.size and float(hc[0]) > c_max * (1 + 1e-9) + 1e-15:
        return OUTSIDE
    if curve.family == "single" or hc.size <= 1:
        return POINT
    return CURVE


def _per_prompt_aiq(curve: Curve, c_min: float, c_max: float):
    """``statistic(indices)``: the curve's AIQ on a bootstrap resample of its prompts."""
    pc, pq = curve.per_prompt()
    n = pc.shape[1]

    def statistic(idx: np.ndarray) -> float:
        w = np.bincount(idx, minlength=n).astype(np.float64) / len(idx)
        return metrics.aiq(pc @ w, pq @ w, c_min, c_max)

    return statistic


def aiq_difference(result: "EvaluationResult", label: str, reference: str) -> tuple[float, tuple[float, float]]:
    """AIQ(label) - AIQ(reference) on ``result``'s prompts and cost range, with a paired
    percentile bootstrap 95% interval (both curves on the same resamples, the draws every
    interval of ``result`` used)."""
    c_min, c_max = result.cost_range
    a = _per_prompt_aiq(result.curves[label], c_min, c_max)
    b = _per_prompt_aiq(result.curves[reference], c_min, c_max)
    value = result.routers[label].aiq - result.routers[reference].aiq
    ci = metrics.bootstrap_ci(lambda idx: a(idx) - b(idx), result.n_prompts, n_boot=result.n_boot,
                              seed=result.seed)
    return float(value), ci


def evaluate(curves: Mapping[str, Curve], test_log, *, n_boot: int = 200, seed: int = 0,
             costs: np.ndarray | None = None, cost_range: tuple[float, float] | None = None,
             strong: str | None = None, weak: str | None = None,
             metadata: Mapping[str, Any] | None = None,
             prior_val_aiq: Mapping[str, float] | None = None) -> EvaluationResult:
    """Compare curves on ``test_log``'s complete prompts.

    Definitions (all means per query over the same prompts):

    * cost range ``[c_min, c_max]``: ``cost_range`` if given, else the cheapest and the dearest
      single model's mean cost on these prompts; never taken from the compared policies. AIQ of
      each ranked curve over it (:func:`routecast.evaluation.metrics.aiq`), with a
      percentile bootstrap interval (prompts resampled with replacement, the same draws for every
      curve, range held fixed); ``aiq_gain`` = AIQ - zero-router AIQ.
    * best single model: :func:`routecast.data.best_model.best_model` (highest mean score; ties:
      the cheaper), the strong model of :func:`strong_weak` too. ``cost_to_match_best``: lowest cost
      at which the curve's hull reaches its quality (inf if never), and its ratio to that
      model's cost; ``quality_at_best_cost``: hull quality at that model's cost.
    * strong/weak models: :func:`routecast.core.policy.strong_weak` (``strong``/``weak`` name
      them); on two-model logs APGR, CPT(50%) and CPT(80%) against the strong-call share.
    * priors (:data:`~routecast.evaluation.priors.PRIOR_LABELS`): every learned (a1)
      policy gets ``gain_over_prior`` = its AIQ - the AIQ of the better prior, with a paired
      interval (:func:`aiq_difference`). The better prior is the one with the best AIQ on the
      validation split, ``prior_val_aiq`` (label -> validation AIQ, measured by the caller, e.g.
      :func:`routecast.training.experiment.run_experiment`); never the best on test. Without
      ``prior_val_aiq`` no gain is computed (a note says so).
    * ``per_benchmark``: AIQ and quality at the best single model's cost per value of the log's
      ``benchmark`` (or ``task``) column, on the same cost range.
    * ``call_shares``: at the lam = 0 point of a router (else the best-quality point).
    """
    log, mask = complete_log(test_log)
    aligned = {label: _align(c, mask, test_log.n_prompts) for label, c in curves.items()}
    for label, c in aligned.items():
        pc, pq = c.per_prompt()
        if np.isnan(pc).any() or np.isnan(pq).any():
            raise RoutingError(f"curve {label!r} has no cost or quality for some prompts whose "
                               "scores are all logged; it cannot be compared on the same prompts")
        if c.models and tuple(c.models) != tuple(log.models):
            raise RoutingError(f"curve {label!r} routes among {list(c.models)}, the test log has {list(log.models)}")
    choice_curves = [c for c in aligned.values() if c.unit_costs is not None]
    if costs is None and choice_curves:
        unit_costs, unit = choice_curves[0].unit_costs, choice_curves[0].cost_unit
    else:
        unit_costs, _, unit = realised_costs(log, costs)
    # a curve priced in another unit (e.g. a cascade given USD prices on a log without costs)
    # is still evaluated, but flagged: its AIQ is not comparable
    mismatched = sorted(label for label, c in aligned.items() if c.cost_unit != unit)

    single_cost = unit_costs.mean(axis=0)
    single_quality = log.scores.mean(axis=0)
    best = best_model(single_quality, single_cost)
    c_best, q_best = float(single_cost[best]), float(single_quality[best])
    if cost_range is None:
        c_min, c_max = float(single_cost.min()), float(single_cost.max())
        range_source = "cheapest to most expensive single model's mean cost on the evaluated prompts"
    else:
        c_min, c_max = _check_range(cost_range)
        range_source = "given (cost_range)"
    zero_c, zero_q = metrics.zero_router_points(single_cost, single_quality)
    zero_aiq = metrics.aiq(zero_c, zero_q, c_min, c_max)

    pair = strong_weak(single_cost, single_quality, models=log.models, strong=strong, weak=weak)
    notes = list(pair.notes)
    two = log.n_models == 2 or (strong is not None and weak is not None)
    q_strong, q_weak = float(single_quality[pair.strong]), float(single_quality[pair.weak])

    n = log.n_prompts
    scores: dict[str, RouterScore] = {}
    for label, c in aligned.items():
        status = _status(c, c_max)
        if status == CURVE:
            value = metrics.aiq(c.cost, c.quality, c_min, c_max)
            ci = metrics.bootstrap_ci(_per_prompt_aiq(c, c_min, c_max), n, n_boot=n_boot, seed=seed)
        else:
            value, ci = float("nan"), (float("nan"), float("nan"))
        match = metrics.cost_at_quality(c.cost, c.quality, q_best)
        apgr = cpt50 = cpt80 = None
        shares_known = np.isfinite(c.strong_share).all()
        if two and shares_known and status != OUTSIDE:
            share, quality = _share_axis(c, pair.strong)
            apgr = metrics.apgr(share, quality, q_weak, q_strong)
            cpt50 = metrics.cpt(share, quality, q_weak, q_strong, 0.5)
            cpt80 = metrics.cpt(share, quality, q_weak, q_strong, 0.8)
        bp = c.best_point()
        shares = {m: float(s) for m, s in zip(log.models, c.call_shares[bp])} if len(c.models) else {}
        meta = dict(c.meta)
        meta.update((metadata or {}).get("routers", {}).get(label, {}))
        scores[label] = RouterScore(
            label=label, family=c.family, status=status, aiq=value, aiq_ci=ci, aiq_gain=value - zero_aiq,
            max_quality=float(np.nanmax(c.quality)), min_cost=float(np.nanmin(c.cost)),
            cost_to_match_best=match,
            cost_ratio_to_best=(match / c_best) if c_best > 0 else float("nan"),
            quality_at_best_cost=metrics.quality_at_cost(c.cost, c.quality, c_best),
            apgr=apgr, cpt50=cpt50, cpt80=cpt80, call_shares=shares, n_points=c.n_points,
            n_cost_imputed=int(c.n_cost_imputed), meta=meta)
    outside = sorted(label for label, sc in scores.items() if sc.status == OUTSIDE)
    if outside:
        notes.append(f"outside the cost range [{c_min:.6g}, {c_max:.6g}] (no AIQ): {', '.join(outside)}")

    result = EvaluationResult(
        models=tuple(log.models),
        single_models={m: {"cost": float(single_cost[j]), "quality": float(single_quality[j])}
                       for j, m in enumerate(log.models)},
        best_single_model=log.models[best],
        strong_model=log.models[pair.strong] if two else None,
        weak_model=log.models[pair.weak] if two else None,
        cost_range=(c_min, c_max), cost_range_source=range_source, cost_unit=unit, zero_router_aiq=zero_aiq,
        oracle_quality=float(log.scores.max(axis=1).mean()), n_prompts=n,
        n_dropped=int((~mask).sum()), n_boot=n_boot, seed=seed, routers=scores, curves=aligned,
        notes=notes,
        metadata={**{k: v for k, v in (metadata or {}).items() if k != "routers"},
                  **({"cost_unit_mismatch": mismatched} if mismatched else {})})
    _add_gain_over_prior(result, prior_val_aiq)
    result.per_benchmark = _per_benchmark(result, log, c_best)
    return result


def _share_axis(curve: Curve, strong: int) -> tuple[np.ndarray, np.ndarray]:
    """(strong-call shares, qualities) a curve offers on the APGR axis: a router's full margin
    sweep when it has one for this strong model (:func:`routecast.core.policy.pair_share_curve`),
    else its operating points."""
    if curve.pair_shares is not None and curve.pair_shares[0] == strong:
        _, share, quality = curve.pair_shares
        return np.concatenate([share, (curve.choices == strong).mean(axis=1)]), np.concatenate([quality, curve.quality])
    if curve.choices is not None:
        return (curve.choices == strong).mean(axis=1), curve.quality
    return curve.strong_share, curve.quality


def _add_gain_over_prior(result: EvaluationResult, prior_val_aiq: Mapping[str, float] | None) -> None:
    priors = [p for p in PRIOR_LABELS if p in result.routers and result.routers[p].status == CURVE]
    if not priors:
        return
    choice = prior_choice({p: (prior_val_aiq or {}).get(p) for p in priors})
    best_prior = choice["prior"]
    if best_prior is None:
        result.notes.append(f"no gain over prior: the better of {', '.join(priors)} is chosen by validation AIQ, "
                            "and none was measured on a validation split")
        return
    result.prior_choice = choice
    for label, score in result.routers.items():
        if score.family == "a1" and score.status == CURVE and label not in PRIOR_LABELS:
            score.prior = best_prior
            score.gain_over_prior, score.gain_over_prior_ci = aiq_difference(result, label, best_prior)


def _per_benchmark(result: EvaluationResult, log, c_best: float) -> list[dict[str, Any]]:
    column = next((c for c in ("benchmark", "task") if c in log.meta.columns), None)
    if column is None:
        return []
    values = log.meta[column].astype(str).to_numpy()
    c_min, c_max = result.cost_range
    rows = []
    for value in sorted(set(values)):
        cols = np.flatnonzero(values == value)
        entry: dict[str, Any] = {"benchmark": value, "n_prompts": int(cols.size), "policies": {}}
        for label, curve in result.curves.items():
            if result.routers[label].status == OUTSIDE:
                continue
            part = curve.restrict(cols)
            entry["policies"][label] = {
                "aiq": metrics.aiq(part.cost, part.quality, c_min, c_max) if result.routers[label].status == CURVE
                else None,
                "quality_at_best_cost": metrics.quality_at_cost(part.cost, part.quality, c_best),
                "max_quality": float(np.nanmax(part.quality))}
        rows.append(entry)
    return rows

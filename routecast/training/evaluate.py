"""Evaluation of routers (and cascades) on a held-out log: the numbers every comparison uses.

``routecast evaluate``, the leaderboard benchmark, cascade comparisons and tuning all go
through the same two steps, so a number means the same thing everywhere:

1. :func:`sweep_router` predicts quality once per test prompt, then applies the shared decision
   rule (:func:`routecast.router.base.decide`) at every willingness-to-pay value of
   :func:`routecast.router.base.lam_grid`, recording per prompt which model was chosen and what
   that call really cost and scored in the log (a :class:`~routecast.training.curves.Curve`).
2. :func:`evaluate` puts all curves on a common cost range and computes RouterBench's AIQ (with
   a paired bootstrap interval over prompts), the cost to match the best single model, and for
   strong/weak pairs RouteLLM's APGR and CPT.

Missing scores: a prompt where any model's score is not logged cannot be scored for every
routing decision, so evaluation keeps only complete rows (:func:`complete_rows`) and reports
how many were dropped. Missing costs: see :func:`routecast.training.curves.realised_costs`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from routecast.errors import RoutingError
from routecast.training import metrics
from routecast.training.curves import USD, Curve, _num, realised_costs, strong_model_index

__all__ = ["Curve", "complete_rows", "sweep_router", "single_model_curves", "evaluate",
           "EvaluationResult", "RouterScore"]


def complete_rows(log) -> np.ndarray:
    """Boolean mask of the prompts where every model's score is logged."""
    return ~np.isnan(log.scores).any(axis=1)


def _complete(log):
    mask = complete_rows(log)
    if not mask.any():
        raise RoutingError(f"no prompt of {log.source} has a score for every model "
                           f"({', '.join(log.models)}); cannot evaluate routing on it")
    return (log if mask.all() else log.subset(mask)), mask


def sweep_router(router, test_log, *, embeddings: np.ndarray | None = None,
                 lams: np.ndarray | None = None, costs: np.ndarray | None = None,
                 label: str | None = None, meta: Mapping[str, Any] | None = None) -> Curve:
    """Route every complete prompt of ``test_log`` at every lam and record realised outcomes.

    Quality is predicted once (``embeddings`` of all of ``test_log``'s prompts may be passed to
    skip encoding). Decisions use the router's expected per-model costs from training (or
    ``costs``, a per-model price table); a model whose expected cost is unknown takes its mean
    realised cost on the test log. The realised cost of a choice is the logged cost of that call
    (missing cells filled as :func:`~routecast.training.curves.realised_costs` says and counted
    in ``Curve.n_cost_imputed``); the realised quality is the logged score.
    """
    if tuple(test_log.models) != tuple(router.models_):
        missing = [m for m in router.models_ if m not in test_log.models]
        if missing:
            raise RoutingError(f"router was trained on model(s) {', '.join(missing)} "
                               f"that the test log {test_log.source} lacks")
        test_log = test_log.select_models(router.models_)
    log, mask = _complete(test_log)
    expected = np.asarray(router.costs_ if costs is None else costs, dtype=np.float64).reshape(-1)
    unit_costs, n_imputed, unit = realised_costs(log, expected)
    # decide on the costs the router expects (known before seeing the test log); only a model
    # without any expected cost falls back to its mean cost here
    observed = unit_costs.mean(axis=0)
    decision_costs = np.where(np.isfinite(expected), expected, observed) if unit == USD else observed
    if embeddings is not None:
        embeddings = np.asarray(embeddings)
        if len(embeddings) != test_log.n_prompts:
            raise RoutingError(f"got {len(embeddings)} embeddings for {test_log.n_prompts} test prompts")
        embeddings = embeddings[mask]
    start = time.perf_counter()
    quality = router.predict_quality(list(log.prompts), embeddings=embeddings)
    predict_seconds = time.perf_counter() - start
    grid = np.asarray(_lam_grid(decision_costs) if lams is None else lams, dtype=np.float64)
    from routecast.router.base import decide

    choices = np.stack([decide(quality, decision_costs, float(lam)) for lam in grid])
    strong = strong_model_index(unit_costs.mean(axis=0), log.scores.mean(axis=0))
    info = {"strong_index": strong, "n_dropped": int((~mask).sum()),
            # batch prediction time (embeddings excluded when given): not single-query latency
            "batch_predict_us_per_query": 1e6 * predict_seconds / max(log.n_prompts, 1)}
    info.update(meta or {})
    return Curve.from_choices(label or router.name or type(router).__name__, log.models, grid, choices,
                              unit_costs, log.scores.copy(), strong=strong,
                              family=getattr(router, "family", ""), prompt_index=np.flatnonzero(mask),
                              cost_unit=unit, n_cost_imputed=n_imputed, meta=info)


def _lam_grid(costs: np.ndarray) -> np.ndarray:
    from routecast.router.base import lam_grid

    return lam_grid(costs)


def single_model_curves(test_log, *, costs: np.ndarray | None = None) -> dict[str, Curve]:
    """Each model alone as a one-point curve on the complete rows of ``test_log``."""
    log, mask = _complete(test_log)
    unit_costs, n_imputed, unit = realised_costs(log, costs)
    out = {}
    m = log.n_models
    strong = strong_model_index(unit_costs.mean(axis=0), log.scores.mean(axis=0))
    for j, name in enumerate(log.models):
        share = np.zeros((1, m))
        share[0, j] = 1.0
        out[name] = Curve.from_points(unit_costs[:, j][None], log.scores[:, j][None], [name], label=name,
                                      models=log.models, family="single", prompt_index=np.flatnonzero(mask),
                                      strong_share=[float(j == strong)], call_shares=share, cost_unit=unit,
                                      meta={"n_cost_imputed": n_imputed})
    return out


# ------------------------------------------------------------------- results
@dataclass
class RouterScore:
    """Summary numbers of one curve (see :func:`evaluate` for the definitions)."""

    label: str
    family: str
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
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "family": self.family, "aiq": _num(self.aiq),
            "aiq_ci": [_num(self.aiq_ci[0]), _num(self.aiq_ci[1])], "aiq_gain": _num(self.aiq_gain),
            "max_quality": _num(self.max_quality), "min_cost": _num(self.min_cost),
            "cost_to_match_best": _num(self.cost_to_match_best),
            "cost_ratio_to_best": _num(self.cost_ratio_to_best),
            "quality_at_best_cost": _num(self.quality_at_best_cost),
            "apgr": None if self.apgr is None else _num(self.apgr),
            "cpt50": None if self.cpt50 is None else _num(self.cpt50),
            "cpt80": None if self.cpt80 is None else _num(self.cpt80),
            "call_shares": {k: _num(v) for k, v in self.call_shares.items()},
            "n_points": self.n_points, "n_cost_imputed": self.n_cost_imputed,
            "meta": _jsonable_meta(self.meta),
        }


@dataclass
class EvaluationResult:
    """Everything :func:`evaluate` measured; ``to_dict`` is what metrics.json holds."""

    models: tuple[str, ...]
    single_models: dict[str, dict[str, float]]
    best_single_model: str
    strong_model: str | None
    weak_model: str | None
    cost_range: tuple[float, float]
    cost_unit: str
    zero_router_aiq: float
    oracle_quality: float
    n_prompts: int
    n_dropped: int
    n_boot: int
    seed: int
    routers: dict[str, RouterScore]
    curves: dict[str, Curve]
    metadata: dict[str, Any] = field(default_factory=dict)

    def leaderboard(self) -> list[dict[str, Any]]:
        """One row per router/cascade, best AIQ first (NaN last)."""
        rows = [score.to_dict() for score in self.routers.values()]
        return sorted(rows, key=lambda r: (r["aiq"] is None, -(r["aiq"] or 0.0), r["label"]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "single_models": {k: {kk: _num(vv) for kk, vv in v.items()} for k, v in self.single_models.items()},
            "best_single_model": self.best_single_model,
            "strong_model": self.strong_model, "weak_model": self.weak_model,
            "cost_range": [_num(self.cost_range[0]), _num(self.cost_range[1])],
            "cost_unit": self.cost_unit,
            "zero_router_aiq": _num(self.zero_router_aiq),
            "oracle_quality": _num(self.oracle_quality),
            "n_prompts": self.n_prompts, "n_dropped": self.n_dropped,
            "n_boot": self.n_boot, "seed": self.seed,
            "leaderboard": self.leaderboard(),
            "curves": {label: {"family": c.family, "points": c.points(),
                               "hull": _hull_dict(c)} for label, c in self.curves.items()},
            "metadata": _jsonable_meta(self.metadata),
        }


def _hull_dict(curve: Curve) -> dict[str, list]:
    hc, hq = metrics.upper_hull(curve.cost, curve.quality)
    return {"cost": [float(x) for x in hc], "quality": [float(x) for x in hq]}


def _jsonable_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    import json

    out = {}
    for k, v in meta.items():
        if isinstance(v, (np.generic,)):
            v = v.item()
        if isinstance(v, float) and not np.isfinite(v):
            v = None
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError):
            v = repr(v)
        out[str(k)] = v
    return out


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


def evaluate(curves: Mapping[str, Curve], test_log, *, n_boot: int = 200, seed: int = 0,
             costs: np.ndarray | None = None, metadata: Mapping[str, Any] | None = None) -> EvaluationResult:
    """Compare curves on ``test_log``'s complete prompts.

    Definitions (all means per query over the same prompts):

    * cost range ``[c_min, c_max]``: over every operating point of every curve and every single
      model; AIQ of each curve over it (:func:`routecast.training.metrics.aiq`), with a
      percentile bootstrap interval (prompts resampled with replacement, the same draws for
      every curve, range held fixed); ``aiq_gain`` = AIQ - zero-router AIQ.
    * best single model: highest mean score (ties: cheaper). ``cost_to_match_best``: lowest cost
      at which the curve's hull reaches its quality (inf if never), and its ratio to that
      model's cost; ``quality_at_best_cost``: hull quality at that model's cost.
    * two-model logs: strong = the more expensive model (equal/unknown costs: the higher mean
      score); APGR, CPT(50%) and CPT(80%) against the strong-call share (None otherwise, or when
      a fixed-policy curve gave no strong share).
    * ``call_shares``: at the lam = 0 point of a router (else the best-quality point).
    """
    log, mask = _complete(test_log)
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
    order = sorted(range(log.n_models), key=lambda j: (-single_quality[j], single_cost[j], j))
    best = order[0]
    c_best, q_best = float(single_cost[best]), float(single_quality[best])
    all_costs = np.concatenate([single_cost] + [c.cost for c in aligned.values()])
    all_costs = all_costs[np.isfinite(all_costs)]
    c_min, c_max = float(all_costs.min()), float(all_costs.max())
    zero_c, zero_q = metrics.zero_router_points(single_cost, single_quality)
    zero_aiq = metrics.aiq(zero_c, zero_q, c_min, c_max)

    two = log.n_models == 2
    strong = weak = None
    if two:
        strong = strong_model_index(single_cost, single_quality)
        weak = 1 - strong
        q_strong, q_weak = float(single_quality[strong]), float(single_quality[weak])

    n = log.n_prompts
    scores: dict[str, RouterScore] = {}
    for label, c in aligned.items():
        pc, pq = c.per_prompt()

        def boot_aiq(idx, pc=pc, pq=pq):
            w = np.bincount(idx, minlength=n).astype(np.float64) / len(idx)
            return metrics.aiq(pc @ w, pq @ w, c_min, c_max)

        value = metrics.aiq(c.cost, c.quality, c_min, c_max)
        ci = metrics.bootstrap_ci(boot_aiq, n, n_boot=n_boot, seed=seed)
        match = metrics.cost_at_quality(c.cost, c.quality, q_best)
        apgr = cpt50 = cpt80 = None
        if two and np.isfinite(c.strong_share).all():
            apgr = metrics.apgr(c.strong_share, c.quality, q_weak, q_strong)
            cpt50 = metrics.cpt(c.strong_share, c.quality, q_weak, q_strong, 0.5)
            cpt80 = metrics.cpt(c.strong_share, c.quality, q_weak, q_strong, 0.8)
        bp = c.best_point()
        shares = {m: float(s) for m, s in zip(log.models, c.call_shares[bp])} if len(c.models) else {}
        meta = dict(c.meta)
        meta.update((metadata or {}).get("routers", {}).get(label, {}))
        scores[label] = RouterScore(
            label=label, family=c.family, aiq=value, aiq_ci=ci, aiq_gain=value - zero_aiq,
            max_quality=float(np.nanmax(c.quality)), min_cost=float(np.nanmin(c.cost)),
            cost_to_match_best=match,
            cost_ratio_to_best=(match / c_best) if c_best > 0 else float("nan"),
            quality_at_best_cost=metrics.quality_at_cost(c.cost, c.quality, c_best),
            apgr=apgr, cpt50=cpt50, cpt80=cpt80, call_shares=shares, n_points=c.n_points,
            n_cost_imputed=int(c.n_cost_imputed), meta=meta)

    return EvaluationResult(
        models=tuple(log.models),
        single_models={m: {"cost": float(single_cost[j]), "quality": float(single_quality[j])}
                       for j, m in enumerate(log.models)},
        best_single_model=log.models[best],
        strong_model=None if strong is None else log.models[strong],
        weak_model=None if weak is None else log.models[weak],
        cost_range=(c_min, c_max), cost_unit=unit, zero_router_aiq=zero_aiq,
        oracle_quality=float(log.scores.max(axis=1).mean()), n_prompts=n,
        n_dropped=int((~mask).sum()), n_boot=n_boot, seed=seed, routers=scores, curves=aligned,
        metadata={**{k: v for k, v in (metadata or {}).items() if k != "routers"},
                  **({"cost_unit_mismatch": mismatched} if mismatched else {})})

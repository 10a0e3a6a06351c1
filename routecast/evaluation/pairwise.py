"""Win rates measured on judged pairs: what a router's choices are worth on a pairwise log.

A pairwise log (:class:`routecast.data.PairwiseLog`) says, per prompt, which of two answers a
judge preferred; it has no score per (prompt, model). Routing on it is measured here, once, for
calibration (:func:`pairwise_curve`, behind ``Router.calibrate``) and evaluation
(:func:`evaluate_pairwise`, behind ``routecast evaluate``). The definitions:

* **outcome** of a model in one judged pair: 1 if it won, 0.5 for a tie, 0 if it lost.
* **judged score** of model ``j`` on prompt ``i``: its mean outcome over the judged pairs of
  prompt ``i`` that involve ``j``; not judged (NaN) when no pair of ``i`` involves ``j``. Never
  guessed from other prompts (the kernel's rule for unlogged cells).
* **calibration curve** (per lam of the sweep): the router's choice per distinct prompt;
  ``cost`` = mean expected cost of the choices over all prompts (per-prompt cost from the price
  table: prompt tokens estimated from the text, the table's output tokens; a model without a
  price takes the router's mean cost); ``quality`` = mean judged score of the chosen model over
  the prompts where it was judged (its win rate in the pairs that involve it); ``strong_share`` =
  share of calls to the router's strong model (best mean win rate on its training pairs,
  :func:`routecast.core.policy.strong_weak`), the model every strong share of that router
  counts. The number of prompts judged at each lam is kept
  (``judged``); a lam at which no choice was judged is left out of the curve, never filled in.
* **win rate against a reference model** ``R`` (evaluation): per prompt, the chosen model's mean
  outcome in the pairs of that prompt between it and ``R``; choosing ``R`` itself counts as a tie
  (0.5: the same answer); a prompt with no pair between the choice and ``R`` is **not judged**,
  counted and reported, and left out of the mean. The 95% interval is a percentile bootstrap over
  the test prompts (the same draws for every router, point and single model, so they are paired).
  The default reference is the model with the most wins in the whole log (ties: higher win rate,
  then name).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from routecast.errors import RoutingError
from routecast.jsonable import finite_or_none

#: outcome of (model_a, model_b) per winner value
_OUTCOME = {"model_a": (1.0, 0.0), "model_b": (0.0, 1.0), "tie": (0.5, 0.5)}
#: lam points per router shown in report.md (metrics.json holds every distinct point)
REPORT_POINTS = 8


@dataclass(frozen=True)
class JudgedPrompts:
    """The distinct prompts of a pairwise log, in first-seen order, with index arrays of its pairs."""

    prompt_ids: np.ndarray  # (n,)
    prompts: np.ndarray  # (n,)
    first_pair: np.ndarray  # (n,) index of each prompt's first pair (its row in per-pair embeddings)
    models: tuple[str, ...]
    pair_prompt: np.ndarray  # (n_pairs,) prompt index of each pair
    pair_a: np.ndarray  # (n_pairs,) index of model_a in ``models`` (-1: not a candidate model)
    pair_b: np.ndarray
    outcome_a: np.ndarray  # (n_pairs,) outcome of model_a (1 win, 0.5 tie, 0 loss)

    @property
    def n(self) -> int:
        return len(self.prompt_ids)

    def scores(self) -> np.ndarray:
        """(n, m) judged score: mean outcome of model j in the judged pairs of prompt i (NaN: none)."""
        m = len(self.models)
        sums = np.zeros((self.n, m))
        counts = np.zeros((self.n, m))
        for side, outcome in ((self.pair_a, self.outcome_a), (self.pair_b, 1.0 - self.outcome_a)):
            ok = side >= 0
            np.add.at(sums, (self.pair_prompt[ok], side[ok]), outcome[ok])
            np.add.at(counts, (self.pair_prompt[ok], side[ok]), 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)

    def versus(self, reference: str) -> np.ndarray:
        """(n, m) mean outcome of model j against ``reference`` on prompt i (NaN: no such pair);
        the reference's own column is 0.5 (choosing it ties with itself)."""
        if reference not in self.models:
            raise RoutingError(f"reference model {reference!r} is not one of the models: {', '.join(self.models)}")
        r = self.models.index(reference)
        m = len(self.models)
        sums = np.zeros((self.n, m))
        counts = np.zeros((self.n, m))
        for me, other, outcome in ((self.pair_a, self.pair_b, self.outcome_a),
                                   (self.pair_b, self.pair_a, 1.0 - self.outcome_a)):
            ok = (other == r) & (me >= 0)
            np.add.at(sums, (self.pair_prompt[ok], me[ok]), outcome[ok])
            np.add.at(counts, (self.pair_prompt[ok], me[ok]), 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)
        out[:, r] = 0.5
        return out


def judged_prompts(pairs, models: Sequence[str]) -> JudgedPrompts:
    """Group the pairs of ``pairs`` by prompt id; pairs naming a model outside ``models`` count
    for nothing (a router cannot choose that model)."""
    models = tuple(models)
    ids = np.asarray(pairs.prompt_ids).astype(str)
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # first-seen order
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    index = {name: j for j, name in enumerate(models)}
    a = np.array([index.get(str(x), -1) for x in pairs.model_a], dtype=np.int64)
    b = np.array([index.get(str(x), -1) for x in pairs.model_b], dtype=np.int64)
    outcome = np.array([_OUTCOME["tie" if str(w).startswith("tie") else str(w)][0] for w in pairs.winner])
    firsts = first[order]
    return JudgedPrompts(np.asarray(pairs.prompt_ids)[firsts], np.asarray(pairs.prompts)[firsts], firsts, models,
                         rank[np.asarray(inverse).reshape(-1)], a, b, outcome.astype(np.float64))


def prompt_costs(pairs, judged: JudgedPrompts, fallback: np.ndarray | None = None) -> np.ndarray:
    """(n, m) expected USD per call per prompt from the log's price table (``pairs.prices``);
    a model without a price takes ``fallback[j]`` (the router's mean cost), else NaN."""
    from routecast.data.costs import PriceTable, derive_costs

    m = len(judged.models)
    cost = np.full((judged.n, m), np.nan)
    table = PriceTable.coerce(getattr(pairs, "prices", None))
    if table is not None:
        cost = derive_costs(cost, judged.models, judged.prompts, table)
    if fallback is not None:
        cost = np.where(np.isnan(cost), np.broadcast_to(np.asarray(fallback, dtype=np.float64), cost.shape), cost)
    return cost


def win_rates(pairs) -> dict[str, float]:
    """Per model: (wins + ties / 2) / pairs played, over the whole log."""
    return {m: (c["wins"] + 0.5 * c["ties"]) / c["pairs"] if c["pairs"] else float("nan")
            for m, c in pairs.win_counts().items()}


def default_reference(pairs) -> str:
    """The model with the most wins (ties: higher win rate, then name)."""
    counts = pairs.win_counts()
    if not counts:
        raise RoutingError(f"the pairwise log {pairs.source} has no pairs; no reference model")
    rates = win_rates(pairs)
    return sorted(counts, key=lambda m: (-counts[m]["wins"], -np.nan_to_num(rates[m]), m))[0]


def _router_inputs(router, pairs, embeddings):
    """(judged prompts, predicted quality (n, m)) of a fitted router on a pairwise log."""
    router._check_fitted()
    judged = judged_prompts(pairs, router.models_)
    if judged.n == 0:
        raise RoutingError(f"the pairwise log {pairs.source} has no pairs to measure router {router.name!r} on")
    X = None
    if embeddings is not None:
        X = np.asarray(embeddings)
        if len(X) != len(pairs):
            raise RoutingError(f"embeddings must have one row per pair ({len(pairs)}), got {len(X)}")
        X = X[judged.first_pair]
    quality = router.predict_quality([str(p) for p in judged.prompts], embeddings=X)
    return judged, quality


def pairwise_curve(router, pairs, embeddings: np.ndarray | None = None, *, n_points: int | None = None,
                   lams: np.ndarray | None = None, strong: int | None = None, keep_unjudged: bool = False):
    """The measured operating curve of ``router`` on a pairwise log (see the module docstring):
    ``(Curve, judged prompts per lam)``. Needs a cost per model (a price table).

    ``lams`` (default: the calibration grid, or ``n_points`` of it); ``strong`` the model the
    shares count (default: the router's strong model, :meth:`Router.strong_weak`). A lam at which
    no choice was judged is left out, unless ``keep_unjudged`` (its quality is then NaN).
    """
    from routecast.core.curve import Curve
    from routecast.core.policy import CALIBRATION_POINTS, sweep

    judged, quality = _router_inputs(router, pairs, embeddings)
    cost = router._route_costs(None, judged.n, required=True)
    unit_costs = prompt_costs(pairs, judged, fallback=cost)
    scores = judged.scores()
    strong = router.strong_weak().strong if strong is None else int(strong)
    lams, choices = sweep(quality, cost, lams, n_points=n_points or CALIBRATION_POINTS)
    picked = np.take_along_axis(np.broadcast_to(scores, (len(lams),) + scores.shape),
                                choices.astype(np.int64)[..., None], axis=2)[..., 0]
    n_judged = np.isfinite(picked).sum(axis=1)
    keep = np.ones(len(lams), dtype=bool) if keep_unjudged else n_judged > 0
    if not keep.any():
        raise RoutingError(f"no choice of router {router.name!r} on the {judged.n} prompts of {pairs.source} "
                           "was judged (no pair involves the chosen model); cannot measure a curve")
    with np.errstate(invalid="ignore"), _quiet():
        quality_at = np.nanmean(picked[keep], axis=1)
    rows = np.arange(judged.n)
    curve = Curve(lams=lams[keep], cost=unit_costs[rows[None, :], choices[keep]].mean(axis=1),
                  quality=quality_at, strong_share=(choices[keep] == strong).mean(axis=1),
                  strong=int(strong), measured=True, n_prompts=judged.n, n_dropped=0)
    return curve, n_judged[keep]


def calibrate_on_pairs(router, pairs, embeddings: np.ndarray | None = None):
    """``Router.calibrate`` on a pairwise log: store the curve of :func:`pairwise_curve`."""
    curve, n_judged = pairwise_curve(router, pairs, embeddings)
    router.calibration_ = {**curve.to_dict(), "kind": "pairwise", "judged": n_judged.astype(int).tolist()}
    return router


def measure_at(router, pairs, lam: float, embeddings: np.ndarray | None = None, *,
               strong: int | None = None) -> dict[str, Any]:
    """Cost, judged win rate and strong share of ``router`` at one ``lam`` on a pairwise log
    (:func:`pairwise_curve` at that lam): what ``routecast calibrate`` reports for the test split."""
    curve, n_judged = pairwise_curve(router, pairs, embeddings, lams=[float(lam)], strong=strong,
                                     keep_unjudged=True)
    judged = int(n_judged[0])
    return {**curve.point(0), "n_dropped": curve.n_prompts - judged, "judged": judged}


# ------------------------------------------------------------------ evaluation
@dataclass
class PairwisePoint:
    """One policy point on the test prompts: a router at one lam, or one single model."""

    lam: float | None
    win_rate: float
    ci: tuple[float, float]
    judged: int  # prompts whose choice was judged against the reference (incl. choosing it)
    not_judged: int  # prompts with no pair between the choice and the reference
    chose_reference: int
    cost: float  # mean expected USD per query (NaN: some chosen model has no price)
    shares: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"lam": self.lam, "win_rate": finite_or_none(self.win_rate), "ci95": [finite_or_none(x) for x in self.ci],
                "judged": self.judged, "not_judged": self.not_judged, "chose_reference": self.chose_reference,
                "cost_per_query": finite_or_none(self.cost), "call_shares": self.shares}


@dataclass
class PairwiseEvaluation:
    """Win rates against ``reference`` on the test prompts, per router (per lam) and per single model."""

    reference: str
    n_prompts: int
    n_pairs: int
    models: tuple[str, ...]
    routers: dict[str, list[PairwisePoint]] = field(default_factory=dict)
    single_models: dict[str, PairwisePoint] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "pairwise", "reference": self.reference, "n_prompts": self.n_prompts,
                "n_pairs": self.n_pairs, "models": list(self.models),
                "routers": {k: [p.to_dict() for p in v] for k, v in self.routers.items()},
                "single_models": {k: p.to_dict() for k, p in self.single_models.items()},
                "metadata": self.metadata}


def _distinct(lams: np.ndarray, choices: np.ndarray) -> list[int]:
    """Indices of the first lam of each run of identical decisions (the points that differ)."""
    keep = [0]
    for k in range(1, len(lams)):
        if not np.array_equal(choices[k], choices[keep[-1]]):
            keep.append(k)
    return keep


def evaluate_pairwise(routers: Mapping[str, Any], pairs, *, reference: str | None = None,
                      embeddings: np.ndarray | None = None, n_boot: int = 200, seed: int = 0,
                      metadata: Mapping[str, Any] | None = None) -> PairwiseEvaluation:
    """Win rate against ``reference`` of each fitted router (every distinct decision of its lam
    sweep) and of each single model, on the prompts of the pairwise log ``pairs``.

    ``embeddings``: one row per pair of ``pairs`` (by the routers' encoder), or None. Routers
    without a cost per model are measured at lam = 0 only (best predicted quality).
    """
    from routecast.evaluation.metrics import bootstrap_cis, call_shares
    from routecast.core.policy import lam_grid, sweep

    reference = reference or default_reference(pairs)
    models = tuple(pairs.models)
    judged = judged_prompts(pairs, models)
    if judged.n == 0:
        raise RoutingError(f"the pairwise log {pairs.source} has no pairs to evaluate on")
    result = PairwiseEvaluation(reference, judged.n, len(pairs), models, metadata=dict(metadata or {}))

    def points(outcomes: np.ndarray, costs: np.ndarray, choices: np.ndarray, ref: int, names, lams):
        """PairwisePoints of (k, n) outcomes vs the reference (NaN: not judged), with paired intervals."""
        with _quiet():
            cis = bootstrap_cis(lambda idx: {str(k): np.nanmean(outcomes[k, idx]) if np.isfinite(outcomes[k, idx]).any()
                                             else np.nan for k in range(len(outcomes))},
                                judged.n, n_boot=n_boot, seed=seed)
        out = []
        for k in range(len(outcomes)):
            ok = np.isfinite(outcomes[k])
            out.append(PairwisePoint(
                lam=None if lams is None else float(lams[k]),
                win_rate=float(outcomes[k][ok].mean()) if ok.any() else float("nan"),
                ci=cis.get(str(k), (float("nan"), float("nan"))), judged=int(ok.sum()),
                not_judged=int((~ok).sum()), chose_reference=int((choices[k] == ref).sum()),
                cost=float(costs[k].mean()),
                shares={m: round(float(s), 6) for m, s in zip(names, call_shares(choices[k], len(names)))}))
        return out

    rows = np.arange(judged.n)
    for name, router in routers.items():
        rj, quality = _router_inputs(router, pairs, embeddings)
        vs = rj.versus(reference) if reference in rj.models else np.full((rj.n, len(rj.models)), np.nan)
        ref = rj.models.index(reference) if reference in rj.models else -1
        cost = router._route_costs(None, rj.n, required=False)
        priced = not np.isnan(np.asarray(router.costs_, dtype=np.float64)).any()
        lams = lam_grid(cost) if priced else np.array([0.0])
        lams, choices = sweep(quality, cost, lams)
        keep = _distinct(lams, choices)
        lams, choices = lams[keep], choices[keep].astype(np.int64)
        unit = prompt_costs(pairs, rj, fallback=router.costs_)
        result.routers[name] = points(vs[rows[None, :], choices], unit[rows[None, :], choices], choices, ref,
                                      rj.models, lams)
    vs = judged.versus(reference)
    unit = prompt_costs(pairs, judged)
    m = len(models)
    always = np.repeat(np.arange(m)[:, None], judged.n, axis=1)
    for j, point in enumerate(points(vs.T, unit.T, always, models.index(reference), models, None)):
        result.single_models[models[j]] = point
    return result


# ---------------------------------------------------------------------- report
def _f(x: float, digits: int = 3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _cost(x: float) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.3g}"


def _row(label: str, p: PairwisePoint) -> str:
    lam = "–" if p.lam is None else f"{p.lam:.4g}"
    share = ", ".join(f"{m} {s:.0%}" for m, s in sorted(p.shares.items(), key=lambda kv: -kv[1]) if s > 0)
    return (f"| {label} | {lam} | {_f(p.win_rate)} [{_f(p.ci[0])}, {_f(p.ci[1])}] | {p.judged} | {p.not_judged} | "
            f"{p.chose_reference} | {_cost(p.cost)} | {share} |")


def report_points(points: Sequence[PairwisePoint], limit: int = REPORT_POINTS) -> list[PairwisePoint]:
    """At most ``limit`` points, evenly spread over the sweep (always the first and the last)."""
    if len(points) <= limit:
        return list(points)
    idx = np.unique(np.round(np.linspace(0, len(points) - 1, limit)).astype(int))
    return [points[i] for i in idx]


def pairwise_markdown(evaluation: PairwiseEvaluation, *, title: str) -> str:
    head = ("| policy | lam | win rate vs reference [95% CI] | judged | not judged | chose reference | "
            "$/query | calls |\n|---|---:|---:|---:|---:|---:|---:|---|")
    lines = [f"# {title}", "",
             f"Pairwise log: {evaluation.n_prompts} test prompts, {evaluation.n_pairs} judged pairs, "
             f"{len(evaluation.models)} models. Reference model: **{evaluation.reference}**.", "",
             "## Routers (lam = 0: best predicted quality; larger lam: cheaper)", "", head]
    for name, points in evaluation.routers.items():
        for p in report_points(points):
            lines.append(_row(name, p))
    lines += ["", "## Single models (always the same model)", "", head]
    for name, p in evaluation.single_models.items():
        lines.append(_row(f"always {name}", p))
    lines += ["", "## How these are measured", "",
              "- **win rate vs reference**: per test prompt, the chosen model's outcome (win 1, tie 0.5, loss 0) "
              "in that prompt's judged pairs against the reference model, averaged over judged prompts; choosing "
              "the reference itself counts 0.5. 95% interval: percentile bootstrap over test prompts (the same "
              "draws for every row).",
              "- **not judged**: prompts where no pair compares the chosen model with the reference; they are "
              "left out of the win rate and counted here, never dropped silently.",
              "- **$/query**: mean expected cost of the chosen model per test prompt, from the price table "
              "(prompt tokens estimated from the text, the table's output tokens); – without prices.",
              f"- report.md shows up to {REPORT_POINTS} lam points per router; metrics.json holds every distinct one.",
              ""]
    return "\n".join(lines)


def write_pairwise_report(evaluation: PairwiseEvaluation, out: str | Path, *, title: str) -> Path:
    """Write OUT/metrics.json and OUT/report.md (atomically); returns the report's path."""
    from routecast.atomic import write_json, write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", evaluation.to_dict())
    report = out / "report.md"
    write_text(report, pairwise_markdown(evaluation, title=title))
    return report


class _quiet:
    """Silence numpy's "mean of empty slice" (an empty slice is reported as not judged)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def pairwise_table(evaluation: PairwiseEvaluation) -> dict[str, Any]:
    """The terminal table (``print_table`` keyword arguments): each router at lam = 0 and its
    cheapest point, then every single model; win rates against the reference with intervals."""
    columns = ("policy", "lam", "win rate", "95% CI", "judged", "not judged", "$/query")
    rows = []

    def add(label: str, p: PairwisePoint) -> None:
        rows.append((label, "–" if p.lam is None else f"{p.lam:.4g}", _f(p.win_rate), f"[{_f(p.ci[0])}, {_f(p.ci[1])}]",
                     str(p.judged), str(p.not_judged), _cost(p.cost)))

    for name, points in evaluation.routers.items():
        for p in report_points(points, limit=min(REPORT_POINTS, 4)):
            add(name, p)
    for name, p in evaluation.single_models.items():
        add(f"always {name}", p)
    return {"title": f"win rate vs {evaluation.reference} on {evaluation.n_prompts} test prompts",
            "columns": columns, "rows": rows, "right": columns[1:]}

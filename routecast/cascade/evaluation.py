"""Cascades against single models and post-hoc ensembles, on one held-out test split.

Used by ``routecast cascade`` and ``benchmarks/cascades.py``. Every policy becomes the kernel's
curve (:class:`routecast.core.curve.Curve`) and is compared by the evaluation package
(:func:`routecast.evaluation.evaluate.evaluate`; the best single model is
:func:`routecast.data.best_model.best_model`, as everywhere) so AIQ, cost-to-match-best and the
report mean exactly what they mean for routers.

Two answers to "does the cascade reach the best single model's quality for less?" are kept
apart on purpose:

* **honest**: thresholds chosen on the *validation* split to match the best single model's
  validation quality (:meth:`Cascade.thresholds_for_quality`), then applied to the test split -
  what a deployment would see;
* **hull**: ``cost_to_match_best`` of the evaluation package - the cheapest point of the
  cascade's *test* curve hull that reaches the best model's test quality (an upper bound, since
  it looks at test outcomes to pick the point).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from routecast.errors import RoutecastError
from routecast.router.encoders.default import DEFAULT_ENCODER

if TYPE_CHECKING:  # pragma: no cover
    from routecast.cascade.cascade import Cascade
    from routecast.data.outcome_log import OutcomeLog


@dataclass
class CascadeComparison:
    """The evaluation result plus per-cascade facts (chain, thresholds, honest operating point)."""

    result: Any  # routecast.evaluation.evaluate.EvaluationResult
    cascades: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    report_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        out = self.result.to_dict()
        out["cascades"] = self.cascades
        out["notes"] = list(self.notes)
        return out

    def summary_lines(self) -> list[str]:
        r = self.result
        best = r.single_models[r.best_single_model]
        lines = [f"best single model: {r.best_single_model} (test quality {best['quality']:.4f}, "
                 f"cost {best['cost']:.6g})"]
        for row in r.leaderboard():
            ratio = row.get("cost_ratio_to_best")
            lines.append(f"{row['label']:<40} AIQ {_f(row['aiq'])}  max quality {_f(row['max_quality'])}  "
                         f"min cost {_f(row['min_cost'], '.6g')}  cost to match best "
                         f"{'never' if ratio is None else f'{ratio:.2f}x'}")
        for label, facts in self.cascades.items():
            honest = facts.get("match_best_on_test")
            if honest:
                lines.append(f"{label}: thresholds matched on val -> test quality {honest['quality']:.4f} "
                             f"at {honest['cost_ratio_to_best']:.2f}x the best model's cost")
        lines.extend(self.notes)
        return lines


def _f(x, spec: str = ".4f") -> str:
    return "—" if x is None else format(x, spec)


def compare(train: "OutcomeLog", val: "OutcomeLog", test: "OutcomeLog", cascades: Mapping[str, "Cascade"], *,
            ensembles: bool = True, scorer_encoder: str = DEFAULT_ENCODER, n_boot: int = 200,
            seed: int = 0, cost_unit: str | None = None) -> CascadeComparison:
    """Fit every cascade on (train, val) and compare on ``test`` (its complete rows).

    Single models and ensembles are over ``test.models``; ensembles that need responses are
    skipped (with a note) when the log has none.
    """
    from routecast.cascade.answer_scorer import AnswerScorer
    from routecast.cascade.ensembles import best_of_n, majority_vote, oracle_ensemble
    from routecast.core.curve import USD
    from routecast.data.best_model import best_model
    from routecast.evaluation.evaluate import evaluate, single_model_curves

    unit = cost_unit or USD
    test = test.complete()
    val_c = val.complete()
    curves: dict[str, Any] = {}
    notes: list[str] = []
    facts: dict[str, dict[str, Any]] = {}
    for name, curve in single_model_curves(test).items():
        curve.cost_unit = unit
        curves[name] = curve
    val_quality = val_c.scores.mean(axis=0)
    val_cost = val_c.costs.mean(axis=0)
    best_j = best_model(val_quality, val_cost)
    best_test_cost = float(test.costs[:, best_j].mean())
    best_test_quality = float(test.scores[:, best_j].mean())

    for label, cascade in cascades.items():
        if not hasattr(cascade, "search_"):
            cascade.fit(train, val)
        curve = cascade.curve(test)
        curves[label] = curve.to_curve(label, test, cost_unit=unit)
        info: dict[str, Any] = {"chain": list(cascade.chain_), "deferral": _kind(cascade),
                                "n_points": len(curve.labels)}
        try:
            choice = cascade.thresholds_for_quality(float(val_quality[best_j]))
            honest, stop = _replay(cascade, test, choice, best_test_cost)
            honest["quality_minus_best"] = honest["quality"] - best_test_quality
            counts = np.bincount(stop, minlength=len(cascade.chain_)).astype(float).tolist() if len(stop) else []
            honest["stop_shares"] = [x / max(len(stop), 1) for x in counts]
            info["match_best_on_test"] = honest
        except RoutecastError as exc:
            info["match_best_on_test"] = None
            info["match_best_error"] = str(exc)
        info["half_best_cost_on_test"] = _at_budget(cascade, test, 0.5 * float(val_cost[best_j]), best_test_cost)
        facts[label] = info

    if ensembles:
        curves["oracle-ensemble"] = oracle_ensemble(test).to_curve(test, cost_unit=unit)
        if test.responses is not None and all(isinstance(r, str) for r in test.responses.reshape(-1)):
            curves["majority-vote"] = majority_vote(test).to_curve(test, cost_unit=unit)
            try:
                scorer = _shared_scorer(cascades) or AnswerScorer(encoder=scorer_encoder).fit(train.complete())
                curves["best-of-n"] = best_of_n(test, scorer).to_curve(test, cost_unit=unit)
            except RoutecastError as exc:
                notes.append(f"best-of-n skipped: {exc}")
        else:
            notes.append("majority vote and best-of-n skipped: the log has no response for every model")
    result = evaluate(curves, test, n_boot=n_boot, seed=seed)
    return CascadeComparison(result=result, cascades=facts, notes=notes)


def _at_budget(cascade: "Cascade", test: "OutcomeLog", budget: float, best_test_cost: float) -> dict | None:
    """Thresholds chosen on validation for mean cost <= ``budget``, replayed on test (None if the
    budget is below the cascade's cheapest operating point)."""
    try:
        choice = cascade.thresholds_for_budget(budget)
    except RoutecastError:
        return None
    return {"budget": budget, **_replay(cascade, test, choice, best_test_cost)[0]}


def _replay(cascade: "Cascade", test: "OutcomeLog", choice, best_test_cost: float) -> tuple[dict, np.ndarray]:
    """Thresholds chosen on validation (``choice``) applied unchanged to test: the honest point's
    facts, and the (n,) stage each test prompt stopped at."""
    cost, quality, stop = cascade.simulate(test, choice.thresholds)
    facts = {"thresholds": [_json_threshold(x) for x in choice.thresholds],
             "val_cost": choice.cost, "val_quality": choice.quality, "cost": float(cost.mean()),
             "quality": float(np.nanmean(quality)),
             "cost_ratio_to_best": float(cost.mean() / best_test_cost) if best_test_cost > 0 else None}
    return facts, stop


def _json_threshold(x: float) -> float | str:
    """±inf thresholds (always / never stop) as the strings "inf" / "-inf" in JSON."""
    return float(x) if np.isfinite(x) else ("inf" if x > 0 else "-inf")


def _kind(cascade: "Cascade") -> str:
    d = getattr(cascade, "deferral_", cascade.deferral)
    return getattr(d, "kind", str(d))


def _shared_scorer(cascades: Mapping[str, "Cascade"]):
    """Reuse an ex-post cascade's answer scorer for best-of-n (same training data, no refit)."""
    for cascade in cascades.values():
        scorer = getattr(getattr(cascade, "deferral_", None), "scorer_", None)
        if scorer is not None and set(scorer.models_) >= set(cascade.chain_):
            return scorer
    return None


def write(comparison: CascadeComparison, out: Path, *, title: str, settings: Mapping[str, Any]) -> Path:
    """metrics.json (+ cascade facts) and report.md via the evaluation report writer."""
    from routecast.atomic import write_json
    from routecast.evaluation.report import write_report

    sections = {"Cascades": cascade_markdown(comparison), "Settings": _settings_markdown(settings)}
    if comparison.notes:
        sections["Notes"] = "\n".join(f"- {n}" for n in comparison.notes)
    path = write_report(comparison.result, out, title=title, extra_sections=sections)
    metrics = comparison.to_dict()
    metrics["settings"] = dict(settings)
    write_json(Path(out) / "metrics.json", metrics)
    comparison.report_path = path
    return path


def cascade_markdown(comparison: CascadeComparison) -> str:
    rows = ["| cascade | chain | deferral | val-matched test quality | cost vs best single | stop shares |",
            "|---|---|---|---:|---:|---|"]
    for label, facts in comparison.cascades.items():
        honest = facts.get("match_best_on_test")
        if honest:
            q, ratio = f"{honest['quality']:.4f}", f"{honest['cost_ratio_to_best']:.2f}x"
            shares = ", ".join(f"{s:.0%}" for s in honest["stop_shares"])
        else:
            q, ratio, shares = "unreachable on val", "—", "—"
        rows.append(f"| {label} | {' → '.join(facts['chain'])} | {facts['deferral']} | {q} | {ratio} | {shares} |")
    rows.append("")
    rows.append("Val-matched: thresholds chosen on the validation split to reach the best single model's "
                "validation quality at the lowest cost, then applied unchanged to the test split.")
    return "\n".join(rows)


def _settings_markdown(settings: Mapping[str, Any]) -> str:
    return "\n".join(f"- {k}: `{v}`" for k, v in settings.items())


# ---------------------------------------------------------------- the command
def prepare_priced(data: str, *, prices=None, **prepare_kwargs):
    """:func:`routecast.router.pipeline.prepare` (the one load -> split -> embed path, its
    defaults), with cells whose cost was not logged filled from a price table when ``prices``
    (a path or mapping, see :class:`routecast.data.costs.PriceTable`) is given. Logged costs are
    kept. Token counts are estimated per prompt, so pricing each split equals pricing the log."""
    import dataclasses

    from routecast.router.pipeline import prepare

    prepared = prepare(data, **prepare_kwargs)
    prepared.require_outcomes("a cascade")
    if prices is None:
        return prepared
    from routecast.data.costs import PriceTable, derive_costs

    table = PriceTable.coerce(str(prices) if isinstance(prices, Path) else prices)

    def priced(log):
        return log.with_costs(derive_costs(log.costs, log.models, log.prompts, table, responses=log.responses))

    return dataclasses.replace(prepared, log=priced(prepared.log), train=priced(prepared.train),
                               val=priced(prepared.val), test=priced(prepared.test),
                               settings={**prepared.settings, "prices": table.to_dict()})


def run_cascade_evaluation(data: str, *, chain=None, deferral: str = "ex-ante", encoder: str = DEFAULT_ENCODER,
                           router: str = "knn", models=None, max_len: int = 3, prices=None, columns=None,
                           duplicates: str = "mean", estimator: str = "dr", val: float = 0.1,
                           test: float = 0.2, seed: int = 0, use_logged_split: bool = False,
                           limit: int | None = None, n_boot: int = 200,
                           out: Path = Path("runs/cascade")) -> CascadeComparison:
    """``routecast cascade``: the same load -> split -> embed path and defaults as every other
    command (:func:`routecast.router.pipeline.prepare`), then fit and compare one cascade."""
    from routecast.cascade.cascade import Cascade, search_chains

    prepared = prepare_priced(data, prices=prices, columns=columns, duplicates=duplicates, estimator=estimator,
                              encoder=encoder, val=val,
                              test=test, seed=seed, use_logged_split=use_logged_split, limit=limit, models=models)
    log, train, val_log, test_log = prepared.log, prepared.train, prepared.val, prepared.test
    params = {"deferral": deferral, "router": router, "encoder": encoder}
    if chain is not None:
        cascade = Cascade(chain=chain, **params).fit(train, val_log)
        pool = sorted(set(chain), key=chain.index)
    elif max_len >= 2 and log.n_models > 2:
        cascade = search_chains(train, val_log, max_len=max_len, **params).best
        pool = list(log.models)
    else:
        cascade = Cascade(**params).fit(train, val_log)
        pool = list(log.models)
    sub = [s.select_models(pool) for s in (train, val_log, test_log)]
    label = f"cascade ({deferral})"
    comparison = compare(*sub, {label: cascade}, scorer_encoder=encoder, n_boot=n_boot, seed=seed)
    settings = {**prepared.settings, "chain": list(cascade.chain_), "deferral": deferral, "router": router,
                "prompts": {"train": train.n_prompts, "val": val_log.n_prompts, "test": test_log.n_prompts}}
    write(comparison, Path(out), title=f"routecast cascade: {data}", settings=settings)
    return comparison

"""The evaluation report: a Markdown leaderboard, the metrics as JSON and two plots.

Everything :func:`write_report` writes goes through routecast.atomic, so an interrupted run
never leaves a half-written report next to a complete metrics.json.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

from routecast.atomic import write_json, write_text

METRIC_NOTES = """\
- **AIQ** (RouterBench): mean height of the policy's non-decreasing concave hull of (cost, quality)
  points over the declared cost range (by default the cheapest to the most expensive single model's
  mean cost on these prompts; never taken from the policies compared, so a policy's AIQ does not
  depend on what else is in the table); the hull is flat after the policy's best point and 0 below
  its cheapest one. 95% interval: percentile bootstrap over test prompts (same draws for every
  policy); on a traffic log's estimated test split widened to at least the AIQ through each point's
  interval from `calibrate`'s helper (bootstrap of the pseudo-outcomes, floored by the logging
  draw's variance). Single models and one-point policies are points, and policies whose every point costs
  more than the range are "outside the range": both are listed by cost and quality, not ranked.
- **vs prior**: AIQ minus the AIQ of the better prior (the lookup tables a learned router has to
  beat: `cluster-prior`, `task-prior` finding the task from the embedding, and `task-prior (logged
  task)` given each prompt's logged benchmark, the dataset oracle), with a paired bootstrap 95%
  interval. The better prior is the one with the best **validation** AIQ, never chosen on test.
- **zero router**: the same hull over single models only (random mixing); "vs zero" = AIQ - its AIQ.
- **cost to match best**: lowest mean cost at which the router's hull reaches the best single model's
  quality (× = as a fraction of that model's cost; inf = never).
- **APGR / CPT** (RouteLLM, two-model logs only): area under the performance-gap-recovered curve over
  the share of strong calls, and the smallest strong-call share reaching 50% / 80% of the gap.
"""


def _f(x, digits: int = 4) -> str:
    if x is None:
        return "–"
    x = float(x)
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "never"
    return f"{x:.{digits}f}"


def _cost(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "never"
    return f"{x:.3g}"


def leaderboard_markdown(result) -> str:
    """The leaderboard as a Markdown table (rows sorted by AIQ)."""
    two = result.strong_model is not None
    rows = result.leaderboard()
    prior = any(row.get("gain_over_prior") is not None for row in rows)
    head = ["#", "router", "family", "AIQ [95% CI]", "vs zero"] + (["vs prior [95% CI]"] if prior else []) + \
        ["max quality", "cost to match best (×)"]
    if two:
        head += ["APGR", "CPT 50%", "CPT 80%"]
    head += ["train s", "route µs/query"]
    lines = ["| " + " | ".join(head) + " |", "|---:|---|---|" + "|".join(["---:"] * (len(head) - 3)) + "|"]
    for rank, row in enumerate(rows, 1):
        lo, hi = row["aiq_ci"]
        ratio = row["cost_ratio_to_best"]
        match = _cost(row["cost_to_match_best"])
        if match not in ("–", "never") and ratio is not None:
            match += f" ({ratio:.2f}×)"
        gain = row["aiq_gain"]
        cells = [str(rank), row["label"], row["family"] or "–",
                 f"{_f(row['aiq'])} [{_f(lo)}, {_f(hi)}]",
                 "–" if gain is None else f"{gain:+.4f}"]
        if prior:
            cells.append(_gain_with_ci(row.get("gain_over_prior"), row.get("gain_over_prior_ci")))
        cells += [_f(row["max_quality"]), match]
        if two:
            cells += [_f(row["apgr"], 3), _pct(row["cpt50"]), _pct(row["cpt80"])]
        meta = row.get("meta") or {}
        cells += [_f(meta.get("train_seconds"), 2), _f(meta.get("route_us_per_query"), 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _gain_with_ci(gain, ci) -> str:
    if gain is None:
        return "–"
    lo, hi = ci or (None, None)
    return f"{gain:+.4f} [{'–' if lo is None else f'{lo:+.4f}'}, {'–' if hi is None else f'{hi:+.4f}'}]"


def unranked_markdown(result) -> str:
    """Points and policies outside the cost range: cost and quality, no rank."""
    lines = ["| policy | family | status | min cost | max quality |", "|---|---|---|---:|---:|"]
    for row in result.unranked():
        lines.append(f"| {row['label']} | {row['family'] or '–'} | {row['status']} | {_cost(row['min_cost'])} | "
                     f"{_f(row['max_quality'])} |")
    return "\n".join(lines)


def per_benchmark_markdown(result) -> str:
    """AIQ (and quality at the best single model's cost) of each ranked policy per benchmark."""
    ranked = [row["label"] for row in result.leaderboard()]
    lines = ["| benchmark | prompts | " + " | ".join(ranked) + " |",
             "|---|---:|" + "---:|" * len(ranked)]
    for entry in result.per_benchmark:
        cells = []
        for label in ranked:
            p = entry["policies"].get(label, {})
            cells.append(f"{_f(p.get('aiq'))} / {_f(p.get('quality_at_best_cost'))}")
        lines.append(f"| {entry['benchmark']} | {entry['n_prompts']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def predictability_markdown(result) -> str:
    """AUC / Brier of predicted success per benchmark and model: the best learned router next to
    the prior it is compared with (an AUC near 0.5 within a benchmark = no per-prompt signal)."""
    learned = [r for r in result.leaderboard() if r["family"] == "a1"]
    if not learned:
        return ""
    best = learned[0]["label"]
    prior = result.routers[best].prior
    mine = result.routers[best].meta.get("predictability") or []
    theirs = {(r["benchmark"], r["model"]): r for r in
              (result.routers[prior].meta.get("predictability") or [] if prior else [])}
    if not mine:
        return ""
    head = f"| benchmark | model | prompts | AUC {best} | Brier {best} |"
    sep = "|---|---|---:|---:|---:|"
    if prior:
        head += f" AUC {prior} | Brier {prior} |"
        sep += "---:|---:|"
    lines = [head, sep]
    for row in mine:
        cells = [row["benchmark"], row["model"], str(row["n_prompts"]), _f(row["auc"], 3), _f(row["brier"], 3)]
        if prior:
            other = theirs.get((row["benchmark"], row["model"]), {})
            cells += [_f(other.get("auc"), 3), _f(other.get("brier"), 3)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{100 * x:.1f}%"


def write_report(result, out_dir, *, title: str,
                 extra_sections: Mapping[str, str] | None = None) -> Path:
    """Write report.md, metrics.json, cost_quality.png and call_shares.png into ``out_dir``.

    ``extra_sections`` maps a heading to a Markdown body appended to the report (settings,
    tuning history...). Returns the path of report.md.
    """
    from routecast.evaluation.plots import plot_call_shares, plot_cost_quality

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", result.to_dict())
    plot_cost_quality(result, out / "cost_quality.png")
    plot_call_shares(result, out / "call_shares.png")

    c_lo, c_hi = result.cost_range
    parts = [f"# {title}", ""]
    parts.append(
        f"{result.n_prompts} test prompts"
        + (f" ({result.n_dropped} dropped: a model's score was not logged)" if result.n_dropped else "")
        + f", {len(result.models)} models. Cost unit: {result.cost_unit}; AIQ cost range "
          f"{_cost(c_lo)} – {_cost(c_hi)} ({result.cost_range_source}). Best single model: **{result.best_single_model}**. "
          f"Oracle quality: {_f(result.oracle_quality)}. Zero-router AIQ: {_f(result.zero_router_aiq)}.")
    if result.strong_model is not None:
        parts.append(f"Strong model: {result.strong_model}; weak model: {result.weak_model}.")
    mismatch = result.metadata.get("cost_unit_mismatch")
    if mismatch:
        parts.append(f"**Warning**: {', '.join(mismatch)} use a different cost unit; their AIQ is not comparable.")
    for note in result.notes:
        parts.append(f"**Note**: {note}.")
    choice = getattr(result, "prior_choice", None) or {}
    if choice.get("prior"):
        scores = ", ".join(f"{label} {_f(value)}" for label, value in choice["validation_aiq"].items())
        parts.append(f"Better prior: **{choice['prior']}**, chosen by {choice['by']} ({scores}); "
                     "\"vs prior\" is measured against it on test.")
    parts += ["", "## Leaderboard", "", leaderboard_markdown(result), "", METRIC_NOTES]
    if result.unranked():
        parts += ["## Points and policies outside the cost range", "", unranked_markdown(result), ""]
    if result.per_benchmark:
        parts += ["## Per benchmark", "", "AIQ / quality at the best single model's cost, on the same cost range.",
                  "", per_benchmark_markdown(result), ""]
    parts += ["## Single models", "", "| model | mean cost | mean quality |", "|---|---:|---:|"]
    for name, v in sorted(result.single_models.items(), key=lambda kv: kv[1]["cost"]):
        parts.append(f"| {name} | {_cost(v['cost'])} | {_f(v['quality'])} |")
    parts += ["", "## Plots", "", "![cost vs quality](cost_quality.png)", "",
              "![call shares](call_shares.png)", ""]
    predictable = predictability_markdown(result)
    if predictable:
        parts += ["## Predictability per benchmark and model", "",
                  "AUC of the predicted quality against success (score >= 0.5) within each benchmark, and the "
                  "Brier score; a lookup table per benchmark has AUC 0.5 inside it.", "", predictable, ""]
    skipped = result.metadata.get("skipped") or {}
    if skipped:
        parts += ["## Not run", "", "| policy | reason |", "|---|---|"]
        parts += [f"| {name} | {str(reason).replace('|', '/')} |" for name, reason in sorted(skipped.items())]
        parts.append("")
    for heading, body in (extra_sections or {}).items():
        parts += [f"## {heading}", "", body.rstrip(), ""]
    path = out / "report.md"
    write_text(path, "\n".join(parts).rstrip() + "\n")
    return path

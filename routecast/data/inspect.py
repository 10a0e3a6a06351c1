"""What is in an outcome log, at a glance: the figures a newcomer checks before training a router.

``summarize`` returns plain JSON-able values (used by ``routecast data inspect --json`` and tests);
``summary_tables`` turns them into plain tables the CLI prints.
"""

from __future__ import annotations

import os

import numpy as np

from routecast.data.outcome_log import OutcomeLog
from routecast.jsonable import finite_or_none


def summarize(log, prices=None) -> dict:
    """Prompts, models, per-model mean score / mean cost / logged count, best single model,
    oracle quality, missing cells and benchmark counts.

    On a sparse log (a traffic log, :meth:`OutcomeLog.is_sparse`) the oracle is unknown (the best
    of a prompt's few logged answers is not the best answer), so it is None and the summary gives
    each model's coverage instead: the share of prompts, overall and per benchmark, on which its
    score is logged (0 on a benchmark: no estimate of that model there rests on its own answers).

    A :class:`~routecast.data.PairwiseLog` gets its own summary (``"kind": "pairwise"``: pairs,
    prompts, per-model wins/losses/ties and win rate, and mean cost per call from ``prices``).
    """
    from routecast.data.preferences import PairwiseLog

    if isinstance(log, PairwiseLog):
        return summarize_pairs(log, prices)
    if prices is not None:
        from routecast.data.costs import check_priced

        check_priced(log, prices, path=str(prices) if isinstance(prices, (str, os.PathLike)) else None)
    means, costs = log.mean_scores(), log.mean_costs()
    logged = (~np.isnan(log.scores)).sum(axis=0)
    coverage = log.coverage()
    per_model = [{"model": m, "mean_score": finite_or_none(means[j]), "mean_cost": finite_or_none(costs[j]),
                  "n_logged": int(logged[j]), "coverage": finite_or_none(coverage[j]),
                  "answers_read": answers_read(log, j)} for j, m in enumerate(log.models)]
    sparse = log.is_sparse()
    best = log.best_single_model() if log.n_models else None
    benchmarks = {}
    if "benchmark" in log.meta.columns:
        counts = log.meta["benchmark"].astype(str).value_counts()
        benchmarks = {str(k): int(v) for k, v in counts.items()}
    splits = {}
    if "split" in log.meta.columns:
        splits = {str(k): int(v) for k, v in log.meta["split"].astype(str).value_counts().items()}
    return {
        "kind": "outcomes",
        "source": log.source,
        "prompts": log.n_prompts,
        "models": list(log.models),
        "n_models": log.n_models,
        "per_model": per_model,
        "best_single_model": best,
        "best_single_score": None if best is None else finite_or_none(means[log.models.index(best)]),
        "oracle_quality": None if sparse else finite_or_none(log.oracle_quality()),
        "sparse": sparse,
        "complete_rows": int(log.complete_rows().sum()),
        "coverage_by_benchmark": coverage_by_group(log, "benchmark") if sparse else {},
        "missing_cells": log.missing_cells(),
        "cells": int(log.scores.size),
        "cost_known_cells": int((~np.isnan(log.costs)).sum()),
        "has_responses": log.responses is not None,
        "meta_columns": list(log.meta.columns),
        "benchmarks": benchmarks,
        "splits": splits,
    }


def coverage_by_group(log, column: str) -> dict[str, dict[str, float]]:
    """``{group: {model: share of the group's prompts with that model's score logged}}``."""
    if column not in log.meta.columns:
        return {}
    labels = log.meta[column].astype(str).to_numpy()
    return {str(g): {m: float(c) for m, c in zip(log.models, log.subset(labels == g).coverage())}
            for g in sorted(set(labels))}


def answers_read(log, j: int) -> float | None:
    """Share of model ``j``'s responses whose final answer :func:`routecast.data.answers.read_answer`
    reads (in the log's declared format), None without responses: how far answers can be compared."""
    from routecast.data.answers import read_share

    if log.responses is None:
        return None
    return finite_or_none(read_share(log.responses[:, j], log.meta))


def summarize_pairs(pairs, prices=None) -> dict:
    """What :func:`summarize` says about a pairwise preference log."""
    counts = pairs.win_counts()
    costs = pairs.model_costs(prices) if prices is not None else {}
    per_model = []
    for m in pairs.models:
        c = counts[m]
        per_model.append({"model": m, **c,
                          "win_rate": (c["wins"] + 0.5 * c["ties"]) / c["pairs"] if c["pairs"] else None,
                          "mean_cost": costs.get(m)})
    return {"kind": "pairwise", "source": pairs.source, "pairs": pairs.n_pairs, "prompts": pairs.n_prompts,
            "models": list(pairs.models), "n_models": pairs.n_models,
            "ties": int((pairs.winner == "tie").sum()), "per_model": per_model}


def _pair_tables(summary: dict, fmt) -> list[dict]:
    head = [("source", str(summary["source"])), ("kind", "pairwise preferences"),
            ("pairs", f"{summary['pairs']:,}"), ("prompts", f"{summary['prompts']:,}"),
            ("models", str(summary["n_models"])), ("ties", f"{summary['ties']:,}")]
    columns = ("model", "pairs", "wins", "losses", "ties", "win rate", "mean cost (USD)")
    ranked = sorted(summary["per_model"], key=lambda r: -(r["win_rate"] or 0))
    return [
        {"title": "pairwise log", "columns": ("field", "value"), "rows": head},
        {"title": "per model (a tie counts as half a win)", "columns": columns, "right": columns[1:],
         "rows": [(r["model"], f"{r['pairs']:,}", f"{r['wins']:,}", f"{r['losses']:,}", f"{r['ties']:,}",
                   fmt(r["win_rate"], ".4f"), fmt(r["mean_cost"], ".3g")) for r in ranked]},
    ]


def summary_tables(summary: dict) -> list[dict]:
    """The summary as plain tables (``title``, ``columns``, ``rows``, ``right``) for
    :func:`routecast.cli_options.print_table`: rich on a terminal, Markdown in a pipe."""

    def fmt(x, spec):
        return "-" if x is None else format(x, spec)

    if summary.get("kind") == "pairwise":
        return _pair_tables(summary, fmt)

    head = [
        ("source", str(summary["source"])),
        ("prompts", f"{summary['prompts']:,}"),
        ("models", str(summary["n_models"])),
        ("best single model", f"{summary['best_single_model']} ({fmt(summary['best_single_score'], '.4f')})"),
        ("oracle quality", fmt(summary["oracle_quality"], ".4f") if not summary.get("sparse") else
         f"unknown: a traffic log ({summary['complete_rows']:,} prompts have every model's score); see coverage"),
        ("missing score cells", f"{summary['missing_cells']:,} of {summary['cells']:,}"),
        ("cells with a cost", f"{summary['cost_known_cells']:,} of {summary['cells']:,}"),
        ("responses", "yes" if summary["has_responses"] else "no"),
        ("metadata", ", ".join(summary["meta_columns"]) or "-"),
    ]
    if summary["splits"]:
        head.append(("logged split", ", ".join(f"{k} {v:,}" for k, v in summary["splits"].items())))
    ranked = sorted(summary["per_model"], key=lambda r: -(r["mean_score"] if r["mean_score"] is not None else -1))
    tables = [
        {"title": "outcome log", "columns": ("field", "value"), "rows": head},
        {"title": "per model", "columns": ("model", "mean score", "mean cost (USD)", "logged", "coverage",
                                           "answers read"),
         "right": ("mean score", "mean cost (USD)", "logged", "coverage", "answers read"),
         "rows": [(r["model"], fmt(r["mean_score"], ".4f"), fmt(r["mean_cost"], ".3g"), f"{r['n_logged']:,}",
                   fmt(r.get("coverage"), ".1%"), fmt(r.get("answers_read"), ".1%")) for r in ranked]},
    ]
    by_group = summary.get("coverage_by_benchmark") or {}
    if by_group:
        models = summary["models"]
        tables.append({"title": "coverage per benchmark (share of its prompts with the model's score logged)",
                       "columns": ("benchmark", *models), "right": tuple(models),
                       "rows": [(g, *(f"{shares[m]:.0%}" for m in models)) for g, shares in by_group.items()]})
    if summary["benchmarks"]:
        tables.append({"title": "benchmarks", "columns": ("benchmark", "prompts"), "right": ("prompts",),
                       "rows": [(name, f"{count:,}") for name, count in summary["benchmarks"].items()]})
    return tables

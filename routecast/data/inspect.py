"""What is in an outcome log, at a glance: the figures a newcomer checks before training a router.

``summarize`` returns plain JSON-able values (used by ``routecast data inspect --json`` and tests);
``render_summary`` turns them into rich tables for the terminal.
"""

from __future__ import annotations

import math

import numpy as np

from routecast.data.outcome_log import OutcomeLog


def _num(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def summarize(log: OutcomeLog) -> dict:
    """Prompts, models, per-model mean score / mean cost / logged count, best single model,
    oracle quality, missing cells and benchmark counts."""
    means, costs = log.mean_scores(), log.mean_costs()
    logged = (~np.isnan(log.scores)).sum(axis=0)
    per_model = [{"model": m, "mean_score": _num(means[j]), "mean_cost": _num(costs[j]), "n_logged": int(logged[j])}
                 for j, m in enumerate(log.models)]
    best = log.best_single_model() if log.n_models else None
    benchmarks = {}
    if "benchmark" in log.meta.columns:
        counts = log.meta["benchmark"].astype(str).value_counts()
        benchmarks = {str(k): int(v) for k, v in counts.items()}
    splits = {}
    if "split" in log.meta.columns:
        splits = {str(k): int(v) for k, v in log.meta["split"].astype(str).value_counts().items()}
    return {
        "source": log.source,
        "prompts": log.n_prompts,
        "models": list(log.models),
        "n_models": log.n_models,
        "per_model": per_model,
        "best_single_model": best,
        "best_single_score": None if best is None else _num(means[log.models.index(best)]),
        "oracle_quality": _num(log.oracle_quality()),
        "missing_cells": log.missing_cells(),
        "cells": int(log.scores.size),
        "cost_known_cells": int((~np.isnan(log.costs)).sum()),
        "has_responses": log.responses is not None,
        "meta_columns": list(log.meta.columns),
        "benchmarks": benchmarks,
        "splits": splits,
    }


def render_summary(summary: dict):
    """A rich renderable (Group of tables) for ``summary``."""
    from rich.console import Group
    from rich.table import Table

    def fmt(x, spec):
        return "-" if x is None else format(x, spec)

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("source", str(summary["source"]))
    head.add_row("prompts", f"{summary['prompts']:,}")
    head.add_row("models", str(summary["n_models"]))
    head.add_row("best single model", f"{summary['best_single_model']} ({fmt(summary['best_single_score'], '.4f')})")
    head.add_row("oracle quality", fmt(summary["oracle_quality"], ".4f"))
    head.add_row("missing score cells", f"{summary['missing_cells']:,} of {summary['cells']:,}")
    head.add_row("cells with a cost", f"{summary['cost_known_cells']:,} of {summary['cells']:,}")
    head.add_row("responses", "yes" if summary["has_responses"] else "no")
    head.add_row("metadata", ", ".join(summary["meta_columns"]) or "-")
    if summary["splits"]:
        head.add_row("logged split", ", ".join(f"{k} {v:,}" for k, v in summary["splits"].items()))

    models = Table(title="per model", title_justify="left")
    models.add_column("model")
    models.add_column("mean score", justify="right")
    models.add_column("mean cost (USD)", justify="right")
    models.add_column("logged", justify="right")
    for row in sorted(summary["per_model"], key=lambda r: -(r["mean_score"] if r["mean_score"] is not None else -1)):
        models.add_row(row["model"], fmt(row["mean_score"], ".4f"), fmt(row["mean_cost"], ".3g"), f"{row['n_logged']:,}")
    parts = [head, models]
    if summary["benchmarks"]:
        bench = Table(title="benchmarks", title_justify="left")
        bench.add_column("benchmark")
        bench.add_column("prompts", justify="right")
        for name, count in summary["benchmarks"].items():
            bench.add_row(name, f"{count:,}")
        parts.append(bench)
    return Group(*parts)

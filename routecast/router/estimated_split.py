"""Evaluating and calibrating on a split that is not a matrix: a traffic log's off-policy estimate.

A product's traffic log holds, per prompt, the answer of the model that served it (sometimes a
few). Measuring a router on it exactly would need every model's score on every prompt; keeping
only complete prompts leaves none. Instead, a sparse split (:meth:`OutcomeLog.is_sparse`) is replaced by its **estimated outcome matrix**: every cell
becomes the doubly robust pseudo-outcome (:func:`routecast.evaluation.off_policy.pseudo_outcomes`)
of an outcome model fitted on the train split (per-group means shrunk to the model's mean, the
``task-prior`` rule of :mod:`routecast.router.group_prior`) corrected by each logged cell
weighted by one over its logging probability (:meth:`OutcomeLog.logging_propensities`, logged
or estimated). The mean of the cells a policy picks is then its DR estimate, so every curve,
single model, AIQ, bootstrap interval and calibrated budget downstream is computed by the same
code as on a matrix, now from the logged cells alone; costs stay the known ones.

Why the outcome model comes from train: it must not see the cells it corrects, and one shared
model keeps the estimates of different policies paired (the same prompts, the same corrections).
``estimator`` ``"dm"`` keeps the outcome model alone, ``"ips"`` the weighted cells alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from routecast.data.outcome_log import GROUP_COLUMNS, OutcomeLog
from routecast.errors import ConfigError
from routecast.evaluation.off_policy import pseudo_outcomes
from routecast.router.group_prior import shrunk_group_means

__all__ = ["SPLIT_ESTIMATORS", "estimated_split"]

SPLIT_ESTIMATORS = ("dr", "dm", "ips")
#: pseudo-observations of the shrinkage of group means towards the model mean
STRENGTH = 10.0


def group_column(*logs: OutcomeLog) -> str | None:
    """The first of :data:`GROUP_COLUMNS` every log has."""
    return next((c for c in GROUP_COLUMNS if all(c in log.meta.columns for log in logs)), None)


def outcome_model(train: OutcomeLog, split: OutcomeLog, by: str | None) -> np.ndarray:
    """(n, m) predicted score of every cell of ``split``: ``train``'s shrunk group means (a model
    never logged on train takes its mean logged score on ``split``, else 0.5)."""
    fallback = split.mean_scores()
    global_mean = np.where(np.isfinite(train.mean_scores()), train.mean_scores(),
                           np.where(np.isfinite(fallback), fallback, 0.5))
    if by is None:
        return np.broadcast_to(global_mean, split.scores.shape).copy()
    labels = pd.concat([train.meta[by], split.meta[by]]).astype(str)
    codes = pd.factorize(labels)[0]
    n_groups = int(codes.max()) + 1
    means = shrunk_group_means(codes[:train.n_prompts], train.scores, n_groups, STRENGTH, global_mean)
    return means[codes[train.n_prompts:]]


def estimated_split(split: OutcomeLog, train: OutcomeLog, *, estimator: str = "dr") -> tuple[OutcomeLog, dict[str, Any]]:
    """``split`` with every score cell replaced by its ``estimator`` estimate, and what the report says.

    The facts returned: the estimator, whether propensities were logged or estimated (and by which
    column), logged cells, and where positivity fails (a model never logged for a group: those
    cells rest on the outcome model alone); with complete rows, each model's exact mean on them
    beside its estimated mean on the same prompts.
    """
    if estimator not in SPLIT_ESTIMATORS:
        raise ConfigError(f"estimator must be one of {', '.join(SPLIT_ESTIMATORS)}, got {estimator!r}")
    by = group_column(train, split)
    model = outcome_model(train, split, by)
    propensity, source = split.logging_propensities(by)
    observed = split.scores if estimator != "dm" else np.full_like(split.scores, np.nan)
    filled = pseudo_outcomes(observed, propensity, model if estimator != "ips" else np.zeros_like(model))
    never = []
    labels = np.zeros(split.n_prompts, dtype=object) if by is None else split.meta[by].astype(str).to_numpy()
    for group in pd.unique(labels):
        rows = labels == group
        for j, name in enumerate(split.models):
            if not (~np.isnan(split.scores[rows, j])).any():
                never.append({"group": None if by is None else str(group), "model": name, "prompts": int(rows.sum())})
    complete = split.complete_rows()
    info: dict[str, Any] = {
        "estimator": estimator, "propensities": source, "grouped_by": by, "prompts": split.n_prompts,
        "logged_cells": int((~np.isnan(split.scores)).sum()), "complete_rows": int(complete.sum()),
        "positivity_fails": never,
    }
    if complete.any():
        info["complete_rows_exact_vs_estimated"] = {
            name: {"exact": float(split.scores[complete, j].mean()), "estimated": float(filled[complete, j].mean())}
            for j, name in enumerate(split.models)}
    out = OutcomeLog(split.prompt_ids, split.prompts, split.models, filled, split.costs, split.responses,
                     split.meta, f"{split.source} ({estimator.upper()} estimate from {info['logged_cells']:,} "
                     f"logged cells)", split.counts)
    return out, info

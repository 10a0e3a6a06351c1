"""Evaluating and calibrating on a split that is not a matrix: a traffic log's off-policy estimate.

A product's traffic log holds, per prompt, the answer of the model that served it (sometimes a
few). Measuring a router on it exactly would need every model's score on every prompt; keeping
only complete prompts leaves none. Instead, a sparse split (:meth:`OutcomeLog.is_sparse`) is replaced by its **estimated outcome matrix**: every cell
becomes the doubly robust pseudo-outcome (:func:`routecast.evaluation.off_policy.pseudo_outcomes`)
of an outcome model (per-group means shrunk to the model's mean, the ``task-prior`` rule of
:mod:`routecast.router.group_prior`) corrected by each logged cell
weighted by one over its logging probability (:meth:`OutcomeLog.logging_propensities`, logged
or estimated). The mean of the cells a policy picks is then its DR estimate, so every curve,
single model, AIQ, bootstrap interval and calibrated budget downstream is computed by the same
code as on a matrix, now from the logged cells alone; costs stay the known ones. One policy's
estimate and its interval at one operating point (what ``calibrate`` reports) is
:func:`policy_interval`: the bootstrap alone is too narrow where a policy leans on a rarely
logged model.

The outcome model must not see the cell it corrects: it is cross-fitted (:func:`cross_fitted_model`:
train's cells and the split's other folds, group means shrunk by empirical Bayes), and one
shared model keeps the estimates of different policies paired (the same prompts, the same
corrections). Pseudo-outcomes are never clipped to [0, 1]: a logged cell's correction can be
large, and clipping it would bias the mean and shrink the bootstrap interval. ``estimator``
``"dm"`` keeps train's outcome model alone, ``"ips"`` the weighted cells alone, ``"snips"`` the
cells with weights normalised per model (:func:`self_normalised`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from routecast.data.outcome_log import GROUP_COLUMNS, OutcomeLog
from routecast.errors import ConfigError
from routecast.evaluation.off_policy import pseudo_outcome_interval, pseudo_outcomes
from routecast.router.group_prior import eb_strength, shrunk_group_means, sparse_strength

__all__ = ["SPLIT_ESTIMATORS", "DEFAULT_ESTIMATOR", "estimated_split", "estimated_cells", "policy_interval",
           "policy_intervals", "cell_variance"]

SPLIT_ESTIMATORS = ("dr", "dm", "ips", "snips")
#: the estimator a traffic log's val/test splits use unless told otherwise
DEFAULT_ESTIMATOR = "dr"
#: pseudo-observations of the shrinkage of group means towards the model mean (at least; more
#: where the log's own spread between groups says so, :func:`sparse_strength`)
STRENGTH = 10.0
#: folds of the split's own logged cells that cross-fit the doubly robust outcome model
FOLDS = 5


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


def pooled_model_means(scores: np.ndarray) -> np.ndarray:
    """(m,) each model's mean logged score shrunk towards the mean over all models by the
    empirical-Bayes strength (:func:`eb_strength` with the models as the groups).

    Why: a model the logging policy rarely chose has a handful of logged cells, and their raw
    mean (20 of 20 correct: 1.0) as the outcome model makes every DR correction on it zero, so
    its estimate, and a bootstrap interval around it, collapses onto that one number."""
    logged = ~np.isnan(scores)
    rows, cols = np.nonzero(logged)
    if cols.size == 0:
        return np.full(scores.shape[1], 0.5)
    strength = eb_strength(cols, scores[rows, cols][:, None], scores.shape[1])[0]
    return shrunk_group_means(cols, scores[rows, cols][:, None], scores.shape[1], strength)[:, 0]


def cross_fitted_model(train: OutcomeLog, split: OutcomeLog, by: str | None, folds: int = FOLDS) -> np.ndarray:
    """(n, m) outcome model of the doubly robust estimate, cross-fitted: the cells of each fold
    of ``split`` are predicted from ``train``'s logged cells and the split's OTHER folds.

    Why: a model from train alone is the same data the router learned from, so where the router
    over-trusts a rarely logged model the outcome model over-trusts it too; adding the split's
    own cells (never a cell's own fold, so the correction stays unbiased) makes the outcome model
    closer to the truth and the corrections, hence the interval, honest. Group means are shrunk
    to the model's mean by at least the empirical-Bayes strength, model means to the mean of all
    models (:func:`pooled_model_means`)."""
    n = split.n_prompts
    labels = (pd.concat([train.meta[by], split.meta[by]]).astype(str) if by is not None
              else pd.Series(np.zeros(train.n_prompts + n, dtype=np.int64)))
    codes = pd.factorize(labels)[0]
    n_groups = int(codes.max()) + 1
    fold = np.random.default_rng(0).permutation(n) % max(1, min(folds, n))
    out = np.empty(split.scores.shape)
    for k in np.unique(fold):
        held = fold == k
        scores = np.vstack([train.scores, np.where(held[:, None], np.nan, split.scores)])
        global_mean = pooled_model_means(scores)
        strength = sparse_strength(STRENGTH, codes, scores, n_groups, None, True)
        means = shrunk_group_means(codes, scores, n_groups, strength, global_mean)
        out[held] = means[codes[train.n_prompts:][held]]
    return out


def self_normalised(observed: np.ndarray, propensity: np.ndarray) -> np.ndarray:
    """(n, m) propensities scaled per model so the inverse weights of its logged cells sum to n
    (SNIPS per model: a little bias for much less variance when the weights are large)."""
    logged = ~np.isnan(observed)
    with np.errstate(divide="ignore", invalid="ignore"):
        mass = np.where(logged, 1.0 / np.where(logged, propensity, 1.0), 0.0).sum(axis=0)
    scale = np.where(mass > 0, mass / max(observed.shape[0], 1), 1.0)
    return propensity * scale[None, :]


def check_estimator(estimator: str) -> None:
    """The one refusal of an unknown ``estimator`` (named as the parameter, not a CLI flag), so
    callers that must refuse before loading any data say exactly what this module says."""
    if estimator not in SPLIT_ESTIMATORS:
        raise ConfigError(f"estimator must be one of {', '.join(SPLIT_ESTIMATORS)}, got {estimator!r}")


def estimated_cells(split: OutcomeLog, train: OutcomeLog, estimator: str = DEFAULT_ESTIMATOR
                    ) -> tuple[np.ndarray, np.ndarray, str, str | None]:
    """(n, m) ``estimator`` estimate of every cell of ``split``, (n, m) logging propensities (NaN
    where unknown), whether they were ``"logged"`` or ``"estimated"``, and the grouping column."""
    check_estimator(estimator)
    by = group_column(train, split)
    propensity, source = split.logging_propensities(by)
    if estimator == "dm":  # the train split's outcome model alone
        filled = outcome_model(train, split, by)
    elif estimator == "dr":
        filled = pseudo_outcomes(split.scores, propensity, cross_fitted_model(train, split, by))
    else:  # IPS, SNIPS: the weighted logged cells alone
        weights_of = self_normalised(split.scores, propensity) if estimator == "snips" else propensity
        filled = pseudo_outcomes(split.scores, weights_of, np.zeros(split.scores.shape))
    return filled, propensity, source, by


def cell_variance(train: OutcomeLog, split: OutcomeLog) -> np.ndarray:
    """(m,) a conservative variance of one model's score: ``q (1 - q)`` (the largest a score in
    [0, 1] of mean q can have) at its mean over the logged cells of both logs with two pseudo
    successes and two pseudo failures added (Agresti-Coull), so a model seen 7 of 7 times right
    is not taken to have no variance."""
    scores = np.vstack([train.scores, split.scores])
    logged = ~np.isnan(scores)
    q = (np.nansum(np.clip(scores, 0.0, 1.0), axis=0) + 2.0) / (logged.sum(axis=0) + 4.0)
    return q * (1.0 - q)


def policy_interval(split: OutcomeLog, train: OutcomeLog, choice: np.ndarray, *,
                    estimator: str = DEFAULT_ESTIMATOR, n_boot: int = 1000, seed: int = 0,
                    alpha: float = 0.05) -> tuple[float, tuple[float, float]]:
    """The ``estimator`` estimate of a policy's mean quality on a sparse ``split`` (``choice``: (n,)
    the model it picks per prompt) and its ``1 - alpha`` interval: the bootstrap over prompts of
    the pseudo-outcomes (IPS corrections included, never clipped), widened to the logging draw's
    own variance (:func:`routecast.evaluation.off_policy.pseudo_outcome_interval`)."""
    values, intervals = policy_intervals(split, train, np.asarray(choice).reshape(1, -1), estimator=estimator,
                                         n_boot=n_boot, seed=seed, alpha=alpha)
    return float(values[0]), (float(intervals[0, 0]), float(intervals[0, 1]))


def policy_intervals(split: OutcomeLog, train: OutcomeLog, choices: np.ndarray, *,
                     estimator: str = DEFAULT_ESTIMATOR, n_boot: int = 1000, seed: int = 0,
                     alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """:func:`policy_interval` of every operating point of a curve, ``choices`` (k, n): (k,)
    estimates and (k, 2) intervals. The estimated cells are computed once for all points (the
    same outcome model, so the points stay paired), and each point's interval is exactly what
    :func:`policy_interval` gives for its row: the number ``evaluate`` reports for a point and
    the one ``calibrate`` reports for it agree."""
    filled, propensity, _, by = estimated_cells(split, train, estimator)
    choices = np.atleast_2d(np.asarray(choices, dtype=np.int64))
    rows = np.arange(split.n_prompts)
    variance = cell_variance(train, split)
    estimated = None
    values = np.empty(choices.shape[0])
    intervals = np.empty((choices.shape[0], 2))
    for k, choice in enumerate(choices):
        chosen_p = propensity[rows, choice]
        if np.isnan(chosen_p).any():  # logged propensities name the logged cell only: estimate the others'
            if estimated is None:
                estimated, _ = dataclasses.replace(
                    split, meta=split.meta.drop(columns=["propensity"])).logging_propensities(by)
            chosen_p = np.where(np.isnan(chosen_p), estimated[rows, choice], chosen_p)
        picked = filled[rows, choice]
        values[k] = picked.mean()
        intervals[k] = pseudo_outcome_interval(picked, chosen_p, variance[choice], n_boot=n_boot, seed=seed,
                                               alpha=alpha)
    return values, intervals


def estimated_split(split: OutcomeLog, train: OutcomeLog, *, estimator: str = DEFAULT_ESTIMATOR
                    ) -> tuple[OutcomeLog, dict[str, Any]]:
    """``split`` with every score cell replaced by its ``estimator`` estimate, and what the report says.

    The facts returned: the estimator, whether propensities were logged or estimated (and by which
    column), logged cells, and where positivity fails (a model never logged for a group: those
    cells rest on the outcome model alone); with complete rows, each model's exact mean on them
    beside its estimated mean on the same prompts.
    """
    filled, _, source, by = estimated_cells(split, train, estimator)
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

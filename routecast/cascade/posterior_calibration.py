"""Calibration of a fitted cascade router's posterior on a logged split (reliability and Brier).

Cascade routing decides from per-model success probabilities: it stops when the best answer in
hand is likely good and calls a model when its expected gain beats lam times its cost. Those
decisions are only as good as the probabilities are calibrated, so this reads the posterior at
every called set the planner can visit (every set of at most ``max_calls`` pool models) on every
prompt of ``log`` and compares it with the logged scores, in three groups:

* ``ex-ante``: the empty set, i.e. the posterior from the router's prediction alone;
* ``called``: models in the set - the quality of an answer already in hand (what stopping reads);
* ``not called``: models outside a non-empty set - the prediction of a model not called yet,
  given the answers of the others (what the value of calling reads).

Meant for the validation split (where kappa and lam are chosen) and, in benchmarks, for test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from routecast.cascade.posterior import calibration

if TYPE_CHECKING:  # pragma: no cover
    from routecast.cascade.cascade_router import CascadeRouter
    from routecast.data.outcome_log import OutcomeLog

GROUPS = ("ex-ante", "called", "not called")


def posterior_calibration(router: "CascadeRouter", log: "OutcomeLog", n_bins: int = 10) -> dict[str, dict]:
    """``group -> calibration(...)`` (see :func:`routecast.cascade.posterior.calibration`) on the
    prompts of ``log`` with every pool score logged."""
    from routecast.cascade import called_sets

    router._check_fitted()
    sub = log.select_models(router.pool_).complete()
    p = len(router.pool_)
    planners = router.planners(sub)
    masks = called_sets.masks(p, router.max_calls_, with_empty=True)
    pred: dict[str, list[np.ndarray]] = {g: [] for g in GROUPS}
    target: dict[str, list[np.ndarray]] = {g: [] for g in GROUPS}
    for i, planner in enumerate(planners):
        for mask in masks:
            q = planner.posterior(mask)
            called = called_sets.members(mask, p)
            groups = [("ex-ante", np.ones(p, bool))] if mask == 0 else [("called", called), ("not called", ~called)]
            for group, members in groups:
                pred[group].append(q[members])
                target[group].append(sub.scores[i, members])
    return {g: calibration(np.concatenate(pred[g]) if pred[g] else np.zeros(0),
                           np.concatenate(target[g]) if target[g] else np.zeros(0), n_bins) for g in GROUPS}

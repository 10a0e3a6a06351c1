"""The pool of a cascade router: which models it cascades over, their costs, and what evidence is missing.

Cascade routing (:mod:`routecast.cascade.cascade_router`), the cascade suite and the kind check
(:mod:`routecast.cascade.kinds`) choose the pool and report missing responses the same way; these
functions are that one definition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from routecast.data.outcome_log import OutcomeLog


def frontier_models(log: "OutcomeLog", max_models: int = 5) -> list[str]:
    """Models on the mean cost-quality frontier of ``log`` (no other model is both cheaper and
    better), cheapest first; at most ``max_models``, keeping the best ones."""
    cost, quality = log.mean_costs(), log.mean_scores()
    if np.isnan(cost).all():
        cost = np.zeros_like(quality)
    order = sorted(range(log.n_models), key=lambda j: (cost[j], -quality[j], j))
    frontier, best = [], -np.inf
    for j in order:
        if quality[j] > best + 1e-12:
            frontier.append(j)
            best = quality[j]
    return [log.models[j] for j in frontier[-max_models:]]


def response_notes(log: "OutcomeLog", models: Sequence[str]) -> list[str]:
    """What is missing for answer evidence, one sentence per fact (empty: nothing missing)."""
    if log.responses is None:
        return [f"no responses logged in {log.source}: cascade routing uses ex-ante predictions only "
                "(answer scorer, answer agreement and Smoothie signals need a response column)"]
    notes = []
    for name in models:
        column = log.responses[:, log.model_index(name)]
        missing = int(sum(not isinstance(r, str) for r in column))
        if missing:
            notes.append(f"model {name!r} has no response on {missing} of {len(column)} prompts of {log.source}: "
                         "on those prompts its answer evidence is unknown (kept, marked as missing)")
    return notes




def mean_unit_costs(log: "OutcomeLog") -> np.ndarray:
    """(P,) mean cost per call on the training split; a log without costs uses the relative scale."""
    from routecast.evaluation.curves import realised_costs

    return realised_costs(log)[0].mean(axis=0)

"""The priors' labels and the rule choosing "the better prior" by validation AIQ.

Kept apart from :mod:`routecast.evaluation.priors` (which measures the priors with
:func:`routecast.evaluation.evaluate.evaluate`) so that ``evaluate`` can name the priors and
apply the choice without importing the module that imports it.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = ["PRIOR_ROUTERS", "LOGGED_TASK_PRIOR", "PRIOR_LABELS", "CHOSEN_BY", "choose_prior", "prior_choice"]

#: the a2 priors every learned policy must beat (registered router names)
PRIOR_ROUTERS = ("cluster-prior", "task-prior")
#: the report label of ``task-prior`` given each prompt's logged task (the dataset oracle)
LOGGED_TASK_PRIOR = "task-prior (logged task)"
#: every policy label that can be "the better prior", in tie-breaking order
PRIOR_LABELS = PRIOR_ROUTERS + (LOGGED_TASK_PRIOR,)
#: how the better prior is chosen, as reports state it
CHOSEN_BY = "validation AIQ"


def choose_prior(val_aiq: Mapping[str, float]) -> str | None:
    """The better prior: the highest finite validation AIQ (ties: the earlier of
    :data:`PRIOR_LABELS`, then the given order); None when no prior has one."""
    order = {label: i for i, label in enumerate(PRIOR_LABELS)}
    scored = [(label, float(v)) for label, v in val_aiq.items() if v is not None and math.isfinite(float(v))]
    if not scored:
        return None
    rank = {label: i for i, (label, _) in enumerate(scored)}
    return max(scored, key=lambda lv: (lv[1], -order.get(lv[0], len(order)), -rank[lv[0]]))[0]


def prior_choice(val_aiq: Mapping[str, float]) -> dict[str, Any]:
    """What reports say about the choice: ``{"prior", "by", "validation_aiq"}`` (prior None when
    no prior has a validation AIQ)."""
    return {"prior": choose_prior(val_aiq), "by": CHOSEN_BY,
            "validation_aiq": {k: (None if v is None or not math.isfinite(float(v)) else float(v))
                               for k, v in val_aiq.items()}}

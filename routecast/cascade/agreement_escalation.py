"""Agreement escalation: accept two mid-priced models' answer when they agree, else call the strongest.

The fixed rule behind the held-out observation in issue 13 ("accepting a mid-priced model's
answer only when a second mid-priced model's final answer agrees, and calling the strongest
model otherwise, reaches about 97 % of the strongest model's quality at 47 % of its cost"). It is
a baseline that cascade routing must beat: a three-stage :class:`~routecast.cascade.cascade.Cascade`
``(a, b, strongest)`` with :class:`~routecast.cascade.deferral.AgreementDeferral`, so stage 1
never stops (nothing to agree with yet), stage 2 stops when ``b``'s final answer equals ``a``'s
(:func:`routecast.cascade.answers.final_answer`: numbers, choice letters, normalised short
answers) and stage 3 answers otherwise. Its validation threshold sweep adds the two extremes
(always stop after ``b``, always escalate), so it is drawn as a curve like every cascade.

Which models: the strongest is the best model by mean training score among ``models``; the pair
``(a, b)`` is chosen among the cheaper models by the rule's AIQ on the *training* split (the rule
learns nothing, so training prompts are unseen by it and more numerous than validation ones);
the thresholds are then set on validation as for every cascade. Needs at least three models and
a response of every candidate model on every prompt.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from routecast.errors import RoutingError

if TYPE_CHECKING:  # pragma: no cover
    from routecast.cascade.cascade import Cascade
    from routecast.data.outcome_log import OutcomeLog

KIND = "agreement-escalation"


def rule_outcomes(log: "OutcomeLog", a: str, b: str, strong: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-prompt (cost, quality, agreed) of the rule on ``log``: call ``a`` and ``b``; if their
    final answers agree return ``b``'s answer, else also call ``strong`` and return its answer."""
    from routecast.cascade.agreement import answer_matrix

    cols = [log.model_index(m) for m in (a, b, strong)]
    answers = answer_matrix(log.responses[:, cols[:2]])
    agreed = np.array([x is not None and x == y for x, y in answers], dtype=bool)
    cost = log.costs[:, cols[0]] + log.costs[:, cols[1]] + np.where(agreed, 0.0, log.costs[:, cols[2]])
    quality = np.where(agreed, log.scores[:, cols[1]], log.scores[:, cols[2]])
    return cost, quality, agreed


def choose_chain(train: "OutcomeLog", models: Sequence[str] | None = None) -> tuple[str, str, str]:
    """``(a, b, strongest)``: the strongest by mean training score, the pair by the rule's
    training AIQ (over the cheapest to the dearest single model's mean training cost)."""
    from routecast.cascade.answer_scorer import require_responses
    from routecast.evaluation.metrics import aiq

    models = list(train.models if models is None else models)
    sub = train.select_models(models).complete()
    if len(models) < 3:
        raise RoutingError(f"{KIND} needs at least three models (two to agree, one to escalate to); "
                           f"got {len(models)}: {', '.join(models)}")
    if sub.n_prompts == 0:
        raise RoutingError(f"{KIND}: no training prompt of {train.source} has a score of every model")
    require_responses(sub, models, why=f"the {KIND} cascade")
    cost, quality = sub.mean_costs(), sub.mean_scores()
    strong = max(range(len(models)), key=lambda j: (quality[j], -cost[j], -j))
    cheaper = sorted((j for j in range(len(models)) if j != strong and cost[j] <= cost[strong]),
                     key=lambda j: (cost[j], j))
    if len(cheaper) < 2:
        raise RoutingError(f"{KIND} needs two models no dearer than the strongest ({models[strong]}); "
                           f"{train.source} has {len(cheaper)}")
    lo, hi = float(cost.min()), float(cost.max())
    best: tuple[float, tuple[int, int]] | None = None
    for a, b in itertools.combinations(cheaper, 2):
        c, q, _ = rule_outcomes(sub, models[a], models[b], models[strong])
        points_c = [cost[a] + cost[b], float(c.mean()), cost[a] + cost[b] + cost[strong]]
        points_q = [quality[b], float(q.mean()), quality[strong]]
        value = float(aiq(np.array(points_c), np.array(points_q), lo, hi))
        if best is None or value > best[0] + 1e-12:
            best = (value, (a, b))
    a, b = best[1]
    return models[a], models[b], models[strong]


def fit_agreement_escalation(train: "OutcomeLog", val: "OutcomeLog", *, models: Sequence[str] | None = None,
                             **cascade_params: Any) -> "Cascade":
    """The fitted rule as a Cascade (chain from :func:`choose_chain`, thresholds on ``val``)."""
    from routecast.cascade.cascade import Cascade

    chain = choose_chain(train, models)
    return Cascade(chain=list(chain), deferral="agreement", **cascade_params).fit(train, val)

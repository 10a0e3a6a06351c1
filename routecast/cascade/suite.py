"""Every cascade kind a log supports, as evaluation curves on the routers' test prompts.

The library side of ``routecast evaluate --cascades all``: :func:`cascade_curves` asks
:func:`routecast.cascade.kinds.cascade_support` which kinds can run, fits each on the prepared
train/validation splits (the one :func:`routecast.router.pipeline.prepare` path) and returns their
curves on the test split, plus every kind it could not run with the reason. A kind that fails
while fitting is listed with the error, never dropped silently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from routecast.router.pipeline import Prepared


def cascade_curves(prepared: "Prepared", kinds: str | Sequence[str] = "all", *, router: str = "knn",
                   max_models: int = 5, scorer_encoder: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """``(curves label -> Curve, skipped label -> reason)`` on ``prepared.test``'s complete rows.

    Fixed cascades search chains over the training split's cost-quality frontier (at most
    ``max_models``), thresholds on validation. Cascade routing and the post-hoc selectors use the
    same pool. On a log without any USD cost every split is priced on the relative scale of the
    whole log, so cascades and routers share one cost axis. Answer scorers (ex-post deferral,
    cascade routing, best-of-n) use ``scorer_encoder``, by default the scorer's own (MiniLM).
    """
    from routecast.cascade.answer_scorer import SCORER_ENCODER
    from routecast.cascade.deferral import ExPostDeferral

    from routecast.cascade.cascade import Cascade, search_chains
    from routecast.cascade.cascade_router import CascadeRouter
    from routecast.cascade.pool import frontier_models
    from routecast.cascade.ensembles import majority_vote, oracle_ensemble
    from routecast.cascade.kinds import cascade_support
    from routecast.cascade.smoothie import smoothie_select
    from routecast.errors import RoutecastError
    from routecast.evaluation.curves import realised_costs

    train, val, test = prepared.train.complete(), prepared.val.complete(), prepared.test.complete()
    _, _, unit = realised_costs(test)
    if np.isnan(prepared.log.costs).all():
        scale = realised_costs(prepared.log.complete())[0][0]
        train, val, test = (s.with_costs(np.broadcast_to(scale, s.costs.shape).copy()) for s in (train, val, test))
    support = cascade_support(train, kinds)
    skipped = dict(support.skipped)
    pool = list(train.models) if train.n_models <= max_models else frontier_models(train, max_models)
    by_cost = sorted(pool, key=lambda m: (train.mean_costs()[train.model_index(m)], m))
    curves: dict[str, Any] = {}
    for kind in support.runnable:
        label = kind if kind in ("smoothie", "majority-vote", "best-of-n", "oracle-ensemble") else f"cascade ({kind})"
        try:
            if kind in ("ex-ante", "ex-post", "agreement"):
                deferral = ExPostDeferral(encoder=scorer_encoder or SCORER_ENCODER) if kind == "ex-post" else kind
                params = {"deferral": deferral, "router": router, "encoder": prepared.encoder}
                cascade = (search_chains(train, val, max_len=3, models=pool, **params).best if len(pool) > 2
                           else Cascade(chain=by_cost, **params).fit(train, val))
                curves[label] = cascade.curve(test).to_curve(label, test, cost_unit=unit)
            elif kind == "agreement-escalation":
                from routecast.cascade.agreement_escalation import fit_agreement_escalation

                cascade = fit_agreement_escalation(train, val, models=pool, router=router, encoder=prepared.encoder)
                curves[label] = cascade.curve(test).to_curve(label, test, cost_unit=unit)
            elif kind == "cascade-routing":
                routing = CascadeRouter(encoder=prepared.encoder, max_models=max_models,
                                        scorer_encoder=scorer_encoder).fit(train, val)
                curves[label] = routing.curve(test, label=label)
                curves[label].cost_unit = unit
            elif kind == "smoothie":
                curves[label] = smoothie_select(test, encoder=prepared.encoder, models=pool).to_curve(test, cost_unit=unit)
            elif kind == "majority-vote":
                curves[label] = majority_vote(test, models=pool).to_curve(test, cost_unit=unit)
            elif kind == "best-of-n":
                from routecast.cascade.answer_scorer import AnswerScorer

                scorer = AnswerScorer(encoder=scorer_encoder or SCORER_ENCODER).fit(train, pool)
                from routecast.cascade.ensembles import best_of_n

                curves[label] = best_of_n(test, scorer, models=pool).to_curve(test, cost_unit=unit)
            elif kind == "oracle-ensemble":
                curves[label] = oracle_ensemble(test, models=pool).to_curve(test, cost_unit=unit)
        except RoutecastError as exc:
            skipped[label] = str(exc)
    for curve in curves.values():
        curve.meta = {**(curve.meta or {}), **({"skipped": skipped} if skipped else {})}
    return curves, skipped

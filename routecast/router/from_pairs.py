"""``Router.fit`` / ``Router.calibrate`` on a pairwise preference log (:class:`routecast.data.PairwiseLog`).

Why a separate path: a pairwise log has no score per (prompt, model), only "A beat B on this
prompt", so only routers that can learn from comparisons (those with ``fit_preferences``:
``mf``, ``sw-ranking``) can be fitted on it; every other router gets one clear error naming them.
Costs come from the price table the log was loaded with (``PairwiseLog.prices``, see
:meth:`PairwiseLog.model_costs`). Calibration is measured on judged pairs as defined in
:mod:`routecast.evaluation.pairwise`.
"""

from __future__ import annotations

import numpy as np

from routecast.errors import RoutingError


def learns_from_pairs(router_or_class) -> bool:
    """Whether a router (class or instance) can be fitted from pairwise preferences."""
    return callable(getattr(router_or_class, "fit_preferences", None))


def pair_learners() -> list[str]:
    """Names of the registered routers that can learn from pairs (imports every router class)."""
    from routecast.core.registry import get_router_class, router_names

    names = []
    for name in router_names():
        try:
            cls = get_router_class(name)
        except Exception:  # noqa: BLE001 - a router whose optional dependency is missing cannot learn anything here
            continue
        if learns_from_pairs(cls):
            names.append(name)
    return names


def check_learns_from_pairs(router_or_class, source: str) -> None:
    """One clear RoutingError for a router that cannot learn from pairs, naming those that can."""
    if not learns_from_pairs(router_or_class):
        name = getattr(router_or_class, "name", "") or getattr(router_or_class, "__name__", type(router_or_class).__name__)
        raise RoutingError(
            f"router {name!r} cannot learn from pairwise preferences ({source} holds judged pairs, not "
            f"scores); routers that can: {', '.join(pair_learners())}")


def fit_from_pairs(router, pairs, embeddings: np.ndarray | None = None):
    """Fit ``router`` on the judged pairs of ``pairs`` (``embeddings``: one row per pair, or None).

    Also sets what :meth:`Router.fit` sets for every router: no calibration or operating points
    yet, and ``mean_quality_`` = each model's win rate in the log (wins + ties/2 over pairs
    played), so the strong model is the one that wins most often.
    """
    check_learns_from_pairs(router, pairs.source)
    if len(pairs) == 0:
        raise RoutingError(f"cannot fit router {router.name!r} on an empty log ({pairs.source})")
    from routecast.evaluation.pairwise import win_rates

    router.fit_preferences(pairs, embeddings, costs=pairs.model_costs() or None)
    rates = win_rates(pairs)
    router.mean_quality_ = np.nan_to_num(np.array([rates.get(m, np.nan) for m in router.models_]), nan=0.0)
    router.calibration_ = None
    router.operating_points_ = {}
    router.default_operating_point_ = None
    return router


def calibrate_from_pairs(router, pairs, embeddings: np.ndarray | None = None):
    """Calibrate ``router`` on a pairwise validation log (needs a cost per model: a price table)."""
    from routecast.evaluation.pairwise import calibrate_on_pairs

    router._check_fitted()
    if np.isnan(np.asarray(router.costs_, dtype=np.float64)).any():
        missing = [m for m, c in zip(router.models_, router.costs_) if not np.isfinite(c)]
        raise RoutingError(f"calibrating router {router.name!r} on pairs needs a cost per model; no cost for "
                           f"{', '.join(missing)}: load the preferences with a price table (prices=...)")
    return calibrate_on_pairs(router, pairs, embeddings)

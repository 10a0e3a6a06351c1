"""What a call cost when the log does not say: the realised cost matrix every measured curve uses.

The curve class itself is the kernel's (:class:`routecast.core.curve.Curve`, re-exported here):
calibration, serving, cascades and evaluation share it. This module decides the (n, m) cost of
every call on a log (:func:`realised_costs`), filling unlogged cells.
"""

from __future__ import annotations

import numpy as np

from routecast.core.curve import RELATIVE, USD, Curve
from routecast.errors import RoutingError

__all__ = ["Curve", "USD", "RELATIVE", "realised_costs"]


def realised_costs(log, fallback: np.ndarray | None = None) -> tuple[np.ndarray, int, str]:
    """The (n, m) cost of every call on ``log``, the number of cells filled in, and the unit.

    A logged cost is used as is. A missing cell takes the model's mean logged cost on this log
    (what such a call typically cost here), else ``fallback[j]`` (a price table or the router's
    expected cost from training). If no model has any cost at all, costs are replaced by a
    relative scale so a curve can still be drawn: models ranked by mean score, the weakest 0 and
    the strongest 1 (for a strong/weak pair the cost axis is then the strong-call share, the
    axis RouteLLM uses). A log where only some models have costs raises :class:`RoutingError`.
    """
    costs = np.array(log.costs, dtype=np.float64, copy=True)
    n, m = costs.shape
    missing = np.isnan(costs)
    if not missing.any():
        return costs, 0, USD
    fill = np.asarray(log.mean_costs(), dtype=np.float64)
    if fallback is not None:
        fb = np.asarray(fallback, dtype=np.float64).reshape(-1)
        if fb.shape != (m,):
            raise RoutingError(f"expected {m} per-model costs, got {fb.shape[0]}")
        fill = np.where(np.isfinite(fill), fill, fb)
    if np.isnan(fill).all() and missing.all():
        return _relative_costs(log), 0, RELATIVE
    if np.isnan(fill).any():
        names = [name for name, bad in zip(log.models, np.isnan(fill)) if bad]
        raise RoutingError(
            f"no cost known for model(s) {', '.join(names)} in {log.source}: give per-model "
            "prices (a price table) so routers can be compared on cost")
    filled = np.where(missing, fill[None, :], costs)
    if (filled < 0).any():
        raise RoutingError(f"negative cost in {log.source}")
    return filled, int(missing.sum()), USD


def _relative_costs(log) -> np.ndarray:
    means = np.nan_to_num(log.mean_scores(), nan=-np.inf)
    m = len(means)
    order = np.argsort(means, kind="stable")
    rank = np.empty(m)
    rank[order] = np.arange(m)
    scale = rank / max(m - 1, 1)
    return np.broadcast_to(scale, (log.n_prompts, m)).copy()

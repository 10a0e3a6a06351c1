"""The strong model of a log, defined once: the best single model.

Why here, at the bottom layer: the data summary (``routecast data inspect``), the kernel's
strong/weak pair (routecast.core.policy.strong_weak), calibration's strong-call share and
evaluation's "best single model" must name the same model for the same log; with two
definitions they disagreed whenever two models tied on quality. numpy only, so the serving
runtime can import it without pandas.
"""

from __future__ import annotations

import numpy as np

__all__ = ["best_model"]


def best_model(mean_qualities, mean_costs) -> int:
    """Index of the model with the highest mean quality; ties go to the cheaper model (as the
    decision rule breaks ties), then to the lower index. An unknown (NaN) quality ranks last and
    an unknown cost counts as the dearest."""
    q = np.nan_to_num(np.asarray(mean_qualities, dtype=np.float64).reshape(-1), nan=-np.inf)
    c = np.nan_to_num(np.asarray(mean_costs, dtype=np.float64).reshape(-1), nan=np.inf)
    if q.size == 0 or c.size != q.size:
        raise ValueError(f"need one mean cost per model: {c.size} costs for {q.size} models")
    return int(np.lexsort((np.arange(q.size), c, -q))[0])

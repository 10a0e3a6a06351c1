"""Budget pacing: an online controller that moves the willingness to pay ``lam`` from the spend
it observes, so the mean cost per request stays at a budget when traffic drifts.

Why: a budget calibrated on a validation split is met only on average over prompts like those; when
the request mix moves (longer prompts, harder benchmarks) a static ``lam`` spends more or less than
the budget for as long as the drift lasts. The controller is the multiplicative update of ad-budget
pacing, in log space::

    log lam <- clip(log lam + step * clip((cost - budget) / budget, -1, max_error), log lam_min, log lam_max)

It integrates the relative spend error, so while it stays inside its bounds the mean error of any
``W`` consecutive requests is exactly ``(log lam_end - log lam_start) / (step * W)``: the spend of a
window is off the budget only by how far lam had to move within it. ``max_error`` caps what one
very expensive request moves lam by. The same class paces ``routecast serve --pace-budget`` and the
simulation in ``benchmarks/pacing.py``.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from routecast.errors import ConfigError, RoutecastError


class BudgetPacer:
    """Online lam controller for a mean cost per request of ``budget`` USD (see the module docstring).

    ``lam``: the starting lam (the calibrated lam of the budget, usually); ``lam_min``/``lam_max``:
    its bounds (> 0); ``step``: the gain; ``window``: requests in the rolling mean it reports.
    Call :meth:`start`, then :meth:`observe` with each request's cost; :attr:`lam_` is the lam to
    route the next request with."""

    def __init__(self, budget: float, *, lam: float, lam_min: float, lam_max: float, step: float = 0.05,
                 max_error: float = 10.0, window: int = 1000):
        self.budget = budget
        self.lam = lam
        self.lam_min = lam_min
        self.lam_max = lam_max
        self.step = step
        self.max_error = max_error
        self.window = window

    @classmethod
    def for_costs(cls, budget: float, costs, *, curve=None, **kwargs) -> "BudgetPacer":
        """A pacer for a router with expected per-call ``costs`` (m,): bounds from the span where its
        decisions change (:func:`routecast.core.policy.lam_grid`), starting at the lam the measured
        ``curve`` (a :class:`routecast.core.curve.Curve`) gives ``budget``, else mid-span."""
        from routecast.core.policy import lam_grid

        grid = lam_grid(np.asarray([np.nan if c is None else c for c in costs], dtype=np.float64))
        grid = grid[grid > 0]
        if grid.size == 0:
            raise ConfigError("budget pacing needs models of different expected costs (there is nothing to trade)")
        lo, hi = float(grid[0]), float(grid[-1])
        start = math.sqrt(lo * hi)
        if curve is not None:
            try:
                start = float(curve.lams[curve.index_for(budget=budget)])
            except RoutecastError:  # below the cheapest point measured: start from the top of the span
                start = hi
            start = start if math.isfinite(start) and start > 0 else lo
        return cls(budget, lam=min(max(start, lo), hi), lam_min=lo, lam_max=hi, **kwargs)

    def start(self) -> "BudgetPacer":
        for name in ("budget", "lam_min", "lam_max", "step", "max_error"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"BudgetPacer {name} must be a finite number > 0, got {value!r}")
        if self.lam_min > self.lam_max:
            raise ConfigError(f"BudgetPacer lam_min {self.lam_min} is above lam_max {self.lam_max}")
        self.lam_ = min(max(float(self.lam), self.lam_min), self.lam_max)
        self.n_ = 0
        self.last_step_ = 0.0
        self.recent_ = deque(maxlen=self.window)
        return self

    def observe(self, cost: float | None) -> float:
        """Account one request's cost (None: unknown, ignored) and return the lam for the next."""
        if cost is None or not math.isfinite(cost) or cost < 0:
            return self.lam_
        self.n_ += 1
        self.recent_.append(cost)
        error = min(max((cost - self.budget) / self.budget, -1.0), self.max_error)
        lam = min(max(self.lam_ * math.exp(self.step * error), self.lam_min), self.lam_max)
        self.last_step_ = math.log(lam / self.lam_)
        self.lam_ = lam
        return lam

    def state(self) -> dict:
        """What the pacer reports (``/admin/status``): lam, its bounds and last step, the rolling mean."""
        mean = float(np.mean(self.recent_)) if self.recent_ else None
        return {"budget": self.budget, "lam": self.lam_, "lam_min": self.lam_min, "lam_max": self.lam_max,
                "step": self.step, "last_log_step": self.last_step_, "requests": self.n_,
                "window": self.window, "window_mean_cost": mean}

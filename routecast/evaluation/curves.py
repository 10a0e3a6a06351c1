"""Cost-quality curves: the operating points of one routing policy on one test log.

A :class:`Curve` is what evaluation compares. It keeps, besides the mean (cost, quality) of
each operating point, enough per-prompt detail to recompute those means on a bootstrap
resample of the prompts without predicting again:

* a router's sweep over willingness-to-pay values stores its (n_points, n_prompts) choice
  matrix (int16) plus the (n_prompts, n_models) realised cost and score matrices, which is
  far smaller than per-point float arrays;
* a fixed policy (single models, a cascade with k threshold settings) stores its per-prompt
  cost and quality directly, via :meth:`Curve.from_points`.

This module also decides what a call cost when the log does not say (:func:`realised_costs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from routecast.errors import RoutingError
from routecast.jsonable import finite_or_none as _num
from routecast.evaluation.metrics import call_shares as _call_shares
from routecast.core.policy import strong_weak

#: cost axis label when the log holds USD costs (or a price table was given)
USD = "USD per query"
#: cost axis label when no model has a known cost (see :func:`realised_costs`)
RELATIVE = "relative cost (no USD costs logged: models ranked by mean score, 0 = weakest, 1 = strongest)"


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


@dataclass(eq=False)
class Curve:
    """Operating points of one policy (a router's lam sweep, a cascade, a single model).

    ``cost``, ``quality`` and ``strong_share`` are (k,) means over the prompts; ``call_shares``
    is (k, n_models) (NaN rows when unknown). Choice-based curves hold ``choices`` (k, n) int16
    with ``unit_costs``/``unit_scores`` (n, m); fixed policies hold ``per_prompt_cost`` and
    ``per_prompt_quality`` (k, n). ``prompt_index`` says which rows of the test log the columns
    are (None: all rows). ``meta`` carries free-form facts for the report (train_seconds,
    route_us_per_query, params...).
    """

    label: str
    models: tuple[str, ...]
    lams: np.ndarray
    cost: np.ndarray
    quality: np.ndarray
    strong_share: np.ndarray
    call_shares: np.ndarray
    point_labels: tuple[str, ...] = ()
    family: str = ""
    choices: np.ndarray | None = None
    unit_costs: np.ndarray | None = None
    unit_scores: np.ndarray | None = None
    per_prompt_cost_: np.ndarray | None = field(default=None, repr=False)
    per_prompt_quality_: np.ndarray | None = field(default=None, repr=False)
    prompt_index: np.ndarray | None = None
    cost_unit: str = USD
    n_cost_imputed: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    #: (strong index, shares, qualities) of a router's full margin sweep on a two-model log
    #: (:func:`routecast.core.policy.pair_share_curve`); dropped by :meth:`restrict`
    pair_shares: tuple[int, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    # ------------------------------------------------------------ builders
    @classmethod
    def from_choices(cls, label: str, models: Sequence[str], lams: np.ndarray, choices: np.ndarray,
                     unit_costs: np.ndarray, unit_scores: np.ndarray, *, strong: int,
                     family: str = "", prompt_index: np.ndarray | None = None,
                     cost_unit: str = USD, n_cost_imputed: int = 0,
                     meta: dict[str, Any] | None = None) -> "Curve":
        """A curve from per-point model choices; means are computed here."""
        choices = np.asarray(choices)
        if choices.ndim != 2 or choices.shape[1] != unit_costs.shape[0]:
            raise ValueError(f"choices must be (k, n) with n = {unit_costs.shape[0]}, got {choices.shape}")
        choices = choices.astype(np.int16)
        rows = np.arange(choices.shape[1])[None, :]
        pc = unit_costs[rows, choices]
        pq = unit_scores[rows, choices]
        return cls(label=label, models=tuple(models), lams=np.asarray(lams, dtype=np.float64),
                   cost=pc.mean(axis=1), quality=pq.mean(axis=1),
                   strong_share=(choices == strong).mean(axis=1),
                   call_shares=_call_shares(choices, len(models)),
                   point_labels=tuple(f"lam={x:.4g}" for x in np.asarray(lams)),
                   family=family, choices=choices, unit_costs=unit_costs, unit_scores=unit_scores,
                   prompt_index=prompt_index, cost_unit=cost_unit, n_cost_imputed=n_cost_imputed,
                   meta=dict(meta or {}))

    @classmethod
    def from_points(cls, per_prompt_costs, per_prompt_quality, labels: Sequence[str], *,
                    label: str = "", models: Sequence[str] = (), family: str = "",
                    strong_share=None, call_shares=None, prompt_index: np.ndarray | None = None,
                    cost_unit: str = USD, meta: dict[str, Any] | None = None) -> "Curve":
        """A fixed policy with k settings (a cascade's thresholds, a single model: k = 1).

        ``per_prompt_costs`` and ``per_prompt_quality`` are (k, n): what each prompt cost and
        scored under setting i. ``strong_share`` (k,) — the share of prompts that called the
        strong model — enables APGR/CPT for strong/weak pairs; ``call_shares`` (k, m) the
        call-share plot. Columns must be the test log's rows (all of them, or only the rows
        :meth:`OutcomeLog.complete_rows` keeps; or give ``prompt_index``).
        """
        pc = np.atleast_2d(np.asarray(per_prompt_costs, dtype=np.float64))
        pq = np.atleast_2d(np.asarray(per_prompt_quality, dtype=np.float64))
        if pc.shape != pq.shape:
            raise ValueError(f"per-prompt costs {pc.shape} and qualities {pq.shape} differ in shape")
        k = pc.shape[0]
        labels = tuple(str(x) for x in labels)
        if len(labels) != k:
            raise ValueError(f"{k} settings but {len(labels)} labels")
        # NaN is allowed here (a prompt whose score was not logged); evaluation drops such
        # prompts for every curve and refuses a curve still holding NaN on the prompts it keeps
        m = len(models)
        shares = (np.full((k, m), np.nan) if call_shares is None
                  else np.asarray(call_shares, dtype=np.float64).reshape(k, m))
        strong = (np.full(k, np.nan) if strong_share is None
                  else np.asarray(strong_share, dtype=np.float64).reshape(k))
        return cls(label=label, models=tuple(models), lams=np.full(k, np.nan),
                   cost=_nanmean_rows(pc), quality=_nanmean_rows(pq), strong_share=strong,
                   call_shares=shares, point_labels=labels, family=family,
                   per_prompt_cost_=pc, per_prompt_quality_=pq, prompt_index=prompt_index,
                   cost_unit=cost_unit, meta=dict(meta or {}))

    # ------------------------------------------------------------- reading
    @property
    def n_points(self) -> int:
        return int(len(self.cost))

    @property
    def n_prompts(self) -> int:
        if self.choices is not None:
            return int(self.choices.shape[1])
        return int(self.per_prompt_cost_.shape[1])

    def per_prompt(self) -> tuple[np.ndarray, np.ndarray]:
        """(k, n) cost and quality of every prompt at every operating point."""
        if self.choices is not None:
            rows = np.arange(self.choices.shape[1])[None, :]
            return self.unit_costs[rows, self.choices], self.unit_scores[rows, self.choices]
        return self.per_prompt_cost_, self.per_prompt_quality_

    def restrict(self, columns: np.ndarray) -> "Curve":
        """The same policy on a subset of its prompts (columns), means recomputed."""
        columns = np.asarray(columns)
        index = columns if self.prompt_index is None else self.prompt_index[columns]
        if self.choices is not None:
            strong = _strong_from(self)
            return Curve.from_choices(self.label, self.models, self.lams, self.choices[:, columns],
                                      self.unit_costs[columns], self.unit_scores[columns],
                                      strong=strong, family=self.family, prompt_index=index,
                                      cost_unit=self.cost_unit, n_cost_imputed=self.n_cost_imputed,
                                      meta=self.meta)
        pc, pq = self.per_prompt()
        out = Curve.from_points(pc[:, columns], pq[:, columns], self.point_labels, label=self.label,
                                models=self.models, family=self.family, prompt_index=index,
                                cost_unit=self.cost_unit, meta=self.meta)
        # shares of a fixed policy cannot be recomputed per prompt; keep the given ones
        out.strong_share, out.call_shares = self.strong_share, self.call_shares
        return out

    def best_point(self) -> int:
        """The lam = 0 point of a router (best predicted quality), else the highest-quality point."""
        zero = np.flatnonzero(self.lams == 0)
        if zero.size:
            return int(zero[0])
        return int(np.nanargmax(self.quality))

    def points(self) -> list[dict[str, Any]]:
        """One JSON-able dict per operating point."""
        out = []
        for i in range(self.n_points):
            out.append({
                "label": self.point_labels[i] if i < len(self.point_labels) else str(i),
                "lam": _num(self.lams[i]), "cost": _num(self.cost[i]),
                "quality": _num(self.quality[i]), "strong_share": _num(self.strong_share[i]),
                "call_shares": {m: _num(s) for m, s in zip(self.models, self.call_shares[i])}
                if len(self.models) else {},
            })
        return out


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    count = (~np.isnan(a)).sum(axis=1)
    return np.where(count > 0, np.nansum(a, axis=1) / np.maximum(count, 1), np.nan)


def _strong_from(curve: Curve) -> int:
    if "strong_index" in curve.meta:
        return int(curve.meta["strong_index"])
    return strong_weak(curve.unit_costs.mean(axis=0), curve.unit_scores.mean(axis=0)).strong

"""The one curve class: mean cost, quality and strong-call share of a policy at each operating point.

Why one class: the curve a router is calibrated on, the curve a server reads a budget from, the
curve a cascade picks its lam on and the curve evaluation ranks by AIQ are the same object
measured on different prompts. Keeping one class means a budget is resolved by the same code
(:meth:`Curve.index_for`) wherever it is given, and a calibration curve can be bootstrapped,
restricted or plotted like any evaluation curve.

A :class:`Curve` holds the (k,) means of each operating point and, when it was measured on logged
outcomes, enough per-prompt detail to recompute them on a subset or a bootstrap resample of the
prompts without predicting again:

* a policy's sweep over willingness-to-pay values (:func:`routecast.core.policy.sweep`) keeps its
  (k, n) choice matrix (int16) plus the (n, m) realised cost and score matrices
  (:meth:`Curve.from_choices`), far smaller than per-point float arrays;
* a fixed policy (single models, a cascade with k threshold settings) keeps its per-prompt cost
  and quality directly (:meth:`Curve.from_points`);
* a curve read back from a checkpoint (:meth:`Curve.from_dict`) keeps the means only.

``measured`` says whether the numbers were reached on logged outcomes (a calibration or test
split) or are a router's own predictions for a batch (:meth:`Curve.predicted`). ``strong`` is the
index of the model the strong-call shares count (-1: none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from routecast.errors import RoutingError
from routecast.jsonable import finite_or_none
from routecast.core.policy import TIE_TOLERANCE, chosen, sweep

__all__ = ["Curve", "call_shares", "USD", "RELATIVE", "SPEND_MEAN", "SPEND_UPPER"]

#: cost axis label when the log holds USD costs (or a price table was given)
USD = "USD per query"
#: cost axis label when no model has a known cost (see routecast.evaluation.curves.realised_costs)
RELATIVE = "relative cost (no USD costs logged: models ranked by mean score, 0 = weakest, 1 = strongest)"
#: how a budget is met: by the mean spend on the calibration prompts, or by the upper end of a
#: bootstrap interval of that spend (conservative: unseen prompts overshoot the mean)
SPEND_MEAN, SPEND_UPPER = "mean", "upper"


def call_shares(choices, n_models: int) -> np.ndarray:
    """Share of prompts sent to each model: (n,) choices -> (m,); (k, n) -> (k, m)."""
    ch = np.asarray(choices)
    if ch.ndim == 1:
        if ch.size == 0:
            return np.full(n_models, np.nan)
        return np.bincount(ch.astype(np.int64), minlength=n_models)[:n_models] / ch.size
    if ch.ndim != 2:
        raise ValueError(f"choices must be 1-D or 2-D, got shape {ch.shape}")
    return np.stack([call_shares(row, n_models) for row in ch]) if ch.shape[0] else \
        np.empty((0, n_models))


@dataclass(eq=False)
class Curve:
    """Operating points of one policy (a router's lam sweep, a cascade, a single model).

    ``cost``, ``quality`` and ``strong_share`` are (k,) means over the prompts; ``call_shares``
    is (k, n_models) (NaN rows when unknown). Choice-based curves hold ``choices`` (k, n) int16
    with ``unit_costs``/``unit_scores`` (n, m); fixed policies hold ``per_prompt_cost_`` and
    ``per_prompt_quality_`` (k, n). ``prompt_index`` says which rows of the measured log the
    columns are (None: all rows). ``cost_upper`` (k,), when set, is the upper end of a bootstrap
    interval of the spend: budgets are then met by it (``spend`` = "upper"). ``meta`` carries
    free-form facts for reports (train_seconds, route_us_per_query, params...).
    """

    lams: np.ndarray
    cost: np.ndarray
    quality: np.ndarray
    strong_share: np.ndarray
    strong: int = -1
    measured: bool = True
    n_prompts: int = 0
    n_dropped: int = 0
    label: str = ""
    models: tuple[str, ...] = ()
    call_shares: np.ndarray | None = None
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
    cost_upper: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    #: (strong index, shares, qualities) of a router's full margin sweep on a two-model log
    #: (:func:`routecast.core.policy.pair_share_curve`); dropped by :meth:`restrict`
    pair_shares: tuple[int, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    # ------------------------------------------------------------ builders
    @classmethod
    def from_choices(cls, lams: np.ndarray, choices: np.ndarray, unit_costs: np.ndarray,
                     unit_scores: np.ndarray, *, strong: int, label: str = "", models: Sequence[str] = (),
                     measured: bool = True, n_dropped: int = 0, family: str = "",
                     prompt_index: np.ndarray | None = None, cost_unit: str = USD, n_cost_imputed: int = 0,
                     meta: dict[str, Any] | None = None) -> "Curve":
        """A curve from per-point model choices (k, n) over (n, m) per-call costs and scores."""
        choices = np.asarray(choices)
        unit_costs = np.asarray(unit_costs, dtype=np.float64)
        if choices.ndim != 2 or choices.shape[1] != unit_costs.shape[0]:
            raise ValueError(f"choices must be (k, n) with n = {unit_costs.shape[0]}, got {choices.shape}")
        choices = choices.astype(np.int16)
        unit_scores = np.asarray(unit_scores, dtype=np.float64)
        lams = np.asarray(lams, dtype=np.float64)
        return cls(lams=lams, cost=chosen(unit_costs, choices).mean(axis=1),
                   quality=chosen(unit_scores, choices).mean(axis=1),
                   strong_share=(choices == strong).mean(axis=1), strong=int(strong), measured=measured,
                   n_prompts=int(choices.shape[1]), n_dropped=int(n_dropped), label=label,
                   models=tuple(models), call_shares=call_shares(choices, unit_costs.shape[1]),
                   point_labels=tuple(f"lam={x:.4g}" for x in lams), family=family, choices=choices,
                   unit_costs=unit_costs, unit_scores=unit_scores, prompt_index=prompt_index,
                   cost_unit=cost_unit, n_cost_imputed=n_cost_imputed, meta=dict(meta or {}))

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
                   n_prompts=int(pc.shape[1]), call_shares=shares, point_labels=labels, family=family,
                   per_prompt_cost_=pc, per_prompt_quality_=pq, prompt_index=prompt_index,
                   cost_unit=cost_unit, meta=dict(meta or {}))

    @classmethod
    def predicted(cls, quality: np.ndarray, costs: np.ndarray, *, strong: int) -> "Curve":
        """The curve a router predicts for a batch: its own qualities at the expected costs."""
        lams, choices = sweep(quality, costs)
        costs = np.broadcast_to(np.asarray(costs, dtype=np.float64), np.shape(quality))
        return cls.from_choices(lams, choices, costs, quality, strong=strong, measured=False)

    # ------------------------------------------------------- checkpoint form
    def to_dict(self) -> dict[str, Any]:
        """What a checkpoint stores: the means (and the bootstrap spend when budgets use it)."""
        out = {"lam": self.lams.tolist(), "cost": self.cost.tolist(), "quality": self.quality.tolist(),
               "strong_share": self.strong_share.tolist(), "strong": self.strong,
               "measured": self.measured, "n_prompts": self.n_prompts, "n_dropped": self.n_dropped}
        if self.cost_upper is not None:
            out.update(spend=SPEND_UPPER, cost_upper=self.cost_upper.tolist(),
                       spend_interval=dict(self.meta.get("spend_interval", {})))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Curve":
        keys = ("lam", "cost", "quality", "strong_share") + (("cost_upper",) if "cost_upper" in data else ())
        arrays = {k: np.asarray(data[k], dtype=np.float64) for k in keys}
        k = arrays["lam"].shape
        if len(k) != 1 or k[0] == 0 or any(a.shape != k for a in arrays.values()):
            raise RoutingError("an operating curve needs equally long, non-empty lam/cost/quality/strong_share")
        if not all(np.isfinite(a).all() for a in arrays.values()):
            raise RoutingError("an operating curve holds a non-finite value")
        return cls(lams=arrays["lam"], cost=arrays["cost"], quality=arrays["quality"],
                   strong_share=arrays["strong_share"], strong=int(data.get("strong", -1)),
                   measured=bool(data.get("measured", True)), n_prompts=int(data.get("n_prompts", 0)),
                   n_dropped=int(data.get("n_dropped", 0)), cost_upper=arrays.get("cost_upper"),
                   meta={"spend_interval": dict(data.get("spend_interval") or {})} if "cost_upper" in data else {})

    # -------------------------------------------------------- budget lookup
    @property
    def spend(self) -> str:
        """How a budget is met on this curve: ``"mean"`` or ``"upper"`` (see :data:`SPEND_UPPER`)."""
        return SPEND_MEAN if self.cost_upper is None else SPEND_UPPER

    def index_for(self, *, budget: float | None = None, strong_share: float | None = None,
                  target_quality: float | None = None) -> int:
        """The grid point meeting one request.

        * ``budget``: the best quality with spend <= budget (ties: cheaper); the spend is the
          mean cost, or the upper end of its bootstrap interval when ``cost_upper`` is set;
        * ``strong_share``: the largest strong-call share <= the share (ties: better, then cheaper);
        * ``target_quality``: the cheapest point with quality >= target (ties: better).
        """
        where = "measured on the calibration split" if self.measured else "predicted for this batch"
        if budget is not None:
            spend = self.cost if self.cost_upper is None else self.cost_upper
            ok = np.flatnonzero(spend <= budget * (1 + 1e-9) + 1e-15)
            if ok.size == 0:
                what = "routing cost" if self.cost_upper is None else "routing cost (upper end of its interval)"
                raise RoutingError(f"budget ${budget:.6g}/query is below the cheapest {what} "
                                   f"${spend.min():.6g}/query {where}")
            return int(ok[np.lexsort((spend[ok], -self.quality[ok]))[0]])
        if strong_share is not None:
            ok = np.flatnonzero(self.strong_share <= strong_share + TIE_TOLERANCE)
            if ok.size == 0:
                raise RoutingError(f"strong share {strong_share} is below the lowest share "
                                   f"{self.strong_share.min():.4f} {where}")
            # RouteLLM's meaning: send (up to) that share of calls to the strong model, so the
            # largest share not above the target; ties: better quality, then cheaper
            return int(ok[np.lexsort((self.cost[ok], -self.quality[ok], -self.strong_share[ok]))[0]])
        if target_quality is not None:
            ok = np.flatnonzero(self.quality >= target_quality - TIE_TOLERANCE)
            if ok.size == 0:
                raise RoutingError(f"target quality {target_quality} is unreachable: the best {where} "
                                   f"is {self.quality.max():.4f}")
            return int(ok[np.lexsort((-self.quality[ok], self.cost[ok]))[0]])
        return int(np.flatnonzero(self.lams == 0)[0]) if (self.lams == 0).any() else 0

    def lam_for(self, **request) -> float:
        return float(self.lams[self.index_for(**request)])

    def point(self, i: int) -> dict[str, Any]:
        """Cost, quality, strong share and prompt counts at point ``i`` (what calibration reports)."""
        out = {"cost": float(self.cost[i]), "quality": float(self.quality[i]),
               "strong_share": float(self.strong_share[i]), "n_prompts": self.n_prompts,
               "n_dropped": self.n_dropped}
        if self.cost_upper is not None:
            out["cost_upper"] = float(self.cost_upper[i])
        return out

    # ------------------------------------------------------------- reading
    @property
    def n_points(self) -> int:
        return int(len(self.cost))

    def per_prompt(self) -> tuple[np.ndarray, np.ndarray]:
        """(k, n) cost and quality of every prompt at every operating point."""
        if self.choices is not None:
            return chosen(self.unit_costs, self.choices), chosen(self.unit_scores, self.choices)
        if self.per_prompt_cost_ is None:
            raise RoutingError("this curve holds means only (read from a checkpoint); no per-prompt outcomes")
        return self.per_prompt_cost_, self.per_prompt_quality_

    def restrict(self, columns: np.ndarray) -> "Curve":
        """The same policy on a subset of its prompts (columns), means recomputed."""
        columns = np.asarray(columns)
        index = columns if self.prompt_index is None else self.prompt_index[columns]
        if self.choices is not None:
            return Curve.from_choices(self.lams, self.choices[:, columns], self.unit_costs[columns],
                                      self.unit_scores[columns], strong=self.strong, label=self.label,
                                      models=self.models, measured=self.measured, family=self.family,
                                      prompt_index=index, cost_unit=self.cost_unit,
                                      n_cost_imputed=self.n_cost_imputed, meta=self.meta)
        pc, pq = self.per_prompt()
        out = Curve.from_points(pc[:, columns], pq[:, columns], self.point_labels, label=self.label,
                                models=self.models, family=self.family, prompt_index=index,
                                cost_unit=self.cost_unit, meta=self.meta)
        # shares of a fixed policy cannot be recomputed per prompt; keep the given ones
        out.strong_share, out.call_shares = self.strong_share, self.call_shares
        return out

    def with_upper_spend(self, cost_upper: np.ndarray, interval: dict[str, Any]) -> "Curve":
        """This curve with budgets met by ``cost_upper`` (k,), the upper end of a bootstrap
        interval of the spend; ``interval`` says how it was drawn (stored in the checkpoint)."""
        upper = np.asarray(cost_upper, dtype=np.float64).reshape(-1)
        if upper.shape != self.cost.shape:
            raise RoutingError(f"expected {self.cost.shape[0]} upper spends, got {upper.shape[0]}")
        self.cost_upper = upper
        self.meta["spend_interval"] = dict(interval)
        return self

    def best_point(self) -> int:
        """The lam = 0 point of a router (best predicted quality), else the highest-quality point."""
        zero = np.flatnonzero(self.lams == 0)
        if zero.size:
            return int(zero[0])
        return int(np.nanargmax(self.quality))

    def points(self) -> list[dict[str, Any]]:
        """One JSON-able dict per operating point."""
        out = []
        shares = self.call_shares if self.call_shares is not None else np.full((self.n_points, len(self.models)),
                                                                               np.nan)
        for i in range(self.n_points):
            out.append({
                "label": self.point_labels[i] if i < len(self.point_labels) else str(i),
                "lam": finite_or_none(self.lams[i]), "cost": finite_or_none(self.cost[i]),
                "quality": finite_or_none(self.quality[i]), "strong_share": finite_or_none(self.strong_share[i]),
                "call_shares": {m: finite_or_none(s) for m, s in zip(self.models, shares[i])}
                if len(self.models) else {},
            })
        return out


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    count = (~np.isnan(a)).sum(axis=1)
    return np.where(count > 0, np.nansum(a, axis=1) / np.maximum(count, 1), np.nan)

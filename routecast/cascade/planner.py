"""The cascade-routing policy on one prompt: what to call next at every lam, and what to return.

A :class:`Planner` holds one prompt's ex-ante predictions and answer evidence and, per called set
(:mod:`routecast.cascade.called_sets`), the posterior quality of every pool model and the decision
table "stop or call ``j``" at every lam. Its owner is a fitted
:class:`~routecast.cascade.cascade_router.CascadeRouter` (read for the pool, the posterior model,
kappa, the spreads and the draws). Offline simulation and the live step-wise interface walk the
same planner, so on a logged prompt they call the same models and return the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from routecast.cascade.called_sets import masks, members, outcomes, set_costs
from routecast.cascade.lookahead import value_of_calling as empirical_value_of_calling
from routecast.cascade.posterior import AnswerFacts, state_features
from routecast.cascade.set_actions import CONDITIONAL_MODES, call_sets, conditional_values
from routecast.core.policy import decide


@dataclass
class CascadeRoutingOutcome:
    """What one live run did: the returned answer, its model, every model called (in order) and
    the posterior quality of each called model when the policy stopped."""

    answer: str
    model: str
    models_called: list[str]
    posterior: dict[str, float] = field(default_factory=dict)


@dataclass
class CascadeState:
    """One live prompt in progress (:meth:`CascadeRouter.start`): its lam, ex-ante predictions
    (pool model -> quality), the answers so far, the models called, in order, and ``pending``: the
    models of the set the plan calls together that have not answered yet."""

    prompt: str
    lam: float
    prior: dict[str, float]
    planner: "Planner"
    responses: np.ndarray
    mask: int = 0
    order: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)


class Planner:
    """The policy on one prompt: posterior per called set, the decision table per called set.

    Everything depends on the called set only (never on lam), so both are cached; a lam only
    selects a column of the decision table.
    """

    def __init__(self, owner: Any, prior_logit: np.ndarray, facts: AnswerFacts):
        self.owner = owner
        self.prior_logit = prior_logit
        self.facts = facts
        self.tables: dict[tuple[int, bytes], tuple[np.ndarray, np.ndarray]] = {}
        self.posteriors: dict[int, np.ndarray] = {}
        self.candidates = masks(len(owner.pool_), owner.max_calls_, with_empty=False)

    def posterior(self, mask: int) -> np.ndarray:
        if mask not in self.posteriors:
            p = len(self.owner.pool_)
            self.posteriors[mask] = self.owner.posterior_.predict(
                state_features(self.prior_logit, self.facts, members(mask, p)))
        return self.posteriors[mask]

    def table(self, mask: int, lams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Actions at called set ``mask`` (bit masks of the models to call; 0 = stop) and the one
        chosen at each lam (cached: it depends on the called set only). One model per call, or
        sets of models called together under the ``sets`` look-ahead (routecast.cascade.set_actions)."""
        key = (mask, lams.tobytes())
        if key in self.tables:
            return self.tables[key]
        o = self.owner
        p = len(o.pool_)
        q = self.posterior(mask)
        called = members(mask, p)
        calls = call_sets(mask, p, o.max_calls_, sets=o.lookahead_ == "sets")
        actions = ([0] if mask else []) + calls
        k = len(lams)
        value = np.empty((k, len(actions)))
        cost = set_costs(actions, o.costs_)
        first = 1 if mask else 0
        if mask:
            value[:, 0] = q[called].max()
        if o.lookahead_ in CONDITIONAL_MODES:
            value[:, first:] = conditional_values(self, mask, q, calls, lams)
        else:
            for a, t in enumerate(calls, start=first):
                value[:, a] = self._value_of_calling(mask, t.bit_length() - 1, q, lams)
        # the kernel's rule at every lam at once: utilities given, lam 0, ties to the cheaper action
        choice = decide(value - lams[:, None] * cost[None, :], np.broadcast_to(cost, value.shape), 0.0)
        self.tables[key] = (np.array(actions), choice)
        return self.tables[key]

    def _value_of_calling(self, mask: int, j: int, q: np.ndarray, lams: np.ndarray) -> np.ndarray:
        """(k,) expected utility, before paying for ``j``, of calling ``j`` and then deciding again.

        After the call, ``j``'s posterior is drawn around ``q[j]`` with spread kappa * tau[j]; the
        policy then stops or commits to a further set ``M`` (kappa-spread draws for its new
        models), maximising E[max quality] - lam * cost of ``M``'s new models, per draw.
        """
        o = self.owner
        if o.lookahead_ == "empirical":
            return empirical_value_of_calling(self, mask, j, q, lams)
        p = len(o.pool_)
        after = mask | 1 << j
        spread = o.kappa_ * np.diag(o.tau_)
        # j's answer moves every called model's posterior too (agreement is evidence on both
        # answers): each is drawn around its current estimate with the spread measured on train
        moved = np.clip(q[None, :] + o.kappa_ * o.tau_[j][None, :] * o.draws_, 0.0, 1.0)  # (R, P)
        best_now = np.where(members(after, p)[None, :], moved, -np.inf).max(axis=1)  # (R,)
        follow = [0]
        if bin(after).count("1") < o.max_calls_:
            follow += [c & ~after for c in self.candidates if c & after == after and c != after]
        # per follow-up set: the new models' best drawn quality (R',) (none: -inf) and their cost
        inner_draws = np.clip(q[None, :] + spread[None, :] * o.draws_[::-1], 0.0, 1.0)  # independent of R
        new_best = np.stack([np.where(members(c, p)[None, :], inner_draws, -np.inf).max(axis=1) for c in follow])
        new_cost = set_costs(follow, o.costs_)
        # E over R' of max(best_now[r], new_best[m, r']) -> (R, M)
        expected = np.maximum(best_now[:, None, None], new_best[None, :, :]).mean(axis=2)
        utility = expected[None, :, :] - lams[:, None, None] * new_cost[None, None, :]  # (k, R, M)
        return utility.max(axis=2).mean(axis=1)

    def next_call(self, mask: int, lams: np.ndarray, a: int) -> int:
        """Bit mask of the models to call next (together) at lam ``lams[a]``; 0: stop."""
        if bin(mask).count("1") >= self.owner.max_calls_:
            return 0
        actions, choice = self.table(mask, lams)
        return int(actions[int(choice[a])])

    def answer(self, mask: int) -> int:
        """Pool index of the called model whose answer has the highest posterior quality."""
        q = self.posterior(mask)
        called = members(mask, len(self.owner.pool_))
        return int(np.argmax(np.where(called, q, -np.inf)))


def walk_all(planners: list[Planner], lams: np.ndarray, *, reset: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(k, n) called-set bit masks and (k, n) index (into the pool) of the returned answer, per
    lam of ``lams`` and planner. ``reset`` drops cached decision tables (after kappa changes)."""
    k, n = len(lams), len(planners)
    called = np.zeros((k, n), dtype=np.int64)
    chosen_idx = np.zeros((k, n), dtype=np.int64)
    for i, planner in enumerate(planners):
        if reset:
            planner.tables.clear()
        for a in range(k):
            mask = 0
            while nxt := planner.next_call(mask, lams, a):
                mask |= nxt
            called[a, i] = mask
            chosen_idx[a, i] = planner.answer(mask)
    return called, chosen_idx


def refine_grid(planners: list[Planner], unit: np.ndarray, scores: np.ndarray, lams: np.ndarray, called: np.ndarray,
                cost: np.ndarray, quality: np.ndarray, *, max_lams: int, refine_step: float):
    """Insert lams where the validation curve jumps, so an operating point exists near every cost.

    The base grid spans seven decades of lam, but a cascade's decisions all change within about
    one: between two neighbouring grid points the validation cost can jump from the cheapest
    model to the dearest, and a budget then lands far below it. Geometric midpoints are added
    wherever the mean cost moves by more than ``refine_step`` of the cost range, until no such
    gap remains, the gap is a tie (neighbours within 0.1 %) or the grid holds ``max_lams`` points.
    """
    span = float(np.ptp(cost.mean(axis=1)))
    while span > 0 and len(lams) < max_lams:
        order = np.argsort(lams)
        lams, called, cost, quality = lams[order], called[order], cost[order], quality[order]
        mean_cost = cost.mean(axis=1)
        gaps = np.flatnonzero(np.abs(np.diff(mean_cost)) > refine_step * span)
        lo, hi = lams[gaps], lams[gaps + 1]
        new = np.where(lo > 0, np.sqrt(np.maximum(lo, 1e-300) * hi), hi / 10.0)
        fresh = (new > lo * 1.001) & (new < hi / 1.001)
        new = new[fresh][: max_lams - len(lams)]
        if new.size == 0:
            break
        c_new, i_new = walk_all(planners, new, reset=True)
        cost_new, quality_new = outcomes(c_new, i_new, unit, scores)
        lams, called = np.concatenate([lams, new]), np.concatenate([called, c_new])
        cost, quality = np.concatenate([cost, cost_new]), np.concatenate([quality, quality_new])
    order = np.argsort(lams)
    return lams[order], called[order], cost[order], quality[order]

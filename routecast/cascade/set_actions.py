"""Verification calls as actions: call a set of models together, then follow up on what they said.

The one-step look-ahead of :mod:`routecast.cascade.planner` (and its empirical variant,
:mod:`routecast.cascade.lookahead`) values calling one model ``j`` by what ``j``'s answer could be
worth, followed by an *unconditional* further set. On a log where an answer alone says nothing
and only agreement does (GSM8K: a cheap model's final answer looks the same right or wrong), that
cannot express the plan that pays: "call two cheap models, accept when they agree, else call the
strong one". Two modes fix it, both chosen on validation like the others (``lookaheads``):

``conditional``
    One model per call, as before, but the look-ahead is conditioned on the drawn outcome: per
    draw ``r`` (a sampled training prompt, cross-fitted posteriors) the state after calling ``j``
    is ``q + kappa * (post[r, S+j] - post[r, S])`` - *every* model's posterior moves, so agreement
    raises the current best answer and disagreement lowers it - and from that state the policy
    takes the best of stopping and each follow-up set ``U`` (valued with the joint shifts at
    ``S+j``, drawn independently, minus lam x cost(U)). A cheap call is then valued as a *check*
    (it changes whether the strong model is needed) and not only as a possible replacement.
``sets``
    The same look-ahead, and the actions at called set ``S`` are all sets ``T`` of uncalled
    models with ``|S| + |T| <= max_calls``: ``T`` is called at once, valued by the joint shift
    ``post[r, S+T] - post[r, S]`` then the conditioned follow-up, at cost(T), the sum of its
    models' costs. "Call A and B, then C only if they disagree" is one action and one follow-up.
    The calls of ``T`` do not depend on each other, so the server sends them in parallel
    (:mod:`routecast.serving.cascade_chat`); offline (``walk_all``) and live
    (:meth:`~routecast.cascade.live.LiveCascade.next_models`) walk the same sets.

Simplification: the follow-up's shifts are drawn from all sampled prompts, not only from those
that reached a state like ``r``'s; the state enters through the level it starts from.

Why opt-in (not in the default ``lookaheads``): measured on zeroeval_gsm_13models and the GSM8K
part of routellm_strong_weak (benchmarks/results/cascades_issue27_sets.md), validation does not
separate the modes on the first (132 prompts, AIQ within 1e-4; it keeps ``normal``) and ``sets``
alone is not better on its test split (AIQ 0.9666 against 0.9689): the posterior (fitted on
train) rates the best of three cheap answers as high as the strong model's (0.969 against 0.965
on the test prompts, where they score 0.953 against 0.971), so the plan calls a third cheap model
where the strong one would have paid. On the second it matches (+0.0016, interval across 0).
"""

from __future__ import annotations

import itertools

import numpy as np

from routecast.cascade.called_sets import members, set_costs

#: the look-ahead modes of this module (the others: routecast.cascade.lookahead.LOOKAHEADS)
CONDITIONAL_MODES = ("conditional", "sets")


def call_sets(mask: int, p: int, max_calls: int, *, sets: bool) -> list[int]:
    """Bit masks of the calls possible at called set ``mask``: every uncalled model, and with
    ``sets`` every set of them that keeps the calls within ``max_calls`` (singletons first, in
    model order - the order the decision rule breaks exact ties in)."""
    free = [j for j in range(p) if not mask >> j & 1]
    room = max_calls - bin(mask).count("1")
    largest = min(room, len(free)) if sets else min(room, 1)
    return [sum(1 << j for j in combo) for size in range(1, largest + 1)
            for combo in itertools.combinations(free, size)]


def conditional_values(planner, mask: int, q: np.ndarray, calls: list[int], lams: np.ndarray) -> np.ndarray:
    """(k, len(calls)) expected utility at each lam, before paying for the call, of calling each
    set of ``calls`` at ``mask`` and then stopping or following up as the drawn outcome makes best
    (see the module docstring; ``planner`` is a :class:`routecast.cascade.planner.Planner`)."""
    o = planner.owner
    p, index, samples, kappa = len(o.pool_), o.mask_index_, o.samples_, o.kappa_
    base = samples[:, index[mask]]  # (R, P)
    out = np.empty((len(lams), len(calls)))
    for a, t in enumerate(calls):
        after = mask | t
        at = samples[:, index[after]]
        moved = np.clip(q[None, :] + kappa * (at - base), 0.0, 1.0)  # (R, P): every posterior moves
        stop = np.where(members(after, p)[None, :], moved, -np.inf).max(axis=1)  # (R,)
        follow = call_sets(after, p, o.max_calls_, sets=True)
        if not follow:
            out[:, a] = stop.mean()
            continue
        # the best answer after the follow-up, per (draw, follow-up, its draw); models outside the
        # set never count (-inf), and as clipping is monotone the max is clipped once, not each term
        outside = np.stack([np.where(members(after | u, p), 0.0, -np.inf) for u in follow])  # (M, P)
        shift = np.stack([kappa * (samples[:, index[after | u]] - at) for u in follow]) + outside[:, None, :]
        best = np.full((len(moved), len(follow), shift.shape[1]), -np.inf)  # (R, M, R')
        for m in range(p):  # a max over a short last axis is slow in numpy: one pass per model
            np.maximum(best, moved[:, m, None, None] + shift[None, :, :, m], out=best)
        gain = np.clip(best, 0.0, 1.0).mean(axis=2)  # (R, M)
        cost = set_costs(follow, o.costs_)
        best_follow = (gain[None, :, :] - lams[:, None, None] * cost[None, None, :]).max(axis=2)  # (k, R)
        out[:, a] = np.maximum(stop[None, :], best_follow).mean(axis=1)
    return out

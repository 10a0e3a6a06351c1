"""Empirical look-ahead for cascade routing: what one more answer does to the posteriors.

The planner of :mod:`routecast.cascade.planner` values a call by the expected best
posterior quality after it. Its default draws the posterior after the call from a normal around
the current estimate, with one spread per (called model, affected model) pair averaged over every
state, and independently per model. Both simplifications miss what makes agreement worth paying
for: after ``A`` has answered, ``B``'s answer moves *both* posteriors together (up when they agree,
down when they do not), and how far depends on the state (which models answered already).

:func:`empirical_shifts` records, on the training prompts (cross-fitted posteriors, so the
shifts are those of unseen prompts), the joint change of every model's posterior when model ``j``
is called at called set ``S`` - one vector per sampled training prompt, the same sampled prompts
for every state. :func:`value_of_calling` is the planner's value of calling ``j`` with those joint,
state-specific shifts in place of the normal draws (scaled by kappa, clipped to [0, 1]); the rest
(stop or commit to a follow-up set, max over follow-ups, mean over draws) is unchanged.

Why it is opt-in (``CascadeRouter(lookaheads=("normal", "empirical"))`` lets validation choose):
the look-ahead is one step plus an *unconditional* follow-up set. With honest shifts, a cheap
model's answer alone moves nothing on a log where only agreement is informative, and "call B,
then C only if B disagrees" is a two-step plan the follow-up sets cannot express - so from the
empty set it calls the strong model directly. The normal draws overstate what one answer alone
reveals (their spread is averaged over states that include agreement), which by accident values
the first cheap call. :mod:`routecast.cascade.set_actions` (modes ``conditional`` and ``sets``)
conditions the follow-up on the drawn answer and calls sets of models together, from the sampled
training posteriors at every called set (:func:`sampled_posteriors`, the same sampled prompts);
it is opt-in too (what it measured is there).
"""

from __future__ import annotations

import numpy as np

from routecast.cascade.called_sets import members, set_costs

#: the look-ahead modes :class:`~routecast.cascade.cascade_router.CascadeRouter` can choose from on validation
#: (``conditional`` and ``sets``: :mod:`routecast.cascade.set_actions`)
LOOKAHEADS = ("normal", "empirical", "conditional", "sets")


def sample_rows(n: int, n_rows: int, seed: int = 0) -> np.ndarray:
    """The training prompts (indices into ``n``) the empirical look-aheads draw from: the same
    for every state, so a draw follows one prompt through every called set."""
    return np.random.default_rng(seed).choice(n, size=n_rows, replace=n < n_rows)


def sampled_posteriors(post: np.ndarray, n_rows: int, seed: int = 0) -> np.ndarray:
    """(R, S, P) the training posteriors ``post`` (n, S, P) of the sampled prompts at every called
    set: a shift between any two sets is a difference of two slices (:mod:`routecast.cascade.set_actions`)."""
    return post[sample_rows(post.shape[0], n_rows, seed)]


def empirical_shifts(post: np.ndarray, masks: list[int], p: int, max_calls: int, n_rows: int,
                     seed: int = 0) -> np.ndarray:
    """(S, P, R, P) ``shifts[s, j, r, l]``: change of model ``l``'s posterior on sampled training
    prompt ``r`` when ``j`` is called at called set ``masks[s]`` (zeros where ``j`` is in the set or
    the set is full). ``post`` is (n, S, P), the posterior at every set on every training prompt."""
    rows = sample_rows(post.shape[0], n_rows, seed)
    index = {m: s for s, m in enumerate(masks)}
    out = np.zeros((len(masks), p, n_rows, p))
    for s, mask in enumerate(masks):
        if bin(mask).count("1") >= max_calls:
            continue
        for j in range(p):
            if mask >> j & 1:
                continue
            out[s, j] = post[rows, index[mask | 1 << j], :] - post[rows, s, :]
    return out


def value_of_calling(planner, mask: int, j: int, q: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """(k,) expected utility, before paying for ``j``, of calling ``j`` at ``mask`` and deciding
    again (see the module docstring; ``planner`` is a :class:`routecast.cascade.planner.Planner`)."""
    o = planner.owner
    p = len(o.pool_)
    index = o.mask_index_
    after = mask | 1 << j
    shifts = o.shifts_
    moved = np.clip(q[None, :] + o.kappa_ * shifts[index[mask], j], 0.0, 1.0)  # (R, P), joint
    best_now = np.where(members(after, p)[None, :], moved, -np.inf).max(axis=1)  # (R,)
    follow = [0]
    if bin(after).count("1") < o.max_calls_:
        follow += [c & ~after for c in planner.candidates if c & after == after and c != after]
    if len(follow) > 1:
        # a follow-up model m's own answer, from the state after j: its own-posterior shift there
        own = np.stack([shifts[index[after], m, :, m] for m in range(p)], axis=1)  # (R, P)
        inner = np.clip(q[None, :] + o.kappa_ * own[::-1], 0.0, 1.0)
    else:
        inner = np.zeros_like(moved)
    new_best = np.stack([np.where(members(c, p)[None, :], inner, -np.inf).max(axis=1) for c in follow])
    new_cost = set_costs(follow, o.costs_)
    expected = np.maximum(best_now[:, None, None], new_best[None, :, :]).mean(axis=2)  # (R, M)
    utility = expected[None, :, :] - lams[:, None, None] * new_cost[None, None, :]  # (k, R, M)
    return utility.max(axis=2).mean(axis=1)

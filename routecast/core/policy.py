"""The policy kernel: the one decision rule, its lambda sweep, the operating-point lookup and
the strong/weak pair. Routers, cascades, calibration, evaluation, tuning and the runtime all
call these functions; nothing else in routecast turns predictions into choices.

The decision rule
    For each prompt choose ``argmax_j  quality[j] - lam * cost[j]``; ties go to the cheaper
    model, then to the lower index. ``lam`` is the willingness to pay, in quality points per
    dollar (or per unit of the relative cost axis when no USD cost is logged).

The sweep
    :func:`lam_grid` spans every decision from "best quality" (lam = 0) to "always the
    cheapest"; :func:`sweep` applies the rule at each grid value. A
    :class:`routecast.core.curve.Curve` holds, per lam, the mean cost, quality and strong-call
    share that a sweep *reached* (on a calibration split, with logged outcomes) or *predicts* (on
    the batch being routed, from the router's own predictions). :meth:`Curve.lam_for` turns a
    budget, a strong-call share or a quality target into the lam that meets it.

Unlogged cells, one rule everywhere
    A score that was not logged is never guessed: a measured curve (evaluation, calibration,
    tuning, cascades) keeps only the prompts whose every score is logged
    (:meth:`routecast.data.outcome_log.OutcomeLog.complete_rows`) and reports how many it
    dropped. A cost that was not logged takes the model's mean logged cost on the same log
    (:func:`routecast.evaluation.curves.realised_costs`).

The strong and weak models
    :func:`strong_weak`: strong = the best single model, highest mean quality on the split (ties:
    the cheaper, :func:`routecast.data.best_model.best_model`), weak =
    cheapest (ties: higher quality); either can be named instead. APGR, CPT, strong-share
    calibration and the random router all use it. A note says when the strong model is not the
    most expensive one, since "pay more for less" logs (routerarena_2models) make a strong-call
    share mean something else than users expect.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from routecast.data.best_model import best_model
from routecast.errors import RoutecastWarning, RoutingError  # noqa: F401 - RoutecastWarning is used here and re-exported

__all__ = ["decide", "lam_grid", "sweep", "chosen", "pair_share_curve", "explore", "StrongWeak", "strong_weak",
           "RoutecastWarning", "utility_ranking", "TIE_TOLERANCE"]

_TOL = 1e-12
#: the decision rule's tie tolerance, shared by the curve lookups (routecast.core.curve)
TIE_TOLERANCE = _TOL


def decide(quality: np.ndarray, costs: np.ndarray, lam: float) -> np.ndarray:
    """The decision rule: ``argmax`` over models of ``quality - lam * cost``, (n,) int.

    ``costs`` is ``(m,)`` or ``(n, m)``. Ties go to the cheaper model, then to the lower index,
    so ``lam = 0`` with equal predictions never pays for nothing.
    """
    quality = np.asarray(quality, dtype=np.float64)
    costs = np.broadcast_to(np.asarray(costs, dtype=np.float64), quality.shape)
    utility = quality - lam * costs if lam else quality.copy()
    best = utility.max(axis=1, keepdims=True)
    # tolerance so float noise does not break ties towards the expensive model
    tied = utility >= best - _TOL
    masked_cost = np.where(tied, costs, np.inf)
    return masked_cost.argmin(axis=1)


def utility_ranking(quality: np.ndarray, costs: np.ndarray, lam: float) -> np.ndarray:
    """Models ordered by utility ``quality - lam * cost``, best first: (m,) or (n, m) int indices.

    The full order behind :func:`decide` (its first entry is ``decide``'s choice up to float noise):
    utilities equal to 12 decimals go to the cheaper model, then to the lower index. It orders a
    router's fallback list (``RouteResult.records``), a cascade's ex-ante fallback, and the
    threshold search's step at each lam.
    """
    quality = np.asarray(quality, dtype=np.float64)
    costs = np.broadcast_to(np.asarray(costs, dtype=np.float64), quality.shape)
    return np.lexsort((costs, -np.round(quality - lam * costs, 12)), axis=-1)


#: grid sizes: evaluation curves, and calibration (denser, so a share or budget is met closely)
EVALUATION_POINTS, CALIBRATION_POINTS = 241, 2001


def lam_grid(costs: np.ndarray, n_points: int = EVALUATION_POINTS) -> np.ndarray:
    """Willingness-to-pay values that sweep from 'best quality' to 'cheapest'.

    Quality lives in [0, 1], so every decision changes between lam = 1e-3 / spread and
    lam = 1e4 / spread, where spread is the cost range between models. The grid is geometric
    over that span, with 0 (ignore cost) and a value large enough to always pick the cheapest.
    """
    costs = np.asarray(costs, dtype=np.float64)
    finite = costs[np.isfinite(costs)]
    spread = float(finite.max() - finite.min()) if finite.size else 0.0
    if spread <= 0:
        return np.array([0.0])
    inner = np.geomspace(1e-3, 1e4, n_points - 2) / spread
    return np.concatenate([[0.0], inner, [1e6 / spread]])


def sweep(quality: np.ndarray, costs: np.ndarray, lams: np.ndarray | None = None, *,
          n_points: int = EVALUATION_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """The decision rule at every lam: ``(lams (k,), choices (k, n) int16)``."""
    quality = np.asarray(quality, dtype=np.float64)
    grid = lam_grid(costs, n_points) if lams is None else np.asarray(lams, dtype=np.float64).reshape(-1)
    if grid.size == 0:
        raise RoutingError("the lambda grid is empty")
    choices = np.stack([decide(quality, costs, float(lam)) for lam in grid]).astype(np.int16)
    return grid, choices


def chosen(matrix: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """``matrix[i, choice[i]]`` for (n, m) or (m,) ``matrix`` and (n,) or (k, n) ``choice``."""
    choice = np.asarray(choice)
    n = choice.shape[-1]
    full = np.broadcast_to(np.asarray(matrix, dtype=np.float64), (n, np.shape(matrix)[-1]))
    rows = np.arange(n)
    return full[rows, choice] if choice.ndim == 1 else full[rows[None, :], choice]


def pair_share_curve(quality: np.ndarray, scores: np.ndarray, strong: int, weak: int) -> tuple[np.ndarray, np.ndarray]:
    """RouteLLM's strong-share curve of a router on a strong/weak pair: (shares, mean qualities).

    On a pair the decision rule calls the strong model when ``q_strong - q_weak > lam * (c_strong -
    c_weak)``: a threshold on the predicted margin. Sweeping that threshold over every value,
    whatever the sign of the cost difference, gives every strong-call share from 0 to 1 (with
    lam >= 0 alone, a log whose strong model is the cheaper one never reaches low shares). Each
    point sends the prompts with the largest predicted margins to the strong model; prompts with
    equal margins move together. ``scores`` are the realised (n, m) scores.
    """
    quality = np.asarray(quality, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    n = quality.shape[0]
    margin = quality[:, strong] - quality[:, weak]
    order = np.argsort(-margin, kind="stable")
    gain = (scores[:, strong] - scores[:, weak])[order]
    base = scores[:, weak].sum()
    cum = np.concatenate([[0.0], np.cumsum(gain)])
    # cut only between different margins (ties move together)
    sorted_margin = margin[order]
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_margin) != 0) + 1, [n]]) if n else np.array([0])
    shares = cuts / max(n, 1)
    qualities = (base + cum[cuts]) / max(n, 1)
    return shares, qualities


def explore(quality: np.ndarray, costs: np.ndarray, lam: float, *, epsilon: float = 0.0,
            temperature: float | None = None, uniforms: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The decision rule with exploration: ``(choice (n,), propensity (n,))``.

    ``epsilon``-greedy: the rule's choice with probability ``1 - epsilon``, else a uniformly drawn
    model; or, with ``temperature``, a softmax over the utilities ``(quality - lam * cost) / T``.
    ``propensity`` is the probability the logging policy gave the chosen model: what off-policy
    evaluation and propensity-weighted training need. ``uniforms`` (n,) in [0, 1) are the random
    draws (a hash of the request id in the server, so a replay makes the same choice); without
    them the choice is the greedy one with propensity 1.
    """
    quality = np.asarray(quality, dtype=np.float64)
    n, m = quality.shape
    if not 0.0 <= epsilon <= 1.0:
        raise RoutingError(f"epsilon must be in [0, 1], got {epsilon}")
    greedy = decide(quality, costs, lam)
    if uniforms is None or (epsilon == 0.0 and temperature is None):
        return greedy, np.ones(n)
    u = np.asarray(uniforms, dtype=np.float64).reshape(n)
    if temperature is not None:
        if not temperature > 0:
            raise RoutingError(f"temperature must be > 0, got {temperature}")
        utility = quality - lam * np.broadcast_to(np.asarray(costs, dtype=np.float64), quality.shape)
        logits = (utility - utility.max(axis=1, keepdims=True)) / temperature
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
    else:
        probs = np.full((n, m), epsilon / m)
        probs[np.arange(n), greedy] += 1.0 - epsilon
    cdf = np.cumsum(probs, axis=1)
    choice = np.minimum((u[:, None] >= cdf).sum(axis=1), m - 1)
    return choice, probs[np.arange(n), choice]


@dataclass(frozen=True)
class StrongWeak:
    """Indices of the strong and weak models of a log, and what a user should know about them."""

    strong: int
    weak: int
    notes: tuple[str, ...] = ()


def strong_weak(mean_costs: np.ndarray, mean_qualities: np.ndarray, *, models: Sequence[str] | None = None,
                strong: str | int | None = None, weak: str | int | None = None,
                warn: bool = False) -> StrongWeak:
    """The strong and weak models, defined once.

    strong = the best single model, :func:`routecast.data.best_model.best_model` (highest mean
    quality; ties: the cheaper, then the lower index); weak = cheapest (ties:
    higher quality, then lower index). ``strong``/``weak`` name (or index) them instead. With
    unknown costs the weak model is the lowest-quality one. ``warn`` also emits the notes as
    :class:`RoutecastWarning`.
    """
    c = np.asarray(mean_costs, dtype=np.float64).reshape(-1)
    q = np.nan_to_num(np.asarray(mean_qualities, dtype=np.float64).reshape(-1), nan=-np.inf)
    m = q.size
    if c.size != m or m == 0:
        raise RoutingError(f"need one mean cost per model: {c.size} costs for {m} models")
    names = list(models) if models is not None else [str(j) for j in range(m)]

    def resolve(value, what: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 0 <= int(value) < m:
                raise RoutingError(f"{what} model index {value} is out of range for {m} models")
            return int(value)
        if value not in names:
            raise RoutingError(f"{what} model {value!r} is not one of the models: {', '.join(names)}")
        return names.index(value)

    known = np.isfinite(c)
    s = resolve(strong, "strong")
    if s is None:
        s = best_model(q, c)
    w = resolve(weak, "weak")
    if w is None:
        if known.all() and np.ptp(c) > 0:
            w = int(np.lexsort((np.arange(m), -q, c))[0])
        else:
            w = int(np.lexsort((np.arange(m), q))[0])
        if w == s and m > 1:  # a log where the best model is also the cheapest: weak is the next cheapest
            rest = [j for j in range(m) if j != s]
            w = min(rest, key=lambda j: (c[j] if known[j] else np.inf, -q[j], j))
    notes = []
    if known.all() and np.ptp(c) > 0 and c[s] < c.max() - 1e-15 * abs(c.max()):
        dearest = int(np.argmax(c))
        notes.append(f"the strong (best-quality) model {names[s]} is not the most expensive one: "
                     f"{names[dearest]} costs more ({c[dearest]:.6g} vs {c[s]:.6g}) and scores "
                     f"{q[dearest]:.4f} vs {q[s]:.4f}")
    if warn:
        for note in notes:
            warnings.warn(note, RoutecastWarning, stacklevel=2)
    return StrongWeak(s, w, tuple(notes))

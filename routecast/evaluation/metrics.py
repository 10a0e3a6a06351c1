"""Cost-quality metrics of routers and cascades: pure numpy, no routecast state.

Two families of summary, from the two benchmarks routers are compared on:

* RouterBench (Hu et al., 2024): a router is a set of (mean cost, mean quality) operating
  points. Mixing two operating points at random reaches every point on the segment between
  them, so what a router *can* deliver is the non-decreasing concave ("convex" in RouterBench's
  words) upper hull of its points. **AIQ** (average improvement in quality) is the mean height
  of that hull over a common cost range. The **zero router** is the same hull built from the
  single models alone: routing that only mixes models at random, ignoring the prompt.
* RouteLLM (Ong et al., 2024), for a strong/weak pair: **PGR** (performance gap recovered)
  puts quality on the scale weak = 0, strong = 1; **APGR** is the area under PGR against the
  share of calls sent to the strong model; **CPT(x)** (call-performance threshold) is the
  smallest strong-call share reaching PGR >= x.

Everything here works on plain arrays so it can be checked by hand (see
tests/training/test_metrics.py) and reused by evaluation, cascades and tuning.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from routecast.core.curve import call_shares  # re-exported: the per-model share of a choice matrix

__all__ = [
    "upper_hull", "interpolate_hull", "aiq", "zero_router_points", "pgr", "apgr", "cpt",
    "quality_at_cost", "cost_at_quality", "call_shares", "bootstrap_ci", "bootstrap_cis",
]

_EPS = 1e-12


# --------------------------------------------------------------------------- hull
def _finite_points(costs, qualities) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(costs, dtype=np.float64).reshape(-1)
    q = np.asarray(qualities, dtype=np.float64).reshape(-1)
    if c.shape != q.shape:
        raise ValueError(f"costs and qualities differ in length: {c.shape} vs {q.shape}")
    keep = np.isfinite(c) & np.isfinite(q)
    return c[keep], q[keep]


def upper_hull(costs, qualities) -> tuple[np.ndarray, np.ndarray]:
    """The non-decreasing concave upper hull of (cost, quality) points, as RouterBench uses.

    Returns the hull's vertices sorted by cost: it starts at the cheapest point (the best
    quality among the cheapest), climbs along the upper convex envelope and stops at the first
    point of maximum quality; beyond it the hull is flat (see :func:`interpolate_hull`).
    Points below the envelope (dominated, or beaten by mixing two others) are dropped.
    Non-finite points are ignored; no finite point gives two empty arrays.
    """
    c, q = _finite_points(costs, qualities)
    if c.size == 0:
        return np.empty(0), np.empty(0)
    # one point per cost: the best quality at that cost; sorted by cost
    order = np.lexsort((-q, c))
    c, q = c[order], q[order]
    first = np.concatenate([[True], np.diff(c) > 0])
    c, q = c[first], q[first]
    # stop at the first maximum: the hull is flat after it, so later points never matter
    top = int(np.argmax(q))
    c, q = c[: top + 1], q[: top + 1]
    # Andrew's monotone chain, upper part: keep only right turns (concave)
    hull: list[int] = []
    for i in range(c.size):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            lhs = (c[b] - c[a]) * (q[i] - q[a])
            rhs = (q[b] - q[a]) * (c[i] - c[a])
            if lhs - rhs >= -_EPS * (abs(lhs) + abs(rhs)):  # b on or below segment a-i
                hull.pop()
            else:
                break
        hull.append(i)
    idx = np.asarray(hull, dtype=int)
    return c[idx], q[idx]


def interpolate_hull(hull_c, hull_q, at, *, below: float = np.nan) -> np.ndarray | float:
    """Quality of the hull at cost(s) ``at``: linear between vertices, flat after the last one.

    Below the hull's first (cheapest) vertex the router cannot operate; ``below`` is returned
    there (NaN by default; :func:`aiq` uses 0, as RouterBench does).
    """
    hc = np.asarray(hull_c, dtype=np.float64)
    hq = np.asarray(hull_q, dtype=np.float64)
    x = np.asarray(at, dtype=np.float64)
    if hc.size == 0:
        out = np.full(x.shape, np.nan)
    else:
        out = np.interp(x, hc, hq, left=hq[0], right=hq[-1])
        out = np.where(x < hc[0] - 1e-9 * abs(hc[0]), below, out)
    return float(out) if out.ndim == 0 else out


def aiq(costs, qualities, c_min: float, c_max: float) -> float:
    """Average improvement in quality: mean height of the hull over ``[c_min, c_max]``.

    ``(1 / (c_max - c_min)) * integral of hull(c) dc``, the hull extended flat to ``c_max``.
    Below the router's cheapest point the integrand is 0, as in RouterBench's reference code
    (which integrates each hull from its own first point): a router that cannot run as cheaply
    as the cheapest alternative earns nothing there. When ``c_max <= c_min`` (every compared
    policy costs the same) the AIQ is the hull's quality at that cost.
    """
    hc, hq = upper_hull(costs, qualities)
    if hc.size == 0:
        return float("nan")
    if not (np.isfinite(c_min) and np.isfinite(c_max)):
        raise ValueError(f"cost range must be finite, got [{c_min}, {c_max}]")
    if c_max - c_min <= _EPS * max(abs(c_min), abs(c_max)):
        return float(interpolate_hull(hc, hq, c_max, below=0.0))
    lo = max(c_min, float(hc[0]))
    if lo >= c_max:
        return 0.0
    inner = hc[(hc > lo) & (hc < c_max)]
    xs = np.concatenate([[lo], inner, [c_max]])
    ys = interpolate_hull(hc, hq, xs, below=0.0)
    return float(np.trapezoid(ys, xs) / (c_max - c_min))


def zero_router_points(model_costs, model_qualities) -> tuple[np.ndarray, np.ndarray]:
    """The zero router: the hull of the single models' (cost, quality) points.

    Linear interpolation between two models is what sending a random share of prompts to each
    achieves, so this is the best a prompt-blind router can do (RouterBench's baseline).
    """
    return upper_hull(model_costs, model_qualities)


# -------------------------------------------------------------------- RouteLLM
def pgr(q, q_weak: float, q_strong: float):
    """Performance gap recovered: ``(q - q_weak) / (q_strong - q_weak)`` (NaN if no gap)."""
    q = np.asarray(q, dtype=np.float64)
    gap = float(q_strong) - float(q_weak)
    if not np.isfinite(gap) or abs(gap) <= _EPS:
        out = np.full(q.shape, np.nan)
    else:
        out = (q - q_weak) / gap
    return float(out) if out.ndim == 0 else out


def _share_envelope(strong_share, quality, q_weak, q_strong) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted by strong share, endpoints (0, weak) and (1, strong) added when missing,
    and quality replaced by the best reached at a share <= it.

    A router's quality need not rise with its strong share (a worse threshold can call the
    strong model more). At a given share budget one can always run the cheaper-in-calls point
    instead, so the curve that counts is the running maximum.
    """
    s, q = _finite_points(strong_share, quality)
    s = np.clip(s, 0.0, 1.0)
    if not np.any(np.abs(s) <= _EPS):
        s, q = np.append(s, 0.0), np.append(q, q_weak)
    if not np.any(np.abs(s - 1.0) <= _EPS):
        s, q = np.append(s, 1.0), np.append(q, q_strong)
    order = np.lexsort((-q, s))
    s, q = s[order], q[order]
    first = np.concatenate([[True], np.diff(s) > 0])
    s, q = s[first], q[first]
    return s, np.maximum.accumulate(q)


def apgr(strong_share, quality, q_weak: float, q_strong: float) -> float:
    """Average PGR: area under PGR against the strong-call share over [0, 1] (trapezoids).

    Non-monotone curves use the best quality reached at a share <= each share; the endpoints
    (0, ``q_weak``) and (1, ``q_strong``) are added when the curve lacks them, so random mixing
    of the two models (the diagonal) scores exactly 0.5.
    """
    if abs(float(q_strong) - float(q_weak)) <= _EPS:
        return float("nan")
    s, q = _share_envelope(strong_share, quality, q_weak, q_strong)
    return float(np.trapezoid(pgr(q, q_weak, q_strong), s))


def cpt(strong_share, quality, q_weak: float, q_strong: float, x: float) -> float:
    """Call-performance threshold: the smallest strong-call share whose PGR reaches ``x``.

    Read off the same curve as :func:`apgr` (running maximum, endpoints added, linear between
    measured points as RouteLLM interpolates); NaN when PGR never reaches ``x`` (only possible
    for ``x`` above the best PGR, i.e. above 1 unless the router beats the strong model).
    """
    if abs(float(q_strong) - float(q_weak)) <= _EPS:
        return float("nan")
    s, q = _share_envelope(strong_share, quality, q_weak, q_strong)
    return _first_reaching(s, pgr(q, q_weak, q_strong), x, never=float("nan"))


# ------------------------------------------------------------- point reading
def quality_at_cost(costs, qualities, budget: float) -> float:
    """Best quality reachable (on the hull, i.e. allowing random mixing) at mean cost <= ``budget``.

    NaN when the budget is below the cheapest point.
    """
    hc, hq = upper_hull(costs, qualities)
    if hc.size == 0:
        return float("nan")
    return float(interpolate_hull(hc, hq, budget, below=np.nan))


def cost_at_quality(costs, qualities, target: float) -> float:
    """Lowest mean cost at which the hull reaches quality ``target`` (inf if it never does)."""
    hc, hq = upper_hull(costs, qualities)
    if hc.size == 0:
        return float("nan")
    return _first_reaching(hc, hq, target, never=float("inf"))


def _first_reaching(xs: np.ndarray, ys: np.ndarray, target: float, *, never: float) -> float:
    """The smallest ``x`` at which the non-decreasing piecewise-linear curve (xs, ys) reaches
    ``target``, interpolated linearly between measured points; ``never`` when it does not."""
    hit = np.flatnonzero(ys >= target - _EPS)
    if hit.size == 0:
        return never
    i = int(hit[0])
    if i == 0:
        return float(xs[0])
    frac = (target - ys[i - 1]) / (ys[i] - ys[i - 1])
    return float(xs[i - 1] + frac * (xs[i] - xs[i - 1]))


# ----------------------------------------------------------------- bootstrap
def bootstrap_ci(statistic: Callable[[np.ndarray], float], n: int, *, n_boot: int = 200,
                 seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over ``n`` prompts.

    Each replicate draws ``n`` prompt indices with replacement and calls
    ``statistic(indices)``; the same ``seed`` gives the same index draws, so intervals of
    different routers evaluated on the same prompts are paired. Replicates returning NaN are
    ignored; (NaN, NaN) when there are no prompts or no finite replicate.
    """
    return bootstrap_cis(lambda idx: {"value": statistic(idx)}, n, n_boot=n_boot, seed=seed,
                         alpha=alpha).get("value", (float("nan"), float("nan")))


def bootstrap_cis(statistics: Callable[[np.ndarray], dict[str, float]], n: int, *, n_boot: int = 200,
                  seed: int = 0, alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """:func:`bootstrap_ci` for several statistics computed together on the same draws."""
    if n <= 0 or n_boot <= 0:
        return {}
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {}
    for _ in range(n_boot):
        for key, value in statistics(rng.integers(0, n, size=n)).items():
            values.setdefault(key, []).append(float(value))
    out = {}
    for key, vals in values.items():
        arr = np.asarray(vals)
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            out[key] = (float("nan"), float("nan"))
        else:
            lo, hi = np.quantile(arr, [alpha / 2, 1 - alpha / 2])
            out[key] = (float(lo), float(hi))
    return out

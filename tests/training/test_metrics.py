"""Hand-computed checks of the cost-quality metrics (RouterBench AIQ, RouteLLM PGR/APGR/CPT)."""

import math

import numpy as np
import pytest

from routecast.evaluation import metrics as M


# ------------------------------------------------------------------ hull
def test_hull_removes_dominated_and_below_chord_points():
    # (1, .3) is dominated by (0, .5); (2, .6) lies below the chord (0,.5)-(4,.9) (height .7)
    # (5, .8) comes after the maximum and costs more for less
    c = [0, 1, 2, 4, 5]
    q = [0.5, 0.3, 0.6, 0.9, 0.8]
    hc, hq = M.upper_hull(c, q)
    assert hc.tolist() == [0, 4]
    assert hq.tolist() == [0.5, 0.9]


def test_hull_keeps_concave_vertices_and_best_at_equal_cost():
    hc, hq = M.upper_hull([0, 1, 1, 3, np.nan], [0.2, 0.5, 0.7, 0.8, 1.0])
    assert hc.tolist() == [0, 1, 3]
    assert hq.tolist() == [0.2, 0.7, 0.8]


def test_hull_drops_collinear_and_stops_at_first_maximum():
    hc, hq = M.upper_hull([0, 1, 2, 3], [0.0, 0.5, 1.0, 1.0])
    assert hc.tolist() == [0, 2]
    assert hq.tolist() == [0.0, 1.0]


def test_hull_empty():
    hc, hq = M.upper_hull([np.nan], [0.3])
    assert hc.size == 0 and hq.size == 0


def test_interpolate_hull_flat_after_and_below_value():
    hc, hq = np.array([1.0, 3.0]), np.array([0.4, 0.8])
    assert M.interpolate_hull(hc, hq, 2.0) == pytest.approx(0.6)
    assert M.interpolate_hull(hc, hq, 10.0) == pytest.approx(0.8)
    assert math.isnan(M.interpolate_hull(hc, hq, 0.5))
    assert M.interpolate_hull(hc, hq, 0.5, below=0.0) == 0.0


# ------------------------------------------------------------------- AIQ
def test_aiq_flat_curve_is_its_quality():
    assert M.aiq([0.0, 1.0, 2.0], [0.7, 0.7, 0.7], 0.0, 2.0) == pytest.approx(0.7)


def test_aiq_two_point_curve():
    # line from (0, .2) to (1, .6), flat .6 until 2: area = .4 + .6 = 1.0 over width 2
    assert M.aiq([0.0, 1.0], [0.2, 0.6], 0.0, 2.0) == pytest.approx(0.5)


def test_aiq_zero_below_first_point():
    # a single point at cost 1 with quality .8 over [0, 2]: only [1, 2] counts -> .4
    assert M.aiq([1.0], [0.8], 0.0, 2.0) == pytest.approx(0.4)


def test_aiq_non_monotone_curve_uses_hull():
    # points (0,.5) (1,.9) (2,.4): hull (0,.5)-(1,.9) then flat .9 -> (.7 + .9) / 2 = .8
    assert M.aiq([0, 1, 2], [0.5, 0.9, 0.4], 0.0, 2.0) == pytest.approx(0.8)


def test_aiq_degenerate_range():
    assert M.aiq([1.0, 1.0], [0.3, 0.6], 1.0, 1.0) == pytest.approx(0.6)


def test_zero_router_is_hull_of_models():
    hc, hq = M.zero_router_points([1.0, 2.0, 10.0], [0.5, 0.4, 0.9])
    assert hc.tolist() == [1.0, 10.0]
    # AIQ of the zero router over [1, 10]: trapezoid (.5 + .9) / 2 = .7
    assert M.aiq(hc, hq, 1.0, 10.0) == pytest.approx(0.7)


def test_quality_at_cost_and_cost_at_quality():
    c, q = [0.0, 2.0], [0.4, 0.8]
    assert M.quality_at_cost(c, q, 1.0) == pytest.approx(0.6)
    assert M.quality_at_cost(c, q, 5.0) == pytest.approx(0.8)
    assert math.isnan(M.quality_at_cost([1.0], [0.5], 0.5))
    assert M.cost_at_quality(c, q, 0.7) == pytest.approx(1.5)
    assert M.cost_at_quality(c, q, 0.3) == pytest.approx(0.0)
    assert M.cost_at_quality(c, q, 0.81) == math.inf


# ------------------------------------------------------------- RouteLLM
def test_pgr_router_equal_to_strong_is_one():
    assert M.pgr(0.9, 0.5, 0.9) == pytest.approx(1.0)
    assert M.pgr(0.5, 0.5, 0.9) == pytest.approx(0.0)
    assert M.pgr(0.7, 0.5, 0.9) == pytest.approx(0.5)
    assert math.isnan(M.pgr(0.7, 0.5, 0.5))


def test_apgr_random_mixing_diagonal_is_half():
    shares = np.linspace(0, 1, 11)
    quality = 0.5 + 0.4 * shares
    assert M.apgr(shares, quality, 0.5, 0.9) == pytest.approx(0.5)
    # endpoints added when missing: an empty curve is the diagonal too
    assert M.apgr([], [], 0.5, 0.9) == pytest.approx(0.5)


def test_apgr_two_point_curve():
    # (0, weak) and (.5, strong): PGR 0 -> 1 over [0, .5], then 1: area .25 + .5 = .75
    assert M.apgr([0.0, 0.5], [0.5, 0.9], 0.5, 0.9) == pytest.approx(0.75)


def test_apgr_non_monotone_uses_running_best():
    # quality drops at share .5 (PGR .25) after .75 at share .2: envelope keeps .75 until 1
    # PGR: 0 @0, .75 @.2, .75 @.5, 1 @1 -> .2*.375 + .3*.75 + .5*.875 = .075 + .225 + .4375
    val = M.apgr([0.0, 0.2, 0.5], [0.5, 0.8, 0.6], 0.5, 0.9)
    assert val == pytest.approx(0.7375)


def test_cpt_on_known_curve():
    s, q = [0.0, 0.3, 1.0], [0.5, 0.8, 0.9]  # PGR 0, .75, 1
    assert M.cpt(s, q, 0.5, 0.9, 0.5) == pytest.approx(0.2)
    assert M.cpt(s, q, 0.5, 0.9, 0.8) == pytest.approx(0.44)
    assert M.cpt(s, q, 0.5, 0.9, 0.0) == pytest.approx(0.0)
    assert math.isnan(M.cpt(s, q, 0.5, 0.9, 1.2))


# ----------------------------------------------------------- other helpers
def test_call_shares():
    assert M.call_shares([0, 1, 1, 2], 3).tolist() == [0.25, 0.5, 0.25]
    both = M.call_shares(np.array([[0, 0], [1, 0]]), 2)
    assert both.tolist() == [[1.0, 0.0], [0.5, 0.5]]


def test_bootstrap_ci_of_mean():
    rng = np.random.default_rng(1)
    x = rng.normal(size=400)
    lo, hi = M.bootstrap_ci(lambda idx: x[idx].mean(), x.size, n_boot=300, seed=0)
    se = x.std() / np.sqrt(x.size)
    assert lo < x.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.25)
    # same seed -> same interval; constant statistic -> zero width
    assert M.bootstrap_ci(lambda idx: x[idx].mean(), x.size, n_boot=300, seed=0) == (lo, hi)
    assert M.bootstrap_ci(lambda idx: 1.0, 5) == (1.0, 1.0)
    assert all(math.isnan(v) for v in M.bootstrap_ci(lambda idx: 1.0, 0))


# ------------------------------------------------------------- properties
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_points = st.lists(st.tuples(st.floats(0, 10, allow_nan=False), st.floats(0, 1, allow_nan=False)),
                   min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(_points)
def test_hull_is_nondecreasing_concave_and_covers_every_point(points):
    c = np.array([p[0] for p in points])
    q = np.array([p[1] for p in points])
    hc, hq = M.upper_hull(c, q)
    assert np.all(np.diff(hc) > 0)
    assert np.all(np.diff(hq) >= -1e-12)
    slopes = np.diff(hq) / np.diff(hc)
    assert np.all(np.diff(slopes) <= 1e-6 * (1 + np.abs(slopes[1:])))
    assert hc[0] == c.min() and hq[-1] == q.max()
    # every point at or above the cheapest cost lies on or under the hull
    assert np.all(q <= M.interpolate_hull(hc, hq, c) + 1e-9)
    # vertices are input points
    assert all(any(ci == x and qi == y for ci, qi in zip(c, q)) for x, y in zip(hc, hq))
    value = M.aiq(c, q, c.min(), c.max() + 1.0)
    assert 0.0 <= value <= q.max() + 1e-12

"""The policy kernel: strong/weak pair, operating-point lookup, the pair share curve, and the
AIQ of a policy not depending on what else is compared."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from routecast.errors import RoutingError
from routecast.core.curve import Curve
from routecast.core.operating_points import check_one_knob
from routecast.core.policy import (RoutecastWarning, chosen, pair_share_curve,
                                     strong_weak, sweep)


def test_strong_is_best_quality_and_weak_is_cheapest():
    costs = np.array([1.0, 5.0, 5.0, 5.0])
    quality = np.array([0.3, 0.18, 0.62, 0.5])  # three models tie on the top cost
    pair = strong_weak(costs, quality, models=["a", "b", "c", "d"])
    assert (pair.strong, pair.weak) == (2, 0)
    assert pair.notes == ()


def test_ties_break_to_the_cheaper_strong_model_and_the_better_weak_model():
    """One definition of the strong model (issue 22): the best single model, ties to the cheaper,
    the same as evaluation's "best single model" and the outcome log's ``best_single_model``."""
    from routecast.data.best_model import best_model
    from routecast.data.outcome_log import OutcomeLog

    costs, quality = np.array([1.0, 1.0, 3.0, 2.0]), np.array([0.2, 0.4, 0.7, 0.7])
    pair = strong_weak(costs, quality)
    assert pair.strong == 3  # quality tie 0.7: the cheaper one (the decision rule's tie-break)
    assert pair.weak == 1  # cost tie 1.0: the better one
    assert best_model(quality, costs) == 3
    log = OutcomeLog(prompt_ids=np.arange(2), prompts=np.array(["a", "b"]), models=("w", "x", "y", "z"),
                     scores=np.tile(quality, (2, 1)), costs=np.tile(costs, (2, 1)))
    assert log.best_single_model() == "z"
    assert best_model([0.5, np.nan, 0.5], [2.0, 1.0, np.nan]) == 0  # unknown quality last, unknown cost dearest


def test_named_models_override_and_unknown_names_are_refused():
    pair = strong_weak(np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.9, 0.5]), models=["x", "y", "z"],
                       strong="z", weak="y")
    assert (pair.strong, pair.weak) == (2, 1)
    with pytest.raises(RoutingError, match="strong model 'w' is not one of the models: x, y, z"):
        strong_weak(np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.9, 0.5]), models=["x", "y", "z"], strong="w")


def test_a_cheaper_better_model_is_strong_with_a_note_and_the_other_is_weak():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = strong_weak(np.array([1.8e-4, 4.5e-5]), np.array([0.546, 0.691]), models=["haiku", "gemini"],
                           warn=True)
    assert (pair.strong, pair.weak) == (1, 0)
    assert len(pair.notes) == 1 and "gemini is not the most expensive one: haiku costs more" in pair.notes[0]
    assert [w.category for w in caught] == [RoutecastWarning]


def test_operating_curve_lookups():
    curve = Curve(lams=np.array([0.0, 1.0, 2.0, 3.0]), cost=np.array([4.0, 3.0, 2.0, 1.0]),
                           quality=np.array([0.9, 0.85, 0.7, 0.5]), strong_share=np.array([0.6, 0.45, 0.3, 0.0]),
                           strong=0, measured=True, n_prompts=10)
    assert curve.lam_for(budget=3.5) == 1.0
    assert curve.lam_for(budget=1.0) == 3.0
    assert curve.lam_for(strong_share=0.4) == 2.0  # the largest share not above 0.4
    assert curve.lam_for(target_quality=0.8) == 1.0  # the cheapest point reaching 0.8
    assert curve.lam_for() == 0.0
    with pytest.raises(RoutingError, match="below the cheapest routing cost"):
        curve.lam_for(budget=0.5)
    with pytest.raises(RoutingError, match="unreachable"):
        curve.lam_for(target_quality=0.95)
    again = Curve.from_dict(curve.to_dict())
    assert again.to_dict() == curve.to_dict()


def test_operating_curve_refuses_non_finite_values():
    data = {"lam": [0.0, 1.0], "cost": [1.0, float("nan")], "quality": [0.5, 0.4], "strong_share": [1, 0]}
    with pytest.raises(RoutingError, match="non-finite"):
        Curve.from_dict(data)


def test_check_one_knob_is_strict():
    assert check_one_knob(budget=0.1) == "budget"
    assert check_one_knob() is None
    with pytest.raises(RoutingError, match="at most one"):
        check_one_knob(lam=1.0, budget=0.1)
    with pytest.raises(RoutingError, match="lam must be a finite number >= 0"):
        check_one_knob(lam=True)
    with pytest.raises(RoutingError, match="strong_share must be in"):
        check_one_knob(strong_share=1.5)


def test_sweep_goes_from_best_quality_to_cheapest():
    quality = np.array([[0.2, 0.9], [0.5, 0.6]])
    lams, choices = sweep(quality, np.array([1.0, 2.0]))
    assert lams[0] == 0 and choices[0].tolist() == [1, 1]
    assert choices[-1].tolist() == [0, 0]
    assert chosen(np.array([1.0, 2.0]), choices[0]).tolist() == [2.0, 2.0]


def test_pair_share_curve_sends_the_largest_margins_first():
    quality = np.array([[0.1, 0.9], [0.5, 0.5], [0.2, 0.4], [0.9, 0.1]])  # strong = column 1
    scores = np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    shares, qualities = pair_share_curve(quality, scores, strong=1, weak=0)
    assert shares.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert qualities.tolist() == [0.5, 0.75, 1.0, 1.0, 0.75]

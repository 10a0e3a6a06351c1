"""Verification calls as actions (routecast.cascade.set_actions): sets of models called together,
a look-ahead conditioned on what they said. The pool is built so that only agreement is
informative: A (cost 1) and B (cost 1.5) are right 80 % of the time and say nothing about it,
C (cost 10) 95 %; two wrong answers almost never agree."""

from __future__ import annotations

import numpy as np
import pytest

from routecast.cascade.cascade_router import CascadeRouter
from routecast.cascade.called_sets import masks
from routecast.cascade.planner import Planner
from routecast.cascade.set_actions import call_sets, conditional_values
from tests.cascade.test_cascade_router import ENC, logged_caller, parts, synthetic


def test_call_sets_are_the_uncalled_sets_within_max_calls():
    assert call_sets(0, 3, 3, sets=False) == [1, 2, 4]
    assert call_sets(0, 3, 2, sets=True) == [1, 2, 4, 3, 5, 6]
    assert call_sets(0b001, 3, 3, sets=True) == [2, 4, 6]
    assert call_sets(0b011, 3, 2, sets=True) == []
    assert call_sets(0b011, 3, 3, sets=False) == [4]


def test_a_cheap_call_is_valued_as_a_check_from_the_state_each_draw_reaches():
    """A has answered (posterior 0.6). Two sampled prompts: on one B agrees with A (both to 0.95),
    on the other it disagrees (both to 0.2) and only then is C (0.9 -> 1.0 with its answer) worth
    its cost. Calling B is worth (0.95 + (1.95 / 2 - 10 lam)) / 2 before paying for it: stop on the
    agreement, call C on the disagreement."""
    from types import SimpleNamespace

    sets = masks(3, 3, with_empty=True)  # [{}, A, B, C, AB, AC, BC, ABC]
    flat = [0.6, 0.6, 0.9]
    samples = np.array([[flat] * 4 + [[0.95, 0.95, 0.9], flat, flat, [0.95, 0.95, 0.9]],
                        [flat] * 4 + [[0.2, 0.2, 0.9], flat, flat, [0.2, 0.2, 1.0]]])
    owner = SimpleNamespace(pool_=("A", "B", "C"), max_calls_=3, costs_=np.array([1.0, 1.0, 10.0]), kappa_=1.0,
                            mask_index_={m: i for i, m in enumerate(sets)}, samples_=samples,
                            lookahead_="conditional")
    planner = Planner(owner, np.zeros(3), None)
    planner.posteriors[1] = np.array(flat)
    values = conditional_values(planner, 1, np.array(flat), [2, 4, 6], np.array([0.01]))
    # B: agree -> stop at 0.95; disagree -> C: (0.9 + 1.0) / 2 - 0.1. C: then B (0.95 + 1.0) / 2 - 0.01.
    # {B, C} at once: (0.95 + 1.0) / 2, nothing left to call.
    np.testing.assert_allclose(values[0], [(0.95 + 0.85) / 2, 0.965, 0.975])
    actions, choice = planner.table(1, np.array([0.01, 0.2]))
    assert list(actions) == [0, 2, 4]  # stop, B, C: one model per call in this mode
    assert [int(actions[c]) for c in choice] == [2, 0]  # check with B at lam 0.01; stop at 0.2
    owner.lookahead_ = "sets"
    planner.tables.clear()
    actions, choice = planner.table(1, np.array([0.01]))
    assert list(actions) == [0, 2, 4, 6] and int(actions[choice[0]]) == 2  # {B, C}: 0.975 - 0.11 < 0.89


@pytest.fixture(scope="module")
def checks():
    train, val, test = parts(synthetic(480, hedge=False, seed=3, cheap=0.8))
    router = CascadeRouter(router="linear", encoder=ENC, scorer_encoder=ENC, kappas=(1.0,), n_lams=25,
                           lookaheads=("normal", "sets")).fit(train, val)
    return router, test


def _agree(test):
    return np.array([ra.split()[-1] == rb.split()[-1] for ra, rb in test.responses[:, :2]])


def test_two_cheap_checks_are_one_action_and_the_strong_model_is_called_only_on_disagreement(checks):
    router, test = checks
    router.lookahead_ = "sets"  # whatever validation chose, exercise the set actions here
    a, b, c = (router.pool_.index(m) for m in "ABC")
    pair = 1 << a | 1 << b
    agree = _agree(test)
    planners = router.planners(test)
    found = []
    every_called = router.simulate(test, router.lams_)["called"]  # (k, n): one walk for every lam
    for lam, called in zip(router.lams_, every_called):
        first = np.array([p.next_call(0, np.array([lam]), 0) for p in planners])
        strong = (called >> c) & 1 == 1
        if (first == pair).all() and strong[~agree].mean() >= 0.9 and strong[agree].mean() <= 0.1:
            found.append(float(lam))
    assert found, "no lam calls {A, B} together first and C exactly when they disagree"
    lam = found[len(found) // 2]
    mean_cost = router.simulate(test, [lam])["cost"].mean()
    assert mean_cost < 0.75 * 10.0  # cheaper than the strong model alone
    # validation tried both look-aheads (kappa 1 each)
    assert set(router.val_aiq_) == {1.0, "sets:1.0"}


def test_live_names_the_set_and_walks_what_offline_walks(checks):
    router, test = checks
    router.lookahead_ = "sets"
    lam = None
    planners = router.planners(test)
    pair = 1 << router.pool_.index("A") | 1 << router.pool_.index("B")
    for x in router.lams_:
        if all(p.next_call(0, np.array([x]), 0) == pair for p in planners):
            lam = float(x)
            break
    assert lam is not None
    sim = router.simulate(test, [lam])
    for i in range(12):
        state = router.start(test.prompts[i], lam=lam)
        assert router.next_models(state) == ["A", "B"]
        assert not router.is_last_call(state, "A")  # B is still pending with it
        calls: list[str] = []
        out = router.run(test.prompts[i], logged_caller(test, i, calls), lam=lam)
        assert calls[:2] == ["A", "B"]
        assert sum(1 << router.pool_.index(m) for m in calls) == sim["called"][0, i]
        assert router.pool_.index(out.model) == sim["chosen"][0, i]


def test_the_set_plan_survives_a_checkpoint(checks, tmp_path):
    router, test = checks
    router.lookahead_ = "sets"
    loaded = CascadeRouter.load(router.save(tmp_path / "sets"))
    assert loaded.lookahead_ == "sets"
    np.testing.assert_array_equal(loaded.samples_, router.samples_)
    np.testing.assert_array_equal(loaded.simulate(test, router.lams_)["called"],
                                  router.simulate(test, router.lams_)["called"])

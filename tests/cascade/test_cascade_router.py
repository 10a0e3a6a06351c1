"""Cascade routing (routecast.cascade.cascade_router) on small synthetic logs whose answer
evidence is known by construction, plus one real RouterArena subset for the online/offline and
checkpoint checks. Hashing encoder throughout (no weights, deterministic)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from routecast.cascade.cascade_router import CascadeRouter
from routecast.data.outcome_log import OutcomeLog
from routecast.errors import CheckpointError
from routecast.core.policy import RoutecastWarning

ENC = "hashing:dim=64"
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho".split()


def synthetic(n: int, *, hedge: bool, seed: int = 0, responses: bool = True, cheap: float = 0.5) -> OutcomeLog:
    """Three models A (cost 1), B (cost 1.5), C (cost 10) on maths-like prompts.

    A and B are right a share ``cheap`` of the time, C 95 %; a wrong answer is a random number. With
    ``hedge`` a wrong A answer says so ("not sure"), so A's answer alone tells whether it is right;
    without it only agreement between answers does.
    """
    rng = np.random.default_rng(seed)
    prompts, resp, scores = [], [], []
    for i in range(n):
        truth = int(rng.integers(100, 999))
        prompts.append(f"question {i}: " + " ".join(rng.choice(WORDS, 6)) + f" {truth}?")
        row_r, row_s = [], []
        for name, p in (("A", cheap), ("B", cheap), ("C", 0.95)):
            right = rng.random() < p
            answer = truth if right else int(rng.integers(1000, 9999))
            text = f"The answer is {answer}."
            if hedge and name == "A" and not right:
                text = f"I am not sure, it might perhaps be {answer}."
            row_r.append(text)
            row_s.append(float(right))
        resp.append(row_r)
        scores.append(row_s)
    costs = np.tile([1.0, 1.5, 10.0], (n, 1))
    return OutcomeLog(np.array([f"p{i}" for i in range(n)], dtype=object), np.array(prompts, dtype=object),
                      ("A", "B", "C"), np.array(scores), costs,
                      np.array(resp, dtype=object) if responses else None, source="<synthetic>")


def parts(log: OutcomeLog):
    n = log.n_prompts
    return log.subset(np.arange(0, n // 2)), log.subset(np.arange(n // 2, 3 * n // 4)), log.subset(np.arange(3 * n // 4, n))


@pytest.fixture(scope="module")
def hedged():
    train, val, test = parts(synthetic(480, hedge=True, seed=1))
    return CascadeRouter(router="linear", encoder=ENC, scorer_encoder=ENC, kappas=(0.0, 1.0),
                         n_lams=25).fit(train, val), test


@pytest.fixture(scope="module")
def plain():
    train, val, test = parts(synthetic(480, hedge=False, seed=2))
    return CascadeRouter(router="linear", encoder=ENC, scorer_encoder=ENC, kappas=(1.0,),
                         n_lams=25).fit(train, val), test


def logged_caller(log: OutcomeLog, i: int, calls: list):
    def call(model: str, prompt: str) -> str:
        assert prompt == log.prompts[i]
        calls.append(model)
        return log.responses[i, log.model_index(model)]
    return call


def test_stops_when_the_first_answer_is_confident_and_escalates_when_it_hedges(hedged):
    router, test = hedged
    sim = router.simulate(test, router.lams_)
    a = router.pool_.index("A")
    hedges = np.array(["not sure" in r for r in test.responses[:, 0]])
    # at some lam the policy calls A first, stops on a confident answer and escalates on a hedge

    def good(called):
        alone = called == (1 << a)
        return ((called >> a) & 1 == 1).all() and alone[~hedges].mean() >= 0.9 and alone[hedges].mean() <= 0.1

    found = any(good(called) for called in sim["called"])
    assert found, "no operating point stops on confident answers and escalates on hedged ones"


def test_escalates_when_the_first_two_answers_disagree(plain):
    router, test = plain
    sim = router.simulate(test, router.lams_)
    a, b, c = (router.pool_.index(m) for m in "ABC")
    same = np.array([ra.split()[-1] == rb.split()[-1] for ra, rb in test.responses[:, :2]])

    def good(called):
        both = ((called >> a) & 1 == 1) & ((called >> b) & 1 == 1)
        strong = (called >> c) & 1 == 1
        return both.mean() >= 0.9 and strong[both & ~same].mean() >= 0.9 and strong[both & same].mean() <= 0.1

    found = any(good(called) for called in sim["called"])
    assert found, "no operating point asks A and B and calls C exactly when they disagree"


def test_higher_lambda_means_lower_mean_cost_and_no_model_twice(hedged):
    router, test = hedged
    sim = router.simulate(test, router.lams_)
    mean_cost = sim["cost"].mean(axis=1)
    # the look-ahead policy is not monotone in lam on every single prompt; on the refined grid a
    # prompt may flip back between neighbouring lams (a higher lam starts with the cheap A, sees a
    # hedge and still calls B and C: one call of A more), so allow two such prompts per step
    slack = 2.5 / test.n_prompts
    assert np.all(np.diff(mean_cost) <= slack), mean_cost
    assert mean_cost[0] > mean_cost[-1]
    assert mean_cost[-1] == pytest.approx(1.0)  # lam large: only the cheapest model
    # the validation curve stored for calibration is monotone too
    assert np.all(np.diff(router.curve_.cost) <= 2.5 / 120)
    for lam in router.lams_[::4]:
        for i in range(0, test.n_prompts, 7):
            calls: list = []
            out = router.run(test.prompts[i], logged_caller(test, i, calls), lam=float(lam))
            assert len(calls) == len(set(calls)) == len(out.models_called)
            assert out.model in out.models_called


@pytest.mark.parametrize("fixture", ["hedged", "plain"])
def test_online_run_with_a_fake_caller_equals_the_offline_simulation(fixture, request):
    router, test = request.getfixturevalue(fixture)
    for lam in (router.lam_, float(router.lams_[len(router.lams_) // 2])):
        sim = router.simulate(test, [lam])
        for i in range(0, test.n_prompts, 3):
            calls: list = []
            out = router.run(test.prompts[i], logged_caller(test, i, calls), lam=lam)
            mask = sum(1 << router.pool_.index(m) for m in out.models_called)
            assert mask == sim["called"][0, i]
            assert router.pool_.index(out.model) == sim["chosen"][0, i]
            assert out.answer == test.responses[i, test.model_index(out.model)]


def test_budget_calibration_holds_on_validation(hedged):
    router, _ = hedged
    budget = float(np.median(router.curve_.cost))
    lam = router.lam_for(budget=budget)
    point = int(np.flatnonzero(router.curve_.lams == lam)[0])
    assert router.curve_.cost[point] <= budget + 1e-12


def test_checkpoint_round_trip(hedged, tmp_path):
    router, test = hedged
    path = router.save(tmp_path / "cr")
    assert {p.name for p in path.iterdir()} >= {"config.json", "weights.safetensors", "manifest.json", "router"}
    assert not list(path.rglob("*.pkl"))
    loaded = CascadeRouter.load(path)
    a, b = router.simulate(test, router.lams_), loaded.simulate(test, router.lams_)
    for key in ("called", "chosen", "cost", "quality"):
        np.testing.assert_array_equal(a[key], b[key])
    calls: list = []
    out = loaded.run(test.prompts[0], logged_caller(test, 0, calls))
    assert out.models_called == router.run(test.prompts[0], logged_caller(test, 0, [])).models_called
    (path / "weights.safetensors").write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match="sha256"):
        CascadeRouter.load(path)


def test_a_log_without_responses_warns_and_routes_ex_ante_only():
    train, val, test = parts(synthetic(240, hedge=True, seed=3, responses=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        router = CascadeRouter(router="linear", encoder=ENC, scorer_encoder=ENC, kappas=(0.0,),
                               n_lams=9).fit(train, val)
    messages = [str(w.message) for w in caught if issubclass(w.category, RoutecastWarning)]
    assert any("no responses logged" in m and "response column" in m for m in messages), messages
    assert router.scorer_ is None and router.notes_
    sim = router.simulate(test, router.lams_)
    assert sim["quality"].shape == (len(router.lams_), test.n_prompts)  # every prompt kept
    assert not np.isnan(sim["quality"]).any()


def test_partial_responses_are_kept_and_named():
    log = synthetic(240, hedge=True, seed=4)
    responses = log.responses.copy()
    responses[::5, 1] = None
    log = OutcomeLog(log.prompt_ids, log.prompts, log.models, log.scores, log.costs, responses, source="<partial>")
    train, val, test = parts(log)
    with pytest.warns(RoutecastWarning, match=r"model 'B' has no response on 24 of 120 prompts"):
        router = CascadeRouter(router="linear", encoder=ENC, scorer_encoder=ENC, kappas=(0.0,),
                               n_lams=9).fit(train, val)
    assert router.simulate(test, router.lams_)["cost"].shape == (len(router.lams_), test.n_prompts)


def test_the_validation_grid_is_refined_where_the_curve_jumps(hedged):
    router, _ = hedged
    cost = router.curve_.cost
    assert router.n_lams < len(router.lams_) <= router.max_lams
    assert np.all(np.diff(router.lams_) > 0)
    if len(router.lams_) < router.max_lams:  # refinement stopped on its own: no jump left but ties
        lams = router.lams_
        big = np.abs(np.diff(cost)) > router.refine_step * np.ptp(cost)
        assert np.all(lams[1:][big] <= lams[:-1][big] * 1.001 ** 2 + 1e-12)
    # a budget between the two ends gets a point within 5 % of the cost range below it
    budget = float(cost.min() + 0.4 * np.ptp(cost))
    point = int(np.flatnonzero(router.curve_.lams == router.lam_for(budget=budget))[0])
    assert budget - 0.05 * np.ptp(cost) <= cost[point] <= budget


def test_pair_features_tell_agreement_from_disagreement_and_missing_answers():
    from routecast.cascade.posterior import compute_facts, feature_names, state_features

    responses = np.array([["The answer is 12.", "The answer is 12.", "The answer is 13.", None]], dtype=object)
    facts = compute_facts(["q"], responses, ["a", "b", "c", "d"])
    names = feature_names(4)
    col = {n: i for i, n in enumerate(names)}
    x = state_features(np.zeros(4), facts, np.array([True, True, True, True]))
    assert x.shape == (4, len(names))
    assert x[0, col["pair_agree[1]"]] == 1 and x[0, col["pair_disagree[1]"]] == 0
    assert x[0, col["pair_disagree[2]"]] == 1 and x[0, col["pair_agree[2]"]] == 0
    assert x[0, col["pair_one_missing[3]"]] == 1  # d gave no answer
    assert x[0, col["pair_agree[0]"]] == 0  # never with itself
    # evidence enters only once both models are called
    y = state_features(np.zeros(4), facts, np.array([True, False, True, False]))
    assert y[0, col["pair_agree[1]"]] == 0 and y[1, col["pair_agree[0]"]] == 0
    assert y[0, col["pair_disagree[2]"]] == 1 and y[3, col["pair_one_missing[0]"]] == 0

"""Cascade behaviour on real RouterArena outcomes (logged USD costs, responses) and on small logs
whose right answers can be computed by hand."""

import numpy as np
import pytest

from routecast.cascade.cascade import Cascade, search_chains
from routecast.cascade.deferral import AgreementDeferral, ExAnteDeferral
from routecast.cascade.thresholds import simulate_stages
from routecast.data.outcome_log import OutcomeLog
from routecast.errors import ConfigError, DataError, NotFittedError, RoutingError
from routecast.router.base import Router

HASH = "hashing:dim=256"


class TableRouter(Router):
    """Predicts a fixed quality row per prompt text (an in-test stand-in for a learned router)."""

    uses_embeddings = False

    def __init__(self, table=None):
        self.table = table

    def _fit(self, log, X):
        self.fitted_ = True

    def _predict_quality(self, X, texts):
        return np.array([self.table[t] for t in texts], dtype=float)


def _cheap_first(log):
    order = np.argsort(log.mean_costs())
    return [log.models[j] for j in order]


@pytest.fixture(scope="module")
def fitted(routerarena_splits):
    train, val, test = routerarena_splits
    chain = _cheap_first(train)
    return Cascade(chain=chain, deferral="ex-ante", router="knn", encoder=HASH).fit(train, val), test


def test_always_stop_equals_cheapest_model(fitted):
    cascade, test = fitted
    cascade.set_thresholds([-np.inf])
    cost, quality, stop = cascade.simulate(test)
    j = test.model_index(cascade.chain_[0])
    assert (stop == 0).all()
    np.testing.assert_array_equal(cost, test.costs[:, j])
    np.testing.assert_array_equal(quality, test.scores[:, j])


def test_never_stop_equals_last_model_with_summed_cost(fitted):
    cascade, test = fitted
    cascade.set_thresholds([np.inf])
    cost, quality, stop = cascade.simulate(test)
    first, last = (test.model_index(m) for m in cascade.chain_)
    assert (stop == 1).all()
    np.testing.assert_allclose(cost, test.costs[:, first] + test.costs[:, last], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(quality, test.scores[:, last])


def test_budget_search_is_optimal_and_feasible_on_val(routerarena_splits, fitted):
    cascade, _ = fitted
    _, val, _ = routerarena_splits
    sub = val.select_models(cascade.chain_)
    lo, hi = sub.costs[:, 0].mean(), sub.costs.sum(axis=1).mean()
    scores = cascade.stage_scores(val)
    every = np.concatenate([np.unique(scores[:, 0]), [np.inf, -np.inf]])[:, None]
    all_cost, all_quality, _ = simulate_stages(scores, sub.costs, sub.scores, every)
    for budget in np.linspace(lo, hi, 7):
        choice = cascade.thresholds_for_budget(budget)
        cost, quality, _ = simulate_stages(scores, sub.costs, sub.scores, choice.thresholds[None])
        assert cost.mean() <= budget * (1 + 1e-12)
        assert quality.mean() == pytest.approx(choice.quality)
        # exact search: no threshold at any distinct validation score does better within budget
        feasible = all_cost.mean(axis=1) <= budget * (1 + 1e-12)
        assert all_quality[feasible].mean(axis=1).max() <= choice.quality + 1e-12
    # and simulate() agrees with the vectorised replay
    cost, quality, _ = cascade.simulate(val, choice.thresholds)
    assert cost.mean() == pytest.approx(choice.cost) and quality.mean() == pytest.approx(choice.quality)


def test_budget_is_hit_within_one_prompts_cost_when_escalation_always_helps():
    """The strong model always scores 1 and the cheap one < 1, so every escalation gains quality:
    the best point within a budget must spend it up to less than one more escalation."""
    rng = np.random.default_rng(3)
    n = 200
    prompts = [f"q{i}" for i in range(n)]
    scores = np.stack([rng.uniform(0, 0.9, n), np.ones(n)], axis=1)
    costs = np.stack([rng.uniform(1, 2, n), rng.uniform(5, 15, n)], axis=1)
    log = OutcomeLog(prompts, prompts, ("cheap", "strong"), scores, costs)
    predicted = {p: [s + rng.normal(0, 0.2), 0.95] for p, s in zip(prompts, scores[:, 0])}
    train, val = log.subset(np.arange(100)), log.subset(np.arange(100, 200))
    cascade = Cascade(chain=["cheap", "strong"], deferral=ExAnteDeferral(TableRouter(predicted))).fit(train, val)
    escalation = val.costs[:, 1]
    for budget in [1.6, 3.0, 5.5, 9.0]:
        choice = cascade.thresholds_for_budget(budget)
        cost, _, _ = cascade.simulate(val, choice.thresholds)
        assert cost.mean() <= budget + 1e-12
        assert budget - cost.mean() < escalation.max() / val.n_prompts


def test_quality_target_and_match_model(fitted, routerarena_splits):
    cascade, _ = fitted
    _, val, _ = routerarena_splits
    sub = val.select_models(cascade.chain_)
    for name in cascade.chain_:
        choice = cascade.match_model(name)
        target = sub.scores[:, sub.model_index(name)].mean()
        assert choice.quality >= target - 1e-12
        # minimal: nothing cheaper reaches the target
        cheaper = cascade.search_.cand_cost < choice.cost - 1e-15
        assert (cascade.search_.cand_quality[cheaper] < target - 1e-12).all()
    with pytest.raises(RoutingError, match="unreachable"):
        cascade.thresholds_for_quality(1.01)


def test_ex_ante_score_is_gap_to_best_later_model():
    prompts = ["a", "b", "c"]
    table = {"a": [0.9, 0.2, 0.5], "b": [0.1, 0.8, 0.3], "c": [0.5, 0.5, 0.9]}
    log = OutcomeLog(prompts, prompts, ("m1", "m2", "m3"), np.ones((3, 3)), np.ones((3, 3)) * [1, 2, 3])
    deferral = ExAnteDeferral(TableRouter(table)).fit(log)
    scores = deferral.stage_scores(deferral.signals(log), [0, 1, 2])
    np.testing.assert_allclose(scores, [[0.9 - 0.5, 0.2 - 0.5], [0.1 - 0.8, 0.8 - 0.3], [0.5 - 0.9, 0.5 - 0.9]])


def test_three_stage_grid_and_online_run_agree_with_simulation():
    """A 3-model chain with agreement deferral: the live run calls exactly the models the offline
    replay says, and returns that stage's answer."""
    prompts = [f"p{i}" for i in range(6)]
    responses = np.array([
        ["#### 1", "#### 1", "#### 9"],
        ["#### 2", "#### 3", "#### 3"],
        ["#### 4", "#### 5", "#### 6"],
        ["Answer: A", "The answer is (A)", "B"],
        ["Answer: A", "Answer: B", "Answer: B"],
        ["7", "7", "7"],
    ], dtype=object)
    scores = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 1, 1]], dtype=float)
    costs = np.tile([1.0, 2.0, 4.0], (6, 1))
    log = OutcomeLog(prompts, prompts, ("m1", "m2", "m3"), scores, costs, responses)
    cascade = Cascade(chain=["m1", "m2", "m3"], deferral=AgreementDeferral()).fit(log, log)
    cost, quality, stop = cascade.simulate(log)
    # stage 1 never stops (nothing to agree with); stop at stage 2 when m1 and m2 agree
    assert stop.tolist() == [1, 2, 2, 1, 2, 1]
    assert cost.tolist() == [3, 7, 7, 3, 7, 3]
    assert quality.tolist() == [1, 1, 1, 1, 1, 1]
    table = {p: dict(zip(log.models, row)) for p, row in zip(prompts, responses)}
    for i, p in enumerate(prompts):
        out = cascade.run(p, lambda model, prompt: table[prompt][model])
        assert out.models_called == list(log.models[: stop[i] + 1])
        assert out.answer == responses[i, stop[i]]


def test_curve_spans_cheapest_to_last(fitted):
    cascade, test = fitted
    curve = cascade.curve(test)
    assert curve.costs.shape == curve.quality.shape == (len(curve.labels), test.n_prompts)
    mean_cost, _ = curve.mean_points()
    j0 = test.model_index(cascade.chain_[0])
    assert mean_cost.min() >= test.costs[:, j0].mean() - 1e-15
    evaluation_curve = curve.to_curve("cascade", test)
    assert evaluation_curve.cost == pytest.approx(mean_cost)
    assert evaluation_curve.strong_share.shape == (len(curve.labels),)


def test_chain_search_prefers_a_useful_chain(routerarena_splits):
    train, val, _ = routerarena_splits
    result = search_chains(train, val, max_len=2, deferral="ex-ante", router="knn", encoder=HASH)
    assert len(result.table) == 1
    assert list(result.best.chain_) == _cheap_first(train)
    assert result.table[0]["aiq"] == pytest.approx(max(r["aiq"] for r in result.table))


# ----------------------------------------------------------------- bad input
def test_chain_with_unknown_model(routerarena_splits):
    train, val, _ = routerarena_splits
    with pytest.raises(ConfigError, match="gpt-9"):
        Cascade(chain=["gpt-9", train.models[0]]).fit(train, val)


def test_budget_below_first_stage_cost(fitted):
    cascade, _ = fitted
    with pytest.raises(RoutingError, match="below the cascade's cheapest"):
        cascade.thresholds_for_budget(cascade.search_.cand_cost.min() / 2)


def test_ex_post_needs_responses(routerarena_splits):
    train, val, _ = routerarena_splits
    responses = train.responses.copy()
    responses[5, 1] = None
    broken = OutcomeLog(train.prompt_ids, train.prompts, train.models, train.scores, train.costs, responses,
                        source="broken.parquet")
    with pytest.raises(DataError, match=repr(train.models[1])) as info:
        Cascade(chain=list(train.models), deferral="ex-post", encoder=HASH).fit(broken, val)
    assert info.value.row == 6 and info.value.column == "response"
    no_text = OutcomeLog(train.prompt_ids, train.prompts, train.models, train.scores, train.costs)
    with pytest.raises(DataError, match="no 'response' column"):
        Cascade(chain=list(train.models), deferral="ex-post", encoder=HASH).fit(no_text, val)


def test_missing_costs_and_unfitted(routerarena_splits):
    train, val, _ = routerarena_splits
    costs = train.costs.copy()
    costs[:, 0] = np.nan
    with pytest.raises(RoutingError, match=repr(train.models[0])):
        Cascade(chain=list(train.models)).fit(train.with_costs(costs), val)
    with pytest.raises(NotFittedError):
        Cascade().simulate(val)
    with pytest.raises(ConfigError, match="deferral"):
        Cascade(chain=list(train.models), deferral="telepathy").fit(train, val)


def test_online_run_matches_offline_replay_ex_ante(fitted):
    cascade, test = fitted
    choice = cascade.search_.frontier()[len(cascade.search_.frontier()) // 2]
    cascade.set_thresholds(choice.thresholds)
    sub = test.subset(np.arange(25))
    _, _, stop = cascade.simulate(sub)
    calls = []

    def call_model(model, prompt):
        calls.append(model)
        i = list(sub.prompts).index(prompt)
        return sub.responses[i, sub.model_index(model)]

    for i, prompt in enumerate(sub.prompts):
        calls.clear()
        out = cascade.run(prompt, call_model)
        assert calls == list(cascade.chain_[: stop[i] + 1])
        assert out.model == cascade.chain_[stop[i]]
        assert out.answer == sub.responses[i, sub.model_index(out.model)]


def test_four_stage_chain_uses_bounded_coordinate_search():
    rng = np.random.default_rng(0)
    n, m = 120, 4
    prompts = [f"p{i}" for i in range(n)]
    skill = np.array([0.3, 0.5, 0.7, 0.9])
    scores = (rng.uniform(size=(n, m)) < skill).astype(float)
    costs = np.tile([1.0, 2.0, 4.0, 8.0], (n, 1))
    log = OutcomeLog(prompts, prompts, ("a", "b", "c", "d"), scores, costs)
    table = {p: list(s * 0.6 + 0.2 + rng.normal(0, 0.1, m)) for p, s in zip(prompts, scores)}
    cascade = Cascade(chain=["a", "b", "c", "d"], deferral=ExAnteDeferral(TableRouter(table)), n_quantiles=10,
                      max_grid=100).fit(log.subset(np.arange(60)), log.subset(np.arange(60, 120)))
    search = cascade.search_
    assert len(search.candidates) < 12 ** 3  # not the full grid
    assert search.cand_cost.min() == pytest.approx(1.0)  # always stop at stage 1 is a candidate
    assert search.cand_cost.max() == pytest.approx(15.0)  # never stop: every model paid
    choice = cascade.thresholds_for_budget(4.0)
    assert choice.cost <= 4.0
    cost, quality, _ = cascade.simulate(log.subset(np.arange(60, 120)), choice.thresholds)
    assert cost.mean() == pytest.approx(choice.cost) and quality.mean() == pytest.approx(choice.quality)


def test_agreement_with_first_stage_scorer():
    prompts = ["x", "y"]
    responses = np.array([["#### 1", "#### 1", "#### 2"], ["#### 3", "#### 4", "#### 4"]], dtype=object)
    log = OutcomeLog(prompts, prompts, ("m1", "m2", "m3"), np.ones((2, 3)), np.tile([1.0, 2.0, 3.0], (2, 1)),
                     responses)
    table = {"x": [0.9, 0.1, 0.2], "y": [0.1, 0.5, 0.9]}
    deferral = AgreementDeferral(first_stage=ExAnteDeferral(TableRouter(table))).fit(log)
    scores = deferral.stage_scores(deferral.signals(log), [0, 1, 2])
    np.testing.assert_allclose(scores, [[0.9 - 0.2, 1.0], [0.1 - 0.9, 0.0]])
    online = deferral.online_score("x", ("m1", "m2", "m3"), ["#### 1"], {})
    assert online == pytest.approx(0.7)


def test_search_chains_enumerates_cost_ordered_chains_and_honours_budget():
    rng = np.random.default_rng(1)
    n = 160
    prompts = [f"s{i}" for i in range(n)]
    # "useless" is mid-priced and bad: the best chain must start cheap and end strong
    scores = np.stack([rng.uniform(size=n) < 0.5, rng.uniform(size=n) < 0.1, rng.uniform(size=n) < 0.9],
                      axis=1).astype(float)
    costs = np.tile([1.0, 3.0, 10.0], (n, 1))
    log = OutcomeLog(prompts, prompts, ("cheap", "useless", "strong"), scores, costs)
    table = {p: list(np.clip(s + rng.normal(0, 0.3, 3), 0, 1)) for p, s in zip(prompts, scores)}
    deferral = ExAnteDeferral(TableRouter(table))
    train, val = log.subset(np.arange(80)), log.subset(np.arange(80, 160))
    found = search_chains(train, val, max_len=3, deferral=deferral)
    assert sorted(tuple(r["chain"]) for r in found.table) == sorted([
        ("cheap", "useless"), ("cheap", "strong"), ("useless", "strong"), ("cheap", "useless", "strong")])
    best = list(found.best.chain_)
    assert best[0] == "cheap" and best[-1] == "strong"
    assert found.table[0]["chain"] == best and found.table[0]["aiq"] == max(r["aiq"] for r in found.table)
    by_budget = search_chains(train, val, max_len=3, deferral=deferral, budget=6.0)
    cost, quality = by_budget.best.simulate(val)[:2]
    assert cost.mean() <= 6.0
    ranked = [row["quality_at_budget"] for row in by_budget.table]
    assert ranked == sorted(ranked, reverse=True) and by_budget.table[0]["chain"] == list(by_budget.best.chain_)
    assert ranked[0] == pytest.approx(quality.mean())  # the table's figure is the chosen cascade's val quality
    with pytest.raises(RoutingError, match="no chain"):
        search_chains(train, val, max_len=2, deferral=deferral, budget=0.5)

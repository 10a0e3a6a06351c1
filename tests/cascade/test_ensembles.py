"""Post-hoc ensembles and the ex-post answer scorer on a hand-made log with response texts."""

import numpy as np
import pytest

from routecast.cascade.answer_scorer import AnswerScorer
from routecast.cascade.cascade import Cascade
from routecast.cascade.ensembles import best_of_n, majority_vote, oracle_ensemble
from routecast.data.outcome_log import OutcomeLog
from routecast.errors import DataError, RoutingError

MODELS = ("small", "medium", "large")


@pytest.fixture()
def hand_log():
    prompts = ["q1", "q2", "q3", "q4", "q5"]
    responses = np.array([
        ["The answer is (B)", "Answer: B", "Answer: C"],   # vote B (2 of 3) -> small's score
        ["#### 10", "so 12", "#### 12"],                     # vote 12 -> medium (earliest with 12)
        ["A", "B", "C"],                                     # three-way tie -> earliest model: small
        ["I don't know", "Answer: D", "the answer is (d)"],  # small has normalised text; D wins 2-1
        ["", "", "#### 3"],                                  # only large has an answer
    ], dtype=object)
    scores = np.array([
        [0.9, 0.8, 0.0],
        [0.0, 0.7, 1.0],
        [0.2, 0.5, 1.0],
        [0.0, 1.0, 0.6],
        [0.0, 0.0, 1.0],
    ])
    costs = np.tile([1.0, 2.0, 10.0], (5, 1))
    return OutcomeLog(prompts, prompts, MODELS, scores, costs, responses, source="hand.parquet")


def test_majority_vote_hand_computed(hand_log):
    result = majority_vote(hand_log)
    assert result.choice.tolist() == [0, 1, 0, 1, 2]
    assert result.quality.tolist() == [0.9, 0.7, 0.2, 1.0, 1.0]
    assert result.cost.tolist() == [13.0] * 5
    assert result.point() == pytest.approx((13.0, 3.8 / 5))


def test_majority_vote_tie_follows_model_order(hand_log):
    result = majority_vote(hand_log, models=["large", "medium", "small"])
    # q3 tie -> large (first listed); q2 vote 12 -> large gave 12 first
    assert result.choice.tolist()[:3] == [1, 0, 0]
    assert result.quality.tolist() == [0.8, 1.0, 1.0, 0.6, 1.0]  # q4: large gave D first


def test_best_of_n_with_callable_scorer(hand_log):
    # a scorer that likes long responses: picks the longest text, ties -> earliest model
    result = best_of_n(hand_log, lambda prompts, responses, model: [len(r) for r in responses])
    assert result.choice.tolist() == [0, 0, 0, 2, 2]
    assert result.quality.tolist() == [0.9, 0.0, 0.2, 0.6, 1.0]
    assert result.cost.sum() == 65.0


def test_oracle_ensemble(hand_log):
    result = oracle_ensemble(hand_log)
    assert result.quality.tolist() == [0.9, 1.0, 1.0, 1.0, 1.0]
    assert result.choice.tolist() == [0, 2, 2, 1, 2]
    curve = result.to_curve(hand_log)
    assert curve.cost.tolist() == [13.0] and curve.quality == pytest.approx([4.9 / 5])


def test_ensembles_need_responses_and_costs(hand_log):
    no_text = OutcomeLog(hand_log.prompt_ids, hand_log.prompts, MODELS, hand_log.scores, hand_log.costs,
                         source="hand.parquet")
    with pytest.raises(DataError, match="majority vote"):
        majority_vote(no_text)
    costs = hand_log.costs.copy()
    costs[0, 1] = np.nan
    with pytest.raises(RoutingError, match="medium"):
        oracle_ensemble(hand_log.with_costs(costs))


def test_answer_scorer_learns_on_real_responses(routerarena_large_splits):
    """Trained on RouterArena (prompt, response) pairs, the scorer ranks held-out good answers
    above bad ones better than chance, and a cascade with it stays within the chain's range."""
    train, val, test = routerarena_large_splits
    scorer = AnswerScorer(encoder="hashing:dim=256").fit(train)
    pred = scorer.score_log(test)
    good = test.scores >= 0.5
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(good.reshape(-1), pred.reshape(-1))
    assert auc > 0.6
    per_model = AnswerScorer(encoder="hashing:dim=256", shared=False, head="ridge").fit(train)
    assert per_model.score_log(test).shape == (test.n_prompts, 2)
    cascade = Cascade(chain=list(train.models), deferral="ex-post", encoder="hashing:dim=256").fit(train, val)
    cost, quality, stop = cascade.simulate(test)
    assert set(np.unique(stop)) <= {0, 1}
    assert cost.min() >= test.costs[:, 0].min() - 1e-15
    out = cascade.run(test.prompts[0], lambda m, p: test.responses[0, test.model_index(m)])
    assert out.models_called[0] == train.models[0] and out.model in train.models
    assert len(out.deferral_scores) == 1  # a 2-stage cascade scores only its first stage

"""Answer scorer defaults and caching, the agreement-escalation baseline, posterior calibration.

Hashing encoders and synthetic logs whose answer evidence is known by construction (the same
generator as test_cascade_router); MiniLM never loads here - the default is checked by name."""

from __future__ import annotations

import numpy as np
import pytest

from routecast.cascade.agreement_escalation import choose_chain, fit_agreement_escalation, rule_outcomes
from routecast.cascade.answer_scorer import SCORER_ENCODER, AnswerScorer
from routecast.cascade.cascade_router import CascadeRouter
from routecast.cascade.posterior import calibration
from routecast.cascade.posterior_calibration import posterior_calibration
from routecast.errors import ConfigError, NotFittedError, RoutingError
from tests._support.encoders import CountingEncoder
from tests.cascade.test_cascade_router import parts, synthetic

ENC = "hashing:dim=64"


@pytest.fixture
def counting(monkeypatch):
    """Every AnswerScorer builds a CountingEncoder (a cacheable stand-in); records the spec asked for."""
    specs: list[str] = []
    encoders: list[CountingEncoder] = []

    def build(self):
        specs.append(self.encoder)
        encoders.append(CountingEncoder(dim=32))
        return encoders[-1]

    monkeypatch.setattr(AnswerScorer, "_build_encoder", build)
    return specs, encoders


def test_the_answer_scorer_defaults_to_minilm_and_cascade_routing_passes_the_default_on(counting):
    specs, _ = counting
    assert SCORER_ENCODER == "minilm" and AnswerScorer().encoder == "minilm"
    train, val, _ = parts(synthetic(120, hedge=True, seed=5))
    router = CascadeRouter(router="linear", encoder=ENC, kappas=(0.0,), n_lams=9).fit(train, val)
    assert router.scorer_encoder is None and router.scorer_ is not None
    # one scorer per cross-fitting fold and the final one, all on the default encoder
    assert specs == ["minilm"] * (router.n_folds + 1)
    specs.clear()
    CascadeRouter(router="linear", encoder=ENC, scorer_encoder=ENC, kappas=(0.0,), n_lams=9).fit(train, val)
    assert specs == [ENC] * 4


def test_scorer_embeddings_are_cached_so_a_second_fit_encodes_nothing(counting):
    _, encoders = counting
    train, _, test = parts(synthetic(80, hedge=True, seed=6))
    first = AnswerScorer(head="logistic").fit(train)
    texts = {t for j in range(train.n_models) for t in first.texts(train.prompts, train.responses[:, j])}
    assert sorted(encoders[0].encoded) == sorted(texts)  # each distinct text once
    second = AnswerScorer(head="logistic").fit(train)
    assert encoders[1].encoded == []  # every (response, prompt) text came from the disk cache
    np.testing.assert_allclose(first.score_log(test), second.score_log(test))


def test_the_encoder_is_built_by_fit_and_set_state_never_by_predict():
    train, _, test = parts(synthetic(80, hedge=True, seed=7))
    scorer = AnswerScorer(encoder=ENC)
    with pytest.raises(NotFittedError):
        scorer.predict(["q"], ["a"], "A")
    assert not hasattr(scorer, "encoder_")
    scorer.fit(train)
    assert scorer.encoder_.dim == 64
    meta, arrays = scorer.get_state()
    loaded = AnswerScorer(**scorer.get_params()).set_state(meta, arrays)
    assert loaded.encoder_.dim == 64
    np.testing.assert_allclose(loaded.score_log(test), scorer.score_log(test))
    hedges = np.array(["not sure" in r for r in test.responses[:, 0]])
    ratings = scorer.score_log(test)[:, 0]
    assert ratings[~hedges].mean() > ratings[hedges].mean() + 0.3  # the hedge is visible to the scorer


def test_the_scorer_reads_the_response_tail_first_then_the_prompt_head():
    scorer = AnswerScorer(encoder=ENC, max_chars=100, prompt_share=0.25)
    prompt, response = "P" * 30 + "tail-of-prompt", "start " + "r" * 100 + " The answer is 42."
    (text,) = scorer.texts([prompt], [response])
    assert text == response[-75:] + " [SEP] " + prompt[:25]
    assert text.startswith("r") and "The answer is 42." in text and "tail-of-prompt" not in text


def test_agreement_escalation_accepts_agreeing_cheap_answers_and_escalates_otherwise():
    log = synthetic(240, hedge=False, seed=8)
    train, val, test = parts(log)
    assert choose_chain(train) == ("A", "B", "C")
    cost, quality, agreed = rule_outcomes(test, "A", "B", "C")
    same = np.array([ra.split()[-1] == rb.split()[-1] for ra, rb in test.responses[:, :2]])
    np.testing.assert_array_equal(agreed, same)
    np.testing.assert_allclose(cost, np.where(same, 2.5, 12.5))
    np.testing.assert_array_equal(quality, np.where(same, test.scores[:, 1], test.scores[:, 2]))
    # agreeing wrong answers are rare (random numbers), so the rule nearly matches C at a fraction of its cost
    assert quality.mean() >= test.scores[:, 2].mean() - 0.05 and 0.1 < agreed.mean() < 0.5
    cascade = fit_agreement_escalation(train, val, router="ridge", encoder=ENC)
    assert cascade.chain_ == ("A", "B", "C")
    curve = cascade.curve(test)
    rows = [k for k in range(len(curve.labels)) if np.allclose(curve.costs[k], cost)]
    assert rows, "the rule is not among the cascade's validation operating points"
    np.testing.assert_array_equal(curve.quality[rows[0]], quality)


def test_agreement_escalation_needs_three_models(routerarena_splits):
    train, _, _ = routerarena_splits
    with pytest.raises(RoutingError, match="needs at least three models"):
        choose_chain(train)


def test_calibration_values():
    out = calibration(np.array([0.2, 0.8, 0.8, 0.8]), np.array([0.0, 1.0, 1.0, 0.0]), n_bins=10)
    assert out["n"] == 4
    assert out["brier"] == pytest.approx((0.04 + 0.04 + 0.04 + 0.64) / 4)
    # bins: 0.2 -> 0 (1 item), 0.8 -> 2/3 (3 items)
    assert out["ece"] == pytest.approx(0.25 * 0.2 + 0.75 * abs(0.8 - 2 / 3))
    assert [b[2] for b in out["bins"]] == [1, 3]


def test_posterior_calibration_counts_every_state_and_beats_the_base_rate_once_an_answer_is_in():
    train, val, test = parts(synthetic(360, hedge=True, seed=9))
    router = CascadeRouter(router="linear", encoder=ENC, scorer_encoder=ENC, kappas=(0.0,), n_lams=9).fit(train, val)
    out = posterior_calibration(router, test)
    n = test.n_prompts
    # 3 models, at most 3 calls: sets of size 1, 2, 3 hold 3 + 6 + 3 called and 6 + 3 + 0 uncalled slots
    assert (out["ex-ante"]["n"], out["called"]["n"], out["not called"]["n"]) == (3 * n, 12 * n, 9 * n)
    called = out["called"]
    base = called["mean_target"] * (1 - called["mean_target"])
    assert called["brier"] < 0.8 * base  # hedges and agreement make answers in hand predictable
    assert called["ece"] < 0.1


def test_answer_format_names_the_rule_that_found_the_final_answer():
    from routecast.cascade.agreement import ANSWER_FORMATS, answer_format, format_onehot

    texts = [None, "  ", "so \\boxed{12}", "x\n#### 42", "The answer is (B).", "he pays 12 dollars", "Paris"]
    assert [answer_format(t) for t in texts] == ["none", "none", "boxed", "marker", "choice", "number", "text"]
    onehot = format_onehot(texts)
    assert onehot.shape == (7, len(ANSWER_FORMATS)) and (onehot.sum(axis=1) == 1).all()
    assert onehot[3, ANSWER_FORMATS.index("marker")] == 1


def test_the_posterior_reads_a_called_models_answer_format_and_the_scorer_sees_it():
    from routecast.cascade.posterior import compute_facts, feature_names, state_features

    facts = compute_facts(["q"], np.array([["so \\boxed{3}", "it is 3"]], dtype=object), ["a", "b"])
    col = {n: i for i, n in enumerate(feature_names(2))}
    x = state_features(np.zeros(2), facts, np.array([True, False]))
    assert x[0, col["called*format=boxed"]] == 1 and x[0, col["called*format=number"]] == 0
    assert x[1, col["called*format=number"]] == 0  # b not called: its format is not read yet
    y = state_features(np.zeros(2), facts, np.array([True, True]))
    assert y[1, col["called*format=number"]] == 1
    # the scorer: answers with the marker right, without it wrong -> it learns the format alone
    from routecast.data.outcome_log import OutcomeLog

    n = 60
    resp = np.array([[f"steps {i} ... #### {i}" if i % 2 else f"steps {i} ... so {i}", "x"] for i in range(n)],
                    dtype=object)
    log = OutcomeLog(np.array([f"p{i}" for i in range(n)], dtype=object),
                     np.array([f"question {i}" for i in range(n)], dtype=object), ("m", "w"),
                     np.array([[float(i % 2), 0.5] for i in range(n)]), np.ones((n, 2)), resp, source="<fmt>")
    rating = AnswerScorer(encoder="hashing:dim=16", C=10.0).fit(log, ["m"]).score_log(log, ["m"])[:, 0]
    assert rating[1::2].min() > 0.7 and rating[0::2].max() < 0.3


def test_empirical_shifts_are_the_joint_posterior_changes_of_sampled_training_prompts():
    from routecast.cascade.called_sets import masks as _masks
    from routecast.cascade.lookahead import empirical_shifts

    masks = _masks(2, 2, with_empty=True)  # [0, {0}, {1}, {0, 1}]
    post = np.array([[[0.5, 0.5], [0.9, 0.6], [0.4, 0.2], [0.95, 0.7]]])  # one prompt (n, S, P)
    shifts = empirical_shifts(post, masks, 2, 2, n_rows=3)
    assert shifts.shape == (4, 2, 3, 2)
    np.testing.assert_allclose(shifts[0, 0, 0], [0.4, 0.1])  # from {} calling model 0
    np.testing.assert_allclose(shifts[1, 1, 2], [0.05, 0.1])  # from {0} calling model 1: both move
    np.testing.assert_allclose(shifts[1, 0], 0.0)  # model 0 already called
    np.testing.assert_allclose(shifts[3], 0.0)  # the full set calls nothing more


def test_the_empirical_look_ahead_is_chosen_on_validation_and_survives_a_checkpoint(tmp_path):
    train, val, test = parts(synthetic(240, hedge=True, seed=2))
    router = CascadeRouter(router="linear", encoder=ENC, scorer_encoder=ENC, kappas=(0.0, 1.0), n_lams=13,
                           lookaheads=("normal", "empirical")).fit(train, val)
    # kappa 0 (point estimates) is the same under both modes: tried once
    assert list(router.val_aiq_) == [0.0, 1.0, "empirical:1.0"]
    best = max(router.val_aiq_.values())
    key = router.kappa_ if router.lookahead_ == "normal" else f"empirical:{router.kappa_}"
    assert router.val_aiq_[key] == best
    router.lookahead_, router.kappa_ = "empirical", 1.0  # exercise the empirical planner either way
    sim = router.simulate(test, router.lams_)
    hedges = np.array(["not sure" in r for r in test.responses[:, 0]])
    a = router.pool_.index("A")
    alone = sim["called"] == 1 << a
    # it still stops on a confident cheap answer and never on a hedge, at some lam
    assert any(alone[k][~hedges].mean() >= 0.9 and alone[k][hedges].mean() <= 0.1 for k in range(len(alone)))
    loaded = CascadeRouter.load(router.save(tmp_path / "cr"))
    assert loaded.lookahead_ == "empirical"
    np.testing.assert_array_equal(loaded.simulate(test, router.lams_)["called"], sim["called"])
    with pytest.raises(ConfigError, match="lookaheads must be some of"):
        CascadeRouter(lookaheads=("greedy",)).fit(train, val)

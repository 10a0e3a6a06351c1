"""The latent-truth agreement posterior (routecast.cascade.agreement_posterior)."""

from __future__ import annotations

import numpy as np

from routecast.cascade.agreement_posterior import agreement_evidence
from routecast.cascade.posterior import AnswerFacts, feature_names, state_features


def logit(p):
    p = np.asarray(p, dtype=float)
    return np.log(p / (1 - p))


def same(groups, k):
    out = np.zeros((k, k), bool)
    for g in groups:
        for a in g:
            for b in g:
                out[a, b] = True
    return out


def test_two_agreeing_answers_follow_the_one_coin_model():
    prior = logit([0.6, 0.6, 0.9])
    got = agreement_evidence(prior, same([[0, 1], [2]], 3), np.ones(3, bool), np.array([1, 1, 0], bool), 0.1)
    p = 0.36 / (0.36 + 0.1 * 0.16)  # both right, against both wrong and colliding
    np.testing.assert_allclose(got, [p - 0.6] * 2 + [0.0])


def test_a_strong_dissenter_outweighs_two_weak_agreeing_models_only_when_it_should():
    called = np.ones(3, bool)
    acc = np.array([0.55, 0.55, 0.97])
    weak_pair = acc + agreement_evidence(logit(acc), same([[0, 1], [2]], 3), called, called)
    assert weak_pair[2] > 0.5 > weak_pair[0]  # the 0.97 model keeps its answer against two coin flips
    acc = np.array([0.9, 0.9, 0.7])
    strong_pair = acc + agreement_evidence(logit(acc), same([[0, 1], [2]], 3), called, called)
    assert strong_pair[0] > 0.5 > strong_pair[2]


def test_nothing_to_agree_with_gives_no_shift():
    prior = logit([0.7, 0.8])
    assert not agreement_evidence(prior, same([[0], [1]], 2), np.ones(2, bool), np.array([1, 0], bool)).any()
    assert not agreement_evidence(prior, same([[0, 1]], 2), np.array([1, 0], bool), np.ones(2, bool)).any()


def test_the_shift_is_a_posterior_feature_of_called_models_only():
    names = feature_names(3)
    col = names.index("called*agreement_evidence")
    facts = AnswerFacts.empty(1, 3)
    facts.has_answer[0] = True
    facts.same_answer[0] = same([[0, 1], [2]], 3)
    rows = state_features(logit([0.6, 0.6, 0.9]), facts, np.array([1, 1, 0], bool))
    assert rows[0, col] > 0.3 and rows[0, col] == rows[1, col] and rows[2, col] == 0.0

"""Latent truth from answers alone (routecast.data.latent_truth): one-coin Dawid-Skene."""

from __future__ import annotations

import numpy as np
import pytest

from routecast.data.latent_truth import agreement_scores, dawid_skene, truth_posterior
from routecast.data.outcome_log import OutcomeLog
from routecast.errors import DataError


def simulated(n: int, accuracy, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 1000, size=n)
    right = rng.random((n, len(accuracy))) < np.asarray(accuracy)
    wrong = rng.integers(1000, 1010, size=(n, len(accuracy)))  # wrong answers collide now and then
    return np.where(right, truth[:, None], wrong).astype(str).astype(object), right


def test_the_posterior_of_one_two_and_disagreeing_voters():
    np.testing.assert_allclose(truth_posterior([0.7], ["4"]), [0.7])
    p = 0.36 / (0.36 + 0.1 * 0.16)
    np.testing.assert_allclose(truth_posterior([0.6, 0.6, 0.9], ["4", "4", None]), [p, p, 0.0])
    split = truth_posterior([0.9, 0.6], ["4", "5"])
    assert split[0] > 0.5 > split[1] and split.sum() < 1.0  # the truth may be neither


def test_em_recovers_who_is_reliable_without_any_score():
    answers, right = simulated(600, [0.9, 0.75, 0.5, 0.3], seed=1)
    fit = dawid_skene(answers)
    assert list(np.argsort(-fit.accuracy)) == [0, 1, 2, 3]
    np.testing.assert_allclose(fit.accuracy, right.mean(axis=0), atol=0.08)
    # the posterior separates right from wrong answers far better than chance
    assert fit.posterior[right].mean() > 0.8 and fit.posterior[~right].mean() < 0.2


def test_agreement_scores_fill_only_the_missing_scores():
    answers, right = simulated(60, [0.9, 0.8, 0.6], seed=2)
    scores = right.astype(float)
    scores[:30, 2] = np.nan
    log = OutcomeLog(np.array([f"p{i}" for i in range(60)], dtype=object),
                     np.array([f"q{i}" for i in range(60)], dtype=object), ("a", "b", "c"), scores,
                     np.ones((60, 3)), np.array([[f"#### {a}" for a in row] for row in answers], dtype=object))
    filled, fit = agreement_scores(log)
    np.testing.assert_array_equal(filled.scores[30:], scores[30:])
    assert not np.isnan(filled.scores).any()
    np.testing.assert_allclose(filled.scores[:30, 2], fit.posterior[:30, 2])
    no_text = OutcomeLog(log.prompt_ids, log.prompts, log.models, scores, log.costs, None)
    with pytest.raises(DataError, match="response"):
        agreement_scores(no_text)
